"""The driver-side Tune callback: every trial event goes to Parquet, MLflow and the progress line."""

from __future__ import annotations

import math
import os
import time
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from study.progress import ProgressLine
from study.records import StudyRecords, config_id
from study.tracking import MlflowMirror
from trainables.config import known_keys


def config_of(row: dict[str, Any]) -> dict[str, Any]:
    """The config columns of a trials.parquet row."""
    return {
        k: row[k] for k in known_keys()
        if k in row and row[k] is not None and not (isinstance(row[k], float) and math.isnan(row[k]))
    }


def _error_text(trial: Trial) -> str:
    """The end of the trial's traceback, from the error file Tune has just written on this node."""
    text = ""
    if trial.error_file and os.path.exists(trial.error_file):
        with open(trial.error_file) as f:
            text = f.read()
    text = text or str(trial.get_error() or "trial failed")
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join(lines[-12:])  # the exception, not Ray's whole wrapper


class StudyCallback(Callback):
    def __init__(self, records: StudyRecords, mirror: MlflowMirror, progress: ProgressLine,
                 objective: str, dedupe_cells: bool):
        self.records, self.mirror, self.progress = records, mirror, progress
        self.objective = objective
        self.dedupe_cells = dedupe_cells
        self.configs: dict[str, list[tuple[str, dict[str, Any]]]] = {}  # trial id -> its members
        self.ignored: set[str] = set()  # rows of re-created duplicates of finished cells (see on_trial_start)
        self.first_start: float | None = None  # time.perf_counter() of this invocation's first trial start

    def _members(self, trial: Trial) -> list[tuple[str, dict[str, Any]]]:
        """(row id, effective config) of each config a trial trains, recorded as the driver resolved them."""
        if trial.trial_id not in self.configs:
            pack = trial.config["pack"]
            ids = [trial.trial_id] if len(pack) == 1 else [f"{trial.trial_id}-{k:03d}" for k in range(len(pack))]
            self.configs[trial.trial_id] = list(zip(ids, pack, strict=True))
        return self.configs[trial.trial_id]

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if self.first_start is None:
            self.first_start = time.perf_counter()
        finished = self.records.finished_keys() if self.dedupe_cells else {}
        started = time.time()  # the pack's start, for each of its configs
        for row_id, config in self._members(trial):
            owner = finished.get(config_id(config))
            if owner is not None and owner != row_id:
                # Tune re-created a cell that finished after its last experiment snapshot (driver killed):
                # it runs again, but the study keeps the first result.
                self.ignored.add(row_id)
                continue
            self.records.start(row_id, config, started_at=started)  # also sets its cell and config_id
            self.mirror.trial_started(row_id, config)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        members = self._members(trial)
        # every trial reports each of its configs' metrics under "pack"
        reports = [{**m, "node_ip": result.get("node_ip")} for m in result["pack"]]
        for (row_id, config), report in zip(members, reports, strict=True):
            if row_id in self.ignored:
                continue
            if self.records.report(row_id, config, report):
                step = int(report.get("step", 0))
                self.mirror.report(row_id, config, self.records.history[(row_id, step)])

    def _finish(self, trial: Trial, status: str, error: str | None) -> None:
        for row_id, config in self._members(trial):
            if row_id in self.ignored or self.records.is_finished(row_id):
                continue
            self.records.finish(row_id, config, status, error, node_ip=trial.last_result.get("node_ip"), flush=False)
            row = self.records.trials[row_id]
            self.mirror.trial_ended(row_id, config, status, error, row.get("node_id"), row.get("node_ip"))
            if status == "TERMINATED":
                self.progress.done += 1
                value = row.get(self.objective)  # the best over finished configs' final values, as the study's end
                if isinstance(value, (int, float)):
                    self.progress.objective(float(value))
            else:
                self.progress.failed += 1
        self.records.flush()  # a finished trial is on disk already (records.finished_path); the tables follow
        self.progress.show(force=True)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._finish(trial, "TERMINATED", None)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._finish(trial, "ERROR", _error_text(trial))

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self.progress.running = sum(len(self._members(t)) for t in trials if t.status == Trial.RUNNING)
        self.progress.show()
        self.records.flush()
        self.mirror.retry_if_due(self.records, config_of)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self.records.flush(force=True)
