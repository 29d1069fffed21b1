"""Shared fixtures: one real local Ray for the whole test session, started only if a test needs it, and
the trial gate (``trainables.gate``) through which a test holds trials mid-run and releases them."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from trainables.gate import GATE_ENV

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.pop("RAY_ADDRESS", None)  # a study without --address would join it (study.runner.ray_address)
# Set before any Ray starts, so that every trial process of the session (local Ray, subprocess drivers,
# `ray start` nodes) sees the same gate folder; it holds trials only while a test has closed it.
os.environ[GATE_ENV] = tempfile.mkdtemp(prefix="clphase-gate-")


class TrialGate:
    """The test's side of ``trainables.gate``: close it (with tickets), wait for held trials, open it."""

    def __init__(self, folder: Path):
        self.folder = folder

    def close(self, tickets: int = 0) -> None:
        """Hold every trial at its next report that is not its last, except ``tickets`` of them."""
        self.reset()
        (self.folder / "tickets").mkdir(parents=True)
        for i in range(tickets):
            (self.folder / "tickets" / f"{i:04d}").touch()
        (self.folder / "closed").touch()

    def open(self) -> None:
        (self.folder / "closed").unlink(missing_ok=True)

    def reset(self) -> None:
        self.open()
        for sub in ("tickets", "passed", "held"):
            shutil.rmtree(self.folder / sub, ignore_errors=True)

    def held(self) -> dict[str, dict]:
        """trial_id -> {node_id, step} of every trial that has come to the closed gate."""
        folder = self.folder / "held"
        return {p.name: json.loads(p.read_text()) for p in folder.glob("*") if p.suffix != ".tmp"} \
            if folder.exists() else {}

    def passed(self) -> set[str]:
        folder = self.folder / "passed"
        return {p.name for p in folder.glob("*")} if folder.exists() else set()

    def wait_held(self, n: int, alive: Callable[[], bool], describe: Callable[[], str] = str,
                  limit_s: float = 600) -> dict[str, dict]:
        """Wait until ``n`` trials are held; fails if the study ends first (``alive`` turns False). The
        limit only turns a hang into a failure: the wait ends on the trials' own signal."""
        give_up = time.monotonic() + limit_s
        while len(held := self.held()) < n:
            assert alive(), f"the study ended with {len(held)} of {n} trials held:\n{describe()}"
            assert time.monotonic() < give_up, f"{len(held)} of {n} trials held after {limit_s} s:\n{describe()}"
            time.sleep(0.1)
        return held


@pytest.fixture
def trial_gate():
    gate = TrialGate(Path(os.environ[GATE_ENV]))
    gate.reset()
    yield gate
    gate.reset()


@pytest.fixture(scope="session")
def ray_session():
    import ray

    # a new Ray of the tests' own, whatever RAY_ADDRESS or an earlier `ray start` on this machine names
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()
