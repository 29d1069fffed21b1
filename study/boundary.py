"""Boundary search: a Ray Tune searcher that maps where a metric crosses its threshold.

A phase diagram asks for a level set, {cells : seed-mean metric >= threshold}, not for an optimum, so
``BoundarySearch`` spends its trials where the boundary of that set is still uncertain and none deep
inside either phase. It picks among the spec's grid cells only (it never proposes outside the declared
axes, and its boundary is the one the full grid would give), runs every cell it picks with all the
spec's seeds, and hands Tune each round's configs as packs.

Method: noisy bracketing per row, with a prior from neighbouring rows. A *row* is one value of ``x`` (and
of the optional third axis, ``slice``: z); along it the metric is taken to be monotone in y (increasing
unless ``increasing: false``), so the row's boundary is one unknown k among n + 1 hypotheses: the last
grid index whose seed mean is below the threshold (-1: in the phase from the smallest y on, n - 1: never
in it). That is what ``analysis.phase.PhaseDiagram`` reports (the last crossing into the phase,
interpolated between the bracketing cells), so a resolved row gives the grid's own boundary.

- Bracket. The sampled cells of a row give lo = the last one below the threshold and hi = the first
  sampled one after it; the boundary lies between them. The row is resolved when hi - lo <=
  ``precision`` grid steps (1: adjacent cells, the grid's resolution).
- Seed noise. A cell is trusted only when its seed mean is farther than ``z`` standard errors from the
  threshold, the standard error being max(seed std, ``noise``) / sqrt(seeds) (``noise``: the metric's
  own measurement noise, 0.005 for an accuracy on a few thousand held-out points). An untrusted bracket
  end is refined, not believed: the next cell outward (below lo, above hi) is needed as well, and so on
  up to a trusted cell or the end of the axis. So the grid's boundary lies inside the sampled cells
  whichever side a near-threshold cell falls on in the grid's own run (another pack's round-off is
  enough to flip it), and a plateau at the threshold is sampled, not skipped.
- Acquisition. Each hypothesis k weighs the same, or, when neighbouring rows (one step in x or in z,
  with cells on one scale: the next MLP width, not the linear encoder) are resolved, mostly a Laplace
  kernel around their boundaries, as wide as neighbouring boundaries are apart in this diagram so far
  (a rough diagram gets a flat prior). The probe is the root of the optimal binary search tree over the
  hypotheses under that prior (Knuth 1971): the fewest probes in expectation. With a flat prior that is
  bisection, about log2(n + 1) cells per row, the least any search can spend on a row it knows nothing
  about; with a good prior, one or two.
- Order. To give rows priors, the rows start in waves: the centre of each group of connected rows
  first, every other row once one of its neighbours is resolved.

Why this rather than a classifier over the plane with a straddle acquisition (level-set estimation,
Gotovos et al. 2013): on a grid whose metric is monotone along each row, bisection already is the
optimal one-dimensional level-set search; it needs no kernel hyperparameters fitted on a dozen points;
its stopping rule is exact (the cells that decide the grid's boundary are sampled) and testable on
planted boundaries. What a GP over the plane would add, sharing across rows, the neighbour prior gives;
what LSE's confidence rule gives, a cell within its noise of the threshold being ambiguous, the noise
rule keeps.

Batches and packs. When Tune asks for a trial and no planned pack is waiting, the searcher plans a round
from what has finished: one probe (plus refinement cells) for every row that is open and has nothing in
flight. While that is fewer configs than free slots (the Ray cluster's CPUs, or GPUs, over one trial's
share, less the running trials; or ``max_concurrent``), rows waiting for a neighbour start anyway, then
the widest brackets get more probes (the next levels of their search tree): a wide cluster searches
more speculatively and finishes in fewer rounds. The round is cut into at least as many packs as there
are free slots, each at most ``pack_size`` configs under one ``trainables.engine.pack_key``. The
searcher returns None while every open row waits for a running trial, and FINISHED once every row is
resolved (or the ``budget`` of configs is spent) and nothing is running.

State: everything it has proposed, handed out (per trial id) and observed is saved with Tune's searcher
checkpoint (``save``/``restore``), so a study resumed with ``--resume`` neither repeats nor loses a
config; a result is matched to its configs by the configs themselves, so a trial Tune restored from an
older snapshot is still accounted for. ``<study_dir>/boundary_search.json`` summarises the search
(rounds, configs used against the grid's, each row's bracket) for the report.
"""

from __future__ import annotations

import json
import math
import os
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.search import Searcher

from trainables.config import effective, flatten

if TYPE_CHECKING:
    from study.spec import StudySpec

SUMMARY_FILE = "boundary_search.json"
_NEIGHBOUR_SCALE = 0.75  # width of the prior's kernel around a neighbouring row's boundary, in grid steps
_UNIFORM = 0.25  # share of the uniform in a prior built from neighbours

Key = tuple[int, int, int]  # (row, y index, seed index)


@dataclass(frozen=True)
class Bracket:
    """What a row's finished cells say about its boundary (grid indices, -1 and n beyond the ends)."""

    lo: int  # last sampled cell below the threshold (-1: none)
    hi: int  # first sampled cell after lo (n: none)
    gap: tuple[int, ...]  # unsampled, probe-able cells strictly between lo and hi
    refine: tuple[int, ...]  # cells the noise rule asks for (outward of an untrusted bracket end)
    resolved: bool


def bracket(mean: np.ndarray, se: np.ndarray, failed: np.ndarray, threshold: float, *, z: float = 1.0,
            precision: int = 1) -> Bracket:
    """The bracket of one row. ``mean``, ``se``: (n,) seed mean and its standard error, NaN where the
    cell is not sampled; ``failed``: (n,) bool, cells without any usable seed (never probed again).
    The metric is taken to increase along the row (negate ``mean`` and ``threshold`` otherwise)."""
    n = len(mean)
    sampled = ~np.isnan(mean)
    below = sampled & (mean < threshold)
    lo = int(np.flatnonzero(below)[-1]) if below.any() else -1
    after = np.flatnonzero(sampled[lo + 1:])
    hi = lo + 1 + int(after[0]) if len(after) else n
    gap = tuple(j for j in range(lo + 1, hi) if not failed[j])
    trusted = sampled & (np.abs(mean - threshold) > z * se)
    refine = []
    for end, step in ((lo, -1), (hi, 1)):
        if not 0 <= end < n or trusted[end]:
            continue
        j = end + step
        while 0 <= j < n and (failed[j] or (sampled[j] and not trusted[j])):
            j += step  # walk outward past failed and untrusted cells
        if 0 <= j < n and not sampled[j]:
            refine.append(j)
    resolved = (hi - lo <= precision or not gap) and not refine
    return Bracket(lo, hi, gap, tuple(refine), resolved)


def crossing_position(mean: np.ndarray, b: Bracket, threshold: float) -> float:
    """Where the row's boundary lies, in grid steps: interpolated between lo and hi as PhaseDiagram
    interpolates; -0.5 when in the phase from the first cell on, n - 0.5 when never in it."""
    n = len(mean)
    if b.lo < 0:
        return -0.5
    if b.hi >= n:
        return n - 0.5
    m_lo, m_hi = mean[b.lo], mean[b.hi]
    frac = (threshold - m_lo) / (m_hi - m_lo) if m_hi > m_lo else 0.5
    return b.lo + float(np.clip(frac, 0.0, 1.0)) * (b.hi - b.lo)


def prior(b: Bracket, neighbours: Sequence[float], scale: float = _NEIGHBOUR_SCALE) -> np.ndarray:
    """P(k) for the hypotheses k = lo..hi-1 of a bracket (boundary between cells k and k + 1, at k + 0.5):
    uniform, or a mixture of a Laplace kernel of width ``scale`` (grid steps) around each neighbouring row's
    boundary position with ``_UNIFORM`` of the uniform, so that a neighbour that misleads costs probes,
    never the answer."""
    ks = np.arange(b.lo, b.hi)
    uniform = np.full(len(ks), 1.0 / len(ks))
    if not neighbours:
        return uniform
    kernel = np.zeros(len(ks))
    for c in neighbours:
        bump = np.exp(-np.abs(ks + 0.5 - c) / scale)
        kernel += bump / bump.sum()
    return _UNIFORM * uniform + (1 - _UNIFORM) * kernel / len(neighbours)


def probes(b: Bracket, neighbours: Sequence[float] = (), m: int = 1, precision: int = 1,
           scale: float = _NEIGHBOUR_SCALE) -> list[int]:
    """The next ``m`` cells to probe in a bracket: the root of the search tree that needs the fewest probes
    in expectation under ``prior`` (an optimal binary search tree, Knuth 1971, by dynamic programming over
    ranges of hypotheses), then the roots of its heaviest subtrees."""
    if not b.gap or m < 1:
        return []
    weight = prior(b, neighbours, scale)
    h = len(weight)
    total = np.concatenate([[0.0], np.cumsum(weight)])
    free = set(b.gap)
    cost: dict[tuple[int, int], float] = {}
    root: dict[tuple[int, int], int | None] = {}
    centre = (b.lo + b.hi) / 2
    for width in range(1, h + 1):  # ranges [a, c] of hypotheses; a split s sends k < s one way (cell lo + s)
        for a in range(h - width + 1):
            c = a + width - 1
            splits = [s for s in range(a + 1, c + 1) if b.lo + s in free]
            if width <= precision or not splits:
                cost[a, c], root[a, c] = 0.0, None
                continue
            best = min(splits, key=lambda s: (round(cost[a, s - 1] + cost[s, c], 12), abs(b.lo + s - centre), s))
            cost[a, c] = total[c + 1] - total[a] + cost[a, best - 1] + cost[best, c]
            root[a, c] = best
    chosen: list[int] = []
    frontier = [(0, h - 1)]
    while frontier and len(chosen) < m:
        frontier.sort(key=lambda r: (-(total[r[1] + 1] - total[r[0]]), r))
        a, c = frontier.pop(0)
        s = root[a, c]
        if s is None:
            continue
        chosen.append(b.lo + s)
        frontier += [(a, s - 1), (s, c)]
    return sorted(chosen)


class BoundarySearch(Searcher):
    """Ray Tune searcher over the cells of a phase diagram's grid (see the module docstring).

    Parameters
    ----------
    base : the fixed part of every config (the spec's ``trainable:``).
    x, y, slice : ``(key, cells)`` of each axis, cells as the grid lists them (a capacity cell is a dict
        of config keys); y numeric. ``slice`` is optional (the third axis, z).
    seeds : every proposed cell runs with each of these.
    metric, threshold, increasing : the boundary is where the seed mean of ``metric`` crosses
        ``threshold`` (rising with y when ``increasing``).
    precision : a row is resolved when its bracket is at most this many grid steps wide.
    budget : at most this many configs in all (None: until every row is resolved).
    noise, z : a cell is trusted when |mean - threshold| > z * max(seed std, noise) / sqrt(seeds).
    pack_size : at most this many configs per trial.
    slots : trials that can run at once (None: the Ray cluster's CPUs, or GPUs, over one trial's share).
    trial_resources : one trial's ``{"cpu": .., "gpu": ..}``, to count slots.
    objective, mode : passed to the trainable (its report's best value over the pack).
    record_dir : where ``boundary_search.json`` is written (None: nowhere).
    """

    def __init__(
        self,
        *,
        base: Mapping[str, Any],
        x: tuple[str, Sequence[Any]],
        y: tuple[str, Sequence[float]],
        slice: tuple[str, Sequence[Any]] | None = None,
        seeds: Sequence[int] = (0,),
        metric: str = "randlabel_acc",
        threshold: float = 0.95,
        increasing: bool = True,
        precision: int = 1,
        budget: int | None = None,
        noise: float = 0.005,
        z: float = 1.0,
        pack_size: int = 1,
        slots: int | None = None,
        trial_resources: Mapping[str, float] | None = None,
        objective: str | None = None,
        mode: str = "max",
        record_dir: str | Path | None = None,
        grid_configs: int | None = None,
    ):
        super().__init__(metric=objective or metric, mode=mode)
        self.base = dict(base)
        self.x_key, self.x_cells = x[0], list(x[1])
        order = sorted(range(len(y[1])), key=lambda i: float(y[1][i]))
        self.y_key, self.y_values = y[0], [y[1][i] for i in order]
        self.slice_key, self.slice_cells = (slice[0], list(slice[1])) if slice else (None, [None])
        self.seeds = list(seeds)
        self.boundary_metric, self.threshold, self.increasing = metric, float(threshold), bool(increasing)
        self.precision, self.budget, self.noise, self.z = int(precision), budget, float(noise), float(z)
        self.pack_size, self.slots = max(1, int(pack_size)), slots
        self.trial_resources = dict(trial_resources or {"cpu": 1.0, "gpu": 0.0})
        self.objective, self.objective_mode = objective or metric, mode
        self.record_dir = Path(record_dir) if record_dir else None
        self.rows = [(i, k) for k in range(len(self.slice_cells)) for i in range(len(self.x_cells))]
        self.grid_configs = grid_configs or len(self.rows) * len(self.y_values) * len(self.seeds)
        self._by_config: dict[str, Key] | None = None
        self._adjacent: list[list[int]] | None = None
        self._anchors: set[int] | None = None
        # --- the state Tune checkpoints -------------------------------------------------------------
        self.observed: dict[Key, float] = {}  # NaN: failed or diverged
        self.proposed: set[Key] = set()
        self.queue: list[list[Key]] = []  # planned packs not yet handed out
        self.live: dict[str, list[Key]] = {}  # trial id -> its pack
        self.rounds: list[dict[str, Any]] = []
        self.stop: str | None = None

    # --- configs ----------------------------------------------------------------------------------
    def config(self, key: Key) -> dict[str, Any]:
        """The effective config of ``key``, built as ``StudySpec.cells`` builds a grid cell."""
        row, j, s = key
        i, k = self.rows[row]
        axes = {self.x_key: self.x_cells[i], self.y_key: self.y_values[j], "seed": self.seeds[s]}
        if self.slice_key is not None:
            axes[self.slice_key] = self.slice_cells[k]
        return effective(flatten({**self.base, **axes}))

    def _key_of(self, config: Mapping[str, Any]) -> Key | None:
        if self._by_config is None:
            self._by_config = {_canonical(self.config(key)): key for key in self._all_keys()}
        return self._by_config.get(_canonical(config))

    def _all_keys(self) -> list[Key]:
        return [(r, j, s) for r in range(len(self.rows)) for j in range(len(self.y_values))
                for s in range(len(self.seeds))]

    # --- what is known ------------------------------------------------------------------------------
    def row_table(self, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(mean, se, failed, busy) of a row's cells, sign-normalised so that the phase is above; a cell
        counts as sampled once all its seeds are in."""
        n, sign = len(self.y_values), 1.0 if self.increasing else -1.0
        mean, se = np.full(n, np.nan), np.full(n, np.nan)
        failed, busy = np.zeros(n, bool), np.zeros(n, bool)
        for j in range(n):
            keys = [(row, j, s) for s in range(len(self.seeds))]
            busy[j] = any(k in self.proposed and k not in self.observed for k in keys)
            if not all(k in self.observed for k in keys):
                continue
            values = np.array([self.observed[k] for k in keys], dtype=float)
            values = values[np.isfinite(values)]
            if not len(values):
                failed[j] = True
                continue
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            mean[j] = sign * float(values.mean())
            se[j] = max(std, self.noise) / math.sqrt(len(values))
        return mean, se, failed, busy

    def brackets(self) -> list[Bracket]:
        sign = 1.0 if self.increasing else -1.0
        out = []
        for row in range(len(self.rows)):
            mean, se, failed, _ = self.row_table(row)
            out.append(bracket(mean, se, failed, sign * self.threshold, z=self.z, precision=self.precision))
        return out

    @property
    def adjacent(self) -> list[list[int]]:
        """Each row's neighbours: the rows one step away in x or in z whose cells are comparable (numbers, or
        dicts that differ only in numbers: an MLP of another width, not the linear encoder)."""
        if self._adjacent is None:
            index = {rc: r for r, rc in enumerate(self.rows)}
            self._adjacent = []
            for i, k in self.rows:
                near = [(i + d, k) for d in (-1, 1) if 0 <= i + d < len(self.x_cells)
                        and _comparable(self.x_cells[i], self.x_cells[i + d])]
                near += [(i, k + d) for d in (-1, 1) if 0 <= k + d < len(self.slice_cells)
                         and _comparable(self.slice_cells[k], self.slice_cells[k + d])]
                self._adjacent.append([index[rc] for rc in near])
        return self._adjacent

    @property
    def anchors(self) -> set[int]:
        """Rows searched from scratch: the centre of each group of connected rows (the row from which the
        others are fewest neighbour steps away). Every other row starts once a neighbour's boundary is known,
        with it as its prior, unless free slots would otherwise idle (see ``_plan``)."""
        if self._anchors is None:
            seen: set[int] = set()
            self._anchors = set()
            for start in range(len(self.rows)):
                if start in seen:
                    continue
                group = self._hops(start).keys()
                seen |= group
                self._anchors.add(min(group, key=lambda r: (max(self._hops(r).values()), r)))
        return self._anchors

    def _hops(self, start: int) -> dict[int, int]:
        """Neighbour steps from ``start`` to every row connected to it (breadth-first)."""
        hops, frontier = {start: 0}, [start]
        while frontier:
            step = []
            for r in frontier:
                for n in self.adjacent[r]:
                    if n not in hops:
                        hops[n] = hops[r] + 1
                        step.append(n)
            frontier = step
        return hops

    # --- planning ------------------------------------------------------------------------------------
    def _free_slots(self) -> int:
        total = self.slots if self.slots is not None else cluster_slots(self.trial_resources)
        return max(1, total - len(self.live))

    def _plan(self) -> None:
        """Plan one round (see the module docstring) into ``self.queue``."""
        sign = 1.0 if self.increasing else -1.0
        tables = [self.row_table(r) for r in range(len(self.rows))]
        bracks = [bracket(t[0], t[1], t[2], sign * self.threshold, z=self.z, precision=self.precision)
                  for t in tables]
        busy = [bool(t[3].any()) for t in tables]
        positions = {r: crossing_position(tables[r][0], b, sign * self.threshold)
                     for r, b in enumerate(bracks) if b.resolved and not busy[r]}
        # how far apart neighbouring boundaries are in this diagram: the prior's width (Laplace: their mean gap)
        gaps = [abs(positions[r] - positions[n]) for r in positions for n in self.adjacent[r] if n in positions]
        scale = max(_NEIGHBOUR_SCALE, float(np.mean(gaps))) if gaps else _NEIGHBOUR_SCALE
        anchors = self.anchors
        open_rows, waiting = [], []
        for r, b in enumerate(bracks):
            if b.resolved or busy[r]:
                continue
            started = bool((~np.isnan(tables[r][0])).any() or tables[r][2].any())
            if started or r in anchors or any(n in positions for n in self.adjacent[r]):
                open_rows.append(r)
            else:
                waiting.append(r)  # its neighbour's boundary, once known, is a better start than bisection
        if not open_rows and not self.live:
            open_rows, waiting = waiting, []  # nothing is running that it could wait for
        if not open_rows and not waiting:
            return
        # widest brackets first: they gain most from a probe, and get the extra ones
        open_rows.sort(key=lambda r: (-(bracks[r].hi - bracks[r].lo), r))
        per_row = {r: 1 for r in open_rows}
        seeds = len(self.seeds)
        free = self._free_slots()

        def cells_of(r: int) -> list[int]:
            b = bracks[r]
            gap = b.gap if b.hi - b.lo > self.precision else ()
            near = [positions[n] for n in self.adjacent[r] if n in positions]
            found = probes(Bracket(b.lo, b.hi, gap, b.refine, b.resolved), near, per_row[r], self.precision, scale)
            return sorted(set(found) | set(b.refine))

        plan = {r: cells_of(r) for r in open_rows}
        while sum(len(c) for c in plan.values()) * seeds < free:  # spare slots: start a waiting row, else
            if waiting:                                            # k-section of the widest bracket
                r = waiting.pop(0)
                open_rows.append(r)
                per_row[r] = 1
                plan[r] = cells_of(r)
                continue
            grown = False
            for r in open_rows:
                if len(plan[r]) < len(set(bracks[r].gap) | set(bracks[r].refine)):
                    per_row[r] += 1
                    plan[r] = cells_of(r)
                    grown = True
                    break
            if not grown:
                break
        keys: list[Key] = []
        # under a budget, every row's first cell comes before any row's second (widest rows first)
        ranked = sorted((n, order, row, j) for order, row in enumerate(open_rows) for n, j in enumerate(plan[row]))
        for _, _, r, j in ranked:
            cell = [(r, j, s) for s in range(seeds)]
            if self.budget is not None and len(self.proposed) + len(keys) + len(cell) > self.budget:
                self.stop = "budget"
                break
            keys += cell
        if not keys:
            return
        configs = [self.config(k) for k in keys]
        size = max(1, min(self.pack_size, -(-len(keys) // free)))
        from trainables.engine import plan_packs

        packs = [[keys[i] for i in pack] for pack in plan_packs(configs, size)]
        self.proposed.update(keys)
        self.queue.extend(packs)
        cells = sorted({(r, j) for r, j, _ in keys})
        self.rounds.append({"round": len(self.rounds) + 1, "cells": len(cells), "configs": len(keys),
                            "packs": len(packs), "rows": len({r for r, _ in cells})})

    # --- the Searcher interface ---------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # the search space is the spec's grid, given at construction

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.slots = max_concurrent  # the ConcurrencyLimiter still enforces it; we size rounds by it
        return False

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if not self.queue and self.stop is None:
            self._plan()
        if not self.queue:
            if self.live:
                return None  # every open row waits for a running trial
            self.stop = self.stop or ("resolved" if all(b.resolved for b in self.brackets()) else "exhausted")
            self._write_summary()
            return Searcher.FINISHED
        keys = self.queue.pop(0)
        self.live[trial_id] = keys
        return {"pack": [self.config(k) for k in keys], "objective": self.objective, "mode": self.objective_mode}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        keys = self.live.pop(trial_id, None)
        configs = (result or {}).get("config/pack") or (result or {}).get("config", {}).get("pack")
        if keys is None and configs:  # a trial restored from a snapshot older than ours: match its configs
            found = [self._key_of(c) for c in configs]
            keys = [k for k in found if k is not None] if all(k is not None for k in found) else None
            if keys is not None:
                for packed in list(self.queue):
                    if set(packed) <= set(keys):
                        self.queue.remove(packed)
                self.proposed.update(keys)
        if keys is None:
            return
        if result is None and not error:  # Tune removed it before it ran (a pending trial of a stopped study)
            self.queue.insert(0, keys)
            return
        reports = (result or {}).get("pack") if not error else None
        for n, key in enumerate(keys):
            value = math.nan
            if reports is not None and n < len(reports):
                report = reports[n]
                v = report.get(self.boundary_metric)
                if isinstance(v, (int, float)) and not report.get("diverged"):
                    value = float(v)
            self.observed[key] = value
        self._write_summary()

    def get_state(self) -> dict[str, Any]:
        return {"observed": dict(self.observed), "proposed": set(self.proposed), "queue": [list(p) for p in self.queue],
                "live": {t: list(k) for t, k in self.live.items()}, "rounds": list(self.rounds), "stop": self.stop,
                "slots": self.slots}

    def set_state(self, state: dict[str, Any]) -> None:
        self.observed = dict(state["observed"])
        self.proposed = set(state["proposed"])
        self.queue = [list(p) for p in state["queue"]]
        self.live = {t: list(k) for t, k in state["live"].items()}
        self.rounds = list(state["rounds"])
        self.stop = state["stop"]
        self.slots = state.get("slots", self.slots)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))
        # Tune hands a resumed study's restored trials back, each with its trial id: they stay live.

    # --- reporting -------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The search in numbers: configs used against the grid's, rounds, and each row's bracket."""
        rows = []
        for r, b in enumerate(self.brackets()):
            i, k = self.rows[r]
            mean, _, _, _ = self.row_table(r)
            n = len(self.y_values)
            rows.append({
                "x": _label(self.x_cells[i]), **({"slice": self.slice_cells[k]} if self.slice_key else {}),
                "y_below": self.y_values[b.lo] if b.lo >= 0 else None,
                "y_above": self.y_values[b.hi] if b.hi < n else None,
                "resolved": b.resolved,
                "y_sampled": [self.y_values[j] for j in range(n) if not math.isnan(mean[j])],
            })
        used = len({k for k in self.proposed})
        return {
            "searcher": "boundary", "metric": self.boundary_metric, "threshold": self.threshold,
            "increasing": self.increasing, "x": self.x_key, "y": self.y_key, "slice": self.slice_key,
            "precision": self.precision, "noise": self.noise, "z": self.z, "budget": self.budget,
            "configs": used, "finished": len(self.observed), "grid_configs": self.grid_configs,
            "fraction_of_grid": round(used / self.grid_configs, 4) if self.grid_configs else None,
            "rounds": self.rounds, "stop": self.stop, "rows": rows,
        }

    def _write_summary(self) -> None:
        if self.record_dir is None:
            return
        self.record_dir.mkdir(parents=True, exist_ok=True)
        path = self.record_dir / SUMMARY_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.summary(), indent=2, default=str))
        os.replace(tmp, path)


# --- from a study spec ----------------------------------------------------------------------------
_AXIS_ROLES = ("x", "y", "slice")


def settings(spec: StudySpec) -> dict[str, Any]:
    """The boundary search a spec asks for: axes, metric and threshold from its ``searcher:`` block, else
    from its ``analysis:`` block; raises ValueError naming what is missing or inconsistent."""
    block = spec.searcher
    chosen = {role: getattr(block, role) if getattr(block, role) is not None else spec.analysis.get(role)
              for role in (*_AXIS_ROLES, "metric", "threshold", "increasing")}
    missing = [role for role in ("x", "y", "metric", "threshold") if chosen[role] is None]
    if missing:
        raise ValueError(
            f"searcher.type boundary needs {', '.join(missing)}: set them in the searcher: block or the analysis: "
            "block (e.g. analysis: {x: capacity, y: embedding_dim, metric: randlabel_acc, threshold: 0.95})")
    if chosen["slice"] in ("", "none", "None"):
        chosen["slice"] = None
    try:
        chosen["threshold"] = float(chosen["threshold"])
    except (TypeError, ValueError):
        raise ValueError(f"the boundary's threshold must be a number, got {chosen['threshold']!r}") from None
    axes = spec.grid_axes()
    roles = {role: chosen[role] for role in _AXIS_ROLES if chosen[role] is not None}
    if len(set(roles.values())) < len(roles):
        raise ValueError(f"the boundary search's axes must be distinct, got {roles}")
    for role, key in roles.items():
        if key not in spec.grid:
            raise ValueError(f"the boundary search's {role} axis {key!r} is not a grid: axis; grid axes: "
                             f"{', '.join(spec.grid) or '(none)'}")
    others = sorted(k for k in set(axes) - set(roles.values()) - {"seed"} if len(axes[k]) > 1)
    if others:
        raise ValueError(f"grid axis {others} is not an axis of the diagram ({', '.join(roles.values())}): the "
                         "boundary search maps x, y and slice only; fix it in trainable:, or make it the slice")
    ys = axes[chosen["y"]]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in ys) or len(set(ys)) < len(ys):
        raise ValueError(f"the boundary search's y axis {chosen['y']!r} needs distinct numbers, got {ys}")
    if spec.search:
        raise ValueError("searcher.type boundary searches the grid: axes; search: distributions are for optuna")
    if spec.num_samples != 1:
        raise ValueError("searcher.type boundary runs each cell once per seed: num_samples must be 1 "
                         "(the seeds are its repeats; its budget is searcher.budget)")
    if spec.scheduler.type != "fifo":
        raise ValueError("searcher.type boundary needs every trial's final metric: scheduler.type must be fifo")
    chosen["increasing"] = True if chosen["increasing"] is None else bool(chosen["increasing"])
    chosen["axes"] = {role: (key, axes[key]) for role, key in roles.items()}
    chosen["fixed"] = {k: v[0] for k, v in axes.items() if k not in roles.values() and k != "seed"}  # one value
    chosen["seeds"] = axes["seed"]
    return chosen


def cluster_slots(trial_resources: Mapping[str, float]) -> int:
    """How many trials of ``trial_resources`` (``{"cpu": .., "gpu": ..}``) the running Ray cluster holds
    at once: its GPUs, or else its CPUs, over one trial's share (1 without a cluster to ask)."""
    try:
        import ray

        if not ray.is_initialized():
            return 1
        resources = ray.cluster_resources()
    except Exception:  # noqa: BLE001 - no cluster to ask: one slot
        return 1
    gpu, cpu = trial_resources.get("gpu", 0.0), trial_resources.get("cpu", 1.0)
    return max(1, int(resources.get("GPU", 0) // gpu) if gpu else int(resources.get("CPU", 1) // cpu))


def check_spec(spec: StudySpec) -> None:
    """Spec-time validation of ``searcher: {type: boundary}`` (a no-op for other searchers)."""
    if spec.searcher.type == "boundary":
        settings(spec)


def from_spec(spec: StudySpec, *, pack_size: int = 1, record_dir: str | Path | None = None) -> BoundarySearch:
    """The searcher of a spec whose ``searcher.type`` is boundary."""
    chosen = settings(spec)
    axes = chosen["axes"]
    return BoundarySearch(
        base={**spec.trainable, **chosen["fixed"]}, x=axes["x"], y=axes["y"], slice=axes.get("slice"),
        seeds=chosen["seeds"], metric=chosen["metric"], threshold=chosen["threshold"], increasing=chosen["increasing"],
        precision=spec.searcher.precision, budget=spec.searcher.budget, noise=spec.searcher.noise,
        z=spec.searcher.z, pack_size=pack_size, slots=spec.max_concurrent,
        trial_resources={"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
        objective=spec.objective.metric, mode=spec.objective.mode, record_dir=record_dir,
        grid_configs=len(spec.cells()),
    )


def _canonical(config: Mapping[str, Any]) -> str:
    return json.dumps({k: config[k] for k in sorted(config)}, sort_keys=True, default=str)


def _comparable(a: Any, b: Any) -> bool:
    """Whether two cells of an axis lie on one scale: numbers, or dicts alike except in numeric values."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if number(a) and number(b):
        return True
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return set(a) == set(b) and all(a[k] == b[k] or (number(a[k]) and number(b[k])) for k in a)
    return False


def _label(cell: Any) -> Any:
    """A cell as the trials table names it: a capacity as ``analysis.load.capacity_of`` labels it."""
    if isinstance(cell, Mapping):
        from analysis.load import capacity_of

        return capacity_of(cell)
    return cell
