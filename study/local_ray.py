"""A local Ray that outlives one study: ``clphase ray up`` once, then ``clphase run SPEC --address ADDR`` for
every study, and ``clphase ray down`` at the end. Each study then skips Ray's start (~6 s here).

The head listens on loopback only (Ray's local-only mode, the node pinned to 127.0.0.1), as a study's own
local Ray does. Its processes are found by the temp folder they run in, which this module owns, so
``down`` ends exactly them (``ray stop`` would end every Ray on the machine).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

_STATE = Path(os.environ.get("CLPHASE_HOME", Path.home() / ".clphase")) / "ray"
_LOOPBACK = ("127.", "localhost")


def is_loopback(address: str) -> bool:
    return address.split("//")[-1].startswith(_LOOPBACK)


def joined_head(address: str | None) -> dict | None:
    """The running head (see ``running``) a study joins with ``address``: the head's own address, or ``auto``,
    which means this head while it runs (Ray's own ``auto`` would take whichever local Ray it finds first)."""
    if not address or not (address == "auto" or is_loopback(address)):
        return None
    head = running()
    return head if head and address in ("auto", head["address"]) else None


def _processes_in(folder: Path) -> list[int]:
    """Pids of the processes whose command line names ``folder`` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(folder) in cmdline:
                pids.append(int(entry.name))
    return pids


def auth_environment() -> dict[str, str]:
    """What a process needs to talk to the head: Ray's token authentication, with the user's token
    (``~/.ray/auth_token``, which Ray creates for the head when it is missing). Ray reads the mode when it
    is imported: set it before (``clphase run --address`` does)."""
    return {"RAY_AUTH_MODE": "token"}


def running() -> dict | None:
    """The running head's record (``address``, ``temp_dir``), or None."""
    path = _STATE / "head.json"
    if not path.exists():
        return None
    head = json.loads(path.read_text())
    return head if _processes_in(Path(head["temp_dir"])) else None


def up(port: int = 6379, num_cpus: int | None = None) -> str:
    """Start a loopback head (or return the running one's address)."""
    head = running()
    if head:
        return head["address"]
    with socket.socket() as probe:  # a port another program (or another Ray) holds: said now, not by Ray's traceback
        probe.settimeout(2)
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise RuntimeError(f"port {port} on 127.0.0.1 is already in use (another Ray, or another program): "
                               "choose another with --port")
    temp = Path("/tmp") / f"clphase-ray-{os.getuid()}-{port}"  # Ray's socket paths must stay short
    _STATE.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
           **auth_environment()}
    cmd = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--node-ip-address", "127.0.0.1",
           "--port", str(port), "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", str(temp)]
    if num_cpus is not None:
        cmd += ["--num-cpus", str(num_cpus)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ray start failed ({done.returncode}):\n{(done.stdout + done.stderr)[-2000:]}")
    address = f"127.0.0.1:{port}"
    (_STATE / "head.json").write_text(json.dumps({"address": address, "temp_dir": str(temp)}))
    return address


def down() -> int:
    """End the head's processes (and only them); the number ended."""
    path = _STATE / "head.json"
    if not path.exists():
        return 0
    head = json.loads(path.read_text())
    pids = _processes_in(Path(head["temp_dir"]))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    give_up = time.monotonic() + 20
    while (left := _processes_in(Path(head["temp_dir"]))) and time.monotonic() < give_up:
        time.sleep(0.2)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    path.unlink()
    return len(pids)
