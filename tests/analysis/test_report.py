"""``analyze`` / ``clphase analyze`` on planted study dirs, with a real sqlite MLflow store."""

from __future__ import annotations

import json
import math
import re

import pytest
from mlflow import MlflowClient

from analysis.report import analyze, main

FILES = {"phase_diagram.png", "metric_curves.png", "loss_vs_accuracy.png", "theory_agreement.png",
         "summary.json", "report.html"}


def _parent(tracking_uri, study, study_dir, artifacts) -> str:
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(study)
    experiment = found.experiment_id if found else client.create_experiment(study, artifact_location=artifacts.as_uri())
    run = client.create_run(experiment, tags={"clphase.role": "parent", "clphase.study_dir": str(study_dir)})
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def test_analyze_writes_the_report_with_spec_defaults(study_dir, planted_critical):
    summary = analyze(study_dir, log_to_mlflow=False, n_boot=200)
    phase = study_dir / "phase"
    assert {p.name for p in phase.iterdir()} == FILES
    on_disk = json.loads((phase / "summary.json").read_text())
    assert on_disk["study"] == "planted" and on_disk["diagram"]["metric"] == "randlabel_acc"
    rows = {r["capacity"]: r for r in summary["boundary"]}
    assert rows["linear"]["censored"] == "above" and rows["linear"]["y_critical"] is None
    assert rows["linear"]["censored_theory"] == "above" and rows["linear"]["agree"] is True  # s = 3: ceiling 0.886
    assert rows["mlp-16x1"]["y_low"] <= planted_critical["mlp-16x1"] <= rows["mlp-16x1"]["y_high"]
    assert rows["mlp-16x1"]["y_theory"] == 8.0
    assert summary["theory"]["agreement"]["n_predicted"] == 5
    assert summary["mlflow"]["logged"] is False
    html = (phase / "report.html").read_text()
    assert len(re.findall(r"src='data:image/png;base64,", html)) == 4
    assert not re.search(r"src=['\"](?!data:)", html)  # self-contained: nothing fetched


def test_flags_override_the_spec(study_dir):
    summary = analyze(study_dir, threshold=0.7, slice="none", metric="probe_acc", log_to_mlflow=False, n_boot=50)
    assert summary["diagram"]["threshold"] == 0.7 and summary["diagram"]["metric"] == "probe_acc"
    assert summary["diagram"]["slice"] is None


def test_artifacts_land_in_the_parent_run_of_this_study_dir(study_dir, tmp_path, tracking_uri):
    artifacts = tmp_path / "artifacts"
    mine = _parent(tracking_uri, "planted", study_dir.resolve(), artifacts)
    other = _parent(tracking_uri, "planted", tmp_path / "elsewhere", artifacts)  # newer, another study dir
    summary = analyze(study_dir, tracking_uri=tracking_uri, n_boot=50)
    assert summary["mlflow"]["logged"] and summary["mlflow"]["parent_run_id"] == mine
    client = MlflowClient(tracking_uri)
    listed = {a.path for a in client.list_artifacts(mine, "phase")}
    assert listed == {f"phase/{name}" for name in FILES}
    assert not client.list_artifacts(other)


def test_without_a_tracking_uri_the_study_s_own_store_is_used(study_dir, tmp_path, tracking_uri, monkeypatch):
    """``clphase analyze`` after ``clphase run --tracking-uri ...``: the store study.json names, not the default."""
    monkeypatch.chdir(tmp_path)  # MLflow's default store would be ./mlflow.db here
    mine = _parent(tracking_uri, "planted", study_dir.resolve(), tmp_path / "artifacts")
    (study_dir / "study.json").write_text(json.dumps({"tracking_uri": tracking_uri}))
    summary = analyze(study_dir, n_boot=50)
    assert summary["mlflow"]["tracking_uri"] == tracking_uri
    assert summary["mlflow"]["logged"] and summary["mlflow"]["parent_run_id"] == mine
    assert not (tmp_path / "mlflow.db").exists()


def test_without_a_parent_run_the_report_is_written_and_says_so(tmp_path, planted, write_study, tracking_uri):
    study = write_study(tmp_path / "runs" / "lonely", planted.assign(study="lonely"),
                        {"x": "capacity", "y": "embedding_dim", "metric": "randlabel_acc", "threshold": 0.9})
    summary = analyze(study, tracking_uri=tracking_uri, n_boot=50)
    assert not summary["mlflow"]["logged"] and "no MLflow experiment 'lonely'" in summary["mlflow"]["message"]
    assert (study / "phase" / "report.html").exists()
    summary = analyze(study, tracking_uri=f"sqlite:///{tmp_path / 'absent.db'}", n_boot=50)
    assert "no MLflow store" in summary["mlflow"]["message"] and not (tmp_path / "absent.db").exists()


def test_main_prints_where_the_report_went(study_dir, capsys):
    assert main([str(study_dir / "trials.parquet"), "--no-mlflow", "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert str(study_dir / "phase" / "report.html") in out
    # linear (both never reach it) and mlp-16x1 (planted at 6: (4, 8] holds 2^3) agree; mlp-64x1 (planted at 12:
    # (8, 16] only touches 8), mlp-64x2 (24) and mlp-256x2 (below the range) do not
    assert "theory: 2/5 rows agree" in out
    assert "verdict: The data partly agree with the theory: 2 of 5 rows (40%)" in out


@pytest.mark.parametrize("case, message", [
    ("missing_metric", r"metric column 'ari' is not in the trials table; its columns: .*randlabel_acc"),
    ("empty", r"the trials table is empty"),
    ("all_failed", r"all 175 trials are unusable \(failed: 175\)"),
    ("no_spec_choice", r"analyze needs x, y, metric, threshold: give --x, --y, --metric, --threshold"),
    ("no_study", r"does not exist"),
])
def test_bad_input_is_a_message_and_an_exit_code_not_a_traceback(case, message, tmp_path, planted, write_study,
                                                                  capsys):
    spec = {"x": "capacity", "y": "embedding_dim", "metric": "randlabel_acc", "threshold": 0.9}
    argv = ["--no-mlflow"]
    if case == "missing_metric":
        study, argv = write_study(tmp_path / "s", planted, spec), argv + ["--metric", "ari"]
    elif case == "empty":
        study = write_study(tmp_path / "s", planted.iloc[:0], spec)
    elif case == "all_failed":
        study = write_study(tmp_path / "s", planted.assign(status="ERROR"), spec)
    elif case == "no_spec_choice":
        study = write_study(tmp_path / "s", planted)
    else:
        study = tmp_path / "missing"
    assert main([str(study), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clphase analyze: error: ") and re.search(message, err) and "Traceback" not in err


def test_main_usage_errors_return_a_code():
    assert main([]) == 2
    assert main(["--help"]) == 0


HEAD = """# Question: when does a planted encoder recover its clusters?
# Run:      clphase run planted
# Expect:   (Planted 2024) MLPs past embedding_dim 8, the linear one never.
"""


def test_the_report_opens_with_question_expectation_and_verdict_and_prints_no_python(study_dir):
    spec = study_dir / "spec.yaml"
    spec.write_text(HEAD + spec.read_text())
    summary = analyze(study_dir, log_to_mlflow=False, n_boot=50)
    page = (study_dir / "phase" / "report.html").read_text()
    order = [page.index(s) for s in ("Question.</b> When does a planted", "Expectation.</b> (Planted 2024)",
                                     "Verdict.</b> The data partly agree", "<img alt='phase_diagram'",
                                     "<h2>Boundaries</h2>", "<img alt='theory_agreement'")]
    assert order == sorted(order)
    text = re.sub(r"<[^>]+>|data:image/png;base64,[^']+", " ", page)
    assert not re.search(r"\b(None|nan|NaN|True|False)\b", text)
    assert summary["theory"]["agreement"]["fraction_agree"] == pytest.approx(0.4)
    assert [d["row"] for d in summary["theory"]["disagree"]] == ["mlp-64x1", "mlp-64x2", "mlp-256x2"]


def test_the_parent_run_carries_the_answer(study_dir, tmp_path, tracking_uri):
    spec = study_dir / "spec.yaml"
    spec.write_text(HEAD + spec.read_text())
    parent = _parent(tracking_uri, "planted", study_dir.resolve(), tmp_path / "artifacts")
    summary = analyze(study_dir, tracking_uri=tracking_uri, n_boot=50)
    assert summary["mlflow"]["logged"], summary["mlflow"]["message"]
    run = MlflowClient(tracking_uri).get_run(parent)
    assert run.data.params == {"x": "capacity", "y": "embedding_dim", "metric": "randlabel_acc", "threshold": "0.9",
                               "increasing": "inferred", "n_boot": "50"}  # the direction as chosen
    metrics = run.data.metrics
    rows = {r["capacity"]: r for r in summary["boundary"]}
    assert metrics["y_critical/mlp-16x1"] == pytest.approx(rows["mlp-16x1"]["y_critical"], rel=1e-3)
    assert (metrics["y_low/mlp-16x1"], metrics["y_high/mlp-16x1"]) == (4.0, 8.0)
    assert metrics["censored/linear"] == 1 and metrics["censored/mlp-256x2"] == -1 and metrics["censored/mlp-16x1"] == 0
    assert "y_critical/linear" not in metrics
    assert metrics["theory_agreement"] == pytest.approx(0.4)
    assert (metrics["trials_total"], metrics["trials_done"], metrics["trials_failed"], metrics["trials_diverged"]) \
        == (175, 175, 0, 0)
    description = run.data.tags["mlflow.note.content"]
    assert description.startswith("**Verdict.** The data partly agree")
    assert "**Question.** When does a planted encoder" in description and "**Expectation.** (Planted" in description
    assert "| mlp-16x1 | 6.47 | (4, 8] | 8 | yes |" in description
    assert run.data.tags["verdict"] == "2 of 5 rows agree with the theory"


def test_an_analysis_with_other_choices_leaves_the_parent_s_answer_alone(study_dir, tmp_path, tracking_uri):
    parent = _parent(tracking_uri, "planted", study_dir.resolve(), tmp_path / "artifacts")
    analyze(study_dir, tracking_uri=tracking_uri, n_boot=50)
    again = analyze(study_dir, tracking_uri=tracking_uri, n_boot=50, threshold=0.7)
    assert not again["mlflow"]["logged"] and "threshold=0.9 (now 0.7)" in again["mlflow"]["message"]
    assert MlflowClient(tracking_uri).get_run(parent).data.params["threshold"] == "0.9"
    assert (study_dir / "phase" / "summary.json").exists()
    for other in ({"increasing": False}, {"n_boot": 20}):  # the direction and the bootstrap are choices too
        again = analyze(study_dir, tracking_uri=tracking_uri, **{"n_boot": 50, **other})
        assert not again["mlflow"]["logged"] and "(now " in again["mlflow"]["message"]
    assert MlflowClient(tracking_uri).get_run(parent).data.params["n_boot"] == "50"


def test_a_boundary_the_new_answer_lacks_is_cleared_on_the_parent(study_dir, tmp_path, tracking_uri):
    import pandas as pd

    parent = _parent(tracking_uri, "planted", study_dir.resolve(), tmp_path / "artifacts")
    analyze(study_dir, tracking_uri=tracking_uri, n_boot=50)
    assert math.isfinite(MlflowClient(tracking_uri).get_run(parent).data.metrics["y_critical/mlp-16x1"])
    trials = pd.read_parquet(study_dir / "trials.parquet")  # more trials came in: mlp-16x1 recovers everywhere now
    row = (trials["encoder"] == "mlp") & (trials["width"] == 16) & (trials["depth"] == 1)
    assert row.any()
    trials.loc[row, "randlabel_acc"] = 1.0
    trials.to_parquet(study_dir / "trials.parquet")
    summary = analyze(study_dir, tracking_uri=tracking_uri, n_boot=50)
    assert summary["mlflow"]["logged"], summary["mlflow"]["message"]
    metrics = MlflowClient(tracking_uri).get_run(parent).data.metrics
    assert metrics["censored/mlp-16x1"] == -1
    assert all(math.isnan(metrics[f"{c}/mlp-16x1"]) for c in ("y_critical", "y_low", "y_high"))
    assert "y_critical/linear" not in metrics  # what no answer ever had is not written
    assert math.isfinite(metrics["theory_agreement"])
    trials.drop(columns=["n_invariant"]).to_parquet(study_dir / "trials.parquet")  # the theory predicts nothing now
    summary = analyze(study_dir, tracking_uri=tracking_uri, n_boot=50)
    assert summary["mlflow"]["logged"] and not summary["theory"]["agreement"]["n_predicted"]
    metrics = MlflowClient(tracking_uri).get_run(parent).data.metrics
    assert math.isnan(metrics["theory_agreement"]) and math.isnan(metrics["theory_rows_agree"])




def test_the_report_names_the_searcher_and_the_share_of_the_grid_it_ran(study_dir):
    summary = analyze(study_dir, log_to_mlflow=False, n_boot=50)
    n = summary["n_trials"]
    assert summary["search"] == {"type": "grid", "configs": n}
    assert f"Searcher: grid, every cell ({n} trials)." in (study_dir / "phase" / "report.html").read_text()

    # the searcher comes from the spec clphase run recorded in study.json, its figures from the search's own record
    (study_dir / "study.json").write_text(json.dumps({"spec": {"name": "planted", "searcher": {"type": "boundary"}}}))
    (study_dir / "boundary_search.json").write_text(json.dumps(
        {"searcher": "boundary", "configs": 12, "grid_configs": 30, "fraction_of_grid": 0.4,
         "rounds": [{"round": r, "cells": 2, "configs": 4} for r in (1, 2, 3)]}))  # as the searcher writes it
    summary = analyze(study_dir, log_to_mlflow=False, n_boot=50)
    assert summary["search"] == {"type": "boundary", "configs": 12, "grid_configs": 30, "fraction_of_grid": 0.4,
                                 "rounds": 3}
    text = "Searcher: boundary, 12 of 30 grid configs (40%) in 3 rounds."
    assert text in (study_dir / "phase" / "report.html").read_text()
