"""``analyze`` / ``clphase analyze`` on planted study dirs, with a real sqlite MLflow store."""

from __future__ import annotations

import json
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
    assert "theory: 3/5 rows agree" in out  # mlp-64x2 planted at 24 and mlp-256x2 below the range: not 2^3


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
