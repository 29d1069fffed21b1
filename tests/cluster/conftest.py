"""A real multi-node Ray cluster on this machine: a head and worker nodes started with
``ray start --block``, each in its own process group (so a test can kill exactly one node),
with logical GPUs and Ray's token authentication on (one token shared by every process)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.study.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))


class LocalCluster:
    """``ray start`` nodes on loopback; ``env`` is what every process of the cluster (drivers too) runs with."""

    def __init__(self, folder: Path, num_cpus: int = 2, num_gpus: int = 2):
        self.folder = folder
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        # Ray's socket paths (<temp>/session_<date>_<pid>/sockets/plasma_store) must fit in 107 bytes.
        self.temp_root = Path(tempfile.mkdtemp(prefix="clr", dir="/tmp"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
        self.env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=secrets.token_hex(32),
            RAY_USAGE_STATS_ENABLED="0",
            # A killed node is declared dead after ~10 s of missed health checks (default: ~15 s).
            RAY_health_check_period_ms="1000",
            RAY_health_check_failure_threshold="10",
            PYTHONPATH=str(REPO),
        )
        self.nodes: dict[str, subprocess.Popen] = {}  # name -> `ray start --block` (its own process group)
        self.node_ids: dict[str, str] = {}  # name -> Ray node id

    def _spawn(self, name: str, args: list[str]) -> None:
        with open(self.folder / f"{name}.log", "w") as log:
            self.nodes[name] = subprocess.Popen(
                [RAY, "start", "--block", "--disable-usage-stats", "--node-ip-address", "127.0.0.1",
                 "--num-cpus", str(self.num_cpus), "--num-gpus", str(self.num_gpus),
                 "--temp-dir", str(self.temp_root / name),
                 # Ports that default to fixed numbers would collide with other Ray sessions on this machine.
                 "--dashboard-agent-listen-port", str(free_port()), *args],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def _wait_started(self, name: str, timeout: float = 180) -> str:
        proc, log_path = self.nodes[name], self.folder / f"{name}.log"
        deadline = time.time() + timeout
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start ({name}) exited {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            if "Ray runtime started" in log_path.read_text():
                node_id = self._raylet_node_id(proc.pid)
                if node_id:
                    self.node_ids[name] = node_id
                    return node_id
            time.sleep(0.3)
        raise RuntimeError(f"ray start ({name}) did not start in {timeout} s:\n{log_path.read_text()[-3000:]}")

    @staticmethod
    def _raylet_node_id(pgid: int) -> str | None:
        """The node id on the command line of the raylet in process group ``pgid``."""
        for pid, cmdline in _processes():
            if cmdline and cmdline[0].endswith("/raylet") and _pgid(pid) == pgid:
                for arg in cmdline:
                    if arg.startswith("--node_id="):
                        return arg.split("=", 1)[1]
        return None

    def start(self, workers: int = 1) -> None:
        """The head and ``workers`` worker nodes, started together (a worker waits for the head's GCS)."""
        self._spawn("head", ["--head", "--port", str(self.port), "--include-dashboard", "false",
                             "--dashboard-port", str(free_port()), "--ray-client-server-port", str(free_port())])
        names = [f"worker{i}" if i else "worker" for i in range(workers)]
        for name in names:
            self._spawn(name, ["--address", self.address])
        for name in ["head", *names]:
            self._wait_started(name)

    def add_worker(self, name: str = "worker") -> str:
        self._spawn(name, ["--address", self.address])
        return self._wait_started(name)

    def alive(self, name: str) -> bool:
        return name in self.nodes and self.nodes[name].poll() is None

    def kill(self, name: str) -> None:
        """SIGKILL one node: its `ray start`, raylet, object store and every worker process it forked, and
        return only once each of them is gone. Worker processes talk to drivers directly, so a worker that
        outlived its raylet for a moment could still deliver results; after this call none can."""
        proc = self.nodes.pop(name)
        doomed = _descendants(proc.pid) | {proc.pid}  # taken before the kill: orphans lose their parent link
        _killpg(proc.pid)
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=30)
        while any(_running(pid) for pid in doomed):  # SIGKILL cannot be ignored: this ends within moments
            time.sleep(0.05)
        self.node_ids.pop(name, None)

    def shutdown(self) -> None:
        for name in list(self.nodes):
            self.kill(name)
        for session in self.temp_root.glob("*/session_latest"):  # Ray's logs, beside the test's own files
            shutil.copytree(session / "logs", self.folder / f"{session.parent.name}_logs", dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.sock", "events"), ignore_dangling_symlinks=True)
        # Anything of ours that left its node's process group still names our temp folder.
        for pid, cmdline in _processes():
            if any(str(self.temp_root) in arg for arg in cmdline):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.temp_root, ignore_errors=True)


def _processes() -> list[tuple[int, list[str]]]:
    """(pid, command line) of every process on this machine (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((int(entry.name), (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")))
            except OSError:
                continue
    return found


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process (Linux /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            found[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state
    return found


def _descendants(pid: int) -> set[int]:
    parents = _parents()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a zombie has run its last instruction)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and a worker node (2 CPUs, 2 logical GPUs each) for the module."""
    c = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.start(workers=1)
        yield c
    finally:
        c.shutdown()


@pytest.fixture
def two_nodes(cluster):
    """The module's cluster with one live worker node (a test may kill it; the next one gets a new one)."""
    if not cluster.alive("worker"):
        cluster.add_worker("worker")
    return cluster
