from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

TINY = {"scenario": "hypercube", "dim": 8, "n_invariant": 2, "steps": 40, "eval_every": 20, "batch_size": 64,
        "n_eval": 256, "lr": 0.003}


def write_spec(folder: Path, name: str = "tiny", **fields: Any) -> Path:
    spec = {"name": name, "trainable": dict(TINY), "grid": {"embedding_dim": [2, 4]}, "seeds": [0]}
    spec.update(fields)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tmp_store(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 with a sqlite store; stop() and start() again on the same port."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout: float = 90) -> None:
        import subprocess
        import sys
        import time
        import urllib.request

        log = open(self.folder / "mlflow_server.log", "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
             "--artifacts-destination", str(self.folder / "artifacts"), "--workers", "1"],
            cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError("mlflow server did not start: " + (self.folder / "mlflow_server.log").read_text()[-2000:])

    def stop(self) -> None:
        import os
        import signal

        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except Exception:  # noqa: BLE001
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None


@pytest.fixture
def mlflow_server(tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    yield server
    server.stop()
