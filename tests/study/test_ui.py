"""``clphase ui`` for one local user: the URL comes once the server answers, one web worker, no job consumers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.study.conftest import free_port

pytestmark = pytest.mark.slow


def _descendants(pid: int) -> list[str]:
    """Command lines of every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        try:
            out.append((Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
        todo += children.get(child, [])
    return out


def test_ui_says_its_url_once_the_server_answers_and_runs_lean(tmp_path, tmp_store):
    experiment = MlflowClient(tmp_store).create_experiment("quickstart")
    port = free_port()
    ui = subprocess.Popen([sys.executable, "-m", "study.cli", "ui", "--tracking-uri", tmp_store, "--port", str(port)],
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                          env={k: v for k, v in os.environ.items() if k != "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"})
    processes: list[str] = []
    try:
        lines = []
        while not any(line.startswith("MLflow UI on") for line in lines):
            line = ui.stdout.readline()
            assert line or ui.poll() is None, lines
            lines.append(line)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:  # answers already
            assert answer.status == 200
        assert f"http://127.0.0.1:{port}/#/experiments?workflowType=machine_learning" in lines[-1]
        link = ui.stdout.readline()
        assert link.strip() == f"quickstart: http://127.0.0.1:{port}/#/experiments/{experiment}/runs?" \
                               "workflowType=machine_learning"
        processes = _descendants(ui.pid)
        assert not [p for p in processes if "huey" in p], processes
        assert len([p for p in processes if "uvicorn" in p and "--workers 1" in p]) == 1, processes
    finally:
        ui.send_signal(signal.SIGINT)
        try:
            code = ui.wait(timeout=60)
        except subprocess.TimeoutExpired:
            ui.kill()
            raise
    assert code == 0
    deadline = time.time() + 30
    while processes and time.time() < deadline:  # the server went with it
        processes = [p for p in _descendants(1) if f"--port {port}" in p]  # orphans too
        time.sleep(0.2)
    assert not processes
