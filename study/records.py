"""The study's results as Parquet: ``trials.parquet`` (one row per trial) and ``history.parquet``
(one row per report). They are the source of truth: MLflow mirrors them.

Rows are keyed by ``trial_id`` (and ``step`` in the history), so a trial reported again after
a resume or a retry overwrites itself instead of appearing twice. Files are replaced
atomically, so a crash at any moment leaves the last complete table.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

# Fields Tune adds to every result; they are not metrics of the trial.
TUNE_FIELDS = frozenset({
    "training_iteration", "time_total_s", "time_this_iter_s", "time_since_restore", "timestamp", "date",
    "done", "pid", "hostname", "node_ip", "config", "trial_id", "experiment_id", "experiment_tag",
    "iterations_since_restore", "timesteps_total", "episodes_total", "timesteps_since_restore",
    "checkpoint_dir_name", "should_checkpoint", "__duplicate__", "node_id",
})


def metrics_of(result: Mapping[str, Any]) -> dict[str, float]:
    """The trial's own numeric metrics in a Tune result (``step`` included)."""
    return {
        k: float(v) for k, v in result.items()
        if k not in TUNE_FIELDS and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def _write_atomic(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".parquet.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


class StudyRecords:
    """In-memory tables of one study, flushed to ``<study_dir>/{trials,history}.parquet``."""

    def __init__(self, study_dir: str | Path, study: str, flush_every_s: float = 5.0):
        self.study_dir = Path(study_dir)
        self.study = study
        self.flush_every_s = flush_every_s
        self.trials: dict[str, dict[str, Any]] = {}
        self.history: dict[tuple[str, int], dict[str, Any]] = {}
        self._dirty = False
        self._last_flush = 0.0
        self.load()

    @property
    def trials_path(self) -> Path:
        return self.study_dir / "trials.parquet"

    @property
    def history_path(self) -> Path:
        return self.study_dir / "history.parquet"

    @property
    def pending_path(self) -> Path:
        """Reports not yet in ``history.parquet``, one JSON line each, appended the moment they arrive.

        A trial resumed from a checkpoint never reports the steps before it again, so a report
        must be on disk before a crash can happen, not at the next (throttled) Parquet write.
        """
        return self.study_dir / "history.pending.jsonl"

    def load(self) -> None:
        """Take up what an earlier invocation of the study wrote (for ``--resume``)."""
        if self.trials_path.exists():
            for row in pd.read_parquet(self.trials_path).to_dict("records"):
                self.trials[str(row["trial_id"])] = row
        if self.history_path.exists():
            for row in pd.read_parquet(self.history_path).to_dict("records"):
                self.history[(str(row["trial_id"]), int(row["step"]))] = row
        if self.pending_path.exists():
            for line in self.pending_path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # the last line of a crash may be cut short
                    continue
                self.history[(str(row["trial_id"]), int(row["step"]))] = row
                self._dirty = True

    def last_step(self, trial_id: str) -> int:
        steps = [s for (t, s) in self.history if t == trial_id]
        return max(steps) if steps else -1

    def report(self, trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any]) -> bool:
        """Record one report; False if that (trial, step) was already recorded."""
        metrics = metrics_of(result)
        step = int(metrics.get("step", result.get("training_iteration", 0)))
        key = (trial_id, step)
        new = key not in self.history
        self.history[key] = {"trial_id": trial_id, "step": step, **{k: v for k, v in metrics.items() if k != "step"}}
        if new:
            self.study_dir.mkdir(parents=True, exist_ok=True)
            with open(self.pending_path, "a") as f:
                f.write(json.dumps(self.history[key]) + "\n")
        row = self.trials.setdefault(trial_id, {"study": self.study, "trial_id": trial_id})
        if row.get("status") not in ("TERMINATED", "ERROR"):
            row.update(config)
            row.update(metrics)
            row.update(status="RUNNING", node_ip=result.get("node_ip"), node_id=result.get("node_id"))
        self._dirty = True
        return new

    def start(self, trial_id: str, config: Mapping[str, Any]) -> None:
        row = self.trials.setdefault(trial_id, {"study": self.study, "trial_id": trial_id})
        if row.get("status") not in ("TERMINATED", "ERROR"):
            row.update(config)
            row.setdefault("status", "PENDING")
            row["started_at"] = time.time()

    def finish(self, trial_id: str, config: Mapping[str, Any], status: str, error: str | None = None,
               node_ip: str | None = None, flush: bool = True) -> None:
        """Mark a trial TERMINATED or ERROR and (unless ``flush=False``) write the tables at once."""
        row = self.trials.setdefault(trial_id, {"study": self.study, "trial_id": trial_id})
        row.update(config)
        row["status"] = status
        row["error"] = error
        if node_ip:
            row["node_ip"] = node_ip
        started = row.get("started_at")
        if started is not None and not (isinstance(started, float) and math.isnan(started)):
            row["wall_s"] = time.time() - float(started)
        self._dirty = True
        if flush:
            self.flush(force=True)

    def is_finished(self, trial_id: str) -> bool:
        return self.trials.get(trial_id, {}).get("status") in ("TERMINATED", "ERROR")

    def finished_keys(self) -> dict[str, str]:
        """cell key -> trial_id of every finished trial (see ``cell_key``)."""
        return {cell_key(r): t for t, r in self.trials.items() if r.get("status") in ("TERMINATED", "ERROR")}

    def trials_frame(self) -> pd.DataFrame:
        df = pd.DataFrame(list(self.trials.values()))
        return df.drop(columns=["started_at"], errors="ignore")

    def history_frame(self) -> pd.DataFrame:
        df = pd.DataFrame(list(self.history.values()))
        return df.sort_values(["trial_id", "step"]) if len(df) else df

    def flush(self, force: bool = False) -> None:
        if not self._dirty or (not force and time.time() - self._last_flush < self.flush_every_s):
            return
        self.study_dir.mkdir(parents=True, exist_ok=True)
        if self.trials:
            _write_atomic(self.trials_frame(), self.trials_path)
        if self.history:
            _write_atomic(self.history_frame(), self.history_path)
            self.pending_path.unlink(missing_ok=True)  # all of it is in history.parquet now
        self._dirty = False
        self._last_flush = time.time()


def cell_id(config: Mapping[str, Any]) -> str:
    """A config's identity in its study: the same flat config gives the same id in every run."""
    canonical = json.dumps({k: config[k] for k in sorted(config)}, sort_keys=True, default=str)
    return hashlib.sha1(canonical.encode()).hexdigest()[:12]


def cell_key(row: Mapping[str, Any]) -> str:
    return str(row.get("cell", row.get("trial_id")))
