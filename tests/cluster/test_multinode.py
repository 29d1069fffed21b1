"""A study on a real two-node Ray cluster on this machine (``ray start`` head + worker, logical GPUs,
token authentication): trials spread over both nodes and survive losing the worker node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.study.conftest import TINY, write_spec

pytestmark = pytest.mark.slow


@pytest.fixture
def driver(two_nodes, tmp_path):
    """Start ``clphase run SPEC --address <cluster>`` as its own process (the test process may hold another
    Ray); whatever the test's outcome, the driver's process group is gone after it."""
    started: list[subprocess.Popen] = []

    def start(spec: Path, out: Path, store: str) -> subprocess.Popen:
        with open(tmp_path / "driver.log", "w") as log:
            started.append(subprocess.Popen(
                [sys.executable, "-m", "study.cli", "run", str(spec), "--address", two_nodes.address,
                 "--out", str(out), "--tracking-uri", store],
                cwd=tmp_path, env=two_nodes.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            ))
        return started[-1]

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def finish(driver: subprocess.Popen, log: Path, timeout: float = 420) -> None:
    driver.wait(timeout=timeout)
    assert driver.returncode == 0, log.read_text()[-4000:]


def mlflow_children(store: str, study: str) -> list:
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name(study)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def expected_steps(row: pd.Series) -> list[int]:
    return list(range(int(row["eval_every"]), int(row["steps"]) + 1, int(row["eval_every"])))


def assert_each_trial_once(trials: pd.DataFrame, history: pd.DataFrame, store: str, study: str) -> None:
    """Parquet and MLflow hold every trial exactly once, with every reported step exactly once."""
    assert trials["trial_id"].is_unique
    assert set(trials["status"]) == {"TERMINATED"}
    client = MlflowClient(store)
    children = mlflow_children(store, study)
    assert Counter(c.data.tags["trial_id"] for c in children) == Counter(set(trials["trial_id"]))
    by_trial = {c.data.tags["trial_id"]: c for c in children}
    for _, row in trials.iterrows():
        steps = expected_steps(row)
        assert sorted(history.loc[history.trial_id == row.trial_id, "step"]) == steps
        child = by_trial[row.trial_id]
        assert child.info.status == "FINISHED"
        assert child.data.tags.get("node_id") == row.node_id
        assert [m.step for m in client.get_metric_history(child.info.run_id, "randlabel_acc")] == steps


def test_a_study_spreads_its_fractional_gpu_trials_over_both_nodes(two_nodes, driver, tmp_path, trial_gate):
    # Four trials for four slots (two per node). The gate holds each after its first report until all
    # four are running at once, so no trial can hand its actor to another and each node runs two.
    spec = write_spec(tmp_path, name="spread", grid={"embedding_dim": [2, 4, 8, 16]},
                      trainable={**TINY, "steps": 80, "eval_every": 40}, resources={"cpu": 1, "gpu": 0.25})
    out, store, log = tmp_path / "runs", f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "driver.log"
    trial_gate.close()
    study = driver(spec, out, store)
    held = trial_gate.wait_held(4, alive=lambda: study.poll() is None, describe=lambda: log.read_text()[-3000:])
    trial_gate.open()
    finish(study, log)
    assert Counter(h["node_id"] for h in held.values()) == Counter(dict.fromkeys(two_nodes.node_ids.values(), 2))

    study_dir = out / "spread"
    trials = pd.read_parquet(study_dir / "trials.parquet")
    history = pd.read_parquet(study_dir / "history.parquet")
    assert len(trials) == 4
    assert set(trials["node_id"]) == set(two_nodes.node_ids.values())  # both nodes ran trials, nothing else did
    assert_each_trial_once(trials, history, store, "spread")
    # Every trial's checkpoint is in the study's shared storage (--out), whichever node wrote it.
    tune_dir = study_dir / "tune"
    for trial_id in trials["trial_id"]:
        (trial_dir,) = [d for d in tune_dir.iterdir() if d.is_dir() and trial_id in d.name]
        assert list(trial_dir.glob("checkpoint_*/state.pt")), f"no checkpoint in {trial_dir}"


def tune_trial_state(study_dir: Path) -> dict[str, dict]:
    """trial_id -> Tune's own record of the trial (failures, last result) from its experiment state."""
    (path,) = sorted((study_dir / "tune").glob("experiment_state-*.json"))[-1:]
    state = json.loads(path.read_text())
    return {json.loads(trial)["trial_id"]: json.loads(run) for trial, run in state["trial_data"]}


def test_a_study_survives_losing_the_worker_node(two_nodes, driver, tmp_path, trial_gate):
    # Six trials for four slots (two per node). The gate holds every trial right after its first
    # checkpointed report, so at the kill the worker's trials are provably mid-run with a checkpoint the
    # driver knows; nothing here depends on how fast a trial runs.
    spec = write_spec(tmp_path, name="lose_node", grid={"embedding_dim": [2, 4, 8]}, seeds=[0, 1],
                      trainable={**TINY, "steps": 120, "eval_every": 40}, resources={"cpu": 1, "gpu": 0.25},
                      max_failures=2)
    out, store, log = tmp_path / "runs", f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "driver.log"
    study_dir = out / "lose_node"
    worker_id, head_id = two_nodes.node_ids["worker"], two_nodes.node_ids["head"]
    trial_gate.close()
    study = driver(spec, out, store)
    held = trial_gate.wait_held(4, alive=lambda: study.poll() is None, describe=lambda: log.read_text()[-3000:])
    assert Counter(h["node_id"] for h in held.values()) == {head_id: 2, worker_id: 2}, held
    assert all(h["step"] == 40 for h in held.values()), held
    killed = {trial_id for trial_id, h in held.items() if h["node_id"] == worker_id}
    two_nodes.kill("worker")
    trial_gate.open()
    finish(study, log)

    trials = pd.read_parquet(study_dir / "trials.parquet")
    history = pd.read_parquet(study_dir / "history.parquet")
    assert len(trials) == 6
    assert_each_trial_once(trials, history, store, "lose_node")
    tune_state = tune_trial_state(study_dir)
    interrupted = {trial_id for trial_id, run in tune_state.items() if run["num_failures"] >= 1}
    assert interrupted == killed  # exactly the worker's trials were cut off, each once
    for trial_id in killed:
        assert tune_state[trial_id]["num_failures"] == 1
        assert trials.set_index("trial_id").loc[trial_id].node_id == head_id  # finished on the surviving node
        # Restored from its checkpoint at step 40, not restarted: 2 of its 3 iterations since the restore.
        last = tune_state[trial_id]["last_result"]
        assert (last["iterations_since_restore"], last["training_iteration"]) == (2, 3), last
