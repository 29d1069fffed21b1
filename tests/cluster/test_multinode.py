"""A study on a real two-node Ray cluster on this machine (``ray start`` head + worker, logical GPUs,
token authentication): trials spread over both nodes and survive losing the worker node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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


def read_trials(study_dir: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(study_dir / "trials.parquet")
    except (FileNotFoundError, OSError, ValueError):  # not written yet, or replaced as we read
        return pd.DataFrame(columns=["trial_id", "status", "node_id"])


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


def test_a_study_spreads_its_fractional_gpu_trials_over_both_nodes(two_nodes, driver, tmp_path):
    # Four trials for four slots (two per node). Each lasts long enough (~10 s) that the head cannot
    # finish one and hand its actor to a trial whose actor is still starting on the worker.
    spec = write_spec(tmp_path, name="spread", grid={"embedding_dim": [2, 4, 8, 16]},
                      trainable={**TINY, "steps": 800, "eval_every": 200}, resources={"cpu": 1, "gpu": 0.25})
    out, store, log = tmp_path / "runs", f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "driver.log"
    finish(driver(spec, out, store), log)

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


def test_a_study_survives_losing_the_worker_node(two_nodes, driver, tmp_path):
    # Six trials for four slots: when the first one finishes, a trial on the worker is between two
    # checkpoints (the worker's first two run behind or beside the head's, or its next ones have begun),
    # and stays there for seconds, long enough to be seen in trials.parquet (flushed every 5 s).
    spec = write_spec(tmp_path, name="lose_node", grid={"embedding_dim": [2, 4, 8]}, seeds=[0, 1],
                      trainable={**TINY, "steps": 1200, "eval_every": 300}, resources={"cpu": 1, "gpu": 0.25},
                      max_failures=2)
    out, store, log = tmp_path / "runs", f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "driver.log"
    study_dir = out / "lose_node"
    worker_id, head_id = two_nodes.node_ids["worker"], two_nodes.node_ids["head"]
    study = driver(spec, out, store)

    killed: set[str] = set()
    seen: list[str] = []  # what the loop saw, for the failure message
    deadline = time.time() + 300
    while not killed and study.poll() is None and time.time() < deadline:
        trials = read_trials(study_dir)
        snapshot = " ".join(f"{r['trial_id']}:{r['status']}@{str(r['node_id'])[:4]}:{r.get('step')}"
                            for r in trials.to_dict("records"))
        if not seen or seen[-1] != snapshot:
            seen.append(snapshot)
        # RUNNING with two reports or more to come: trials.parquet lags by up to 5 s, and a trial a
        # report from its end may already be done on the node.
        to_come = trials.get("steps", 0) - trials.get("step", 0)
        running_on_worker = trials[(trials.status == "RUNNING") & (trials.node_id == worker_id)
                                   & (to_come >= 2 * trials.get("eval_every", 0))]
        if (trials.status == "TERMINATED").any() and len(running_on_worker):
            two_nodes.kill("worker")
            killed = set(running_on_worker.trial_id)
        else:
            time.sleep(0.3)
    assert killed, (f"no moment with a finished trial and a trial running on the worker ({worker_id[:4]}):\n"
                    + "\n".join(seen[-8:]) + "\n" + log.read_text()[-2000:])
    finish(study, log)

    trials = pd.read_parquet(study_dir / "trials.parquet")
    history = pd.read_parquet(study_dir / "history.parquet")
    assert len(trials) == 6
    assert_each_trial_once(trials, history, store, "lose_node")
    tune_state = tune_trial_state(study_dir)
    interrupted = {trial_id for trial_id, run in tune_state.items() if run["num_failures"] >= 1}
    # the trials seen running on the worker with a checkpoint were cut off (unless one still raced to its end)
    assert interrupted & killed, (killed, interrupted)
    for trial_id in interrupted:
        assert trials.set_index("trial_id").loc[trial_id].node_id == head_id  # finished on the surviving node
    for trial_id in interrupted & killed:
        # Restored from a checkpoint, not restarted: fewer iterations since the restore than in all.
        last = tune_state[trial_id]["last_result"]
        assert last["iterations_since_restore"] < last["training_iteration"], last
