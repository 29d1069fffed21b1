"""The study's results as Parquet: ``trials.parquet`` (one row per config) and ``history.parquet``
(one row per report). They are the source of truth: MLflow mirrors them.

Rows are keyed by ``trial_id`` (and ``step`` in the history), so a trial reported again after
a resume or a retry overwrites itself instead of appearing twice. Files are replaced
atomically, so a crash at any moment leaves the last complete table.

Both files have a fixed schema (the README's "Schema of the results"): integers are int64
(nullable, e.g. ``width`` of a linear encoder), text is string (``error`` included, also when no
trial failed), ``capacity`` is an ordered categorical (``linear`` < ``mlp-32x2`` < ... by model
size) with its position in ``capacity_rank`` for SQL, and ``cell`` is shared by the seeds of one
grid cell (``config_id`` is the one config's identity, seed included).
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from study.runner import StudyError

# Fields Tune adds to every result; they are not metrics of the trial.
TUNE_FIELDS = frozenset({
    "training_iteration", "time_total_s", "time_this_iter_s", "time_since_restore", "timestamp", "date",
    "done", "pid", "hostname", "node_ip", "config", "trial_id", "experiment_id", "experiment_tag",
    "iterations_since_restore", "timesteps_total", "episodes_total", "timesteps_since_restore",
    "checkpoint_dir_name", "should_checkpoint", "__duplicate__", "node_id",
})
# Reported numbers that are counts, not measurements: stored as int64.
INT_FIELDS = frozenset({"step", "diverged", "n_params", "pack_size"})
TEXT_FIELDS = frozenset({"study", "trial_id", "cell", "config_id", "status", "error", "node_ip", "node_id"})
FIRST_COLUMNS = ("study", "trial_id", "cell", "status", "capacity", "capacity_rank")
LAST_COLUMNS = ("wall_s", "pack_wall_s", "node_ip", "node_id", "error", "config_id")
REPLICATE_KEYS = ("seed",)  # what differs between the trials of one cell


class RecordsUnreadable(StudyError, ValueError):
    """``trials.parquet`` or ``history.parquet`` exists but cannot be read; the message names the file
    and what to do. A ``StudyError``, so ``clphase run`` reports it and exits with code 2."""


def metrics_of(result: Mapping[str, Any]) -> dict[str, float | int]:
    """The trial's own numeric metrics in a Tune result (``step`` included): counts as int, the rest float."""
    return {
        k: (int(v) if k in INT_FIELDS else float(v)) for k, v in result.items()
        if k not in TUNE_FIELDS and isinstance(v, numbers.Real) and not isinstance(v, bool)
    }


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def _arrow_type(name: str, present: list[Any]) -> pa.DataType:
    if name in TEXT_FIELDS:
        return pa.string()
    if name in INT_FIELDS:
        return pa.int64()
    if not present:
        return pa.float64()
    if all(isinstance(v, bool) for v in present):
        return pa.bool_()
    if all(isinstance(v, numbers.Integral) for v in present):
        return pa.int64()
    if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in present):
        return pa.float64()
    return pa.string()


def _pandas_column(values: list[Any], kind: pa.DataType) -> pd.Series:
    present = [v for v in values if not _missing(v)]
    if kind == pa.int64():
        dtype = "int64" if len(present) == len(values) else "Int64"
        return pd.Series([None if _missing(v) else int(v) for v in values], dtype=dtype)
    if kind == pa.float64():
        return pd.Series([math.nan if _missing(v) else float(v) for v in values], dtype="float64")
    if kind == pa.bool_():
        return pd.Series([None if _missing(v) else bool(v) for v in values], dtype="boolean")
    return pd.Series([None if _missing(v) else str(v) for v in values], dtype=object)


def typed_frame(rows: Iterable[Mapping[str, Any]], first: Iterable[str] = (), last: Iterable[str] = ()
                ) -> tuple[pd.DataFrame, pa.Schema]:
    """Rows as a DataFrame with the schema's types, and that schema as Arrow types (text columns are
    strings even when every value is missing; ``capacity`` added when there is an ``encoder``).
    Columns: ``first``, then every other in the order the rows name them, then ``last``."""
    rows, first, last = list(rows), list(first), list(last)
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    columns, fields = {}, []
    for name in names:
        if name in ("capacity", "capacity_rank"):
            continue  # derived below from encoder, width, depth and n_params
        values = [row.get(name) for row in rows]
        kind = _arrow_type(name, [v for v in values if not _missing(v)])
        columns[name] = _pandas_column(values, kind)
        fields.append(pa.field(name, kind))
    df = pd.DataFrame(columns)
    if "encoder" in df.columns and len(df):
        df = with_capacity(df)
        fields += [pa.field("capacity", pa.dictionary(pa.int32(), pa.string(), ordered=True)),
                   pa.field("capacity_rank", pa.int64())]
    tail = [c for c in last if c in df.columns]
    order = [c for c in first if c in df.columns]
    order += [c for c in df.columns if c not in order and c not in tail] + tail
    by_name = {f.name: f for f in fields}
    return df[order], pa.schema([by_name[c] for c in order])


def with_capacity(df: pd.DataFrame) -> pd.DataFrame:
    """``capacity`` (``linear``, ``mlp-{width}x{depth}``: an ordered categorical, by median ``n_params``,
    the labels of ``analysis.load``) and ``capacity_rank`` (its position in that order, 0 = smallest)."""
    from analysis.load import add_capacity

    out = add_capacity(df)
    out["capacity_rank"] = pd.Series(out["capacity"].cat.codes, index=out.index, dtype="int64")
    return out


def _write_atomic(rows: Iterable[Mapping[str, Any]], path: Path, first: Iterable[str] = (),
                  last: Iterable[str] = ()) -> None:
    df, schema = typed_frame(rows, first, last)
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _read(path: Path, required: tuple[str, ...]) -> list[dict[str, Any]]:
    """The rows of one of the study's Parquet files, missing values as None; RecordsUnreadable if it is
    not a Parquet file or lacks a key column."""
    try:
        frame = pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError, ValueError) as err:
        problem = f"is not a readable Parquet file ({type(err).__name__}: {err})"
    else:
        missing = [c for c in required if c not in frame.columns]
        if not missing:
            return [{k: (None if _missing(v) else v) for k, v in row.items()} for row in frame.to_dict("records")]
        problem = f"has no column {', '.join(missing)}"
    raise RecordsUnreadable(
        f"{path} {problem}: it was cut short or overwritten, so --resume cannot take up this study. Restore "
        f"the file from a copy, or move it aside (mv {path} {path}.bad) and resume: configs Tune already "
        f"finished are not trained again, so their rows will be missing from the Parquet files (the MLflow "
        f"experiment still holds them: analysis.load_mlflow_trials); or start afresh with a new --out."
    )


class StudyRecords:
    """In-memory tables of one study, flushed to ``<study_dir>/{trials,history}.parquet``."""

    def __init__(self, study_dir: str | Path, study: str, flush_every_s: float = 5.0):
        self.study_dir = Path(study_dir)
        self.study = study
        self.flush_every_s = flush_every_s
        self.trials: dict[str, dict[str, Any]] = {}
        self.config_keys: dict[str, None] = {}  # config columns, in the order configs name them
        self.history: dict[tuple[str, int], dict[str, Any]] = {}
        self._dirty = False
        self._last_flush = 0.0
        self._ended_at: dict[float, float] = {}  # a pack's start -> when its first config finished
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

    @property
    def finished_path(self) -> Path:
        """Trials finished since the last ``trials.parquet`` write, one JSON row each, appended as they finish.

        Tune's next experiment snapshot counts a finished trial as done, so its row must be on disk before
        a crash can happen; an append costs the same at any study size, a rewrite of the table grows with it.
        """
        return self.study_dir / "trials.pending.jsonl"

    @staticmethod
    def _journal(path: Path) -> list[dict[str, Any]]:
        rows = []
        for line in path.read_text().splitlines() if path.exists() else []:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # the last line of a crash may be cut short
                continue
        return rows

    @staticmethod
    def _append(path: Path, row: Mapping[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def load(self) -> None:
        """Take up what an earlier invocation of the study wrote (for ``--resume``); raises
        RecordsUnreadable when a Parquet file is there but damaged."""
        if self.trials_path.exists():
            for row in _read(self.trials_path, ("trial_id",)):
                row.pop("capacity", None), row.pop("capacity_rank", None)  # derived again at each write
                self.trials[str(row["trial_id"])] = {k: v for k, v in row.items() if v is not None}
        if self.history_path.exists():
            for row in _read(self.history_path, ("trial_id", "step")):
                self.history[(str(row["trial_id"]), int(row["step"]))] = {k: v for k, v in row.items()
                                                                          if v is not None}
        for row in self._journal(self.pending_path):
            self.history[(str(row["trial_id"]), int(row["step"]))] = row
            self._dirty = True
        for row in self._journal(self.finished_path):
            self.trials[str(row["trial_id"])] = {k: v for k, v in row.items() if v is not None}
            self._dirty = True

    def _row(self, trial_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
        row = self.trials.setdefault(trial_id, {"study": self.study, "trial_id": trial_id})
        self.config_keys.update(dict.fromkeys(config))
        if config and "config_id" not in row:
            row["cell"], row["config_id"] = cell_id(config), config_id(config)
        return row

    def report(self, trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any]) -> bool:
        """Record one report; False if that (trial, step) was already recorded."""
        metrics = metrics_of(result)
        step = int(metrics.get("step", result.get("training_iteration", 0)))
        key = (trial_id, step)
        new = key not in self.history
        self.history[key] = {"trial_id": trial_id, "step": step, **{k: v for k, v in metrics.items() if k != "step"}}
        if new:
            self._append(self.pending_path, self.history[key])
        row = self._row(trial_id, config)
        if row.get("status") not in ("TERMINATED", "ERROR"):
            row.update(config)
            row.update(metrics)
            row.update(status="RUNNING", node_ip=result.get("node_ip"), node_id=result.get("node_id"))
        self._dirty = True
        return new

    def start(self, trial_id: str, config: Mapping[str, Any], started_at: float | None = None) -> None:
        """A config's trial has started (``started_at``: when, the same for every config of a pack)."""
        row = self._row(trial_id, config)
        if row.get("status") not in ("TERMINATED", "ERROR"):
            row.update(config)
            row.setdefault("status", "PENDING")
            row["started_at"] = time.time() if started_at is None else started_at

    def finish(self, trial_id: str, config: Mapping[str, Any], status: str, error: str | None = None,
               node_ip: str | None = None, flush: bool = True) -> None:
        """Mark a trial TERMINATED or ERROR and write the tables at once, or with ``flush=False`` append its row
        to ``finished_path`` at once and leave the tables to the next ``flush``.

        ``pack_wall_s`` is the time from the trial's start to its end, shared by every config of its
        pack; ``wall_s`` is one config's share of it (divided by ``pack_size``, 1 for a lone config)."""
        row = self._row(trial_id, config)
        row.update(config)
        row["status"] = status
        row["error"] = error
        if node_ip:
            row["node_ip"] = node_ip
        started = row.get("started_at")
        if started is not None and not _missing(started):
            # a pack's configs share one start (see start), so the first of them to finish fixes the end of all
            ended = self._ended_at.setdefault(float(started), time.time())
            row["pack_wall_s"] = ended - float(started)
            row["wall_s"] = row["pack_wall_s"] / max(1, int(row.get("pack_size") or 1))
        self._dirty = True
        if flush:
            self.flush(force=True)
        else:
            self._append(self.finished_path, {k: v for k, v in row.items() if k != "started_at"})

    def is_finished(self, trial_id: str) -> bool:
        return self.trials.get(trial_id, {}).get("status") in ("TERMINATED", "ERROR")

    def finished_keys(self) -> dict[str, str]:
        """config id -> trial_id of every finished trial (see ``cell_key``)."""
        return {cell_key(r): t for t, r in self.trials.items() if r.get("status") in ("TERMINATED", "ERROR")}

    def _trial_rows(self) -> list[dict[str, Any]]:
        return [{"error": None, **{k: v for k, v in r.items() if k != "started_at"}} for r in self.trials.values()]

    def _trial_columns(self) -> tuple[list[str], tuple[str, ...]]:
        return [*FIRST_COLUMNS, *self.config_keys], LAST_COLUMNS

    def _history_rows(self) -> list[dict[str, Any]]:
        return [self.history[k] for k in sorted(self.history)]

    def trials_frame(self) -> pd.DataFrame:
        return typed_frame(self._trial_rows(), *self._trial_columns())[0]

    def history_frame(self) -> pd.DataFrame:
        return typed_frame(self._history_rows(), ("trial_id", "step"))[0]

    def flush(self, force: bool = False) -> None:
        if not self._dirty or (not force and time.time() - self._last_flush < self.flush_every_s):
            return
        self.study_dir.mkdir(parents=True, exist_ok=True)
        if self.trials:
            _write_atomic(self._trial_rows(), self.trials_path, *self._trial_columns())
            self.finished_path.unlink(missing_ok=True)  # all of it is in trials.parquet now
        if self.history:
            _write_atomic(self._history_rows(), self.history_path, ("trial_id", "step"))
            self.pending_path.unlink(missing_ok=True)  # all of it is in history.parquet now
        self._dirty = False
        self._last_flush = time.time()


def _digest(config: Mapping[str, Any]) -> str:
    canonical = json.dumps({k: config[k] for k in sorted(config)}, sort_keys=True, default=str)
    return hashlib.sha1(canonical.encode()).hexdigest()[:12]


def config_id(config: Mapping[str, Any]) -> str:
    """A config's identity in its study, seed included: the same flat config gives the same id in every run."""
    return _digest(config)


def cell_id(config: Mapping[str, Any]) -> str:
    """The grid cell a config belongs to: its identity without the replicate keys (``seed``), so the
    seeds of one cell share it (``GROUP BY cell``)."""
    return _digest({k: v for k, v in config.items() if k not in REPLICATE_KEYS})


def cell_key(row: Mapping[str, Any]) -> str:
    """The identity under which a finished row is not run twice: its ``config_id`` (a table written before
    there was one kept that identity in ``cell``)."""
    return str(row.get("config_id") or row.get("cell") or row.get("trial_id"))
