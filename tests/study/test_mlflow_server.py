"""Studies against a real `mlflow server` on loopback, including one that goes away mid-study."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest
from mlflow import MlflowClient

from study.callback import config_of
from study.records import StudyRecords
from study.runner import run_study
from study.tracking import MlflowMirror
from tests.study.conftest import TINY, write_spec

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session")]


def _children(uri: str, study: str):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(study)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return client, [r for r in runs if "mlflow.parentRunId" in r.data.tags], runs


def test_a_study_records_into_a_tracking_server(tmp_path, mlflow_server):
    spec = write_spec(tmp_path, name="served")
    result = run_study(spec, out=tmp_path / "runs", tracking_uri=mlflow_server.uri)
    assert result.n_finished == 2
    client, children, runs = _children(mlflow_server.uri, "served")
    trials = pd.read_parquet(result.study_dir / "trials.parquet")
    assert {c.data.tags["trial_id"] for c in children} == set(trials["trial_id"])
    assert all(c.data.tags["mlflow.parentRunId"] == result.parent_run_id for c in children)
    assert [a.path for a in client.list_artifacts(result.parent_run_id)] == ["served.yaml"]
    assert (tmp_path / "artifacts").exists()  # the spec went through the server's artifact proxy


def _wait_for(path, *, finished: int = 0):
    while True:
        try:
            if (pd.read_parquet(path)["status"] == "TERMINATED").sum() >= finished:
                return
        except (FileNotFoundError, OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)


def _complete_in_mlflow(uri, study, trials, steps):
    client, children, _ = _children(uri, study)
    assert sorted(c.data.tags["trial_id"] for c in children) == sorted(trials["trial_id"])
    for child in children:
        assert child.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(child.info.run_id, "randlabel_acc")] == steps


def test_the_mirror_catches_up_when_the_server_returns(tmp_path, mlflow_server):
    """The driver-side mechanism, step by step against the real server: writes fail while it is down,
    nothing is lost, and the first retry after it returns writes everything exactly once."""
    records = StudyRecords(tmp_path / "study", "blip")
    mirror = MlflowMirror(mlflow_server.uri, "blip", tmp_path / "study", ["embedding_dim"])
    mirror.open(None, None)
    config = {"scenario": "hypercube", "embedding_dim": 4, "seed": 0}

    def report(trial_id, step):
        records.report(trial_id, config, {"step": step, "randlabel_acc": step / 100, "node_ip": "127.0.0.1"})
        mirror.report(trial_id, config, records.history[(trial_id, step)])

    records.start("t0", config)
    mirror.trial_started("t0", config)
    report("t0", 10)
    mirror.drain()  # the writes queued so far have reached the server
    mlflow_server.stop()
    report("t0", 20)
    records.finish("t0", config, "TERMINATED")
    mirror.trial_ended("t0", config, "TERMINATED", None)
    records.start("t1", config)
    mirror.trial_started("t1", config)
    report("t1", 10)
    assert mirror.dirty
    mirror.retry_if_due(records, config_of, every_s=0)
    assert mirror.dirty  # still down

    mlflow_server.start()
    mirror.retry_if_due(records, config_of, every_s=0)
    assert not mirror.dirty
    client, children, _ = _children(mlflow_server.uri, "blip")
    by_trial = {c.data.tags["trial_id"]: c for c in children}
    assert sorted(by_trial) == ["t0", "t1"]
    assert by_trial["t0"].info.status == "FINISHED" and by_trial["t1"].info.status == "RUNNING"
    assert [m.step for m in client.get_metric_history(by_trial["t0"].info.run_id, "randlabel_acc")] == [10, 20]
    assert [m.step for m in client.get_metric_history(by_trial["t1"].info.run_id, "randlabel_acc")] == [10]


def test_records_missed_while_the_server_was_down_are_written_on_resume(tmp_path, mlflow_server, capsys,
                                                                       trial_gate):
    spec = write_spec(tmp_path, name="outage", grid={"embedding_dim": [2, 3, 4, 5]},
                      trainable={**TINY, "steps": 120, "eval_every": 40})
    study_dir = tmp_path / "runs" / "outage"

    # One trial (the ticket holder) runs to its end while the server is up; the others are held after
    # their first report until the server is down, so the outage provably costs MLflow records.
    trial_gate.close(tickets=1)

    def outage():
        _wait_for(study_dir / "trials.parquet", finished=1)
        mlflow_server.stop()
        trial_gate.open()

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    result = run_study(spec, out=tmp_path / "runs", tracking_uri=mlflow_server.uri)
    thread.join(timeout=60)
    assert result.n_finished == 4  # Parquet has everything
    assert "--resume" in capsys.readouterr().out

    mlflow_server.start()
    _, children, _ = _children(mlflow_server.uri, "outage")
    assert len([c for c in children if c.info.status == "FINISHED"]) < 4  # the outage did cost MLflow records
    resumed = run_study(spec, out=tmp_path / "runs", tracking_uri=mlflow_server.uri, resume=True)
    assert resumed.n_finished == 4 and resumed.parent_run_id == result.parent_run_id
    _complete_in_mlflow(mlflow_server.uri, "outage", pd.read_parquet(study_dir / "trials.parquet"), [40, 80, 120])
