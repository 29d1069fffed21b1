"""The driver-side Tune callback: every trial event goes to Parquet, MLflow and the progress line."""

from __future__ import annotations

import math
import os
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from study.progress import ProgressLine
from study.records import StudyRecords, cell_id
from study.tracking import MlflowMirror
from trainables.config import effective, known_keys


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
        self.configs: dict[str, dict[str, Any]] = {}
        self.ignored: set[str] = set()  # re-created duplicates of finished cells (see on_trial_start)

    def _config(self, trial: Trial) -> dict[str, Any]:
        if trial.trial_id not in self.configs:
            self.configs[trial.trial_id] = effective(trial.config)
        return self.configs[trial.trial_id]

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        config = self._config(trial)
        cell = cell_id(config)
        owner = self.records.finished_keys().get(cell) if self.dedupe_cells else None
        if owner is not None and owner != trial.trial_id:
            # Tune re-created a cell that finished after its last experiment snapshot (driver killed):
            # it runs again, but the study keeps the first result.
            self.ignored.add(trial.trial_id)
            return
        self.records.start(trial.trial_id, config)
        self.records.trials[trial.trial_id]["cell"] = cell
        self.mirror.trial_started(trial.trial_id, config)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        if trial.trial_id in self.ignored:
            return
        config = self._config(trial)
        if self.records.report(trial.trial_id, config, result):
            step = int(result.get("step", 0))
            self.mirror.report(trial.trial_id, config, self.records.history[(trial.trial_id, step)])
        value = result.get(self.objective)
        if isinstance(value, (int, float)):
            self.progress.objective(float(value))

    def _finish(self, trial: Trial, status: str, error: str | None) -> None:
        if trial.trial_id in self.ignored or self.records.is_finished(trial.trial_id):
            return
        config = self._config(trial)
        self.records.finish(trial.trial_id, config, status, error, node_ip=trial.last_result.get("node_ip"))
        row = self.records.trials[trial.trial_id]
        self.mirror.trial_ended(trial.trial_id, config, status, error, row.get("node_id"), row.get("node_ip"))
        if status == "TERMINATED":
            self.progress.done += 1
        else:
            self.progress.failed += 1
        self.progress.show(force=True)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._finish(trial, "TERMINATED", None)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._finish(trial, "ERROR", _error_text(trial))

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self.progress.running = sum(t.status == Trial.RUNNING for t in trials)
        self.progress.show()
        self.records.flush()
        self.mirror.retry_if_due(self.records, config_of)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self.records.flush(force=True)
