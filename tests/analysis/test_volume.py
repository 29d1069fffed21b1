"""Three axes: the critical surface and the critical z on planted volumes, their figures, their report."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from mlflow import MlflowClient

from analysis.agreement import compare, compare_critical_z, theory_critical_z, theory_surface
from analysis.load import tidy
from analysis.phase import PhaseDiagram
from analysis.planted import make_volume_trials, volume_truth
from analysis.plots import plot_critical_dim, plot_small_multiples
from analysis.report import analyze
from analysis.theory import hypercube_critical_noise, theory_boundaries

Z = (0.0, 0.2, 0.4, 0.6, 0.8)
Y = (2, 4, 8, 16, 32, 64, 128)
# capacity -> (y_half, top, slope): the ceiling top - slope * z falls to 0.9 at z = (top - 0.9) / slope
ROWS = {"linear": (4.0, 0.85, 0.0),  # never reaches 0.9: critical z below the range
        "mlp-32x2": (6.0, 1.0, 0.2),  # critical z 0.5
        "mlp-64x2": (8.0, 1.0, 0.15),  # 0.667
        "mlp-128x2": (4.0, 1.0, 0.05)}  # 2.0: still in the phase at the largest z
THRESHOLD = 0.9


def fit_volume(trials: pd.DataFrame, **kwargs) -> PhaseDiagram:
    params = dict(x="capacity", y="embedding_dim", z="aug_noise", metric="randlabel_acc", threshold=THRESHOLD,
                  random_state=0)
    return PhaseDiagram(**{**params, **kwargs}).fit(tidy(trials))


def by_x(frame: pd.DataFrame, x: str = "capacity") -> dict:
    return {r[x]: r for r in frame.to_dict("records")}


@pytest.mark.parametrize("random_state", [0, 1, 2])
def test_the_critical_z_and_the_surface_are_the_planted_ones(random_state):
    trials = make_volume_trials(ROWS, z_values=Z, y_values=Y, n_seeds=4, random_state=random_state)
    diagram = fit_volume(trials)
    surface, critical_z = volume_truth(ROWS, z_values=Z, y_values=Y, threshold=THRESHOLD)
    rows = by_x(diagram.critical_z_)
    assert list(rows) == list(ROWS)
    assert rows["linear"]["censored"] == "below" and rows["linear"]["z_bound"] == 0.0
    assert rows["mlp-128x2"]["censored"] == "above" and rows["mlp-128x2"]["z_bound"] == 0.8
    for capacity in ("mlp-32x2", "mlp-64x2"):
        r, z_star = rows[capacity], critical_z[capacity]
        assert r["censored"] is None and r["monotone"] and r["n_crossings"] == 1
        assert r["z_low"] <= z_star < r["z_high"], (capacity, r["z_low"], z_star, r["z_high"])
        assert abs(r["z_critical"] - z_star) < 0.1, (capacity, r["z_critical"], z_star)  # half a grid step
    assert rows["mlp-32x2"]["best"][0] == pytest.approx(1.0, abs=0.02)
    assert rows["mlp-32x2"]["best"][-1] == pytest.approx(0.84, abs=0.02)  # the ceiling at z = 0.8
    # the surface: one boundary per (x, z), each interval around the planted critical y
    assert len(diagram.boundary_) == len(ROWS) * len(Z)
    for r in diagram.boundary_.to_dict("records"):
        y_star = surface[(r["capacity"], r["aug_noise"])]
        if math.isinf(y_star):
            assert r["censored"] == "above", (r["capacity"], r["aug_noise"])
        else:
            low = r["y_low"] if not np.isnan(r["y_low"]) else 0
            high = r["y_high"] if not np.isnan(r["y_high"]) else math.inf
            assert low <= y_star <= high, (r["capacity"], r["aug_noise"], low, y_star, high)


def test_a_wrong_critical_z_is_told_apart_from_the_planted_one():
    """The test above can fail: a volume whose MLP leaves the phase two grid steps early is not the planted one."""
    early = {**ROWS, "mlp-64x2": (8.0, 1.0, 0.4)}  # critical z 0.25 instead of 0.667
    rows = by_x(fit_volume(make_volume_trials(early, z_values=Z, y_values=Y, random_state=0)).critical_z_)
    planted = volume_truth(ROWS, z_values=Z, y_values=Y, threshold=THRESHOLD)[1]["mlp-64x2"]
    assert not rows["mlp-64x2"]["z_low"] <= planted < rows["mlp-64x2"]["z_high"]


def test_the_critical_z_band_resamples_the_seeds_and_one_seed_has_none():
    diagram = fit_volume(make_volume_trials(ROWS, z_values=Z, y_values=Y, n_seeds=1, random_state=0))
    r = by_x(diagram.critical_z_)["mlp-32x2"]
    assert not np.isnan(r["z_critical"]) and np.isnan(r["z_low"]) and np.isnan(r["z_high"])
    assert "one seed" in r["note"]
    noisy = fit_volume(make_volume_trials(ROWS, z_values=Z, y_values=Y, n_seeds=6, noise=0.06, random_state=0))
    wide = by_x(noisy.critical_z_)["mlp-32x2"]
    high = Z[-1] if np.isnan(wide["z_high"]) else wide["z_high"]  # NaN: open-ended, some replicates censored
    assert high - wide["z_low"] >= 0.4  # noisier seeds: a band wider than the grid step of the quiet ones


def test_missing_cells_and_a_missing_z_are_skipped():
    trials = make_volume_trials(ROWS, z_values=Z, y_values=Y, random_state=0)
    mlp32 = trials["width"].eq(32)
    trials = trials[~(mlp32 & trials["aug_noise"].eq(0.4))]  # a whole z never run for this x
    trials = trials[~(trials["width"].eq(64) & trials["embedding_dim"].lt(16))]  # the small dims never run
    rows = by_x(fit_volume(trials).critical_z_)
    assert np.isnan(rows["mlp-32x2"]["best"][2])
    assert (rows["mlp-32x2"]["z_low"], rows["mlp-32x2"]["z_high"]) == (0.2, 0.6)  # across the missing z
    assert rows["mlp-64x2"]["z_low"] <= 0.667 < rows["mlp-64x2"]["z_high"]


def test_a_metric_that_falls_with_y_leaves_its_phase_along_z_too():
    # pca_overlap-like: the phase is metric <= threshold; mirror the planted volume around 0.5 + 0.5 = 1
    trials = make_volume_trials(ROWS, z_values=Z, y_values=Y, random_state=0)
    trials["randlabel_acc"] = 1.0 - trials["randlabel_acc"]
    diagram = fit_volume(trials, threshold=1 - THRESHOLD, increasing=False)
    rows = by_x(diagram.critical_z_)
    assert rows["linear"]["censored"] == "below" and rows["mlp-128x2"]["censored"] == "above"
    assert rows["mlp-32x2"]["z_low"] <= 0.5 < rows["mlp-32x2"]["z_high"]
    assert rows["mlp-32x2"]["best"][0] == pytest.approx(0.0, abs=0.02)  # the best is the smallest


# --- against the theory -----------------------------------------------------------------------------------------
def _hypercube_volume(slope_mlp: float = 0.05 / 0.537, n_seeds: int = 2) -> pd.DataFrame:
    """phase_volume's axes (s = 3, threshold 0.95) with each MLP's ceiling at 0.95 where the Bayes ceiling is."""
    rows = {"linear": (4.0, 0.85, 0.0), "mlp-32x2": (4.0, 1.0, slope_mlp), "mlp-64x2": (4.0, 1.0, slope_mlp)}
    return make_volume_trials(rows, z_values=(0.0, 0.2, 0.3, 0.4, 0.6, 0.8), y_values=(2, 4, 8, 16, 32, 64),
                              n_seeds=n_seeds, noise=0.003, random_state=0)


def test_the_theory_s_critical_z_is_the_bayes_ceiling_s_and_agrees_by_the_shared_rule():
    trials = tidy(_hypercube_volume())
    diagram = fit_volume(trials, threshold=0.95)
    predicted = theory_critical_z(diagram, trials)
    sigma = hypercube_critical_noise(3, 0.95)
    assert by_x(predicted)["mlp-32x2"]["z_theory"] == pytest.approx(sigma)
    assert by_x(predicted)["linear"]["censored_theory"] == "below"
    table = by_x(compare_critical_z(diagram, predicted))
    assert all(r["agree"] for r in table.values()), {k: r["agree_reason"] for k, r in table.items()}
    early = tidy(_hypercube_volume(slope_mlp=0.2))  # leaves the phase at 0.25
    table = by_x(compare_critical_z(fit_volume(early, threshold=0.95), theory_critical_z(diagram, early)))
    assert table["mlp-32x2"]["agree"] is False and "outside" in table["mlp-32x2"]["agree_reason"]
    assert table["linear"]["agree"] is True


def test_the_theory_s_curve_along_z_steps_to_never_at_the_critical_noise():
    trials = tidy(_hypercube_volume())
    diagram = fit_volume(trials, threshold=0.95)
    curve = theory_surface(diagram, trials, [0.0, 0.5, 0.55])
    mlp = curve[curve["capacity"] == "mlp-32x2"]
    assert list(mlp["y_theory"].iloc[:2]) == [8.0, 8.0] and mlp["censored_theory"].iloc[2] == "above"
    assert (curve[curve["capacity"] == "linear"]["censored_theory"] == "above").all()


# --- figures --------------------------------------------------------------------------------------------------------
def test_small_multiples_one_panel_per_z_on_one_colour_scale():
    trials = tidy(make_volume_trials(ROWS, z_values=Z, y_values=Y, random_state=0))
    diagram = fit_volume(trials)
    fig = plot_small_multiples(diagram, theory_boundaries(diagram, trials))
    heat = [ax for ax in fig.axes if ax.images]
    assert isinstance(fig, Figure) and len(heat) == len(Z)
    assert {ax.images[0].get_clim() for ax in heat} == {heat[0].images[0].get_clim()}  # one scale
    assert len(fig.axes) == len(Z) + 1  # and one colour bar; the grid's spare panel is gone
    assert all(ax.get_title().endswith(f"aug_noise = {z}") for ax, z in zip(heat, Z, strict=True))
    assert all(any(line.get_color() == "red" for line in ax.lines) for ax in heat)  # theory on each


def test_critical_dim_one_panel_per_x_with_bands_and_the_theory():
    trials = tidy(_hypercube_volume())
    diagram = fit_volume(trials, threshold=0.95)
    critical = compare_critical_z(diagram, theory_critical_z(diagram, trials))
    fig = plot_critical_dim(diagram, theory_surface(diagram, trials, np.linspace(0, 0.8, 9)), critical)
    assert len(fig.axes) == 3
    panel = fig.axes[1]
    assert "mlp-32x2" in panel.get_title() and "theory 0.54" in panel.get_title()
    assert panel.collections  # the band
    xs = {float(line.get_xdata()[0]) for line in panel.lines if len(line.get_xdata()) == 2}
    assert any(abs(x - hypercube_critical_noise(3, 0.95)) < 1e-9 for x in xs)  # the theory's critical noise
    with pytest.raises(ValueError, match="third axis"):
        plot_critical_dim(PhaseDiagram(x="capacity", y="embedding_dim", metric="randlabel_acc",
                                       threshold=0.95).fit(trials))


# --- the report and the parent run ------------------------------------------------------------------------------
def test_analyze_writes_the_surface_and_logs_it_on_the_parent_run(tmp_path, write_study, log_study, tracking_uri):
    trials = _hypercube_volume()
    study = "planted_volume"
    study_dir = write_study(tmp_path / "runs" / study, trials,
                            {"x": "capacity", "y": "embedding_dim", "metric": "randlabel_acc", "threshold": 0.95,
                             "slice": "aug_noise", "increasing": True})
    log_study(tracking_uri, trials.iloc[:4], study, study_dir, tmp_path / "artifacts")
    summary = analyze(study_dir, tracking_uri=tracking_uri, n_boot=200)
    phase = study_dir / "phase"
    assert {"phase_diagram.png", "critical_dim.png", "summary.json", "report.html"} <= {p.name for p in phase.iterdir()}
    surface = json.loads((phase / "summary.json").read_text())["surface"]
    assert surface["z"] == "aug_noise" and len(surface["cells"]) == 3 * 6
    critical = {r["capacity"]: r for r in surface["critical_z"]}
    assert critical["mlp-32x2"]["z_low"] == 0.4 and critical["mlp-32x2"]["z_high"] == 0.6
    assert critical["mlp-32x2"]["agree"] is True and critical["linear"]["censored"] == "below"
    assert surface["critical_z_agreement"] == {"n_predicted": 3, "n_agree": 3, "fraction_agree": 1.0}
    a = surface["agreement"]
    assert a["n_cells"] == 18 and a["n_agree"] + len(surface["disagree"]) == a["n_predicted"]
    assert 0 < a["fraction_agree"] < 1  # planted crossings at y ~ 5-8 against the theory's 8
    assert all({"capacity", "aug_noise", "reason"} <= set(d) for d in surface["disagree"])
    assert "Critical aug_noise per capacity" in summary["verdict"]
    html = (phase / "report.html").read_text()
    assert "<h2>Critical aug_noise</h2>" in html and "Critical surface against the theory" in html
    assert html.count("<img") >= 3
    run = MlflowClient(tracking_uri).get_run(summary["mlflow"]["parent_run_id"])
    metrics = run.data.metrics
    assert metrics["z_low/mlp-32x2"] == 0.4 and metrics["z_high/mlp-32x2"] == 0.6
    assert metrics["z_censored/linear"] == -1.0 and metrics["critical_z_agreement"] == 1.0
    assert metrics["z_theory/mlp-32x2"] == pytest.approx(0.5369, abs=1e-3)
    assert "**Critical `aug_noise`**" in run.data.tags["mlflow.note.content"]


def test_a_categorical_or_single_valued_slice_is_not_a_third_axis(study_dir):
    summary = analyze(study_dir, log_to_mlflow=False, n_boot=50)
    assert summary["surface"] is None and "critical_dim" not in summary["files"]["figures"]


def test_compare_uses_the_shared_rule_on_the_surface():
    trials = tidy(_hypercube_volume())
    diagram = fit_volume(trials, threshold=0.95)
    table = compare(diagram, theory_boundaries(diagram, trials))
    never = table[(table["capacity"] == "linear")]
    assert never["agree"].all()  # both beyond the range at every z
    beyond = table[(table["capacity"] != "linear") & (table["aug_noise"] >= 0.6)]
    assert (beyond["censored_theory"] == "above").all() and beyond["agree"].all()  # the ceiling below 0.95
    assert table["agree_reason"].map(bool).all()
