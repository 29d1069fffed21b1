"""`clphase ray up`: one loopback Ray that many studies join with --address (they skip Ray's start), and
`clphase ray down` ends exactly its processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from study import local_ray
from tests.study.conftest import free_port, write_spec

pytestmark = pytest.mark.slow


def _clphase(*args: str, env: dict, cwd: Path, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "study.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_studies_join_one_loopback_ray_and_down_ends_it(tmp_path):
    env = {**os.environ, "CLPHASE_HOME": str(tmp_path / "home")}
    env.pop("RAY_AUTH_MODE", None)
    port = free_port()
    up = _clphase("ray", "up", "--port", str(port), "--num-cpus", "2", env=env, cwd=tmp_path)
    assert up.returncode == 0, up.stderr[-2000:]
    address = f"127.0.0.1:{port}"
    assert address in up.stdout
    temp = Path(f"/tmp/clphase-ray-{os.getuid()}-{port}")
    try:
        raylets = [p for p in local_ray._processes_in(temp) if b"raylet" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(raylets) == 1
        for name, given in (("first", address), ("second", "auto")):  # auto: the head, with its token
            spec = write_spec(tmp_path, name=name)
            run = _clphase("run", str(spec), "--out", str(tmp_path / "runs"), "--address", given,
                           "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", env=env, cwd=tmp_path)
            assert run.returncode == 0 and "InvalidAuthToken" not in run.stderr, (run.stdout + run.stderr)[-3000:]
            trials = pd.read_parquet(tmp_path / "runs" / name / "trials.parquet")
            assert set(trials["status"]) == {"TERMINATED"} and len(trials) == 2
            # the trials ran on the head's one node: the driver started no Ray of its own
            assert trials["node_id"].nunique() == 1
            assert [p for p in local_ray._processes_in(temp) if b"raylet" in Path(f"/proc/{p}/cmdline").read_bytes()
                    ] == raylets
        status = _clphase("ray", "status", env=env, cwd=tmp_path)
        assert address in status.stdout
    finally:
        down = _clphase("ray", "down", env=env, cwd=tmp_path)
    assert down.returncode == 0
    assert local_ray._processes_in(temp) == []


def test_ray_up_on_a_port_in_use_is_refused_naming_the_port(tmp_path):
    import socket

    env = {**os.environ, "CLPHASE_HOME": str(tmp_path / "home")}
    with socket.socket() as holder:  # a program holding the port
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = _clphase("ray", "up", "--port", str(port), env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr and "--port" in done.stderr
    assert not (tmp_path / "home" / "ray" / "head.json").exists()
