"""PhaseDiagram on planted tables: the boundary it finds is the one planted."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.load import tidy
from analysis.phase import PhaseDiagram, crossing, last_in_phase
from analysis.planted import make_phase_trials


def fit(trials: pd.DataFrame, **kwargs) -> PhaseDiagram:
    params = dict(x="capacity", y="embedding_dim", metric="randlabel_acc", threshold=0.9, random_state=0)
    return PhaseDiagram(**{**params, **kwargs}).fit(tidy(trials))


def row(diagram: PhaseDiagram, value, slice_value=None) -> pd.Series:
    b = diagram.boundary_
    mask = b[diagram.x] == value
    if diagram.slice:
        mask &= b[diagram.slice] == slice_value
    (index,) = np.flatnonzero(mask.to_numpy())
    return b.iloc[index]


# --- crossing, by hand -------------------------------------------------------------------------------
def test_crossing_interpolates_between_the_grid_points_around_the_threshold():
    point, lower, upper = crossing(np.array([[0.2, 0.6, 1.0]]), np.array([1.0, 2.0, 3.0]), 0.8)
    assert (point[0], lower[0], upper[0]) == (2.5, 2.0, 3.0)


def test_crossing_censors_rows_outside_the_range_and_skips_missing_cells():
    t = np.array([1.0, 2.0, 3.0])
    means = np.array([
        [0.9, 0.95, 1.0],  # past the threshold everywhere: boundary below the range
        [0.1, 0.2, 0.3],  # never past it: above the range
        [0.2, np.nan, 1.0],  # missing middle cell: interpolate across it
        [np.nan, np.nan, np.nan],  # nothing to say
        [0.9, 0.1, 0.95],  # non-monotone: the last crossing counts
    ])
    point, lower, upper = crossing(means, t, 0.5)
    assert point[0] == -np.inf and lower[0] == -np.inf and upper[0] == 1.0
    assert point[1] == np.inf and lower[1] == 3.0 and upper[1] == np.inf
    assert point[2] == pytest.approx(1 + 0.3 / 0.8 * 2) and (lower[2], upper[2]) == (1.0, 3.0)
    assert np.isnan(point[3]) and np.isnan(lower[3]) and np.isnan(upper[3])
    assert point[4] == pytest.approx(2 + 0.4 / 0.85)


def test_last_in_phase_is_the_last_point_at_or_above_the_threshold_interpolated_to_the_next():
    z = np.array([0.0, 0.2, 0.4, 0.6])
    best = np.array([
        [1.0, 0.98, 0.9, 0.7],  # leaves the phase between 0.2 and 0.4
        [0.8, 0.7, 0.6, 0.5],  # in it at no z
        [1.0, 1.0, 0.99, 0.97],  # still in it at the largest z
        [1.0, np.nan, 0.9, 0.7],  # a missing z is skipped
        [0.96, 0.9, 0.96, 0.8],  # non-monotone: the last z in the phase counts
        [0.95, 0.9, np.nan, np.nan],  # at the threshold counts as in the phase
    ])
    point, lower, upper = last_in_phase(best, z, 0.95)
    assert point[0] == pytest.approx(0.2 + 0.03 / 0.08 * 0.2) and (lower[0], upper[0]) == (0.2, 0.4)
    assert point[1] == -np.inf and lower[1] == -np.inf and upper[1] == 0.0
    assert point[2] == np.inf and lower[2] == 0.6 and upper[2] == np.inf
    assert point[3] == pytest.approx(0.05 / 0.1 * 0.4) and (lower[3], upper[3]) == (0.0, 0.4)
    assert point[4] == pytest.approx(0.4 + 0.01 / 0.16 * 0.2)
    assert point[5] == 0.0


def test_z_is_the_slicing_column_and_must_be_numeric(planted):
    diagram = PhaseDiagram(x="capacity", y="embedding_dim", metric="randlabel_acc", threshold=0.9, z="aug_noise")
    assert diagram.slice == "aug_noise" and diagram.z == "aug_noise"
    with pytest.raises(ValueError, match="z is the slicing column"):
        PhaseDiagram(x="capacity", y="embedding_dim", metric="randlabel_acc", threshold=0.9, z="aug_noise",
                     slice="dim")
    with pytest.raises(ValueError, match="z column 'encoder' must be numeric"):
        fit(planted, z="encoder")
    assert not hasattr(fit(planted), "critical_z_")  # two axes: no critical z


# --- planted boundaries ------------------------------------------------------------------------------
@pytest.mark.parametrize("random_state", [0, 1, 2])
def test_recovers_the_planted_boundary_within_one_grid_step_and_the_interval_covers_it(
    planted_critical, y_grid, random_state
):
    trials = make_phase_trials(planted_critical, y_values=y_grid, n_seeds=5, random_state=random_state)
    diagram = fit(trials)
    for capacity, y_star in planted_critical.items():
        if not y_grid[0] < y_star < y_grid[-1]:
            continue
        r = row(diagram, capacity)
        assert r["censored"] is None
        assert abs(math.log2(r["y_critical"]) - math.log2(y_star)) <= 1.0, (capacity, r["y_critical"])
        assert r["y_low"] <= y_star <= r["y_high"], (capacity, r["y_low"], r["y_high"])
        assert r["n_seeds"] == 5 and r["monotone"] and r["n_crossings"] == 1


def test_rows_are_in_capacity_order_with_one_row_per_x(planted, planted_critical):
    diagram = PhaseDiagram(x="capacity", y="embedding_dim", metric="randlabel_acc", threshold=0.9).fit(planted)
    assert list(diagram.boundary_["capacity"]) == list(planted_critical)  # ordered by n_params
    assert diagram.x_order_ == list(planted_critical)
    assert list(diagram.y_grid_) == [2, 4, 8, 16, 32, 64, 128]


def test_censored_rows_are_reported_as_censored_with_no_number(planted):
    diagram = fit(planted)
    never, always = row(diagram, "linear"), row(diagram, "mlp-256x2")
    assert never["censored"] == "above" and never["y_bound"] == 128
    assert always["censored"] == "below" and always["y_bound"] == 2
    for r in (never, always):
        assert np.isnan(r["y_critical"]) and np.isnan(r["y_low"]) and np.isnan(r["y_high"])
        assert "censored" in r["note"]
    assert never["p_censored_above"] == 1.0 and always["p_censored_below"] == 1.0
    assert any("censored above" in n for n in diagram.notes_)


def test_slices_give_one_boundary_per_x_and_slice_value():
    critical = {("mlp-16x1", 0.0): 4.0, ("mlp-16x1", 0.3): 24.0, ("mlp-64x2", 0.0): 6.0, ("mlp-64x2", 0.3): math.inf}
    diagram = fit(make_phase_trials(critical, slice="aug_noise", random_state=3), slice="aug_noise")
    assert len(diagram.boundary_) == 4
    assert diagram.slice_order_ == [0.0, 0.3]
    for (capacity, noise), y_star in critical.items():
        r = row(diagram, capacity, noise)
        if math.isinf(y_star):
            assert r["censored"] == "above"
        else:
            assert r["y_low"] <= y_star <= r["y_high"]


def test_a_decreasing_metric_along_a_numeric_axis():
    y_values = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    critical = {3: 1.5, 5: 3.0}
    trials = make_phase_trials(critical, x="n_clusters", y="nuisance_std", y_values=y_values, metric="pca_overlap",
                               threshold=0.5, low=0.0, high=1.0, increasing=False, scenario="gmm", random_state=4)
    diagram = PhaseDiagram(x="n_clusters", y="nuisance_std", metric="pca_overlap", threshold=0.5,
                           increasing=False, random_state=0).fit(trials)
    for n_clusters, y_star in critical.items():
        r = row(diagram, n_clusters)
        assert r["y_low"] <= y_star <= r["y_high"]
        assert abs(math.log2(r["y_critical"] / y_star)) <= 1.0


# --- what goes wrong in real sweeps ----------------------------------------------------------------------
def test_non_monotone_rows_are_flagged_and_use_the_last_crossing(planted):
    bumpy = planted.copy()
    spike = (bumpy["encoder"] == "mlp") & (bumpy["width"] == 64) & (bumpy["depth"] == 2) & (bumpy["embedding_dim"] == 4)
    bumpy.loc[spike, "randlabel_acc"] = 0.97
    diagram = fit(bumpy)
    r = row(diagram, "mlp-64x2")
    assert not r["monotone"] and r["n_crossings"] == 3
    assert 16 <= r["y_critical"] <= 32 and "non-monotone" in r["note"]
    assert row(diagram, "mlp-16x1")["monotone"]
    assert any("non-monotone" in n for n in diagram.notes_)


def test_failed_and_diverged_trials_are_excluded_and_counted_and_missing_cells_reported(planted):
    trials = planted.copy()
    mlp16 = trials.index[trials["width"].eq(16)]
    trials.loc[mlp16[:2], ["status", "randlabel_acc", "error"]] = ["ERROR", 0.0, "RuntimeError: boom"]
    trials.loc[mlp16[2], "diverged"] = 1
    trials.loc[mlp16[2], "randlabel_acc"] = 0.0
    trials.loc[mlp16[3], "randlabel_acc"] = np.nan
    mlp64x1 = trials["width"].eq(64) & trials["depth"].eq(1)
    trials = trials[~(mlp64x1 & trials["embedding_dim"].eq(16))]  # a cell never run
    mlp64x2 = trials["width"].eq(64) & trials["depth"].eq(2)
    trials.loc[mlp64x2 & trials["embedding_dim"].eq(64), "status"] = "ERROR"  # a cell whose trials all failed
    diagram = fit(trials)
    assert diagram.excluded_ == {"failed": 7, "unfinished": 0, "diverged": 1, "missing_axis": 0, "missing_metric": 1}
    r16 = row(diagram, "mlp-16x1")
    assert (r16["n_failed"], r16["n_diverged"], r16["n_missing_metric"]) == (2, 1, 1)
    assert r16["n_used"] == r16["n_trials"] - 4 and r16["y_low"] <= 6.0 <= r16["y_high"]
    r64 = row(diagram, "mlp-64x1")
    assert r64["n_cells_missing"] == 1 and r64["missing_y"] == [16.0] and "16" in r64["note"]
    assert r64["y_low"] <= 12.0 <= r64["y_high"]
    r642 = row(diagram, "mlp-64x2")
    assert r642["n_cells_missing"] == 1 and r642["missing_y"] == [64.0] and r642["n_failed"] == 5
    assert any("9 of" in n and "failed" in n for n in diagram.notes_)
    assert set(diagram.cells_.query("capacity == 'mlp-64x1'")["embedding_dim"]) == {2, 4, 8, 32, 64, 128}


def test_one_seed_gives_a_boundary_without_an_interval_and_says_so(planted_critical):
    diagram = fit(make_phase_trials(planted_critical, n_seeds=1, random_state=5))
    r = row(diagram, "mlp-16x1")
    assert abs(math.log2(r["y_critical"] / 6.0)) <= 1.0
    assert np.isnan(r["y_low"]) and np.isnan(r["y_high"]) and "one seed" in r["note"]
    assert "one seed per cell: boundaries have no confidence interval" in diagram.notes_


def test_without_a_seed_column_the_trials_of_a_cell_are_the_replicates(planted):
    diagram = fit(planted.drop(columns="seed"))
    assert row(diagram, "mlp-16x1")["n_seeds"] == 5
    assert any("no 'seed' column" in n for n in diagram.notes_)


# --- bad input ------------------------------------------------------------------------------------------
def test_a_missing_metric_or_axis_column_names_the_columns_that_exist(planted):
    with pytest.raises(ValueError, match=r"metric column .ari. is not in the trials table; its columns: .*randlabel"):
        fit(planted, metric="ari")
    with pytest.raises(ValueError, match=r"slice column 'kappa'.*embedding_dim"):
        fit(planted, slice="kappa")
    with pytest.raises(ValueError, match="must be numeric"):
        fit(planted, y="encoder")


def test_an_empty_or_all_failed_table_is_a_clear_error(planted):
    with pytest.raises(ValueError, match="empty"):
        fit(planted.iloc[:0])
    with pytest.raises(ValueError, match=r"all 175 trials are unusable \(failed: 175\)"):
        fit(planted.assign(status="ERROR"))


# --- the smooth boundary ----------------------------------------------------------------------------------
def test_the_smooth_fit_is_one_half_at_the_planted_boundary():
    critical = {"mlp-16x1": 6.0, "mlp-64x2": 20.0, "mlp-256x2": 3.0}
    trials = make_phase_trials(critical, threshold=0.75, n_seeds=20, noise=0.08, width=1.0, random_state=11)
    diagram = fit(trials, threshold=0.75)
    at = pd.DataFrame({"capacity": list(critical), "embedding_dim": list(critical.values())})
    proba = diagram.predict_proba(at)
    assert proba.shape == (3, 2) and np.allclose(proba.sum(axis=1), 1)
    assert np.all(np.abs(proba[:, 1] - 0.5) < 0.15), proba[:, 1]
    along = diagram.predict_proba(pd.DataFrame({"capacity": "mlp-16x1", "embedding_dim": [2, 8, 32, 128]}))[:, 1]
    assert np.all(np.diff(along) > 0) and along[0] < 0.1 and along[-1] > 0.9
    for capacity, y_star in critical.items():
        assert abs(math.log2(row(diagram, capacity)["y_smooth"] / y_star)) <= 1.0


def test_the_smooth_fit_takes_numeric_x_on_a_log_axis():
    critical = {1: 2.0, 2: 4.0, 3: 8.0, 4: 16.0}
    trials = make_phase_trials(critical, x="n_invariant", threshold=0.75, n_seeds=10, noise=0.08, width=1.0,
                               random_state=2)
    diagram = fit(trials, x="n_invariant", threshold=0.75)
    assert diagram.x_numeric_ and diagram.x_order_ == [1, 2, 3, 4]
    p = diagram.predict_proba(pd.DataFrame({"n_invariant": [1, 4], "embedding_dim": [2, 16]}))[:, 1]
    assert np.all(np.abs(p - 0.5) < 0.2), p
    with pytest.raises(ValueError, match="needs column"):
        diagram.predict_proba(pd.DataFrame({"embedding_dim": [2]}))


def test_predict_proba_names_unknown_categories_and_needs_fit(planted):
    with pytest.raises(RuntimeError, match="not fitted"):
        PhaseDiagram(x="capacity", y="embedding_dim", metric="randlabel_acc", threshold=0.9).predict_proba(planted)
    diagram = fit(planted)
    with pytest.raises(ValueError, match=r"\['conv-8x1'\] were not in the fitted table"):
        diagram.predict_proba(pd.DataFrame({"capacity": ["conv-8x1"], "embedding_dim": [8]}))


def test_scikit_learn_style_parameters_and_learned_attributes(planted):
    diagram = PhaseDiagram(x="capacity", y="embedding_dim", metric="randlabel_acc", threshold=0.9, n_boot=50)
    assert not [k for k in vars(diagram) if k.endswith("_")]
    assert diagram.fit(tidy(planted)) is diagram
    assert {"boundary_", "cells_", "y_grid_", "x_order_", "excluded_", "notes_", "smooth_"} <= set(vars(diagram))
    assert repr(diagram).startswith("PhaseDiagram(x='capacity', y='embedding_dim'")
    expected = {"capacity", "y_critical", "y_low", "y_high", "censored", "n_seeds", "monotone", "n_cells_missing"}
    assert expected <= set(diagram.boundary_.columns)


def test_the_direction_is_inferred_from_the_data_when_not_given():
    trials = make_phase_trials({"mlp-16x1": 0.3, "mlp-64x2": 0.8}, y="aug_noise",
                               y_values=(0.1, 0.2, 0.4, 0.8, 1.6, 3.2),
                               metric="style_r2", threshold=0.5, low=0.0, high=1.0, increasing=False,
                               scenario="content_style", random_state=6)
    diagram = fit(trials, y="aug_noise", metric="style_r2", threshold=0.5, increasing=None)
    assert diagram.increasing_ is False and any("falls with aug_noise" in n for n in diagram.notes_)
    for capacity, y_star in {"mlp-16x1": 0.3, "mlp-64x2": 0.8}.items():
        r = row(diagram, capacity)
        assert r["monotone"] and r["y_low"] <= y_star <= r["y_high"]


def test_points_that_average_different_configs_are_named_in_the_notes():
    # two studies' worth of trials, n_invariant 2 and 4 (true boundaries 4 and 64), fitted without a slice
    def study(critical: float, n_invariant: int, random_state: int) -> pd.DataFrame:
        t = make_phase_trials({"mlp-32x2": critical}, n_seeds=3, random_state=random_state)
        t["n_invariant"] = n_invariant
        t["cell"] = f"{n_invariant}-" + t["embedding_dim"].astype(str)  # a grid cell per config, as the records
        return t

    both = tidy(pd.concat([study(4.0, 2, 0), study(64.0, 4, 1)], ignore_index=True))
    fit = PhaseDiagram(x="capacity", y="embedding_dim", metric="randlabel_acc", threshold=0.9, n_boot=20).fit(both)
    (note,) = [n for n in fit.notes_ if "do not tell apart" in n]
    assert note.startswith("7 of 7 points") and "n_invariant (2, 4)" in note and "n_params" not in note
    one = tidy(study(4.0, 2, 0))
    assert not [n for n in PhaseDiagram(x="capacity", y="embedding_dim", metric="randlabel_acc", threshold=0.9,
                                        n_boot=20).fit(one).notes_ if "do not tell apart" in n]
    sliced = PhaseDiagram(x="capacity", y="embedding_dim", metric="randlabel_acc", threshold=0.9, slice="n_invariant",
                          n_boot=20).fit(both)
    assert not [n for n in sliced.notes_ if "do not tell apart" in n]
    # tables of earlier versions hold a cell id per seed: they cannot tell configs apart, so nothing is said
    older = one.assign(cell=one["cell"] + "-" + one["seed"].astype(str), eval_loss=np.arange(len(one)) / 7)
    assert not [n for n in PhaseDiagram(x="capacity", y="embedding_dim", metric="randlabel_acc", threshold=0.9,
                                        n_boot=20).fit(older).notes_ if "do not tell apart" in n]


def test_trials_still_to_come_are_left_out_as_unfinished_not_failed(planted):
    # a study analysed while it runs: its PENDING and RUNNING trials are not failures
    trials = planted.copy()
    trials.loc[trials.index[:3], "status"] = "PENDING"
    trials.loc[trials.index[3:5], "status"] = "RUNNING"
    trials.loc[trials.index[5], "status"] = "ERROR"
    diagram = fit(trials)
    assert (diagram.excluded_["failed"], diagram.excluded_["unfinished"]) == (1, 5)
    assert any("5 unfinished" in n and "1 failed" in n for n in diagram.notes_)
    assert int(diagram.boundary_["n_failed"].sum()) == 1
