"""A study's baselines, computed once: ``runs/<study>/baselines.parquet`` and metrics on its MLflow parent run.

The oracles and the input of ``trainables.baselines`` do not depend on the trained encoder, so a study
measures them once, for every setting of its non-encoder axes (the scenario's keys, seed, n_eval) that its
cells (and, for a searcher that draws configs, its trials) take; a resumed study measures only settings
it has not measured yet. ``check_threshold`` is the spec-time guard: an analysis threshold above every
oracle of its metric asks for a phase no encoder reaches, and is refused before anything trains.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.baselines import BASELINES_FILE, DESCRIPTORS, load_baselines, metadata
from trainables.baselines import BASELINES, RECOVERY_METRICS, SETTING_KEYS, measure, setting_of

SPEC_CHECK_N = 512  # held-out points of the spec-time oracles (a study's own n_eval is usually 2048)
SPEC_CHECK_TOLERANCE = 0.02  # about two standard errors of an accuracy over 8 labellings on 256 test points
_LOG_BATCH = 1000  # MLflow's limit of metrics per log_batch


def study_configs(spec: Any, study_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """The effective configs whose settings a study's baselines cover: its grid cells, and the configs of
    the trials in ``trials.parquet`` (a searcher may draw settings that are no grid cell)."""
    from trainables.config import effective, known_keys

    configs = list(spec.cells())
    path = Path(study_dir) / "trials.parquet" if study_dir is not None else None
    if path is not None and path.exists():
        keys = set(known_keys())
        for row in pd.read_parquet(path).to_dict("records"):
            config = {k: v for k, v in row.items() if k in keys and v is not None
                      and not (isinstance(v, float) and math.isnan(v)) and v is not pd.NA}
            try:
                configs.append(effective(config))
            except ValueError:
                continue  # a row written by an older clphase: its cell is among spec.cells() or unknown here
    return configs


def _setting_keys(configs: Iterable[Mapping[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for config in configs:
        keys.update(dict.fromkeys(k for k in setting_of(config) if k != "scenario"))
    return [k for k in keys if k not in SETTING_KEYS] + list(SETTING_KEYS)


def write_baselines(rows: Sequence[Mapping[str, Any]], path: str | Path, study: str,
                    setting_keys: Sequence[str], metrics: Sequence[str]) -> Path:
    """``rows`` (``trainables.baselines.measure``'s) as ``baselines.parquet``, replaced atomically; the
    Parquet metadata names the setting and metric columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    frame = pd.DataFrame([{"study": study, **row} for row in rows])
    order = [c for c in DESCRIPTORS if c in frame.columns] + [k for k in setting_keys if k in frame.columns]
    frame = frame[order + [m for m in metrics if m in frame.columns]]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata(setting_keys, metrics)})
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def compute_baselines(configs: Sequence[Mapping[str, Any]], study_dir: str | Path, study: str
                      ) -> tuple[pd.DataFrame, int]:
    """Measure the settings of ``configs`` that ``<study_dir>/baselines.parquet`` lacks and write the file
    with them; returns the whole table and the number of rows measured now."""
    path = Path(study_dir) / BASELINES_FILE
    known = load_baselines(study_dir)
    old = known.frame if known is not None else pd.DataFrame()
    keys = _setting_keys(configs)
    if known is not None:
        keys += [k for k in known.setting_keys if k not in keys]
    have = set()
    if len(old):
        for row in old.to_dict("records"):
            have.add((row["scenario"], *(_key(row.get(k)) for k in keys)))
    todo = [c for c in configs
            if (c["scenario"], *(_key(setting_of(c).get(k)) for k in keys)) not in have]
    if not todo:
        return old, 0
    rows = measure(todo)
    metrics = list(dict.fromkeys([*(known.metrics if known else []),
                                  *(k for row in rows for k in row if k not in DESCRIPTORS and k not in keys)]))
    frame = pd.concat([old, pd.DataFrame([{"study": study, **r} for r in rows])], ignore_index=True)
    write_baselines(frame.drop(columns="study").to_dict("records"), path, study, keys, metrics)
    return frame, len(rows)


def _key(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def log_to_parent(study_dir: str | Path, tracking_uri: str, parent_id: str) -> int:
    """Write the study's baselines as metrics on its parent run (``baseline/<name>/<metric>[/<setting>]``, the
    mean over seeds) where the run lacks them; returns how many were written."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    baselines = load_baselines(study_dir)
    if baselines is None:
        return 0
    client = MlflowClient(tracking_uri)
    held = client.get_run(parent_id).data.metrics
    values = {k: v for k, v in baselines.parent_metrics().items() if held.get(k) != v}
    now = int(time.time() * 1000)
    batch = [Metric(k, v, now, 0) for k, v in values.items()]
    for i in range(0, len(batch), _LOG_BATCH):
        client.log_batch(parent_id, metrics=batch[i:i + _LOG_BATCH])
    return len(batch)


def ensure_baselines(spec: Any, study_dir: str | Path, tracking_uri: str | None, parent_id: str | None) -> Path | None:
    """At the end of a study's run: its baselines computed where missing and logged to its parent run. A
    failure here is printed, never raised: the trials are recorded, and ``clphase analyze`` reports without
    the baselines it lacks."""
    path = Path(study_dir) / BASELINES_FILE
    try:
        start = time.perf_counter()
        frame, new = compute_baselines(study_configs(spec, study_dir), study_dir, spec.name)
        if new:
            print(f"[clphase] baselines: {new} rows ({', '.join(frame['baseline'].unique())}) measured in "
                  f"{time.perf_counter() - start:.1f} s: {path}", flush=True)
    except Exception as err:  # noqa: BLE001
        print(f"[clphase] baselines not computed ({type(err).__name__}: {err}); the report goes without them",
              flush=True)
        return None
    if tracking_uri and parent_id:
        try:
            log_to_parent(study_dir, tracking_uri, parent_id)
        except Exception as err:  # noqa: BLE001 (an unreachable store: clphase analyze logs them again)
            print(f"[clphase] baselines not logged to MLflow ({type(err).__name__}); they are in {path}", flush=True)
    return path


# --- the spec-time check ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _oracle_values(settings: tuple[tuple[tuple[str, Any], ...], ...], metric: str) -> tuple[tuple[Any, ...], ...]:
    """Per setting: ``(complete, ((oracle, value), ...))``; complete is False where an oracle the scenario
    defines has no representation there (e.g. too many clusters): no verdict from such a setting."""
    configs = [dict(s) for s in settings]
    rows = measure(configs, names=[b.name for s in configs for b in BASELINES[s["scenario"]] if b.kind == "oracle"])
    out = []
    for config in configs:
        setting = setting_of(config)
        mine = [r for r in rows if all(_key(r.get(k)) == _key(v) for k, v in setting.items())]
        defined = {b.name for b in BASELINES[config["scenario"]] if b.kind == "oracle"}
        values = tuple((r["baseline"], r.get(metric, math.nan)) for r in mine)
        out.append((defined <= {name for name, _ in values}, values))
    return tuple(out)


def check_threshold(spec: Any) -> None:
    """Refuse (ValueError) an analysis threshold above every oracle of its metric, at every setting of the
    study's cells: a phase that no encoder enters, or one every cell is in. The oracles are measured on a
    ``SPEC_CHECK_N``-point held-out sample of the first seed, so the threshold must lie more than
    ``SPEC_CHECK_TOLERANCE`` above them; metrics that an oracle does not bound (``RECOVERY_METRICS``) are
    not checked."""
    metric, threshold = spec.analysis.get("metric"), spec.analysis.get("threshold")
    if metric not in RECOVERY_METRICS or not isinstance(threshold, int | float) or isinstance(threshold, bool):
        return
    settings: dict[tuple, tuple] = {}
    for cell in spec.cells():
        if cell["scenario"] not in BASELINES:
            return
        config = {**cell, "seed": spec.seeds[0], "n_eval": min(int(cell["n_eval"]), SPEC_CHECK_N)}
        setting = tuple(setting_of(config).items())
        settings.setdefault(setting, setting)
    ordered = list(settings)
    best: tuple[float, str, tuple] | None = None
    for start in range(0, len(ordered), 16):  # stop at the first setting whose oracles reach the threshold
        chunk = tuple(ordered[start:start + 16])
        for setting, (complete, values) in zip(chunk, _oracle_values(chunk, metric), strict=True):
            finite = [(v, name) for name, v in values if isinstance(v, float) and math.isfinite(v)]
            if not complete or not finite:
                return
            top, name = max(finite)
            if top + SPEC_CHECK_TOLERANCE >= threshold:
                return
            if best is None or top > best[0]:
                best = (top, name, setting)
    if best is None:
        return
    top, name, setting = best
    varying = {k: v for k, v in setting if k not in ("scenario", "seed", "n_eval")
               and len({dict(s).get(k) for s in ordered}) > 1}
    where = " at " + ", ".join(f"{k}={v}" for k, v in varying.items()) if varying else ""
    raise ValueError(
        f"analysis.threshold {threshold:g} lies above every oracle of {metric}: the best, {name}, measures "
        f"{top:.3f}{where} (its ideal representation, on a {SPEC_CHECK_N}-point held-out sample), so no encoder "
        f"of this study crosses {metric} = {threshold:g}; lower the threshold below the oracle, or study another "
        "metric")
