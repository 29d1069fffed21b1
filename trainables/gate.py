"""A hold point for tests: stop trials right after a report and release them on the test's signal.

Fault and resume tests must act while a trial is provably mid-run (a checkpoint taken, more steps to
come), not while it probably is. When the environment variable ``CLPHASE_TRIAL_GATE`` names a folder
that holds a file ``closed``, a trial that has just made a report that is not its last

- passes, if it holds a pass (``passed/<trial_id>``) or can take one of the folder's tickets
  (``tickets/*``, each taken by exactly one trial through an atomic rename), and then passes every
  later hold point too, so a ticket lets one trial run to its end;
- else writes ``held/<trial_id>`` (JSON: ``node_id``, ``step``) and waits until ``closed`` is gone.

Tune's report returns only after the driver has taken the result (and its checkpoint), so a held trial
is known to the driver at its held step. Without the variable, or without ``closed``, nothing waits.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

GATE_ENV = "CLPHASE_TRIAL_GATE"
_POLL_S = 0.05


def hold(trial_id: str, node_id: str, step: int, last: bool) -> None:
    """Wait here while the gate is closed (see the module docstring); a no-op without a gate."""
    folder = os.environ.get(GATE_ENV)
    if not folder or last:
        return
    gate = Path(folder)
    if not (gate / "closed").exists():
        return
    passed = gate / "passed" / trial_id
    if passed.exists():
        return
    passed.parent.mkdir(parents=True, exist_ok=True)
    for ticket in sorted((gate / "tickets").glob("*")):
        try:
            os.rename(ticket, passed)
            return
        except FileNotFoundError:  # another trial took it first
            continue
    held = gate / "held" / trial_id
    held.parent.mkdir(parents=True, exist_ok=True)
    tmp = held.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"node_id": node_id, "step": step}))
    os.replace(tmp, held)  # the test never reads half a file
    while (gate / "closed").exists():
        time.sleep(_POLL_S)
