"""Baselines read against trials (planted values, closed forms): each trial meets its own setting's baselines,
the normalised metric is (m - input) / (best oracle - input), the theory is judged in the probe's units, and
the report and the MLflow parent run show them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.baselines import BASELINES_FILE, cell_references, load_baselines
from analysis.load import add_capacity
from analysis.phase import PhaseDiagram
from analysis.planted import make_phase_trials
from analysis.theory import TheoryBoundary, in_probe_units, theory_boundaries
from study.baselines import write_baselines

SETTING_KEYS = ["dim", "n_invariant", "aug_noise", "seed", "n_eval"]
METRICS = ["randlabel_acc", "probe_acc"]
# (baseline, kind) -> randlabel_acc by seed: the quickstart's measured values, rounded
PLANTED = {("invariant_coords", "oracle"): (0.78, 0.75), ("cluster_posterior", "oracle"): (1.0, 1.0),
           ("input", "input"): (0.77, 0.76)}


def planted_rows(noises=(0.1,), seeds=(0, 1), shift: float = 0.0) -> list[dict]:
    rows = []
    for (name, kind), by_seed in PLANTED.items():
        for noise in noises:
            for seed in seeds:
                value = by_seed[seed] - (shift * noise if name != "input" else 0.0)
                rows.append({"scenario": "hypercube", "baseline": name, "kind": kind, "ideal_for": f"planted {name}",
                             "dims": 3, "dim": 16, "n_invariant": 3, "aug_noise": noise, "seed": seed, "n_eval": 2048,
                             "randlabel_acc": value, "probe_acc": 1.0})
    return rows


def write(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_baselines(rows, folder / BASELINES_FILE, "planted", SETTING_KEYS, METRICS)
    return folder


def test_the_file_names_its_setting_and_metric_columns(tmp_path: Path) -> None:
    baselines = load_baselines(write(tmp_path, planted_rows()))
    assert baselines.setting_keys == SETTING_KEYS and baselines.metrics == METRICS
    assert baselines.oracles == ["invariant_coords", "cluster_posterior"]
    assert load_baselines(tmp_path / "nowhere") is None


def test_each_trial_reads_the_baselines_of_its_own_setting_and_seed(tmp_path: Path) -> None:
    baselines = load_baselines(write(tmp_path, planted_rows(noises=(0.1, 0.5), shift=0.2)))
    trials = pd.DataFrame({"dim": [16, 16, 16], "n_invariant": [3, 3, 3], "aug_noise": [0.1, 0.5, 0.5],
                           "seed": [0, 1, 0], "randlabel_acc": [0.9, 0.9, 0.9]}, index=[7, 8, 9])
    values = baselines.values(trials, "randlabel_acc")  # n_eval is not a trials column here: averaged over
    assert list(values.index) == [7, 8, 9]
    np.testing.assert_allclose(values["invariant_coords"], [0.78 - 0.02, 0.75 - 0.1, 0.78 - 0.1])
    np.testing.assert_allclose(values["input"], [0.77, 0.76, 0.77])
    other = trials.assign(n_invariant=4)  # a setting the study has no baseline for
    assert baselines.values(other, "randlabel_acc").isna().all().all()


def test_normalised_is_the_fraction_of_the_way_from_input_to_the_best_oracle(tmp_path: Path) -> None:
    baselines = load_baselines(write(tmp_path, planted_rows()))
    trials = pd.DataFrame({"dim": 16, "n_invariant": 3, "aug_noise": 0.1, "seed": [0, 0, 1, 1],
                           "randlabel_acc": [0.77, 1.0, 0.88, 0.5]})
    expected = [(m - a) / (1.0 - a) for m, a in zip(trials["randlabel_acc"], [0.77, 0.77, 0.76, 0.76], strict=True)]
    np.testing.assert_allclose(baselines.normalised(trials, "randlabel_acc"), expected)
    assert baselines.best_oracle(baselines.values(trials, "randlabel_acc")).eq("cluster_posterior").all()
    # probe_acc: the input is already at the oracles (1.0): the metric does not separate them, no scale
    assert baselines.normalised(trials.assign(probe_acc=0.9), "probe_acc").isna().all()


def test_the_best_oracle_is_the_farthest_from_the_input_either_way(tmp_path: Path) -> None:
    rows = [{"scenario": "content_style", "baseline": b, "kind": k, "ideal_for": "", "dims": 1, "seed": 0,
             "n_eval": 2048, "style_r2": v} for b, k, v in (("content", "oracle", 0.3), ("input", "input", 0.9))]
    write_baselines(rows, tmp_path / BASELINES_FILE, "planted", ["seed", "n_eval"], ["style_r2"])
    baselines = load_baselines(tmp_path)
    trials = pd.DataFrame({"seed": [0, 0], "style_r2": [0.9, 0.45]})
    np.testing.assert_allclose(baselines.normalised(trials, "style_r2"), [0.0, 0.75])  # (0.45-0.9)/(0.3-0.9)


def test_without_an_input_value_the_best_oracle_is_the_highest(tmp_path: Path) -> None:
    # subspace_overlap is undefined for the identity (every direction at equal gain): no scale, but an oracle
    rows = [{"scenario": "gmm", "baseline": b, "kind": k, "ideal_for": "", "dims": 3, "seed": 0, "n_eval": 2048,
             "subspace_overlap": v} for b, k, v in (("fisher_projection", "oracle", 1.0), ("input", "input", math.nan))]
    write_baselines(rows, tmp_path / BASELINES_FILE, "planted", ["seed", "n_eval"], ["subspace_overlap"])
    baselines = load_baselines(tmp_path)
    trials = pd.DataFrame({"seed": [0], "subspace_overlap": [0.9]})
    assert baselines.best_oracle(baselines.values(trials, "subspace_overlap")).tolist() == ["fisher_projection"]
    assert baselines.normalised(trials, "subspace_overlap").isna().all()


def test_table_and_parent_metrics_are_seed_means(tmp_path: Path) -> None:
    baselines = load_baselines(write(tmp_path, planted_rows(noises=(0.1, 0.5))))
    table = baselines.table(["randlabel_acc"]).set_index(["baseline", "aug_noise"])
    assert table.loc[("invariant_coords", 0.1), "randlabel_acc"] == pytest.approx(0.765)
    assert table.loc[("invariant_coords", 0.1), "randlabel_acc_std"] == pytest.approx(np.std([0.78, 0.75], ddof=1))
    assert table.loc[("input", 0.5), "n_seeds"] == 2
    metrics = baselines.parent_metrics(["randlabel_acc"])
    assert metrics["baseline/invariant_coords/randlabel_acc/aug_noise 0.5"] == pytest.approx(0.765)
    assert len(metrics) == 3 * 2  # 3 baselines x 2 settings: the seed is averaged, constant keys are left out
    single = load_baselines(write(tmp_path / "one", planted_rows()))
    assert single.parent_metrics(["randlabel_acc"])["baseline/input/randlabel_acc"] == pytest.approx(0.765)


def quickstart_like(threshold: float) -> tuple[pd.DataFrame, PhaseDiagram]:
    """The quickstart's shape: the linear encoder plateaus at 0.765 (never crosses), the MLP crosses at 8."""
    trials = make_phase_trials({"linear": math.inf, "mlp-64x2": 8.0}, y_values=(2, 4, 8, 16, 32), n_seeds=2,
                               threshold=threshold, low=0.5, high=1.0, noise=0.0, random_state=0)
    trials = add_capacity(trials)  # as analysis.load gives it
    linear = trials["encoder"] == "linear"
    trials.loc[linear, "randlabel_acc"] = 0.765
    diagram = PhaseDiagram(x="capacity", y="embedding_dim", metric="randlabel_acc", threshold=threshold,
                           increasing=True, n_boot=50, random_state=0).fit(trials)
    return trials, diagram


def test_the_linear_row_is_judged_against_the_probes_ceiling(tmp_path: Path) -> None:
    """s = 3: the 0-1-optimal halfspace reaches 0.886, the logistic probe on the invariant coordinates 0.765.
    At threshold 0.8 the theory alone predicts a crossing at embedding_dim 3; in the probe's units, never."""
    trials, diagram = quickstart_like(0.8)
    alone = theory_boundaries(diagram, trials).set_index("capacity")
    assert alone.loc["linear", "y_theory"] == 3.0 and alone.loc["linear", "censored_theory"] is None
    assert alone.loc["linear", "theory_ceiling"] == pytest.approx(31 / 35)  # 0.886: hypercube_linear_ceiling(3)
    assert "0-1-optimal" in alone.loc["linear", "theory_readout"]

    baselines = load_baselines(write(tmp_path, planted_rows()))
    probed = theory_boundaries(diagram, trials, baselines).set_index("capacity")
    assert probed.loc["linear", "censored_theory"] == "above" and math.isnan(probed.loc["linear", "y_theory"])
    assert probed.loc["linear", "oracle"] == "invariant_coords"
    assert probed.loc["linear", "oracle_value"] == pytest.approx(0.765)
    assert "0.765 < threshold 0.8" in probed.loc["linear", "theory_note"]
    # the MLP's ideal (the cluster posterior) reaches 1: its prediction stays 2^s = 8
    assert probed.loc["mlp-64x2", "y_theory"] == 8.0 and probed.loc["mlp-64x2", "oracle_value"] == 1.0


def test_in_probe_units_only_lowers_a_ceiling_the_probe_cannot_reach() -> None:
    found = TheoryBoundary(3.0, note="n", readout="r", ceiling=0.886, oracle="o")
    assert in_probe_units(found, {"o": 0.9}, threshold=0.8).y_critical == 3.0  # the probe reaches 0.8
    assert in_probe_units(found, {"o": 0.7}, threshold=0.8).censored == "above"
    assert in_probe_units(found, {"o": 0.7}, threshold=0.8, increasing=False).y_critical == 3.0  # falling: no cap
    assert in_probe_units(found, {}, threshold=0.8) is found
    assert in_probe_units(found, {"other": 0.1}, threshold=0.8).probe_ceiling != 0.1


def test_cell_references_average_each_cell(tmp_path: Path) -> None:
    trials, diagram = quickstart_like(0.95)
    refs = cell_references(diagram, trials, load_baselines(write(tmp_path, planted_rows())))
    assert set(refs["baseline"]) == {"invariant_coords", "cluster_posterior", "input"}
    assert len(refs) == 3 * 2 * 5  # baselines x capacities x embedding dims
    assert refs.loc[refs["baseline"] == "input", "value"].to_numpy() == pytest.approx(0.765)  # seeds 0.77, 0.76
    assert set(refs.loc[refs["baseline"] == "input", "kind"]) == {"input"}


def test_the_report_and_the_parent_run_show_the_baselines(tmp_path, write_study, log_study, tracking_uri) -> None:
    from mlflow import MlflowClient

    from analysis.report import analyze

    trials, _ = quickstart_like(0.95)
    study_dir = write_study(tmp_path / "runs" / "bl_report", trials.assign(study="bl_report"),
                            {"x": "capacity", "y": "embedding_dim", "metric": "randlabel_acc", "threshold": 0.95})
    write(study_dir, planted_rows())
    parent = log_study(tracking_uri, trials, "bl_report", study_dir, tmp_path / "artifacts")
    summary = analyze(study_dir, tracking_uri=tracking_uri, n_boot=50)
    rows = {r["capacity"]: r for r in summary["baselines"]["rows"]}
    assert rows["linear"]["plateau"] == pytest.approx(0.765)
    # per trial against its own seed's input (0.77, 0.76), then the cell's mean
    assert rows["linear"]["normalised"] == pytest.approx(np.mean([(0.765 - 0.77) / 0.23, (0.765 - 0.76) / 0.24]))
    best = trials[(trials["encoder"] == "mlp") & (trials["embedding_dim"] == rows["mlp-64x2"]["embedding_dim"])]
    inputs = best["seed"].map({0: 0.77, 1: 0.76})
    assert rows["mlp-64x2"]["normalised"] == pytest.approx(((best["randlabel_acc"] - inputs) / (1 - inputs)).mean())
    assert rows["linear"]["oracle_value"] == pytest.approx(0.765)
    assert rows["linear"]["theory_ceiling"] == pytest.approx(31 / 35)
    page = (study_dir / "phase" / "report.html").read_text()
    assert "<h2>Baselines</h2>" in page and "invariant_coords" in page and "0-1-optimal halfspace" in page
    run = MlflowClient(tracking_uri).get_run(parent)
    assert summary["mlflow"]["logged"], summary["mlflow"]["message"]
    assert run.data.metrics["baseline/invariant_coords/randlabel_acc"] == pytest.approx(0.765)
    assert run.data.metrics["baseline/input/probe_acc"] == 1.0
    assert run.data.metrics["normalised_plateau/mlp-64x2"] == pytest.approx(rows["mlp-64x2"]["normalised"], abs=1e-4)
    assert "**Baselines**" in run.data.tags["mlflow.note.content"]
