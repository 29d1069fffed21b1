"""The boundary searcher: its bracket and probe rules in closed form, its suggest/on_trial_complete loop on
planted boundaries (a synthetic metric of the cell, no training), its checkpoint and its spec checks; then
real studies through Ray Tune: one through ``clphase run``, one killed (SIGKILL) and resumed."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from ray.tune.search import Searcher

from analysis.phase import PhaseDiagram
from study.boundary import SUMMARY_FILE, BoundarySearch, Bracket, bracket, from_spec, probes
from study.cli import main
from study.runner import run_study
from study.spec import SpecError, load_spec, parse_spec
from tests.study.conftest import TINY, write_spec

NAN = math.nan
CAPACITY = [{"encoder": "linear"}] + [{"encoder": "mlp", "width": w, "depth": 1} for w in (8, 16, 32)]
DIMS = [2, 4, 8, 16, 32, 64, 128, 256]
NOISES = [0.0, 0.25, 0.5, 0.75]


def _bracket(mean, se=None, failed=None, **kw) -> Bracket:
    mean = np.array(mean, dtype=float)
    se = np.full(len(mean), 0.001) if se is None else np.array(se, dtype=float)
    failed = np.zeros(len(mean), bool) if failed is None else np.array(failed, bool)
    return bracket(mean, se, failed, 0.9, **kw)


# --- the rules in closed form -------------------------------------------------------------------------
def test_the_bracket_is_the_last_cell_below_and_the_next_sampled_one():
    b = _bracket([0.5, NAN, 0.8, NAN, NAN, 0.99, NAN])
    assert (b.lo, b.hi, b.gap, b.refine, b.resolved) == (2, 5, (3, 4), (), False)
    b = _bracket([NAN, 0.5, 0.95, 0.7, 0.99, NAN])  # non-monotone: the last crossing counts, as in PhaseDiagram
    assert (b.lo, b.hi, b.resolved) == (3, 4, True)
    assert _bracket([0.95, NAN, NAN]).gap == () and _bracket([0.95, NAN, NAN]).resolved  # in the phase from y_0
    assert _bracket([NAN, NAN, 0.5]).resolved  # never in it
    assert not _bracket([NAN, 0.5, NAN]).resolved and _bracket([NAN, 0.5, NAN]).gap == (2,)
    assert _bracket([NAN] * 4).gap == (0, 1, 2, 3)
    assert _bracket([0.5, NAN, 0.99], precision=2).resolved and not _bracket([0.5, NAN, 0.99]).resolved
    # a cell that failed is never probed again: the bracket closes around it
    assert _bracket([0.5, NAN, 0.99], failed=[False, True, False]).resolved


def test_a_bracket_end_within_its_noise_of_the_threshold_is_refined_not_trusted():
    se = [0.05] * 6
    b = _bracket([NAN, NAN, 0.88, 0.99, NAN, NAN], se)  # 0.88 is 0.4 se from 0.9: its neighbour below is needed
    assert (b.lo, b.hi, b.refine, b.resolved) == (2, 3, (1,), False)
    b = _bracket([NAN, 0.6, 0.88, 0.99, NAN, NAN], se)
    assert b.refine == () and b.resolved
    b = _bracket([NAN, NAN, 0.6, 0.92, NAN, NAN], se)  # an untrusted upper end: the next cell up
    assert b.refine == (4,)
    b = _bracket([NAN, NAN, 0.6, 0.92, 0.91, NAN], se)  # ... and past every untrusted one
    assert b.refine == (5,)
    b = _bracket([NAN, NAN, 0.6, 0.92, 0.91, 0.93], se)  # up to the end of the axis
    assert b.refine == () and b.resolved
    assert _bracket([NAN, NAN, 0.88, 0.99], [0.001] * 4).resolved  # the same cell, trusted with little noise
    assert _bracket([NAN, 0.89, 0.95], [0.05, 0.05, 0.001], z=0.1).resolved  # z scales the margin


def test_probes_split_the_hypotheses_evenly_and_follow_a_neighbours_boundary():
    whole = _bracket([NAN] * 7)  # 8 hypotheses, -1..6
    assert probes(whole, []) == [3]
    assert probes(whole, [], m=3) == [1, 3, 5]
    assert probes(whole, [0.5]) == [1]  # a neighbour crossing between cells 0 and 1 pulls the probe down
    assert probes(whole, [5.5]) == [5]
    assert probes(_bracket([0.5, NAN, NAN, NAN, 0.99]), []) == [2]
    assert probes(_bracket([0.5, 0.99]), []) == []


# --- the search loop on planted boundaries -----------------------------------------------------------
def _search(slice_axis: bool = True, seeds=(0, 1), **kw: Any) -> BoundarySearch:
    return BoundarySearch(base={**TINY, "steps": 10}, x=("capacity", CAPACITY), y=("embedding_dim", DIMS),
                          slice=("aug_noise", NOISES) if slice_axis else None, seeds=seeds,
                          metric="randlabel_acc", threshold=0.9, **kw)


def _drive(search: BoundarySearch, metric: Callable[[dict], float], slots: int = 2, error: Callable = None,
           steps: int | None = None) -> int:
    """Tune's side of the loop: keep ``slots`` trials running, finish the oldest; returns trials made."""
    live: dict[str, dict] = {}
    made = 0
    while steps is None or made < steps:
        while len(live) < slots:
            trial_id = f"trial{made:04d}"
            suggestion = search.suggest(trial_id)
            if suggestion == Searcher.FINISHED:
                assert not live
                return made
            if suggestion is None:
                break
            made += 1
            live[trial_id] = suggestion
        assert live, "the searcher waits with nothing running"
        trial_id = next(iter(live))
        pack = live.pop(trial_id)["pack"]
        failing = error is not None and any(error(c) for c in pack)
        result = None if failing else {"pack": [{"step": 10, "randlabel_acc": metric(c)} for c in pack]}
        search.on_trial_complete(trial_id, result, error=failing)
    return made


def _planted(seed: int, spread: float = 0.0, rough: bool = False) -> tuple[Callable[[dict], float], dict]:
    """A metric that rises from 0.5 to 1 along log2 embedding_dim and crosses 0.9 at the row's planted boundary
    (grid steps; beyond either end for some rows), plus a seed-dependent wobble of size ``spread``. Smooth: the
    boundary moves linearly with the MLP's width and the noise, jittered, and the linear encoder never crosses,
    as in a real diagram; rough: every row's boundary is drawn on its own."""
    rng = np.random.default_rng(seed)
    n = len(DIMS)
    if rough:
        crossing = {(i, k): float(rng.uniform(-1.5, n + 0.5)) for i in range(len(CAPACITY)) for k in range(len(NOISES))}
    else:
        start, per_width, per_noise = rng.uniform(0, 5), rng.uniform(-0.7, 0.7), rng.uniform(-1.0, 1.5)
        crossing = {(i, k): (start + per_width * i + per_noise * k + rng.uniform(-0.3, 0.3)) if i else n + 2.0
                    for i in range(len(CAPACITY)) for k in range(len(NOISES))}

    def metric(config: dict) -> float:
        i = next(n for n, c in enumerate(CAPACITY) if all(config.get(key) == v for key, v in c.items()))
        k = NOISES.index(config["aug_noise"])
        t = math.log2(config["embedding_dim"]) - 1  # grid index
        wobble = spread * math.sin(7.0 * config["seed"] + 3.0 * t + i + 2.0 * k)
        return 0.5 + 0.5 / (1 + math.exp(-3.0 * (t - crossing[i, k]))) + wobble

    return metric, crossing


def _table(search: BoundarySearch, keys, metric) -> pd.DataFrame:
    rows = [{**search.config(k), "capacity": str(search.x_cells[search.rows[k[0]][0]]), "randlabel_acc": metric(
        search.config(k)), "status": "TERMINATED"} for k in keys]
    return pd.DataFrame(rows)


def _positions(trials: pd.DataFrame, slice_axis: bool = True) -> dict[tuple, float]:
    """Each row's boundary in grid steps (censored: half a step beyond the range), from PhaseDiagram."""
    diagram = PhaseDiagram(x="capacity", y="embedding_dim", metric="randlabel_acc", threshold=0.9,
                           slice="aug_noise" if slice_axis else None, increasing=True, n_boot=0).fit(trials)
    t = np.log2(DIMS)
    out = {}
    for _, row in diagram.boundary_.iterrows():
        key = (row["capacity"], row["aug_noise"] if slice_axis else None)
        if row["censored"] == "below":
            out[key] = -0.5
        elif row["censored"] == "above":
            out[key] = len(DIMS) - 0.5
        else:
            out[key] = float(np.interp(np.log2(row["y_critical"]), t, np.arange(len(DIMS))))
    return out


@pytest.mark.parametrize("seed, rough, slots, most", [
    (0, False, 2, 0.35), (1, False, 2, 0.35), (2, False, 1, 0.35), (3, False, 16, 0.5),  # measured: 0.23-0.29, 0.39
    (4, True, 2, 0.6), (5, True, 1, 0.6), (6, True, 16, 0.5),  # about the log2(9) / 8 = 0.4 of bisection, and less
])
def test_the_search_finds_every_planted_crossing_within_the_axes_with_fewer_trials(seed, rough, slots, most):
    metric, _ = _planted(seed, rough=rough)
    search = _search()
    _drive(search, metric, slots=slots)
    everything = search._all_keys()
    assert search.stop == "resolved" and all(b.resolved for b in search.brackets())
    assert len(search.proposed) == len(search.observed) <= most * len(everything)
    grid = {(c["encoder"], c.get("width"), c["embedding_dim"], c["aug_noise"], c["seed"])
            for c in (search.config(k) for k in everything)}
    for key in search.proposed:  # never outside the declared axes, every cell with every seed
        config = search.config(key)
        assert (config["encoder"], config.get("width"), config["embedding_dim"], config["aug_noise"],
                config["seed"]) in grid
        assert all((key[0], key[1], s) in search.proposed for s in range(len(search.seeds)))
    full = _positions(_table(search, everything, metric))
    found = _positions(_table(search, sorted(search.proposed), metric))
    assert full.keys() == found.keys()
    for row, position in full.items():  # noise-free: the bracket is the grid's, so the same interpolation
        assert found[row] == pytest.approx(position, abs=1e-9), row


@pytest.mark.parametrize("seed", [4, 5])
def test_with_seed_noise_every_boundary_stays_within_one_grid_step_of_the_grid(seed):
    metric, _ = _planted(seed, spread=0.04)
    search = _search(noise=0.01)
    _drive(search, metric)
    full = _positions(_table(search, search._all_keys(), metric))
    found = _positions(_table(search, sorted(search.proposed), metric))
    assert max(abs(found[r] - full[r]) for r in full) <= 1.0
    assert len(search.proposed) < 0.7 * len(search._all_keys())


def test_a_decreasing_metric_and_no_slice_axis():
    metric, crossing = _planted(6)
    search = _search(slice_axis=False, increasing=False, seeds=(0,))
    _drive(search, lambda c: 1.5 - metric({**c, "aug_noise": 0.0}))  # falls through 0.9 where the other rose
    search_up = _search(slice_axis=False, seeds=(0,))
    _drive(search_up, lambda c: metric({**c, "aug_noise": 0.0}) + 0.3)  # the same crossing, rising
    down = [(b.lo, b.hi) for b in search.brackets()]
    assert down == [(b.lo, b.hi) for b in search_up.brackets()]
    assert len(down) == len(CAPACITY)


def test_a_cell_within_its_seed_noise_of_the_threshold_is_refined():
    def metric(config: dict) -> float:  # one row, crossing between 16 and 32; 16 sits 0.01 below 0.9
        t = int(math.log2(config["embedding_dim"]))
        return {4: 0.89 + 0.03 * (config["seed"] - 0.5)}.get(t, 0.5 if t < 4 else 0.99)

    def cells(search: BoundarySearch) -> list[int]:
        return sorted({search.y_values[j] for _, j, _ in search.proposed})

    capacity = [CAPACITY[1]]
    quiet = BoundarySearch(base=TINY, x=("capacity", capacity), y=("embedding_dim", DIMS), seeds=(0, 1),
                           metric="randlabel_acc", threshold=0.9, z=0.1)
    _drive(quiet, metric)
    noisy = BoundarySearch(base=TINY, x=("capacity", capacity), y=("embedding_dim", DIMS), seeds=(0, 1),
                           metric="randlabel_acc", threshold=0.9, z=1.0)
    _drive(noisy, metric)
    assert 8 not in cells(quiet) and {16, 32} <= set(cells(quiet))
    assert {8, 16, 32} <= set(cells(noisy))  # 16's seeds differ by 0.03: it is not trusted, 8 is needed


def test_a_budget_stops_the_search():
    metric, _ = _planted(7)
    search = _search(budget=20)
    _drive(search, metric)
    assert search.stop == "budget" and len(search.proposed) <= 20


def test_failed_cells_are_not_proposed_again_and_the_search_ends():
    metric, _ = _planted(8)
    search = _search()
    _drive(search, metric, error=lambda c: c["embedding_dim"] == 16)
    failed = {k for k, v in search.observed.items() if math.isnan(v)}
    assert failed and all(search.y_values[j] == 16 for _, j, _ in failed)
    assert search.stop == "resolved" and len(search.proposed) == len(search.observed)


def test_rounds_are_wide_enough_for_the_free_slots_and_cut_into_packs():
    metric, _ = _planted(9)
    search = _search(pack_size=4, slots=40)
    first = search.suggest("a")
    assert search.rounds[0]["packs"] >= 10 and len(first["pack"]) <= 4
    assert search.rounds[0]["configs"] >= 40  # waiting rows start, and brackets get extra probes
    assert first["objective"] == "randlabel_acc" and first["mode"] == "max"
    narrow = _search(pack_size=16, slots=2)
    narrow.suggest("a")
    assert narrow.rounds[0]["rows"] == len(narrow.anchors) < len(narrow.rows)


def test_a_search_saved_mid_way_and_restored_continues_without_repeating_or_losing(tmp_path):
    metric, _ = _planted(10)
    whole = _search()
    _drive(whole, metric, slots=1)
    first = _search()
    live: dict[str, dict] = {}
    for n in range(6):  # six trials handed out, three finished: three in flight when it is saved
        live[f"t{n}"] = first.suggest(f"t{n}")
        if n % 2:
            trial_id = sorted(live)[0]
            pack = live.pop(trial_id)["pack"]
            first.on_trial_complete(trial_id, {"pack": [{"randlabel_acc": metric(c)} for c in pack]})
    first.save(str(tmp_path / "searcher.pkl"))
    second = _search()
    second.restore(str(tmp_path / "searcher.pkl"))
    assert second.proposed == first.proposed and second.live.keys() == live.keys()
    for trial_id, suggestion in live.items():  # Tune hands the restored trials' results back
        second.on_trial_complete(trial_id, {"pack": [{"randlabel_acc": metric(c)} for c in suggestion["pack"]]})
    _drive(second, metric, slots=1)
    assert second.stop == "resolved" and len(second.proposed) == len(second.observed)
    assert [(b.lo, b.hi) for b in second.brackets()] == [(b.lo, b.hi) for b in whole.brackets()]


def test_a_trial_removed_before_it_ran_is_proposed_again():
    search = _search()
    first = search.suggest("removed")
    search.on_trial_complete("removed")  # no result, no error: Tune dropped a pending trial
    assert not search.observed and search.suggest("again")["pack"] == first["pack"]


def test_a_result_from_an_unknown_trial_is_matched_by_its_configs():
    metric, _ = _planted(11)
    search = _search()
    suggestion = search.suggest("old")
    search.live.clear()  # as if the searcher's snapshot predates the trial Tune restored
    result = {"config/pack": suggestion["pack"], "pack": [{"randlabel_acc": metric(c)} for c in suggestion["pack"]]}
    search.on_trial_complete("restored", result)
    assert len(search.observed) == len(suggestion["pack"])


# --- the spec ------------------------------------------------------------------------------------------
SPEC = {"name": "b", "trainable": dict(TINY), "seeds": [0, 1],
        "grid": {"capacity": {"linear": True, "widths": [8]}, "embedding_dim": {"log2": [2, 16]},
                 "aug_noise": [0.0, 0.5]},
        "searcher": {"type": "boundary"},
        "analysis": {"x": "capacity", "y": "embedding_dim", "metric": "randlabel_acc", "threshold": 0.9,
                     "slice": "aug_noise"}}


def test_the_spec_names_the_diagram_and_its_grid_gives_the_cells():
    spec = parse_spec({**SPEC, "pack_size": "auto"})
    search = from_spec(spec, pack_size=3)
    assert (search.x_key, search.y_key, search.slice_key) == ("capacity", "embedding_dim", "aug_noise")
    assert search.y_values == [2, 4, 8, 16] and search.seeds == [0, 1] and search.threshold == 0.9
    assert search.grid_configs == len(spec.cells()) == 2 * 4 * 2 * 2
    configs = {tuple(sorted(c.items())) for c in spec.cells()}
    assert {tuple(sorted(search.config(k).items())) for k in search._all_keys()} == configs
    own = parse_spec({**SPEC, "searcher": {"type": "boundary", "threshold": 0.5, "slice": "none"},
                      "grid": {**SPEC["grid"], "aug_noise": [0.0]}})
    assert from_spec(own).threshold == 0.5 and from_spec(own).slice_key is None


@pytest.mark.parametrize("change, message", [
    ({"analysis": {}}, "needs x, y, metric, threshold"),
    ({"analysis": {**SPEC["analysis"], "slice": None}}, "not an axis of the diagram"),
    ({"searcher": {"type": "boundary", "y": "aug_noise", "slice": "embedding_dim", "x": "capacity"}}, None),
    ({"num_samples": 2}, "num_samples must be 1"),
    ({"scheduler": {"type": "asha"}}, "fifo"),
    ({"searcher": {"type": "boundary", "x": "width"}}, "not a grid: axis"),
    ({"searcher": {"type": "boundary", "precision": 0}}, "precision"),
])
def test_the_spec_is_checked(change, message):
    data = {**SPEC, **change}
    if message is None:
        parse_spec(data)
        return
    with pytest.raises(SpecError, match=message):
        parse_spec(data)


# --- real studies: through clphase run, and killed and resumed --------------------------------------------
def _row_trial(row_id: str) -> str:
    """The Tune trial id of a trials.parquet row (a pack's rows are ``<trial id>-<k>``)."""
    return re.sub(r"-\d{3}$", "", row_id)


def _replayed(spec_path: Path, trials: pd.DataFrame) -> set[tuple]:
    """The configs the searcher proposes when it is driven, without Ray, by the metrics the study measured."""
    search = from_spec(load_spec(spec_path), pack_size=4)
    measured = {_cell(r): r["randlabel_acc"] for r in trials.to_dict("records")}
    _drive(search, lambda c: measured[_cell(c)])  # a KeyError: the study lost a config the search asked for
    return {_cell(search.config(k)) for k in search.proposed}


def _cell(config: dict) -> tuple:
    width = config.get("width")
    width = None if width is None or (isinstance(width, float) and math.isnan(width)) else int(width)
    return (config["encoder"], width, int(config["embedding_dim"]), float(config.get("aug_noise", 0.1)),
            int(config["seed"]))


STUDY_GRID = {"capacity": [{"encoder": "linear"}, {"encoder": "mlp", "width": 16, "depth": 1}],
              "embedding_dim": [2, 4, 8, 16]}
STUDY_ANALYSIS = {"x": "capacity", "y": "embedding_dim", "metric": "randlabel_acc", "threshold": 0.9}


@pytest.mark.usefixtures("ray_session")
def test_a_boundary_study_runs_through_clphase_run_and_leaves_ordinary_rows(tmp_path, tmp_store):
    spec = write_spec(tmp_path, name="bound", grid={**STUDY_GRID, "aug_noise": [0.0, 1.0]}, seeds=[0, 1],
                      searcher={"type": "boundary"}, pack_size="auto",
                      analysis={**STUDY_ANALYSIS, "slice": "aug_noise"})
    assert main(["run", str(spec), "--out", str(tmp_path / "runs"), "--tracking-uri", tmp_store]) == 0
    study_dir = tmp_path / "runs" / "bound"
    trials = pd.read_parquet(study_dir / "trials.parquet")
    summary = json.loads((study_dir / SUMMARY_FILE).read_text())
    assert summary["stop"] == "resolved" and all(r["resolved"] for r in summary["rows"])
    assert summary["configs"] == summary["finished"] == len(trials) < summary["grid_configs"] == 32
    assert set(trials["status"]) == {"TERMINATED"} and trials["trial_id"].is_unique
    cells = [_cell(r) for r in trials.to_dict("records")]
    assert len(set(cells)) == len(cells)
    grid = {_cell(c): c for c in load_spec(spec).cells()}
    for row in trials.to_dict("records"):  # every row is a grid cell, recorded with its whole effective config
        config = grid[_cell(row)]
        assert all(row[k] == v for k, v in config.items()), config
    assert Counter(c[:4] for c in cells) == Counter({c[:4]: 2 for c in cells})  # every cell with both seeds
    assert trials["trial_id"].map(_row_trial).nunique() < len(trials)  # configs shared packs
    assert _replayed(spec, trials) == set(cells)

    diagram = PhaseDiagram(x="capacity", y="embedding_dim", metric="randlabel_acc", threshold=0.9,
                           slice="aug_noise", increasing=True, n_boot=50, random_state=0).fit(trials)
    assert len(diagram.boundary_) == 4
    by_row = {(r["x"], r["slice"]): r for r in summary["rows"]}
    for _, row in diagram.boundary_.iterrows():  # PhaseDiagram reads the search's bracket off the table
        searched = by_row[(row["capacity"], row["aug_noise"])]
        if row["censored"] == "above":
            assert searched["y_above"] is None
        elif row["censored"] == "below":
            assert searched["y_below"] is None
        else:
            assert searched["y_below"] <= row["y_critical"] <= searched["y_above"]

    client = MlflowClient(tmp_store)
    experiment = client.get_experiment_by_name("bound")
    children = [r for r in client.search_runs([experiment.experiment_id], max_results=1000)
                if "mlflow.parentRunId" in r.data.tags]
    assert sorted(c.data.tags["trial_id"] for c in children) == sorted(trials["trial_id"])


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_a_boundary_study_killed_and_resumed_neither_repeats_nor_loses_a_config(tmp_path, tmp_store, trial_gate):
    steps = [40, 80, 120, 160]
    spec = write_spec(tmp_path, name="killbound", grid=STUDY_GRID, trainable={**TINY, "steps": 160, "eval_every": 40},
                      searcher={"type": "boundary"}, analysis=STUDY_ANALYSIS)
    out, study_dir = tmp_path / "runs", tmp_path / "runs" / "killbound"
    log = open(tmp_path / "driver.log", "w")
    # Round one probes both rows; one trial holds the ticket and runs to its end, so the searcher plans its
    # row's next probe; that trial and the other first-round one are held after their first checkpoint.
    trial_gate.close(tickets=1)
    driver = subprocess.Popen(
        [sys.executable, "-m", "study.cli", "run", str(spec), "--out", str(out), "--tracking-uri", tmp_store],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )

    def describe() -> str:
        return (tmp_path / "driver.log").read_text()[-3000:]

    trial_gate.wait_held(2, alive=lambda: driver.poll() is None, describe=describe)
    while not (study_dir / "trials.parquet").exists() or not (
            pd.read_parquet(study_dir / "trials.parquet")["status"] == "TERMINATED").any():
        assert driver.poll() is None, describe()
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=120)
    before = pd.read_parquet(study_dir / "trials.parquet")
    done_before = before[before["status"] == "TERMINATED"]
    assert set(done_before["trial_id"].map(_row_trial)) == trial_gate.passed()
    assert json.loads((study_dir / SUMMARY_FILE).read_text())["stop"] is None  # the search was mid-way
    trial_gate.open()

    result = run_study(spec, out=out, tracking_uri=tmp_store, resume=True)
    assert result.n_failed == 0
    trials = pd.read_parquet(study_dir / "trials.parquet")
    summary = json.loads((study_dir / SUMMARY_FILE).read_text())
    assert summary["stop"] == "resolved" and summary["configs"] == summary["finished"] == len(trials)
    assert set(trials["status"]) == {"TERMINATED"} and trials["trial_id"].is_unique
    cells = [_cell(r) for r in trials.to_dict("records")]
    assert len(set(cells)) == len(cells)  # no config ran twice
    kept = trials.set_index("trial_id").loc[done_before["trial_id"], "randlabel_acc"]
    assert kept.tolist() == done_before["randlabel_acc"].tolist()  # what had finished was not run again
    assert _replayed(spec, trials) == set(cells)  # and the search went on as if never interrupted
    history = pd.read_parquet(study_dir / "history.parquet")
    for _, reported in history.groupby("trial_id")["step"]:
        assert sorted(reported) == steps
    client = MlflowClient(tmp_store)
    experiment = client.get_experiment_by_name("killbound")
    children = [r for r in client.search_runs([experiment.experiment_id], max_results=1000)
                if "mlflow.parentRunId" in r.data.tags]
    assert Counter(c.data.tags["trial_id"] for c in children) == Counter(set(trials["trial_id"]))
