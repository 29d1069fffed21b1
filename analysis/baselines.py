"""A study's baselines (``runs/<study>/baselines.parquet``) read against its trials.

``clphase run`` measures, once per study, every metric on representations that need no training
(``trainables.baselines``): the *oracles*, ideal for a function class, and the *input* x itself. The file
holds one row per baseline and setting of the study's non-encoder axes (the scenario's keys, ``seed`` and
``n_eval``: what a held-out sample depends on), with ``baseline``, ``kind`` (oracle / input), ``ideal_for``,
``dims`` and every metric as plain columns; its Parquet metadata names the setting and metric columns.

Read against the trials, a baseline is the value of a metric at the trial's own setting and seed, so
a trial is compared with the ideal representation *of its own held-out sample*. The normalised metric is
the fraction of the way from the input to the best oracle, ``(m - input) / (oracle - input)``: 0 is
what x alone gives, 1 the ideal representation, on every scenario and noise level alike. The *best*
oracle is the one farthest from the input (the largest ``|oracle - input|``), so the scale also runs
the right way for a metric an ideal encoder lowers (``style_r2``). Where the input already reaches
the oracle (``|oracle - input|`` below ``MIN_GAP``) the normalised value is NaN: the metric does not
tell the input from the ideal there.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BASELINES_FILE = "baselines.parquet"
DESCRIPTORS = ("study", "scenario", "baseline", "kind", "ideal_for", "dims")
METADATA_KEY = b"clphase.baselines"  # Parquet key-value metadata: {"setting_keys": [...], "metrics": [...]}
MIN_GAP = 1e-3  # |oracle - input| below this: no normalisation (the metric does not separate them)


def _comparable(value: Any) -> Any:
    """A setting value as a join key: numbers as float (an int64 column and a float one still match)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def _label(parts: Mapping[str, Any]) -> str:
    """A setting as part of an MLflow metric key (letters, digits, ``_ - . / space`` only)."""
    text = " ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in parts.items())
    return re.sub(r"[^\w.\-/ ]", "_", text)


@dataclass
class Baselines:
    """``frame``: one row per baseline and setting (seed included); ``setting_keys``: its setting columns;
    ``metrics``: its metric columns."""

    frame: pd.DataFrame
    setting_keys: list[str]
    metrics: list[str]

    @property
    def oracles(self) -> list[str]:
        return list(dict.fromkeys(self.frame.loc[self.frame["kind"] == "oracle", "baseline"]))

    def values(self, trials: pd.DataFrame, metric: str) -> pd.DataFrame:
        """Each baseline's ``metric`` at each trial's setting: (len(trials), n_baselines), trials' index,
        NaN where the study has no such baseline row. Settings are matched on the setting columns the
        trials table has (a setting key it lacks is averaged over)."""
        names = list(dict.fromkeys(self.frame["baseline"]))
        if metric not in self.frame.columns or not len(trials):
            return pd.DataFrame(np.nan, index=trials.index, columns=names)
        keys = [k for k in self.setting_keys if k in trials.columns]
        table = self.frame[keys + ["baseline", metric]].copy()
        for k in keys:
            table[k] = table[k].map(_comparable).astype(object)
        wide = table.pivot_table(index=keys, columns="baseline", values=metric, aggfunc="mean", dropna=False) \
            if keys else table.groupby("baseline")[metric].mean().to_frame().T
        if not keys:
            return pd.DataFrame(np.repeat(wide.to_numpy(), len(trials), 0), index=trials.index, columns=wide.columns)
        wide = wide.reset_index()
        left = pd.DataFrame({k: trials[k].map(_comparable).astype(object) for k in keys}, index=trials.index)
        joined = left.reset_index().merge(wide, on=keys, how="left").set_index("index")
        return joined.reindex(columns=names).astype(float)

    def best_oracle(self, values: pd.DataFrame) -> pd.Series:
        """Per row of ``values`` (from ``values()``): the name of the oracle farthest from the input (the highest
        one where the input has no value of the metric, e.g. ``subspace_overlap`` of the identity)."""
        oracles = [o for o in self.oracles if o in values.columns]
        if not oracles:
            return pd.Series(None, index=values.index, dtype=object)
        base = values["input"] if "input" in values.columns else pd.Series(np.nan, index=values.index)
        gap = values[oracles].sub(base, axis=0).abs().where(base.notna(), values[oracles], axis=0)
        best = gap.fillna(-1.0).idxmax(axis=1)
        return best.where(gap.notna().any(axis=1), None)

    def normalised(self, trials: pd.DataFrame, metric: str) -> pd.Series:
        """``(m - input) / (best oracle - input)`` per trial (NaN where the gap is below ``MIN_GAP``)."""
        values = self.values(trials, metric)
        best = self.best_oracle(values)
        oracle = pd.Series([values.at[i, b] if isinstance(b, str) else math.nan for i, b in best.items()],
                           index=trials.index, dtype=float)
        base = values["input"] if "input" in values.columns else pd.Series(math.nan, index=trials.index)
        gap = oracle - base
        measured = pd.to_numeric(trials[metric], errors="coerce") if metric in trials.columns else math.nan
        return ((measured - base) / gap.where(gap.abs() >= MIN_GAP)).rename(f"{metric}_normalised")

    def varying_keys(self) -> list[str]:
        """Setting keys (seed aside) that take more than one value in the study."""
        return [k for k in self.setting_keys if k != "seed" and k in self.frame.columns
                and self.frame[k].map(_comparable).nunique(dropna=False) > 1]

    def table(self, metrics: Iterable[str] | None = None) -> pd.DataFrame:
        """Mean and std over seeds of each baseline at each setting: ``baseline``, ``kind``, ``dims``,
        ``ideal_for``, the varying setting keys, ``n_seeds``, ``<metric>`` and ``<metric>_std``."""
        metrics = [m for m in (metrics or self.metrics) if m in self.frame.columns]
        keys = ["baseline", "kind", "ideal_for", *self.varying_keys()]
        grouped = self.frame.groupby(keys, sort=False, dropna=False)
        out = grouped[metrics].mean()
        spread = grouped[metrics].std(ddof=1).add_suffix("_std")
        out = pd.concat([grouped["dims"].first(), grouped.size().rename("n_seeds"), out, spread], axis=1)
        return out.reset_index()

    def parent_metrics(self, metrics: Iterable[str] | None = None) -> dict[str, float]:
        """MLflow metrics for the study's parent run: ``baseline/<name>/<metric>`` (the mean over seeds),
        with ``/<setting>`` appended where the study has several settings (``n_invariant 3``)."""
        table = self.table(metrics)
        keys = self.varying_keys()
        out: dict[str, float] = {}
        for row in table.to_dict("records"):
            suffix = "/" + _label({k: row[k] for k in keys}) if keys else ""
            for m in (m for m in (metrics or self.metrics) if m in row):
                value = row[m]
                if isinstance(value, numbers.Real) and math.isfinite(value):
                    out[f"baseline/{row['baseline']}/{m}{suffix}"] = round(float(value), 6)
        return out


def cell_references(diagram: Any, trials: pd.DataFrame, baselines: Baselines | None) -> pd.DataFrame | None:
    """Each baseline's value of ``diagram.metric`` in each cell of a fitted ``PhaseDiagram``: the diagram's
    keys, its y, ``baseline``, ``kind`` and ``value`` (the mean over the cell's trials, each read at its own
    setting and seed). None without baselines or where the study has none of this metric."""
    if baselines is None or diagram.metric not in baselines.metrics:
        return None
    keys = [diagram.x] + ([diagram.slice] if diagram.slice else []) + [diagram.y]
    rows = trials.dropna(subset=[k for k in keys if k in trials.columns])
    if "status" in rows.columns and (rows["status"] == "TERMINATED").any():
        rows = rows[rows["status"] == "TERMINATED"]
    values = baselines.values(rows, diagram.metric)
    if values.isna().all().all():
        return None
    frame = pd.concat([rows[keys].reset_index(drop=True), values.reset_index(drop=True)], axis=1)
    long = frame.melt(id_vars=keys, var_name="baseline", value_name="value")
    out = long.groupby(keys + ["baseline"], observed=True, sort=False, dropna=False)["value"].mean().reset_index()
    kinds = baselines.frame.drop_duplicates("baseline").set_index("baseline")["kind"]
    out["kind"] = out["baseline"].map(kinds)
    return out[keys + ["baseline", "kind", "value"]]


def metadata(setting_keys: Iterable[str], metrics: Iterable[str]) -> dict[bytes, bytes]:
    """The Parquet key-value metadata ``load_baselines`` reads the column roles from."""
    return {METADATA_KEY: json.dumps({"setting_keys": list(setting_keys), "metrics": list(metrics)}).encode()}


def load_baselines(source: str | Path) -> Baselines | None:
    """The baselines of a study dir (or of the study of a ``trials.parquet``); None when there are none."""
    import pyarrow.parquet as pq

    path = Path(source)
    path = (path.parent if path.suffix == ".parquet" else path) / BASELINES_FILE
    if not path.exists():
        return None
    frame = pd.read_parquet(path)
    meta = json.loads((pq.read_schema(path).metadata or {}).get(METADATA_KEY, b"{}"))
    metrics = meta.get("metrics") or [c for c in frame.columns if c not in DESCRIPTORS
                                      and pd.api.types.is_float_dtype(frame[c])]
    keys = meta.get("setting_keys") or [c for c in frame.columns if c not in DESCRIPTORS and c not in metrics]
    return Baselines(frame, [k for k in keys if k in frame.columns], [m for m in metrics if m in frame.columns])
