"""Interrupt a real driver mid-study (Ctrl-C, or SIGKILL of its whole process group), resume it,
and check that Parquet and MLflow hold every trial exactly once with every step exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pandas as pd
import pytest
from mlflow import MlflowClient

from study.runner import run_study
from tests.study.conftest import TINY, write_spec

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session")]
STEPS = [40, 80, 120, 160]


def _finished(study_dir) -> int:
    try:
        return int((pd.read_parquet(study_dir / "trials.parquet")["status"] == "TERMINATED").sum())
    except (FileNotFoundError, OSError, ValueError):
        return 0


@pytest.mark.parametrize("how", ["sigint", "sigkill"])
def test_an_interrupted_study_resumes_without_loss_or_duplicates(tmp_path, tmp_store, how, trial_gate, monkeypatch):
    grid = {"capacity": [{"encoder": "linear"}, {"encoder": "mlp", "width": 16, "depth": 1}],
            "embedding_dim": [2, 4, 8]}
    spec = write_spec(tmp_path, name="killme", grid=grid, trainable={**TINY, "steps": 160, "eval_every": 40})
    out = tmp_path / "runs"
    study_dir = out / "killme"
    log = open(tmp_path / "driver.log", "w")
    # Two trials hold tickets and run to their end; every other one is held after its first checkpoint,
    # so the study is provably mid-way (2 of 6 finished, the rest checkpointed) when it is interrupted.
    trial_gate.close(tickets=2)
    driver = subprocess.Popen(
        [sys.executable, "-m", "study.cli", "run", str(spec), "--out", str(out), "--tracking-uri", tmp_store],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )

    def describe() -> str:
        return (tmp_path / "driver.log").read_text()[-3000:]

    trial_gate.wait_held(2, alive=lambda: driver.poll() is None, describe=describe)  # both slots held
    while _finished(study_dir) < 2:  # the ticket holders' rows are written as they end
        assert driver.poll() is None, describe()
        time.sleep(0.2)
    if how == "sigint":
        os.kill(driver.pid, signal.SIGINT)
    else:
        os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=120)
    if how == "sigkill":
        time.sleep(1)
        os.killpg(driver.pid, signal.SIGKILL) if _alive_group(driver.pid) else None
    before = pd.read_parquet(study_dir / "trials.parquet")
    done_before = set(before.loc[before.status == "TERMINATED", "trial_id"])
    assert done_before == trial_gate.passed()
    if how == "sigint":  # Ctrl-C: the study says how to go on and does not exit as a success
        assert driver.returncode == 130, describe()
        assert f"continue it with  clphase run {spec} --resume --out {out}" in describe()
        client = MlflowClient(tmp_store)
        children = [r for r in client.search_runs([client.get_experiment_by_name("killme").experiment_id])
                    if "mlflow.parentRunId" in r.data.tags]
        status = {c.data.tags["trial_id"]: c.info.status for c in children}
        assert {t for t, v in status.items() if v == "FINISHED"} == done_before
        assert set(status.values()) <= {"FINISHED", "KILLED"}  # the trials cut short are not left RUNNING
    trial_gate.open()

    result = run_study(spec, out=out, tracking_uri=tmp_store, resume=True)
    assert (result.n_trials, result.n_finished, result.n_failed, result.interrupted) == (6, 6, 0, False)

    trials = pd.read_parquet(study_dir / "trials.parquet")
    history = pd.read_parquet(study_dir / "history.parquet")
    assert len(trials) == 6 and trials["trial_id"].is_unique and trials["cell"].is_unique
    assert set(trials["status"]) == {"TERMINATED"}
    assert done_before <= set(trials["trial_id"])
    for _, steps in history.groupby("trial_id")["step"]:
        assert sorted(steps) == STEPS

    client = MlflowClient(tmp_store)
    experiment = client.get_experiment_by_name("killme")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("clphase.role") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert Counter(c.data.tags["trial_id"] for c in children) == Counter(set(trials["trial_id"]))
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert [m.step for m in client.get_metric_history(child.info.run_id, "randlabel_acc")] == STEPS

    # Resuming the ended study runs nothing: Ray is not asked for, and the records and the parent stay as they are.
    import study.runner as runner

    asked, real = [], runner.init_ray
    monkeypatch.setattr(runner, "init_ray", lambda *args: asked.append(args) or real(*args))
    summary = (study_dir / "run_summary.json").read_text()
    again = run_study(spec, out=out, tracking_uri=tmp_store, resume=True)
    assert asked == []
    assert (again.n_finished, again.interrupted, again.parent_run_id) == (6, False, result.parent_run_id)
    pd.testing.assert_frame_equal(pd.read_parquet(study_dir / "trials.parquet"), trials)
    assert (study_dir / "run_summary.json").read_text() == summary
    assert client.get_run(result.parent_run_id).info.status == "FINISHED"


def _alive_group(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
