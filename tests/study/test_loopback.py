"""A local study listens on loopback only: every listening socket of the driver's process tree (Ray's GCS,
raylet, agents, autoscaler monitor, dashboard head and workers included), read from the kernel's socket
table while trials are provably running, is bound to 127.0.0.1 or ::1."""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.study.conftest import free_port, write_spec

# Ray processes that listen, by what their command line holds: all of them must appear before the check.
LISTENERS = {
    "gcs": "gcs_server", "raylet": "raylet/raylet", "dashboard agent": "ray::DashboardAgent",
    "runtime env agent": "ray::RuntimeEnvAgent", "autoscaler monitor": "ray/autoscaler/",
    "dashboard head": "ray/dashboard/dashboard.py",
}


def _listening() -> dict[int, tuple[str, int]]:
    """Socket inode -> (address, port) of every listening TCP socket (/proc/net/tcp and tcp6)."""
    out = {}
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            hexip, hexport = fields[1].split(":")
            raw = bytes.fromhex(hexip)
            # the kernel prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            out[int(fields[9])] = (socket.inet_ntop(family, raw), int(hexport, 16))
    return out


def _alive(pid: int) -> bool:
    """A process that runs (a zombie waiting for its reaper has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    todo, seen = [root], []
    while todo:
        pid = todo.pop()
        seen.append(pid)
        todo += children.get(pid, [])
    return seen


def socket_table(root: int) -> list[tuple[int, str, str, int]]:
    """(pid, command, address, port) of every listening socket held by ``root`` or a descendant."""
    sockets, rows = _listening(), set()
    for pid in _tree(root):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and int(link[8:-1]) in sockets:
                rows.add((pid, command.strip(), *sockets[int(link[8:-1])]))
    return sorted(rows)


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def test_the_socket_table_reads_this_process_listening():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        rows = socket_table(os.getpid())
        assert (os.getpid(), s.getsockname()[1]) in {(r[0], r[3]) for r in rows}
        assert all(_loopback(r[2]) for r in rows if r[3] == s.getsockname()[1])
    assert not _loopback("0.0.0.0") and not _loopback("::") and _loopback("::ffff:127.0.0.1")


@pytest.mark.slow
def test_a_local_study_listens_on_loopback_only(tmp_path, tmp_store, trial_gate):
    spec = write_spec(tmp_path, name="local")
    log = open(tmp_path / "driver.log", "w")
    # Ray's two fixed metrics ports, moved off their defaults so that another Ray on this machine cannot
    # hold them (the bind address is what is checked, not the port)
    # The last `ray start` on this machine, as Ray records it, names a Ray that is no longer there: a study
    # without --address starts its own all the same (a bare ray.init() would wait for minutes to join it)
    ray_tmp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # Ray's socket paths must stay short
    (ray_tmp / "ray").mkdir()
    (ray_tmp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{free_port()}")
    env = {**os.environ, "AUTOSCALER_METRIC_PORT": str(free_port()), "DASHBOARD_METRIC_PORT": str(free_port()),
           "RAY_TMPDIR": str(ray_tmp)}
    trial_gate.close()
    driver = subprocess.Popen(
        [sys.executable, "-m", "study.cli", "run", str(spec), "--out", str(tmp_path / "runs"), "--tracking-uri",
         tmp_store], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)

    def describe() -> str:
        return (tmp_path / "driver.log").read_text()[-3000:]

    try:
        trial_gate.wait_held(1, alive=lambda: driver.poll() is None, describe=describe)  # trials are running
        give_up = time.monotonic() + 300  # the wait ends when every Ray listener is up; this only bounds a hang
        while True:
            rows = socket_table(driver.pid)
            missing = [k for k, part in LISTENERS.items() if not any(part in r[1] for r in rows)]
            if not missing:
                break
            assert driver.poll() is None, describe()
            assert time.monotonic() < give_up, f"no listening socket yet for {missing}:\n{rows}"
            time.sleep(0.2)
        print("\n".join(["", f"{'pid':>7}  {'address':<18} {'port':>5}  process"]
                        + [f"{pid:>7}  {addr:<18} {port:>5}  {cmd[:90]}" for pid, cmd, addr, port in rows]))
        exposed = [r for r in rows if not _loopback(r[2])]
        assert not exposed, "listening beyond loopback:\n" + "\n".join(map(str, exposed))
        started = {pid: cmd for pid, cmd, _, _ in rows if pid != driver.pid}
        trial_gate.open()
        assert driver.wait(timeout=600) == 0, describe()
        # the study's Ray ends with it, quietly: every process it started is gone (the autoscaler monitor included,
        # which the runner ends itself), and no process reported a failure on its way out
        left = {pid: cmd for pid, cmd in started.items() if _alive(pid)}
        assert not left, f"Ray processes left running after the study: {left}"
        assert "autoscaler failed" not in describe() and "Traceback" not in describe(), describe()
        # and without --verbose it says nothing of its machinery's own notices
        assert "Token authentication is enabled" not in describe() and "database tables" not in describe()
    finally:
        trial_gate.open()
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)
