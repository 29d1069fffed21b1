"""Phase boundaries: where along ``y`` a seed-averaged metric crosses a threshold, for each ``x``.

For each value of ``x`` (and of an optional slicing column) the trials form a *row*: a seeds × y
table of the metric. The critical y is where the seed-averaged metric crosses ``threshold``,
interpolated linearly in log2 y (in y when y takes values <= 0) between the last grid point on
the wrong side and the next one. Its interval comes from resampling the seeds with replacement:
``y_low`` is the ci/2 quantile of the grid point just before the crossing and ``y_high`` the
1 - ci/2 quantile of the grid point just after it, over the replicates. A grid sweep cannot place
a boundary more finely than its grid without assuming the metric's shape, so the interval is at
least one grid step wide; the interpolated ``y_critical`` is the point estimate inside it.
A row whose boundary lies outside the sampled range is *censored*: ``below`` when the metric is
already past the threshold at the smallest y, ``above`` when it has not crossed at the largest;
its ``y_critical`` is NaN and ``y_bound`` says which end of the range it lies beyond. With one
seed there is nothing to resample: ``y_low`` and ``y_high`` are NaN and the row's note says so.

One smooth boundary over the whole plane is fitted as well: a logistic regression of
1[metric >= threshold] on log2 y, plus log2 x (numeric x) or one offset per x (categorical x), and
the same for the slicing column; ``predict_proba`` evaluates it.

Three axes. With ``z`` (e.g. ``aug_noise``) the slicing column is a numeric third axis and
``boundary_`` is the *critical surface*: y_critical for every (x, z), with its band and censoring.
For each x, ``critical_z_`` gives the *critical z*: the largest z at which some y still reaches the
phase. Its curve is the best seed mean over y at each z, b(z) = max_y mean(x, z, y) (min for a
metric that falls with y); the critical z is interpolated linearly in z between the last z with
b(z) >= threshold and the next sampled z, and it is censored ``below`` when no z reaches the
phase and ``above`` when the largest z still does. Its band resamples the seeds of the whole x
(one draw for all its cells, a seed being one run of every cell) and takes the same quantiles of
the bracketing grid points as a row's: ``z_low`` a z where the phase is still reached, ``z_high``
one where it no longer is, so the critical z lies in [z_low, z_high).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from analysis.load import add_capacity

OK_STATUS = "TERMINATED"
_SMOOTH_C = 100.0  # weak L2 on standardised features: keeps a separable table from diverging
_REASONS = ("failed", "unfinished", "diverged", "missing_axis", "missing_metric")
_UNFINISHED = ("PENDING", "RUNNING", "PAUSED")  # Tune's states of a trial still to come or under way
_PACK_COLUMNS = ("pack_size", "started_at", "pack_wall_s")  # what a trial's pack shares, not a config key


def crossing(means: np.ndarray, t: np.ndarray, threshold: float, *, strict: bool = True
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Last upward threshold crossing of each row of ``means``, and the grid points around it.

    ``means``: (B, n) metric on the grid ``t`` (n,), increasing, NaN where a cell is missing.
    Returns ``(point, lower, upper)``, each (B,), in the units of ``t``. ``point`` is interpolated
    between the last valid grid point below ``threshold`` (``lower``) and the next valid one
    (``upper``). When every valid point is at or above the threshold the boundary lies below the
    range: ``point = lower = -inf`` and ``upper`` is the first valid point; when the last valid
    point is below it the boundary lies above: ``point = upper = +inf``, ``lower`` the last valid
    point. All NaN for a row without a valid point. ``strict=False`` counts a point equal to the
    threshold as below it.
    """
    means = np.atleast_2d(np.asarray(means, dtype=float))
    n_rows, n = means.shape
    valid = ~np.isnan(means)
    below = valid & ((means < threshold) if strict else (means <= threshold))
    rows = np.arange(n_rows)
    last_below = n - 1 - np.argmax(below[:, ::-1], axis=1)  # (B,)
    # first valid index strictly after each position (n when none)
    index = np.where(valid, np.arange(n), n)
    next_valid = np.minimum.accumulate(index[:, ::-1], axis=1)[:, ::-1]
    first_valid = next_valid[:, 0]
    next_valid = np.concatenate([next_valid[:, 1:], np.full((n_rows, 1), n)], axis=1)
    last_valid = n - 1 - np.argmax(valid[:, ::-1], axis=1)
    k = next_valid[rows, last_below]
    point, lower, upper = (np.full(n_rows, np.nan) for _ in range(3))
    has_below = below.any(axis=1)
    past = valid.any(axis=1) & ~has_below
    point[past], lower[past], upper[past] = -np.inf, -np.inf, t[first_valid[past]]
    short = has_below & (k == n)
    point[short], lower[short], upper[short] = np.inf, t[last_valid[short]], np.inf
    inside = has_below & (k < n)
    j, k = last_below[inside], k[inside]
    m_j, m_k = means[rows[inside], j], means[rows[inside], k]
    point[inside] = t[j] + (threshold - m_j) / (m_k - m_j) * (t[k] - t[j])
    lower[inside], upper[inside] = t[j], t[k]
    return point, lower, upper


def last_in_phase(best: np.ndarray, t: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Last grid point of each row of ``best`` at or above ``threshold``, interpolated to the next one.

    ``best``: (B, n) on the grid ``t`` (n,), increasing, NaN where missing. Returns ``(point, lower,
    upper)``, each (B,): ``lower`` the last valid point with ``best >= threshold``, ``upper`` the next
    valid point after it, ``point`` where the straight line between them meets the threshold. No valid
    point at or above it: ``point = lower = -inf``, ``upper`` the first valid point; the last valid
    point at or above it: ``point = upper = +inf``, ``lower`` that point. All NaN for a row without a
    valid point.
    """
    # the last upward crossing of -best through -threshold, counting best == threshold as in the phase
    return crossing(-np.asarray(best, dtype=float), t, -threshold, strict=False)


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    count = (~np.isnan(values)).sum(axis=axis)
    total = np.nansum(values, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _order(column: pd.Series, trials: pd.DataFrame) -> list[Any]:
    """Values of an axis in plotting order: category order, numeric order, else by model size."""
    present = column.dropna().unique().tolist()
    if isinstance(column.dtype, pd.CategoricalDtype):
        return [c for c in column.cat.categories if c in set(present)]
    if pd.api.types.is_numeric_dtype(column):
        return sorted(present)
    if "n_params" in trials.columns:
        size = trials.groupby(column.astype(str))["n_params"].median()
        return sorted(present, key=lambda v: (size.get(str(v), np.inf), str(v)))
    return sorted(present, key=str)


def _is_numeric(values: Sequence[Any]) -> bool:
    return len(values) > 0 and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                                   for v in values)


class PhaseDiagram:
    """Phase boundary of ``metric`` over (``x``, ``y``), optionally one per value of ``slice``.

    Parameters
    ----------
    x, y : columns of the trials table; ``y`` is numeric (e.g. ``embedding_dim``), ``x`` may be
        categorical (e.g. ``capacity``) or numeric.
    metric, threshold : the boundary is where the seed-mean metric crosses ``threshold``.
    increasing : True: the metric rises with y (the phase is ``metric >= threshold`` above the
        boundary); False: it falls with y (e.g. ``pca_overlap`` along ``nuisance_std``); None: the
        sign of the rank correlation of metric and y over the usable trials decides (``increasing_``).
    slice : optional slicing column: one boundary per (x, slice) value.
    z : optional numeric third axis (e.g. ``aug_noise``): the slicing column (``slice`` is set to it),
        plus the critical z of each x (``critical_z_``).
    n_boot, ci : bootstrap replicates over seeds and the coverage of the interval.
    seed_col : the column that identifies a replicate (absent: the trials of a cell are the replicates).
    log_y : interpolate in log2 y; ``None``: when every y is > 0.
    random_state : seed of the bootstrap.

    Attributes (after ``fit``)
    --------------------------
    boundary_ : DataFrame, one row per (x, slice) value: ``y_critical``, ``y_low``, ``y_high``,
        ``censored`` (``"below"``/``"above"``/None), ``y_bound``, ``n_seeds``, ``n_trials``,
        ``n_used``, ``n_failed``, ``n_diverged``, ``n_missing_metric``, ``n_cells_missing``,
        ``missing_y``, ``monotone``, ``n_crossings``, ``p_censored_below``, ``p_censored_above``,
        ``y_smooth`` (the smooth fit's boundary, NaN outside the range) and ``note``.
    cells_ : DataFrame, one row per (x, slice, y) cell: ``mean``, ``std``, ``min``, ``max``, ``n``.
    y_grid_, x_order_, slice_order_ : the axes' values in order.
    increasing_ : bool, the direction used (given, or inferred from the data).
    excluded_ : dict, counts of trials left out by reason (failed, unfinished, diverged, missing_axis,
        missing_metric).
    notes_ : list of str, what a reader of the boundary should know.
    smooth_ : the fitted smooth model (None when every trial lies on one side of the threshold).
    critical_z_ : DataFrame (only with ``z``), one row per x: ``z_critical``, ``z_low``, ``z_high``,
        ``censored`` (``"below"``: no z reaches the phase; ``"above"``: the largest z still does),
        ``z_bound``, ``n_seeds``, ``monotone``, ``n_crossings``, ``p_censored_below``,
        ``p_censored_above``, ``best`` (b(z) on ``slice_order_``), ``y_best`` (the y where it is
        reached) and ``note``. ``boundary_`` is then the critical surface.
    """

    def __init__(
        self,
        *,
        x: str,
        y: str,
        metric: str,
        threshold: float,
        slice: str | None = None,
        z: str | None = None,
        increasing: bool | None = None,
        n_boot: int = 1000,
        ci: float = 0.95,
        seed_col: str = "seed",
        log_y: bool | None = None,
        random_state: int | None = None,
    ):
        self.x = x
        self.y = y
        self.metric = metric
        self.threshold = threshold
        if z is not None and slice not in (None, z):
            raise ValueError(f"z is the slicing column: got z={z!r} and slice={slice!r}; give one of them")
        self.slice = z if z is not None else slice
        self.z = z
        self.increasing = increasing
        self.n_boot = n_boot
        self.ci = ci
        self.seed_col = seed_col
        self.log_y = log_y
        self.random_state = random_state

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_"))
        return f"PhaseDiagram({args})"

    # --- input ----------------------------------------------------------------------------------
    @property
    def _keys(self) -> list[str]:
        return [self.x] + ([self.slice] if self.slice else [])

    def _check(self, trials: pd.DataFrame) -> None:
        if not isinstance(trials, pd.DataFrame):
            raise TypeError(f"PhaseDiagram.fit takes a DataFrame of trials, got {type(trials).__name__}")
        if len(trials) == 0:
            raise ValueError("the trials table is empty: no trials to fit a phase boundary to")
        for role, name in (("x", self.x), ("y", self.y), ("metric", self.metric), ("slice", self.slice)):
            if name is not None and name not in trials.columns:
                columns = ", ".join(map(str, trials.columns))
                raise ValueError(f"{role} column {name!r} is not in the trials table; its columns: {columns}")
        for role, name in (("y", self.y), ("metric", self.metric), ("z", self.z)):
            if name is not None and not pd.api.types.is_numeric_dtype(trials[name]):
                raise ValueError(f"{role} column {name!r} must be numeric, got dtype {trials[name].dtype}")
        if not 0 < self.ci < 1:
            raise ValueError(f"ci must be in (0, 1), got {self.ci}")

    def _reasons(self, trials: pd.DataFrame) -> np.ndarray:
        """Why each trial is left out ('' for a usable trial), first reason wins."""
        n = len(trials)
        status = trials["status"] if "status" in trials.columns else pd.Series([OK_STATUS] * n, index=trials.index)
        unfinished = status.isin(_UNFINISHED).to_numpy()  # a study analysed while it runs: not failures
        failed = (status != OK_STATUS).to_numpy() & ~unfinished
        diverged = (
            trials["diverged"].fillna(0).astype(float).to_numpy() > 0
            if "diverged" in trials.columns else np.zeros(n, bool)
        )
        axis_missing = trials[self._keys + [self.y]].isna().any(axis=1).to_numpy()
        metric_missing = ~np.isfinite(trials[self.metric].astype(float).to_numpy())
        return np.select([failed, unfinished, diverged, axis_missing, metric_missing], list(_REASONS), "")

    def y_coord(self, y: Any) -> np.ndarray:
        """Position of ``y`` on the axis the boundary is interpolated on: log2 y or y."""
        y = np.asarray(y, dtype=float)
        return np.log2(y) if self.log_y_ else y

    def _from_coord(self, t: float) -> float:
        if not np.isfinite(t):
            return np.nan
        return float(2.0**t) if self.log_y_ else float(t)

    # --- fit --------------------------------------------------------------------------------------
    def fit(self, trials: pd.DataFrame) -> PhaseDiagram:
        """Fit the per-row boundaries with bootstrap intervals and the smooth boundary; returns self."""
        if "capacity" in (self.x, self.slice) and "capacity" not in trials.columns and "encoder" in trials.columns:
            trials = add_capacity(trials)  # a table that did not come through analysis.load
        self._check(trials)
        df = trials.reset_index(drop=True)
        reason = self._reasons(df)
        self.excluded_ = {r: int((reason == r).sum()) for r in _REASONS}
        usable = reason == ""
        if not usable.any():
            counts = ", ".join(f"{k}: {v}" for k, v in self.excluded_.items() if v)
            raise ValueError(f"all {len(df)} trials are unusable ({counts}); no phase boundary can be fitted")
        self.notes_: list[str] = []
        if sum(self.excluded_.values()):
            counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.excluded_.items() if v)
            self.notes_.append(f"{sum(self.excluded_.values())} of {len(df)} trials excluded ({counts})")

        grid = np.sort(df[self.y].dropna().unique().astype(float))
        self.y_grid_ = grid
        self.log_y_ = bool((grid > 0).all()) if self.log_y is None else bool(self.log_y)
        self.x_order_ = _order(df[self.x], df)
        self.slice_order_ = _order(df[self.slice], df) if self.slice else [None]
        self.x_numeric_ = _is_numeric(self.x_order_)
        self.slice_numeric_ = bool(self.slice) and _is_numeric(self.slice_order_)

        used = df[usable].copy()
        self.increasing_ = self._direction(used)
        if self.seed_col in used.columns:
            used["_rep"] = used[self.seed_col]
        else:
            used["_rep"] = used.groupby(self._keys + [self.y], observed=True).cumcount()
            self.notes_.append(f"no {self.seed_col!r} column: the trials of a cell are taken as its replicates")
        mixed = self._mixed_configs(used)
        if mixed:
            self.notes_.append(mixed)
        self.cells_ = (
            used.groupby(self._keys + [self.y], observed=True)[self.metric]
            .agg(["mean", "std", "min", "max", "count"]).rename(columns={"count": "n"}).reset_index()
        )

        rng = np.random.default_rng(self.random_state)
        rows = []
        reasons = pd.Series(reason, index=df.index)
        for key, group in df.groupby(self._keys, observed=True, sort=False):
            key = key if isinstance(key, tuple) else (key,)
            rows.append(self._fit_row(dict(zip(self._keys, key, strict=True)), group, used, reasons[group.index], rng))
        boundary = pd.DataFrame(rows)
        rank = {v: i for i, v in enumerate(self.x_order_)}
        srank = {v: i for i, v in enumerate(self.slice_order_)}
        boundary["_order"] = [
            (srank.get(s, 0) if self.slice else 0, rank.get(v, 0))
            for v, s in zip(boundary[self.x], boundary[self.slice] if self.slice else [None] * len(boundary),
                            strict=True)
        ]
        boundary = boundary.sort_values("_order").drop(columns="_order").reset_index(drop=True)
        boundary["censored"] = pd.Series([c if isinstance(c, str) else None for c in boundary["censored"]],
                                         dtype=object)
        self.boundary_ = boundary
        if self.z:
            self.critical_z_ = self._fit_critical_z(used, rng)
        self._fit_smooth(used)
        self._summarise_notes()
        return self

    def _fit_critical_z(self, used: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """One row per x: the largest z at which some y reaches the phase (see the module docstring)."""
        sign = 1.0 if self.increasing_ else -1.0
        z_grid = np.asarray(self.slice_order_, dtype=float)
        rows = []
        for x_value in self.x_order_:
            mine = used[used[self.x] == x_value]
            cube = mine.pivot_table(index="_rep", columns=[self.slice, self.y], values=self.metric, aggfunc="mean")
            cube = cube.reindex(columns=pd.MultiIndex.from_product([self.slice_order_, self.y_grid_]))
            values = cube.to_numpy(dtype=float).reshape(len(cube), len(z_grid), len(self.y_grid_))  # (seeds, z, y)
            n_seeds = values.shape[0]
            row: dict[str, Any] = {self.x: x_value, "z_critical": np.nan, "z_low": np.nan, "z_high": np.nan,
                                   "censored": None, "z_bound": np.nan, "n_seeds": int(n_seeds), "monotone": True,
                                   "n_crossings": 0, "p_censored_below": np.nan, "p_censored_above": np.nan,
                                   "best": [np.nan] * len(z_grid), "y_best": [np.nan] * len(z_grid)}
            notes = []
            if not n_seeds:
                rows.append({**row, "note": f"no usable trial at this {self.x}"})
                continue
            mean = sign * _nanmean(values, axis=0)  # (z, y)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a z without any cell
                best = np.nanmax(mean, axis=1)  # (z,)
            at = np.where(np.isnan(best), 0, np.argmax(np.nan_to_num(mean, nan=-np.inf), axis=1))
            row["best"] = [float(sign * b) for b in best]
            row["y_best"] = [float(self.y_grid_[i]) if not np.isnan(b) else np.nan for i, b in zip(at, best,
                                                                                                   strict=True)]
            point = last_in_phase(best[None], z_grid, sign * self.threshold)[0][0]
            inside = (best[~np.isnan(best)] >= sign * self.threshold).astype(int)
            steps = np.diff(inside)
            row["n_crossings"] = int(np.count_nonzero(steps))
            row["monotone"] = bool((steps <= 0).all())
            if not row["monotone"]:
                notes.append(f"non-monotone in {self.z}: the best {self.y} leaves and re-enters the phase; "
                             f"z_critical is the last {self.z} in it")
            valid_z = z_grid[~np.isnan(best)]
            if np.isneginf(point):
                row.update(censored="below", z_bound=float(valid_z[0]))
                notes.append(f"censored: no {self.y} reaches the phase even at the smallest {self.z} ({valid_z[0]:g})")
            elif np.isposinf(point):
                row.update(censored="above", z_bound=float(valid_z[-1]))
                notes.append(f"censored: some {self.y} still reaches the phase at the largest {self.z} "
                             f"({valid_z[-1]:g})")
            else:
                row["z_critical"] = float(point)
            if n_seeds < 2 or self.n_boot < 1:
                notes.append("one seed: no confidence interval" if n_seeds < 2 else "no bootstrap asked for")
            else:
                draws = rng.integers(0, n_seeds, size=(self.n_boot, n_seeds))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    boot_best = np.nanmax(sign * _nanmean(values[draws], axis=1), axis=2)  # (n_boot, z)
                boot, lower, upper = last_in_phase(boot_best, z_grid, sign * self.threshold)
                keep = ~np.isnan(boot)
                row["p_censored_below"] = float(np.mean(np.isneginf(boot[keep])))
                row["p_censored_above"] = float(np.mean(np.isposinf(boot[keep])))
                if row["censored"] is None:
                    alpha = 1.0 - self.ci
                    low = float(np.quantile(lower[keep], alpha / 2, method="inverted_cdf"))
                    high = float(np.quantile(upper[keep], 1 - alpha / 2, method="inverted_cdf"))
                    row["z_low"] = low if np.isfinite(low) else np.nan
                    row["z_high"] = high if np.isfinite(high) else np.nan
                    if not np.isfinite(low) or not np.isfinite(high):
                        notes.append("interval open-ended: some bootstrap replicates are censored")
            rows.append({**row, "note": "; ".join(notes)})
        table = pd.DataFrame(rows)
        table["censored"] = pd.Series([c if isinstance(c, str) else None for c in table["censored"]], dtype=object)
        return table

    def _fit_row(
        self, key: dict[str, Any], group: pd.DataFrame, used: pd.DataFrame, reason: pd.Series,
        rng: np.random.Generator,
    ) -> dict[str, Any]:
        sign = 1.0 if self.increasing_ else -1.0
        mine = used.loc[used.index.intersection(group.index)]
        table = mine.pivot_table(index="_rep", columns=self.y, values=self.metric, aggfunc="mean")
        table = table.reindex(columns=self.y_grid_)
        values = table.to_numpy(dtype=float)  # (n_seeds, n_y)
        n_seeds = values.shape[0]
        t = self.y_coord(self.y_grid_)
        present = ~np.isnan(values).all(axis=0) if n_seeds else np.zeros(len(t), bool)
        row: dict[str, Any] = {
            **key, "y_critical": np.nan, "y_low": np.nan, "y_high": np.nan, "censored": None,
            "y_bound": np.nan, "n_seeds": int(n_seeds), "n_trials": int(len(group)), "n_used": int(len(mine)),
            "n_failed": int((reason == "failed").sum()), "n_diverged": int((reason == "diverged").sum()),
            "n_missing_metric": int((reason == "missing_metric").sum()),
            "n_cells_missing": int((~present).sum()),
            "missing_y": [float(v) for v in self.y_grid_[~present]],
            "monotone": True, "n_crossings": 0, "p_censored_below": np.nan, "p_censored_above": np.nan,
            "y_smooth": np.nan,
        }
        notes = []
        if not n_seeds:
            row["note"] = "no usable trial in this row"
            return row
        mean = _nanmean(values, axis=0)  # (n_y,)
        point = crossing(sign * mean[None], t, sign * self.threshold)[0][0]
        side = (sign * mean[present] >= sign * self.threshold).astype(int)
        steps = np.diff(side)
        row["n_crossings"] = int(np.count_nonzero(steps))
        row["monotone"] = bool((steps >= 0).all())
        if not row["monotone"]:
            notes.append(f"non-monotone: the seed mean crosses the threshold {row['n_crossings']} times; "
                         "y_critical is the last crossing into the phase")
        if np.isneginf(point):
            row.update(censored="below", y_bound=float(self.y_grid_[present][0]))
            notes.append(f"censored: past the threshold already at the smallest {self.y} ({row['y_bound']:g})")
        elif np.isposinf(point):
            row.update(censored="above", y_bound=float(self.y_grid_[present][-1]))
            notes.append(f"censored: not past the threshold at the largest {self.y} ({row['y_bound']:g})")
        else:
            row["y_critical"] = self._from_coord(point)
        if n_seeds < 2 or self.n_boot < 1:
            notes.append("one seed: no confidence interval" if n_seeds < 2 else "no bootstrap asked for")
        else:
            draws = rng.integers(0, n_seeds, size=(self.n_boot, n_seeds))
            boot, lower, upper = crossing(sign * _nanmean(values[draws], axis=1), t, sign * self.threshold)
            keep = ~np.isnan(boot)
            row["p_censored_below"] = float(np.mean(np.isneginf(boot[keep])))
            row["p_censored_above"] = float(np.mean(np.isposinf(boot[keep])))
            if row["censored"] is None:
                alpha = 1.0 - self.ci
                low = np.quantile(lower[keep], alpha / 2, method="inverted_cdf")
                high = np.quantile(upper[keep], 1 - alpha / 2, method="inverted_cdf")
                row["y_low"], row["y_high"] = self._from_coord(low), self._from_coord(high)
                if not np.isfinite(low) or not np.isfinite(high):
                    notes.append("interval open-ended: some bootstrap replicates are censored")
        if row["n_cells_missing"]:
            notes.append(f"{row['n_cells_missing']} cell(s) without a usable trial at {self.y} = "
                         + ", ".join(f"{v:g}" for v in row["missing_y"]))
        row["note"] = "; ".join(notes)
        return row

    def _direction(self, used: pd.DataFrame) -> bool:
        if self.increasing is not None:
            return bool(self.increasing)
        rho = used[self.y].rank().corr(used[self.metric].rank()) if used[self.y].nunique() > 1 else np.nan
        if np.isnan(rho):
            return True
        if rho < 0:
            self.notes_.append(f"{self.metric} falls with {self.y} (rank correlation {rho:.2f}): the boundary is "
                               f"where it drops below {self.threshold:g}; pass increasing=True to override")
        return bool(rho >= 0)

    def _mixed_configs(self, used: pd.DataFrame) -> str:
        """A note when points of the diagram average trials of different configs (grid cells, ``cell``) that
        the axes do not tell apart, naming the columns that do (those constant within each cell); else ''."""
        if "cell" not in used.columns:
            return ""
        if self.seed_col in used.columns and used[self.seed_col].nunique() > 1 and \
                int(used.groupby("cell", observed=True)[self.seed_col].nunique().max()) <= 1:
            return ""  # an older table's cell id is per seed: it cannot tell configs apart
        points = self._keys + [self.y] + ([self.z] if self.z else [])
        n_cells = used.groupby(points, observed=True)["cell"].nunique()
        if int(n_cells.max()) <= 1:
            return ""
        skip = {*points, "cell", "capacity", "capacity_rank", self.seed_col, "trial_id", "config_id", "status",
                "error", "node_ip", "node_id", "step", "n_params", self.metric}
        per_cell = used.groupby("cell", observed=True).nunique(dropna=False).max()
        apart = [c for c in used.columns if c not in skip and not c.endswith("_s") and c not in _PACK_COLUMNS
                 and per_cell.get(c, 2) <= 1 and used[c].nunique() <= 64  # a config axis, not a measurement
                 and used.groupby(points, observed=True)[c].nunique().max() > 1]
        named = ", ".join(f"{c} ({', '.join(map(str, sorted(used[c].dropna().unique().tolist())[:4]))})"
                          for c in apart[:4]) or "no column"
        return (f"{int((n_cells > 1).sum())} of {len(n_cells)} points of the diagram average trials of up to "
                f"{int(n_cells.max())} configs that its axes do not tell apart: {named}; fit one value of each, or "
                "make one the slice")

    def _summarise_notes(self) -> None:
        b = self.boundary_
        if int(b["n_seeds"].max()) <= 1:
            self.notes_.append("one seed per cell: boundaries have no confidence interval")
        elif (b["n_seeds"] == 1).any():
            self.notes_.append(f"{int((b['n_seeds'] == 1).sum())} row(s) with one seed have no interval")
        for side in ("below", "above"):
            n = int((b["censored"] == side).sum())
            if n:
                self.notes_.append(f"{n} row(s) censored {side} the {self.y} range (no y_critical)")
        if (~b["monotone"]).any():
            self.notes_.append(f"{int((~b['monotone']).sum())} non-monotone row(s)")
        if b["n_cells_missing"].sum():
            self.notes_.append(f"{int(b['n_cells_missing'].sum())} missing cell(s) over all rows")
        if self.smooth_ is None:
            self.notes_.append("smooth fit skipped: every usable trial lies on one side of the threshold")
        if self.z:
            for side, text in (("below", f"reach the phase at no {self.z}"),
                               ("above", f"still reach it at the largest {self.z}")):
                n = int((self.critical_z_["censored"] == side).sum())
                if n:
                    self.notes_.append(f"critical {self.z}: {n} {self.x} value(s) {text} (censored {side})")

    # --- the smooth boundary --------------------------------------------------------------------------
    def _axis_features(self, values: pd.Series, order: list[Any], numeric: bool, name: str) -> np.ndarray:
        if numeric:
            v = values.to_numpy(dtype=float)
            positive = all(float(o) > 0 for o in order)
            return (np.log2(v) if positive else v)[:, None]
        unknown = sorted({str(v) for v in values} - {str(o) for o in order})
        if unknown:
            raise ValueError(f"{name} value(s) {unknown} were not in the fitted table; known: {order}")
        labels = values.astype(str).to_numpy()
        return np.stack([labels == str(o) for o in order], axis=1).astype(float)

    def _features(self, df: pd.DataFrame) -> np.ndarray:
        parts = [self.y_coord(df[self.y])[:, None],
                 self._axis_features(df[self.x], self.x_order_, self.x_numeric_, self.x)]
        if self.slice:
            parts.append(self._axis_features(df[self.slice], self.slice_order_, self.slice_numeric_, self.slice))
        return np.concatenate(parts, axis=1)

    def _fit_smooth(self, used: pd.DataFrame) -> None:
        labels = (used[self.metric].to_numpy(dtype=float) >= self.threshold).astype(int)
        self.smooth_: Pipeline | None = None
        if labels.min() == labels.max():
            return
        model = make_pipeline(StandardScaler(), LogisticRegression(C=_SMOOTH_C, max_iter=2000))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(self._features(used), labels)
        self.smooth_ = model
        t_lo, t_hi = self.y_coord(self.y_grid_[[0, -1]])
        if t_hi <= t_lo:
            return
        ends = pd.DataFrame({
            self.y: np.repeat([self.y_grid_[0], self.y_grid_[-1]], len(self.boundary_)),
            **{k: np.tile(self.boundary_[k].to_numpy(dtype=object), 2) for k in self._keys},
        })
        logit = model.decision_function(self._features(ends)).reshape(2, -1)
        slope = (logit[1] - logit[0]) / (t_hi - t_lo)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_star = t_lo - logit[0] / slope
        inside = (slope != 0) & (t_star >= t_lo) & (t_star <= t_hi)
        self.boundary_["y_smooth"] = [
            self._from_coord(v) if ok else np.nan for v, ok in zip(t_star, inside, strict=True)
        ]

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """(n, 2): P(metric < threshold), P(metric >= threshold) under the smooth fit at each row's
        (x, y[, slice])."""
        if not hasattr(self, "boundary_"):
            raise RuntimeError("PhaseDiagram is not fitted yet: call fit(trials) first")
        if self.smooth_ is None:
            raise ValueError("no smooth fit: every usable trial lies on one side of the threshold")
        missing = [c for c in self._keys + [self.y] if c not in df.columns]
        if missing:
            raise ValueError(f"predict_proba needs column(s) {missing}; got {', '.join(map(str, df.columns))}")
        return self.smooth_.predict_proba(self._features(df))
