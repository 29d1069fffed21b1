"""A study's results as one tidy table: one row per trial, config keys and final metrics as columns.

Two sources give the same table: ``runs/<study>/trials.parquet`` (the source of truth, written by
``clphase run``) and the study's MLflow experiment (its mirror: one child run per trial, params =
config as strings, final metrics = each metric's last value). Both pass through ``tidy``, which
adds the derived ``capacity`` column (``linear`` or ``mlp-{width}x{depth}``, ordered by
``n_params``) so that encoder capacity can be one axis of a phase diagram.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

TRIALS_FILE = "trials.parquet"
HISTORY_FILE = "history.parquet"
SPEC_FILE = "spec.yaml"
ANALYSIS_KEYS = ("x", "y", "metric", "threshold", "slice", "increasing", "n_boot")

# MLflow run status -> Tune's trial status, the vocabulary of trials.parquet
_STATUS = {"FINISHED": "TERMINATED", "FAILED": "ERROR", "KILLED": "ERROR"}
_FIRST_COLUMNS = ["study", "trial_id", "status"]


def study_dir_of(source: str | Path) -> Path:
    """The study directory of a study dir or of its ``trials.parquet``."""
    path = Path(source)
    return path if path.is_dir() else path.parent


def _trials_path(source: str | Path) -> Path:
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; give a study dir (runs/<study>) or its {TRIALS_FILE}")
    if path.is_dir():
        path = path / TRIALS_FILE
        if not path.exists():
            raise FileNotFoundError(f"no {TRIALS_FILE} in {path.parent}; has `clphase run` written this study?")
    return path


def load_trials(source: str | Path) -> pd.DataFrame:
    """The trials table of a study dir (``runs/<study>``) or of a ``trials.parquet`` file."""
    return tidy(pd.read_parquet(_trials_path(source)))


def load_history(source: str | Path) -> pd.DataFrame:
    """``history.parquet`` of a study: one row per (trial_id, step) report."""
    path = study_dir_of(source) / HISTORY_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {HISTORY_FILE} in {path.parent}")
    return pd.read_parquet(path).sort_values(["trial_id", "step"]).reset_index(drop=True)


def load_analysis_defaults(source: str | Path) -> dict[str, Any]:
    """The ``analysis:`` block of the study's ``spec.yaml`` (``{}`` when there is none)."""
    path = study_dir_of(source) / SPEC_FILE
    if not path.exists():
        return {}
    spec = yaml.safe_load(path.read_text()) or {}
    block = (spec.get("analysis") if isinstance(spec, Mapping) else None) or {}
    if not isinstance(block, Mapping):
        raise ValueError(f"{path}: analysis: must be a mapping of {', '.join(ANALYSIS_KEYS)}")
    unknown = sorted(set(block) - set(ANALYSIS_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown analysis key(s) {unknown}; valid: {', '.join(ANALYSIS_KEYS)}")
    return dict(block)


def _parse_param(value: str | None) -> Any:
    """One MLflow param string back to the Python value it was written from (``str(v)``)."""
    if value is None or value in ("None", "nan", ""):
        return None
    if value in ("True", "False"):
        return value == "True"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _parse_params(column: pd.Series) -> pd.Series:
    values = [_parse_param(v) for v in column]
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pd.Series(values, index=column.index, dtype=object)
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        numbers = pd.to_numeric(pd.Series([np.nan if v is None else v for v in values], index=column.index))
        if all(isinstance(v, int) for v in present) and len(present) == len(values):
            return numbers.astype("int64")
        return numbers.astype("float64")
    # mixed (e.g. an int-looking name among strings): keep the strings as written
    strings = [None if v is None else str(raw) for v, raw in zip(values, column, strict=True)]
    return pd.Series(strings, index=column.index)


def load_mlflow_trials(
    experiment: str, *, tracking_uri: str | None = None, parent_run_id: str | None = None,
    study_dir: str | Path | None = None,
) -> pd.DataFrame:
    """The same table as ``load_trials``, read from the study's MLflow experiment.

    Every child run (tag ``mlflow.parentRunId``) is one trial; with ``parent_run_id`` only the
    children of that study invocation, with ``study_dir`` only those of the study recorded in that
    folder. A trial logged by several invocations keeps its newest run. An experiment holding studies of
    one name in several folders (e.g. a full run and a ``--smoke`` run with other ``--out``) is not mixed:
    without ``study_dir`` or ``parent_run_id`` that is a ValueError naming the folders.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ValueError(f"no MLflow experiment {experiment!r} at {client.tracking_uri}; experiments: {names}")
    query = f"tags.mlflow.parentRunId = '{parent_run_id}'" if parent_run_id else ""
    runs, token = [], None
    while True:
        page = client.search_runs([found.experiment_id], filter_string=query, max_results=5000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            break
    folder_of = {r.info.run_id: r.data.tags.get("clphase.study_dir") for r in runs
                 if r.data.tags.get("clphase.role") == "parent"}  # parent run -> its study folder
    if study_dir is not None and not parent_run_id:
        wanted = str(Path(study_dir).expanduser().resolve())
        runs = [r for r in runs if folder_of.get(r.data.tags.get("mlflow.parentRunId")) == wanted]
        if not runs:
            raise ValueError(f"MLflow experiment {experiment!r} holds no study recorded in {wanted}; its studies: "
                             f"{sorted({f for f in folder_of.values() if f})}")
    elif not parent_run_id:
        folders = {folder_of.get(r.data.tags["mlflow.parentRunId"]) for r in runs
                   if "mlflow.parentRunId" in r.data.tags and r.data.tags.get("clphase.role") != "parent"}
        folders.discard(None)
        if len(folders) > 1:
            raise ValueError(f"MLflow experiment {experiment!r} holds {len(folders)} studies of that name, recorded "
                             f"in {', '.join(sorted(folders))}: pass study_dir= (or parent_run_id=) to read one")
    rows: dict[str, tuple[int, dict[str, Any]]] = {}
    params: dict[str, dict[str, str]] = {}
    for run in runs:
        tags = run.data.tags
        if "mlflow.parentRunId" not in tags or tags.get("clphase.role") == "parent":
            continue
        trial_id = tags.get("trial_id", run.info.run_id)
        if trial_id in rows and rows[trial_id][0] >= run.info.start_time:
            continue
        row: dict[str, Any] = {
            "study": experiment,
            "trial_id": trial_id,
            "status": _STATUS.get(run.info.status, run.info.status),
        }
        row.update(run.data.metrics)
        if "error" in tags:
            row["error"] = tags["error"]
        rows[trial_id] = (run.info.start_time, row)
        params[trial_id] = dict(run.data.params)
    if not rows:
        raise ValueError(f"MLflow experiment {experiment!r} has no trial runs (child runs with mlflow.parentRunId)")
    ids = sorted(rows)
    config = pd.DataFrame([params[t] for t in ids], index=ids)
    config = pd.DataFrame({k: _parse_params(config[k]) for k in config.columns}, index=ids)
    values = pd.DataFrame([rows[t][1] for t in ids], index=ids)
    table = pd.concat([values[_FIRST_COLUMNS], config, values.drop(columns=_FIRST_COLUMNS)], axis=1)
    table = table.loc[:, ~table.columns.duplicated()]
    return tidy(table.reset_index(drop=True))


def capacity_of(row: Mapping[str, Any]) -> str:
    """``linear``, ``mlp-{width}x{depth}``, ``mlp[50,250,50]`` (per-layer sizes), or the encoder's name: one
    label per encoder capacity."""
    encoder = str(row.get("encoder"))
    hidden = row.get("hidden")
    if encoder != "linear" and isinstance(hidden, str) and hidden:
        return f"{encoder}[{hidden}]"
    width, depth = row.get("width"), row.get("depth")
    if encoder == "linear" or pd.isna(width) or pd.isna(depth):
        return encoder
    return f"{encoder}-{int(width)}x{int(depth)}"


def add_capacity(trials: pd.DataFrame) -> pd.DataFrame:
    """Add ``capacity`` as a categorical ordered by median ``n_params`` (then by name)."""
    if "encoder" not in trials.columns:
        return trials
    out = trials.copy()
    cols = [c for c in ("encoder", "width", "depth", "hidden") if c in out.columns]
    labels = [capacity_of(r) for r in out[cols].to_dict("records")]
    out["capacity"] = labels
    size = out.groupby("capacity")["n_params"].median() if "n_params" in out.columns else pd.Series(dtype=float)

    def rank(label: str) -> tuple[float, int, int, str]:
        n = size.get(label, np.nan)
        parts = label.rsplit("-", 1)[-1].split("x")
        shape = (int(parts[0]), int(parts[1])) if len(parts) == 2 and all(p.isdigit() for p in parts) else (0, 0)
        return (-np.inf if label == "linear" else (np.inf if pd.isna(n) else float(n)), *shape, label)

    order = sorted(set(labels), key=rank)
    out["capacity"] = pd.Categorical(labels, categories=order, ordered=True)
    return out


def tidy(trials: pd.DataFrame) -> pd.DataFrame:
    """Common form of both sources: ``capacity`` added, identity columns first, sorted by trial."""
    out = add_capacity(trials)
    first = [c for c in _FIRST_COLUMNS if c in out.columns]
    out = out[first + [c for c in out.columns if c not in first]]
    if "trial_id" in out.columns:
        out = out.sort_values("trial_id", kind="stable")
    return out.reset_index(drop=True)
