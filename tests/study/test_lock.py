"""One writer per study folder, study folders inside --out, and resumes that keep to their store and
leave finished runs as they were."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from study.runner import StudyError, StudyLock, run_study, study_folder, study_store
from tests.study.conftest import write_spec

HOLDER = """
import sys
from pathlib import Path
from study.runner import StudyLock
StudyLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
sys.stdin.read()  # until the test closes it or kills this process
"""


def test_a_second_writer_is_refused_and_named(tmp_path):
    first = StudyLock(tmp_path / "s")
    first.acquire()
    holder = json.loads((tmp_path / "s" / ".lock").read_text())
    assert holder["pid"] == os.getpid()
    with pytest.raises(StudyError, match=rf"being written by another clphase run \(pid {os.getpid()} on "):
        StudyLock(tmp_path / "s").acquire()
    first.release()
    assert not (tmp_path / "s" / ".lock").exists()
    again = StudyLock(tmp_path / "s")
    again.acquire()
    again.release()


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path):
    study_dir = tmp_path / "s"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(study_dir)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StudyError, match=f"pid {holder.pid} "):
            StudyLock(study_dir).acquire()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert json.loads((study_dir / ".lock").read_text())["pid"] == holder.pid  # the dead holder's file is left
    lock = StudyLock(study_dir)
    lock.acquire()
    assert json.loads((study_dir / ".lock").read_text())["pid"] == os.getpid()
    lock.release()


def test_a_study_folder_is_always_a_child_of_out(tmp_path):
    out = tmp_path / "runs"
    assert study_folder(out, "a") == out.resolve() / "a"
    (out).mkdir()
    (out / "elsewhere").symlink_to(tmp_path)
    with pytest.raises(StudyError, match="not to a folder inside --out"):
        study_folder(out, "elsewhere")
    with pytest.raises(StudyError, match="not to a folder inside --out"):
        study_folder(out, "..")
    (tmp_path / "file").write_text("")
    with pytest.raises(StudyError, match="is a file"):
        study_folder(tmp_path / "file", "a")


def test_a_resumed_study_keeps_to_its_recorded_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    recorded = {"tracking_uri": f"sqlite:///{tmp_path}/a.db"}
    assert study_store(recorded, None) == recorded["tracking_uri"]
    assert study_store(recorded, f"sqlite:///{tmp_path}/a.db") == recorded["tracking_uri"]
    with pytest.raises(StudyError, match="--tracking-uri names"):
        study_store(recorded, f"sqlite:///{tmp_path}/b.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/b.db")
    with pytest.raises(StudyError, match="MLFLOW_TRACKING_URI names"):
        study_store(recorded, None)
    monkeypatch.chdir(tmp_path)
    assert study_store(None, "sqlite:///rel.db") == f"sqlite:///{tmp_path.resolve()}/rel.db"  # one store from anywhere


def _parent_runs(store: str, name: str) -> list:
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    return [r for r in runs if r.data.tags.get("clphase.role") == "parent"], runs


@pytest.mark.slow
def test_one_writer_at_a_time_and_a_failed_resume_changes_no_finished_run(tmp_path, tmp_store, trial_gate, monkeypatch):
    spec = write_spec(tmp_path, name="busy")
    out = tmp_path / "runs"
    argv = [sys.executable, "-m", "study.cli", "run", str(spec), "--out", str(out), "--tracking-uri", tmp_store]
    log = open(tmp_path / "first.log", "w")
    trial_gate.close()  # every trial waits after its first report: the first run is provably mid-study
    first = subprocess.Popen(argv, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        trial_gate.wait_held(1, alive=lambda: first.poll() is None,
                             describe=lambda: (tmp_path / "first.log").read_text()[-3000:])
        for extra in ([], ["--resume"]):
            second = subprocess.run(argv + extra, cwd=tmp_path, capture_output=True, text=True, timeout=300)
            assert second.returncode == 2, second.stderr
            assert f"being written by another clphase run (pid {first.pid} " in second.stderr
        trial_gate.open()
        assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()[-3000:]
    finally:
        trial_gate.open()
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    study_dir = out / "busy"
    assert not (study_dir / ".lock").exists()
    assert len(pd.read_parquet(study_dir / "trials.parquet")) == 2
    parents, runs = _parent_runs(tmp_store, "busy")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    statuses = {r.info.run_id: r.info.status for r in runs}

    # A resume that fails after it reopened the parent run gives the parent back its status.
    import study.baselines

    def fail(*args):
        raise RuntimeError("the baselines could not be measured")

    monkeypatch.setattr(study.baselines, "ensure_baselines", fail)  # after the parent reopened (no trial is left)
    with pytest.raises(RuntimeError, match="baselines could not"):
        run_study(spec, out=out, tracking_uri=tmp_store, resume=True)
    _, runs = _parent_runs(tmp_store, "busy")
    assert {r.info.run_id: r.info.status for r in runs} == statuses
    assert not (study_dir / ".lock").exists()
