"""``clphase analyze``: fit a study's phase diagram, hold it against the theory, draw and report it.

Writes ``<study_dir>/phase/``: ``phase_diagram.png``, ``metric_curves.png``,
``loss_vs_accuracy.png`` (when the table has ``train_loss``), ``theory_agreement.png`` (when the
theory predicts something for the diagram), ``summary.json`` and a self-contained
``report.html`` (figures embedded) that opens with the spec's question and expectation and the
verdict. Then it writes the answer on the study's MLflow parent run (the newest run of experiment
= study name tagged ``clphase.role = parent`` whose ``clphase.study_dir`` is this study dir, else
the newest parent run of the experiment): question, expectation and verdict as its description,
the axes and threshold as params, one metric per boundary row (``y_critical/<row>``, ``y_low/``,
``y_high/``, ``censored/``: 1 above the range, -1 below, 0 inside), ``theory_agreement`` (the
fraction of rows that agree) and the trial counts; and logs the folder as artifacts under
``phase/``. Axis, metric and threshold default to the ``analysis:`` block of the study's
``spec.yaml``; arguments override it (an analysis whose choices differ from those the parent run
already holds is written to disk only: MLflow params cannot change).

Agreement with the theory is ``analysis.agreement``'s rule, the one the claims and ``clphase verify``
use: a row agrees when the theory's value lies in the row's bootstrap interval ``(y_low, y_high]``,
or when both put the boundary beyond the same end of the range; a row without an interval (one
seed) does not agree.

Three axes. When the slice is numeric with two values or more (``aug_noise``), it is the diagram's
third axis z: ``phase_diagram.png`` becomes small multiples (one heat map per z, one colour scale),
``critical_dim.png`` draws the critical y against z per x with its bands and the theory's curve, and
``summary.json`` holds the ``surface``: every (x, z) cell's critical y with its band, censoring and
agreement, the fraction of cells that agree and those that do not, and each x's critical z (the
largest z at which some y still reaches the phase, ``PhaseDiagram.critical_z_``) against the
theory's. The parent run gets ``z_critical/<x>``, ``z_low/``, ``z_high/``, ``z_censored/`` and
``critical_z_agreement`` beside the per-row metrics.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from analysis.agreement import compare, compare_critical_z, summarise, theory_critical_z, theory_surface
from analysis.baselines import BASELINES_FILE, Baselines, cell_references, load_baselines
from analysis.load import ANALYSIS_KEYS, load_analysis_defaults, load_trials, study_dir_of
from analysis.phase import PhaseDiagram
from analysis.plots import (
    plot_agreement,
    plot_critical_dim,
    plot_loss_vs_accuracy,
    plot_metric_curves,
    plot_phase_diagram,
    plot_small_multiples,
    save_png,
)
from analysis.theory import expectations, theory_boundaries

PHASE_DIR = "phase"
_REQUIRED = ("x", "y", "metric", "threshold")
_NO_SLICE = ("", "none", "None")
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
_ANSWER_PARAMS = ("x", "y", "metric", "threshold", "slice", "increasing", "n_boot")  # the choices behind an answer
_BOUNDARY_METRICS = ("y_critical", "y_low", "y_high", "z_critical", "z_low", "z_high", "z_theory", "censored",
                     "z_censored", "normalised_plateau")
_AGREEMENT_METRICS = ("theory_agreement", "theory_rows_agree", "theory_rows_predicted", "critical_z_agreement")
_MAX_DESCRIPTION = 7500  # MLflow keeps tag values up to 8000 characters


def _jsonable(value: Any) -> Any:
    """NaN -> None, numpy scalars -> Python, containers recursively."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [_jsonable(r) for r in frame.astype(object).to_dict("records")]


def _choices(source: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """Spec defaults overridden by the given arguments; names what is missing."""
    chosen = {**load_analysis_defaults(source), **{k: v for k, v in overrides.items() if v is not None}}
    missing = [k for k in _REQUIRED if chosen.get(k) is None]
    if missing:
        flags = ", ".join(f"--{k}" for k in missing)
        raise ValueError(
            f"analyze needs {', '.join(missing)}: give {flags}, or an analysis: block in "
            f"{study_dir_of(source) / 'spec.yaml'} (e.g. analysis: {{x: capacity, y: embedding_dim, "
            "metric: randlabel_acc, threshold: 0.9, slice: aug_noise}})"
        )
    if chosen.get("slice") in _NO_SLICE:
        chosen["slice"] = None
    try:
        chosen["threshold"] = float(chosen["threshold"])
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number, got {chosen['threshold']!r}") from None
    return chosen


# --- MLflow ----------------------------------------------------------------------------------------
def _store_exists(uri: str) -> bool:
    """False for a local store (sqlite file, file/path) that is not there: opening it would create it."""
    if uri.startswith("sqlite:"):
        path = uri.split("sqlite:///", 1)[-1]
        return path in ("", ":memory:") or Path(path).exists()
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else uri).exists()
    return True


def find_parent_run(study: str, study_dir: str | Path, tracking_uri: str | None = None) -> tuple[str | None, str]:
    """``(run_id, message)`` of the study's MLflow parent run (None and why when there is none)."""
    from mlflow import MlflowClient

    from study.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    if not _store_exists(uri):
        return None, f"no MLflow store at {uri}; artifacts not logged"
    if uri.startswith("http"):
        for key, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        return None, f"no MLflow experiment {study!r} at {uri}; artifacts not logged"
    parents = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`clphase.role` = 'parent'",
        order_by=["attributes.start_time DESC"], max_results=1000,
    )
    if not parents:
        return None, f"MLflow experiment {study!r} has no parent run (tag clphase.role = parent); artifacts not logged"
    here = Path(study_dir).resolve()
    for run in parents:
        tagged = run.data.tags.get("clphase.study_dir")
        if tagged and Path(tagged).resolve() == here:
            return run.info.run_id, f"parent run {run.info.run_id} of {here}"
    run = parents[0]
    return run.info.run_id, f"newest parent run {run.info.run_id} (none tagged with {here})"


def _study_record(study_dir: str | Path) -> dict[str, Any]:
    """The study's own record (``study.json``, written by ``clphase run``: its spec, store, parent run), or {}."""
    path = Path(study_dir) / "study.json"
    try:
        record = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _study_tracking_uri(study_dir: str | Path) -> str | None:
    """The store the study itself was recorded in, if any."""
    return _study_record(study_dir).get("tracking_uri")


# --- agreement and the verdict ------------------------------------------------------------------
def _side(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _finite(value: Any) -> bool:
    return value is not None and not pd.isna(value) and math.isfinite(float(value))


def _fmt(value: Any) -> str:
    return "—" if not _finite(value) else f"{float(value):.3g}"


def _interval_text(row: dict[str, Any]) -> str:
    if not (_finite(row["y_low"]) or _finite(row["y_high"])):
        return "—"
    low = _fmt(row["y_low"]) if _finite(row["y_low"]) else "−∞"
    high = _fmt(row["y_high"]) if _finite(row["y_high"]) else "∞"
    return f"({low}, {high}]"


def _boundary_text(row: dict[str, Any]) -> str:
    side = _side(row["censored"])
    if side == "above":
        return f"> {_fmt(row.get('y_bound'))} (not reached)"
    if side == "below":
        return f"≤ {_fmt(row.get('y_bound'))} (past it everywhere)"
    return _fmt(row["y_critical"])


def _theory_text(row: dict[str, Any]) -> str:
    side = _side(row.get("censored_theory"))
    if side == "above":
        return "never reached"
    if side == "below":
        return "reached everywhere"
    return _fmt(row.get("y_theory"))


def _row_name(row: dict[str, Any], keys: list[str]) -> str:
    return ", ".join([str(row[keys[0]])] + [f"{k} {_value(row[k])}" for k in keys[1:]])


def _value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _metric_label(row: dict[str, Any], keys: list[str]) -> str:
    """A row as part of an MLflow metric key (letters, digits, ``_ - . space`` only)."""
    return re.sub(r"[^\w.\- ]", "_", " ".join([str(row[keys[0]])] + [f"{k} {_value(row[k])}" for k in keys[1:]]))


def verdict(summary: dict[str, Any]) -> str:
    """One paragraph: how many rows agree with the theory (and which do not), the qualitative claims."""
    agreement_ = summary["theory"]["agreement"]
    n, k = agreement_["n_predicted"], agreement_["n_agree"]
    if not n:
        text = "The theory makes no quantitative prediction for this diagram."
    else:
        head = ("The data agree with the theory" if k == n else
                "The data do not agree with the theory" if k == 0 else "The data partly agree with the theory")
        text = f"{head}: {k} of {n} rows ({k / n:.0%}) have the predicted boundary inside their " \
               f"{summary['diagram']['ci']:.0%} interval (or beyond the same end of the range)."
        disagree = summary["theory"]["disagree"]
        if disagree:
            text += " Not agreeing: " + "; ".join(f"{d['row']} ({d['reason']})" for d in disagree) + "."
        ratio = agreement_.get("mean_log2_ratio")
        if ratio is not None:
            text += (f" Where both are values, the fitted boundary is {2 ** ratio:.2g} times the predicted one on "
                     f"average (mean log2 ratio {ratio:+.2f}).")
    surface = summary.get("surface")
    if surface and surface["critical_z_agreement"]["n_predicted"]:
        z, judged = surface["z"], [r for r in surface["critical_z"] if r["agree"] is not None]
        text += (f" Critical {z} per {surface['x']} (the largest {z} at which some {surface['y']} still reaches the "
                 f"phase): " + "; ".join(f"{r[surface['x']]} {_critical_z_text(r, z)}, theory {_z_theory_text(r)}"
                                         f" ({'agrees' if r['agree'] else 'does not agree'})" for r in judged) + ".")
    claims = summary["theory"]["expectations"]
    if claims:
        held = sum(1 for c in claims if c["holds"])
        text += f" Qualitative claims: {held} of {len(claims)} hold."
    return text


# --- the report --------------------------------------------------------------------------------
def _figures(diagram: PhaseDiagram, trials: pd.DataFrame, predicted: pd.DataFrame, table: pd.DataFrame,
             folder: Path, volume: dict[str, Any] | None = None, references: pd.DataFrame | None = None
             ) -> tuple[dict[str, str], list[str]]:
    files, notes = {}, []
    has_theory = bool(table["agree"].notna().any())
    plot_phase = plot_small_multiples if diagram.z else plot_phase_diagram  # three axes: one small panel per z
    files["phase_diagram"] = save_png(plot_phase(diagram, predicted if has_theory else None, references=references),
                                      folder / "phase_diagram.png").name
    if volume is not None:
        curve = volume["theory_curve"]
        has_curve = bool(curve["y_theory"].notna().any() or curve["censored_theory"].notna().any())
        files["critical_dim"] = save_png(plot_critical_dim(diagram, curve if has_curve else None,
                                                           volume["critical_z_table"]),
                                         folder / "critical_dim.png").name
    files["metric_curves"] = save_png(plot_metric_curves(diagram, references=references),
                                      folder / "metric_curves.png").name
    if "train_loss" in trials.columns:
        by = diagram.x if diagram.x in ("capacity", "encoder") else "capacity"
        files["loss_vs_accuracy"] = save_png(plot_loss_vs_accuracy(trials, metric=diagram.metric, by=by),
                                             folder / "loss_vs_accuracy.png").name
    else:
        notes.append("no train_loss column: loss-vs-accuracy figure skipped")
    if has_theory:
        files["theory_agreement"] = save_png(plot_agreement(table, diagram), folder / "theory_agreement.png").name
    else:
        notes.append("the theory makes no quantitative prediction for this diagram: agreement figure skipped")
    return files, notes


# Fits a 1024-px window and MLflow's artifact preview (about 800 px): nothing has a fixed width.
_CSS = """*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;font-size:16px;line-height:1.45;max-width:920px;margin:1.5em auto;
padding:0 16px;color:#222}
h1{font-size:1.6em;margin:.2em 0 .6em}h2{font-size:1.25em;margin:1.6em 0 .4em}
p,li{overflow-wrap:anywhere}
.answer{border-left:4px solid #888;background:#f7f7f7;padding:.6em 1em;margin:1em 0}
.answer.ok{border-color:#1a7f37}.answer.bad{border-color:#c62828}.answer.part{border-color:#b7791f}
table{border-collapse:collapse;font-size:14px;max-width:100%}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{display:block;max-width:100%;height:auto;border:1px solid #eee;margin:.5em 0}
code{background:#f6f6f6;padding:0 3px;overflow-wrap:anywhere}
.ok{color:#1a7f37}.bad{color:#c62828}.muted{color:#666;font-size:14px}"""

_CAPTIONS = {
    "phase_diagram": "Seed-mean metric over the plane. White dots: the fitted boundary of each row; translucent "
                     "box: its bootstrap interval; white triangles: rows whose boundary lies beyond that edge of the "
                     "range (censored); red crosses and dashes: the theory's boundary (red open triangles: beyond "
                     "the range), in the probe's units. Pointers on the colour bar: the baselines (the input x and "
                     "the oracles, measured without training).",
    "theory_agreement": "Each row's fitted boundary against the theory's, labelled with its row. The bar is "
                        "the fitted interval (a, b]: a row agrees when its bar crosses the diagonal (touching it "
                        "at a is not enough: the metric had not crossed there), or when both sit beyond the same "
                        "end of the range (triangles in a corner).",
    "critical_dim": "The critical surface cut per x: the fitted critical value along the boundary's axis against "
                    "the third axis (blue; band: its bootstrap interval; triangles: beyond the range), the x's "
                    "critical z (black line, grey: its interval [z_low, z_high)), and the theory's critical value "
                    "(red dashes; red dots at the top: never crosses) and critical z (red dash-dot).",
    "metric_curves": "The metric along the boundary's axis, one line per row: seed mean, band ± one standard "
                     "deviation over seeds; red dots: the threshold; grey dashes: the input x; coloured dots: the "
                     "oracles; right axis (where the baselines are constant): the normalised metric.",
    "loss_vs_accuracy": "Final contrastive loss against the study's metric, one colour per encoder capacity: a lower "
                        "loss need not mean a better metric across function classes (Saunshi et al. 2022).",
}
_FIGURE_ORDER = ("phase_diagram", "critical_dim", "theory_agreement", "metric_curves", "loss_vs_accuracy")


def _boundary_table(table: pd.DataFrame, keys: list[str], d: dict[str, Any]) -> str:
    """The boundaries as a narrow HTML table: one row per (x, slice), text cells, no Python reprs."""
    esc = html.escape
    has_theory = bool(table["agree"].notna().any())
    head = [*keys, f"critical {d['y']}", f"{d['ci']:.0%} interval", "seeds", "trials used"]
    head += ["theory", "agrees"] if has_theory else []
    body = []
    for row in table.to_dict("records"):
        cells = [_value(row[k]) for k in keys]
        cells += [_boundary_text(row), _interval_text(row), str(row["n_seeds"]), f"{row['n_used']}/{row['n_trials']}"]
        if has_theory:
            mark = {True: "<span class='ok'>yes</span>", False: "<span class='bad'>no</span>"}.get(row["agree"], "—")
            cells += [esc(_theory_text(row)), mark]
            body.append("<tr>" + "".join(f"<td>{c if i == len(cells) - 1 else esc(c)}</td>"
                                         for i, c in enumerate(cells)) + "</tr>")
        else:
            body.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    return ("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


def _surface_html(surface: dict[str, Any]) -> str:
    """The critical z of each x against the theory's, the fraction of (x, z) cells that agree and those that
    do not."""
    esc = html.escape
    x, z = surface["x"], surface["z"]
    head = [x, f"critical {z}", "theory", "agrees", "why"]
    body = []
    for row in surface["critical_z"]:
        mark = {True: "<span class='ok'>yes</span>", False: "<span class='bad'>no</span>"}.get(row["agree"], "—")
        cells = [esc(str(row[x])), esc(_critical_z_text(row, z)), esc(_z_theory_text(row)), mark,
                 esc(row["agree_reason"])]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    a = surface["agreement"]
    cells_text = (f"{a['n_agree']} of {a['n_predicted']} ({x}, {z}) cells with a prediction agree with the theory "
                  f"({a['fraction_agree']:.0%})." if a["n_predicted"] else "The theory predicts no cell.")
    disagree = "".join(f"<li>{esc(str(d[x]))}, {esc(z)} {d[z]:g}: {esc(d['reason'])}</li>" for d in surface["disagree"])
    return (f"<h2>Critical {esc(z)}</h2><p>For each {esc(x)}, the largest {esc(z)} at which some "
            f"{esc(surface['y'])} still reaches the phase (interpolated; interval [z_low, z_high) from resampling "
            "the seeds):</p><table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>"
            + f"<h2>Critical surface against the theory</h2><p>{esc(cells_text)}</p>"
            + (f"<p>Not agreeing:</p><ul class='muted'>{disagree}</ul>" if disagree else ""))


def _num(value: Any) -> str:
    return "—" if not _finite(value) else f"{float(value):.3f}"


def _baselines_summary(diagram: PhaseDiagram, trials: pd.DataFrame, predicted: pd.DataFrame,
                       baselines: Baselines | None, keys: list[str]) -> dict[str, Any] | None:
    """The study's baselines for the report: the table (mean and std over seeds per baseline and setting, every
    metric), the parent run's metrics, and per row of the diagram its best cell raw and normalised beside the
    input, the best oracle, the probe's ceiling (the row's ideal oracle) and the theory's ceiling."""
    if baselines is None:
        return None
    metric = diagram.metric
    out: dict[str, Any] = {"file": BASELINES_FILE, "metric": metric, "settings": baselines.varying_keys(),
                           "table": _records(baselines.table()), "metrics": baselines.parent_metrics(),
                           "rows": [], "line": ""}
    if metric not in baselines.metrics:
        out["note"] = f"{BASELINES_FILE} does not measure {metric}"
        return out
    ok = trials[trials["status"] == "TERMINATED"] if "status" in trials.columns else trials
    ok = ok[pd.to_numeric(ok[metric], errors="coerce").notna()]
    values, normalised = baselines.values(ok, metric), baselines.normalised(ok, metric)
    best = baselines.best_oracle(values)
    theory = {tuple(str(r[k]) for k in keys): r for r in predicted.to_dict("records")}
    for row in diagram.boundary_[keys].to_dict("records"):
        mask = np.ones(len(ok), dtype=bool)
        for k in keys:
            mask &= (ok[k].astype(object) == row[k]).to_numpy()
        mine = ok[mask]
        if not len(mine):
            continue
        cells = mine.groupby(diagram.y)[metric].mean()
        at = mine.index[mine[diagram.y] == cells.idxmax()]
        names = best.loc[at].dropna()
        oracle = str(names.mode().iloc[0]) if len(names) else None
        t = theory.get(tuple(str(row[k]) for k in keys), {})
        out["rows"].append({**row, diagram.y: cells.idxmax(), "plateau": cells.max(),
                            "normalised": normalised.loc[at].mean(), "input": values.loc[at, "input"].mean(),
                            "best_oracle": oracle,
                            "best_oracle_value": values.loc[at, oracle].mean() if oracle else None,
                            "oracle": t.get("oracle"), "oracle_value": t.get("oracle_value"),
                            "theory_ceiling": t.get("theory_ceiling"), "theory_readout": t.get("theory_readout")})
    per = baselines.table([metric])
    parts = []
    for name, group in per.groupby("baseline", sort=False):
        low, high = group[metric].min(), group[metric].max()
        text = _num(low) if not _finite(high) or high - low < 5e-4 else f"{_num(low)}–{_num(high)}"
        kind = group["kind"].iloc[0]
        parts.append(f"input {text}" if kind == "input" else f"oracle `{name}` {text}")
    where = f" over {', '.join(out['settings'])}" if out["settings"] else ""
    out["line"] = (f"**Baselines** of `{metric}` (no training; seed means{where}): {'; '.join(parts)}. Normalised, "
                   "a metric runs from 0 (the input) to 1 (the best oracle).")
    return out


def _baselines_html(baselines: dict[str, Any], keys: list[str]) -> str:
    """The baselines table and the rows read against it (raw and normalised), with each theory ceiling's
    read-out."""
    esc = html.escape
    metric, settings = baselines["metric"], baselines["settings"]
    parts = [f"<h2>Baselines</h2><p>Every metric measured without training, with the trials' own held-out samples, "
             f"probes and seeds (<code>{esc(baselines['file'])}</code>): the <b>input</b> x, the floor an encoder "
             "must beat, and the <b>oracles</b>, the representations the theory names as ideal for a function "
             f"class. The normalised {esc(metric)} is (m − input) / (best oracle − input): 0 is what x alone gives, "
             "1 the ideal representation.</p>"]
    if baselines.get("note"):
        return parts[0] + f"<p class='muted'>{esc(baselines['note'])}</p>"
    head = ["baseline", "kind", "dims", *settings, "seeds", f"{metric} (mean ± std)", "ideal for"]
    body = []
    for row in baselines["table"]:
        spread = f" ± {row[metric + '_std']:.3f}" if _finite(row.get(metric + "_std")) else ""
        cells = [row["baseline"], row["kind"], str(row["dims"]), *[_value(row[k]) for k in settings],
                 str(row["n_seeds"]), f"{_num(row.get(metric))}{spread}", row["ideal_for"]]
        body.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells[:-1])
                    + f"<td style='text-align:left;white-space:normal'>{esc(cells[-1])}</td></tr>")
    parts.append("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"
                 + "".join(body) + "</tbody></table>")
    rows = baselines["rows"]
    if rows:
        y = next(k for k in rows[0] if k not in keys)
        readouts = list(dict.fromkeys(r["theory_readout"] for r in rows if r.get("theory_readout")))
        head = [*keys, f"best {y}", metric, "normalised", "input", "best oracle", "probe's ceiling", "theory's ceiling"]
        body = []
        for r in rows:
            probe = f"{_num(r['oracle_value'])} ({r['oracle']})" if r.get("oracle") else "—"
            mark = f" [{readouts.index(r['theory_readout']) + 1}]" if r.get("theory_readout") else ""
            cells = [*[_value(r[k]) for k in keys], _value(r[y]), _num(r["plateau"]), _num(r["normalised"]),
                     _num(r["input"]), f"{_num(r['best_oracle_value'])} ({r['best_oracle']})" if r["best_oracle"]
                     else "—", probe, f"{_num(r.get('theory_ceiling'))}{mark}" if mark else "—"]
            body.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
        parts.append(f"<h2>Rows against the baselines</h2><p>Each row's best cell (its highest seed-mean "
                     f"{esc(metric)}), raw and normalised. The probe's ceiling is the row's ideal oracle as this "
                     "study's probe measures it; the theory's ceiling is the plateau the theory predicts for the "
                     "read-out it assumes. Where the two differ, the theory's boundary is judged in the probe's "
                     "units: a threshold above the probe's ceiling is predicted never reached.</p>"
                     "<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"
                     + "".join(body) + "</tbody></table>")
        if readouts:
            parts.append("<p class='muted'>Read-outs the theory assumes: " + "; ".join(
                f"[{i}] {esc(text)}" for i, text in enumerate(readouts, 1)) + ".</p>")
    return "\n".join(parts)


def search_record(study_dir: Path, n_trials: int) -> dict[str, Any]:
    """Which searcher chose the trials (the spec ``clphase run`` recorded: grid, optuna or boundary), the trials it
    ran and, for a boundary search, its own record: configs against the grid's and the number of rounds."""
    searcher = (_study_record(study_dir).get("spec") or {}).get("searcher") or {}
    record: dict[str, Any] = {"type": str(searcher.get("type", "grid")), "configs": n_trials}
    path = study_dir / "boundary_search.json"
    if record["type"] == "boundary" and path.exists():
        try:
            search = json.loads(path.read_text())
        except (OSError, ValueError):
            search = {}
        record.update({k: search.get(k) for k in ("configs", "grid_configs", "fraction_of_grid")})
        rounds = search.get("rounds")
        record["rounds"] = len(rounds) if isinstance(rounds, list) else rounds  # the searcher lists each round
    return record


def search_text(search: dict[str, Any] | None) -> str:
    """One sentence naming the searcher, e.g. 'Searcher: boundary, 114 of 288 grid configs (40%) in 9 rounds.'"""
    if not search:
        return ""
    kind, n = search.get("type", "grid"), search.get("configs")
    if kind == "boundary" and search.get("grid_configs"):
        fraction = search.get("fraction_of_grid") or n / search["grid_configs"]
        rounds = f" in {search['rounds']} rounds" if search.get("rounds") else ""
        return f"Searcher: boundary, {n} of {search['grid_configs']} grid configs ({fraction:.0%}){rounds}."
    if kind == "grid":
        return f"Searcher: grid, every cell ({n} trials)."
    return f"Searcher: {kind}, {n} trials."


def _answer_class(agreement_: dict[str, Any]) -> str:
    n, k = agreement_["n_predicted"], agreement_["n_agree"]
    return "" if not n else "ok" if k == n else "bad" if k == 0 else "part"


def _html(summary: dict[str, Any], table: pd.DataFrame, keys: list[str], folder: Path) -> str:
    esc = html.escape
    d = summary["diagram"]
    spec = summary["spec"]
    side = "&ge;" if d["increasing"] else "&le;"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
             f"<title>{esc(summary['study'])}: phase diagram</title><style>{_CSS}</style></head><body>",
             f"<h1>{esc(summary['study'])}: phase diagram</h1>",
             f"<div class='answer {_answer_class(summary['theory']['agreement'])}'>"]
    if spec.get("question"):
        parts.append(f"<p><b>Question.</b> {esc(spec['question'])}</p>")
    if spec.get("expect"):
        parts.append(f"<p><b>Expectation.</b> {esc(spec['expect'])}</p>")
    parts.append(f"<p><b>Verdict.</b> {esc(summary['verdict'])}</p></div>")
    parts.append(f"<p>Boundary of <b>{esc(d['metric'])} {side} {d['threshold']:g}</b> along <b>{esc(d['y'])}</b>, "
                 f"one per <b>{esc(d['x'])}</b>" + (f" and <b>{esc(d['slice'])}</b>" if d["slice"] else "")
                 + f"; {d['ci']:.0%} intervals from {d['n_boot']} bootstrap resamples of the seeds. "
                 f"{summary['n_trials']} trials, {summary['n_used']} used. "
                 f"{esc(search_text(summary.get('search')))}</p>")
    files = summary["files"]["figures"]
    for name in [n for n in _FIGURE_ORDER if n in files] + [n for n in files if n not in _FIGURE_ORDER]:
        data = base64.b64encode((folder / files[name]).read_bytes()).decode("ascii")
        parts.append(f"<h2>{esc(name.replace('_', ' ').capitalize())}</h2>"
                     f"<img alt='{esc(name)}' src='data:image/png;base64,{data}'>"
                     f"<p class='muted'>{esc(_CAPTIONS.get(name, ''))}</p>")
        if name == "critical_dim" and summary.get("surface"):
            parts.append(_surface_html(summary["surface"]))
        if name == "phase_diagram":
            parts.append("<h2>Boundaries</h2>" + _boundary_table(table, keys, d)
                         + "<p class='muted'>An interval (a, b] says the metric has not crossed the threshold at "
                         f"{esc(d['y'])} = a and has at b (in {d['ci']:.0%} of the resamples).</p>")
            row_notes = [f"{_row_name(r, keys)}: {r['note']}" for r in table.to_dict("records") if r.get("note")]
            if row_notes:
                parts.append("<ul class='muted'>" + "".join(f"<li>{esc(n)}</li>" for n in row_notes) + "</ul>")
    if summary.get("baselines"):
        parts.append(_baselines_html(summary["baselines"], keys))
    theory = summary["theory"]
    if theory["notes"] or theory["expectations"]:
        parts.append("<h2>Theory</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in theory["notes"]) + "".join(
            f"<li class='{'ok' if e['holds'] else 'bad'}'>{esc(e['claim'])}: "
            f"{'holds' if e['holds'] else ('cannot tell' if e['holds'] is None else 'does not hold')} "
            f"({esc(e['detail'])})</li>" for e in theory["expectations"]) + "</ul>")
    if summary["notes"]:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in summary["notes"]) + "</ul>")
    parts.append(f"<h2>Source</h2><p class='muted'><code>{esc(summary['source'])}</code>, analysed "
                 f"{esc(summary['created'])}. MLflow: {esc(str(summary['mlflow'].get('message', '')))}</p>"
                 "</body></html>")
    return "\n".join(parts)


# --- the answer on the MLflow parent run ----------------------------------------------------------
def _description(summary: dict[str, Any], table: pd.DataFrame, keys: list[str]) -> str:
    """Markdown: verdict (first, so that MLflow's collapsed description shows it), question, expectation,
    the boundaries as a table, where the report is."""
    d, spec = summary["diagram"], summary["spec"]
    side = "≥" if d["increasing"] else "≤"
    head = [f"**Verdict.** {summary['verdict']}",
            f"**Question.** {spec['question']}" if spec.get("question") else "",
            f"**Expectation.** {spec['expect']}" if spec.get("expect") else "",
            f"Boundary of `{d['metric']} {side} {d['threshold']:g}` along `{d['y']}`, per `{d['x']}`"
            + (f" and `{d['slice']}`" if d["slice"] else "") + f" ({d['ci']:.0%} bootstrap intervals):"]
    surface = summary.get("surface")
    if surface:  # the critical z first: the table below may be cut at the description's length
        head.insert(3, f"**Critical `{surface['z']}`** (the largest at which some `{surface['y']}` reaches the "
                    "phase): " + "; ".join(f"{r[surface['x']]} {_critical_z_text(r, surface['z'])} (theory "
                                           f"{_z_theory_text(r)})" for r in surface["critical_z"]) + ".")
    has_theory = bool(table["agree"].notna().any())
    if (summary.get("baselines") or {}).get("line"):  # before the table's lead-in, the last of head
        head.insert(len(head) - 1, summary["baselines"]["line"])
    columns = [*keys, f"critical {d['y']}", "interval"] + (["theory", "agrees"] if has_theory else [])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    tail = "Plots and the full report: artifacts `phase/report.html` and `phase/*.png`."
    text = "\n\n".join(p for p in head if p)
    for row in table.to_dict("records"):
        cells = [_value(row[k]) for k in keys] + [_boundary_text(row), _interval_text(row)]
        if has_theory:
            cells += [_theory_text(row), {True: "yes", False: "no"}.get(row["agree"], "—")]
        line = "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"
        if len(text) + sum(map(len, lines)) + len(line) + len(tail) + 100 > _MAX_DESCRIPTION:
            lines.append(f"| … {len(table)} rows in all: see the report | " + " |" * (len(columns) - 1))
            break
        lines.append(line)
    return text + "\n\n" + "\n".join(lines) + "\n\n" + tail


def _answer(summary: dict[str, Any], table: pd.DataFrame, trials: pd.DataFrame, keys: list[str]
            ) -> tuple[dict[str, str], dict[str, float], dict[str, str]]:
    """(params, metrics, tags) of the parent run's answer."""
    d = summary["diagram"]
    params = {k: _value(d[k]) for k in _ANSWER_PARAMS if d.get(k) is not None}
    # the direction as chosen, not as inferred from the data (which can flip as a running study fills in)
    params["increasing"] = "inferred" if d.get("increasing_asked") is None else _value(d["increasing_asked"])
    metrics: dict[str, float] = {}
    for row in table.to_dict("records"):
        label = _metric_label(row, keys)
        for column in ("y_critical", "y_low", "y_high"):
            if _finite(row[column]):
                metrics[f"{column}/{label}"] = float(f"{float(row[column]):.4g}")  # an interpolation: 4 digits
        metrics[f"censored/{label}"] = {"above": 1.0, "below": -1.0}.get(_side(row["censored"]), 0.0)
    surface = summary.get("surface")
    for row in surface["critical_z"] if surface else []:
        label = re.sub(r"[^\w.\- ]", "_", str(row[surface["x"]]))
        for column in ("z_critical", "z_low", "z_high"):
            if _finite(row[column]):
                metrics[f"{column}/{label}"] = float(f"{float(row[column]):.4g}")
        metrics[f"z_censored/{label}"] = {"above": 1.0, "below": -1.0}.get(_side(row["censored"]), 0.0)
        if _finite(row["z_theory"]):
            metrics[f"z_theory/{label}"] = float(f"{float(row['z_theory']):.4g}")
    if surface and surface["critical_z_agreement"]["n_predicted"]:
        metrics["critical_z_agreement"] = round(float(surface["critical_z_agreement"]["fraction_agree"]), 4)
    agreement_ = summary["theory"]["agreement"]
    if agreement_["n_predicted"]:
        metrics["theory_agreement"] = round(float(agreement_["fraction_agree"]), 4)
        metrics["theory_rows_agree"] = float(agreement_["n_agree"])
        metrics["theory_rows_predicted"] = float(agreement_["n_predicted"])
    baselines = summary.get("baselines") or {}
    metrics.update(baselines.get("metrics") or {})  # baseline/<name>/<metric>[/<setting>], as clphase run logs them
    for row in baselines.get("rows") or []:
        if _finite(row.get("normalised")):
            metrics[f"normalised_plateau/{_metric_label(row, keys)}"] = round(float(row["normalised"]), 4)
    status = trials["status"] if "status" in trials.columns else pd.Series("TERMINATED", index=trials.index)
    diverged = trials["diverged"].fillna(0).astype(float) > 0 if "diverged" in trials.columns else status.isna()
    metrics.update(trials_total=float(len(trials)), trials_done=float((status == "TERMINATED").sum()),
                   trials_failed=float((status == "ERROR").sum()), trials_diverged=float(diverged.sum()))
    n, k = agreement_["n_predicted"], agreement_["n_agree"]
    short = f"{k} of {n} rows agree with the theory" if n else "no quantitative prediction"
    tags = {"mlflow.note.content": _description(summary, table, keys), "verdict": short}
    return params, metrics, tags


def _log_answer(run_id: str, summary: dict[str, Any], table: pd.DataFrame, trials: pd.DataFrame,
                keys: list[str], folder: Path, tracking_uri: str | None) -> str:
    """Write the answer and the files to the parent run; returns what was done. An analysis whose params
    differ from those the run holds changes nothing there (MLflow params are written once)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(tracking_uri)
    params, metrics, tags = _answer(summary, table, trials, keys)
    held = client.get_run(run_id).data.params
    clash = {k: (held[k], v) for k, v in params.items() if k in held and held[k] != v}
    clash.update({k: (held[k], None) for k in _ANSWER_PARAMS if k in held and k not in params})
    if clash:
        was = ", ".join(f"{k}={old}" + (f" (now {new})" if new is not None else " (now none)")
                        for k, (old, new) in clash.items())
        return (f"not logged: parent run {run_id} holds the answer of another analysis ({was}); this report "
                f"is on disk only. Analyse with the spec's choices to update MLflow, or pass --no-mlflow")
    now = int(time.time() * 1000)
    # what an earlier answer had and this one has not (a row censored now, no prediction now) is set to NaN
    stale = {k: math.nan for k in client.get_run(run_id).data.metrics if k not in metrics and (
        k in _AGREEMENT_METRICS or ("/" in k and k.split("/", 1)[0] in _BOUNDARY_METRICS))}
    batch = [Metric(k, v, now, 0) for k, v in {**metrics, **stale}.items()]
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items() if k not in held],
                     metrics=batch[:900], tags=[RunTag(k, v) for k, v in tags.items()])
    for i in range(900, len(batch), 1000):  # MLflow takes at most 1000 items per batch
        client.log_batch(run_id, metrics=batch[i:i + 1000])
    client.log_artifacts(run_id, str(folder), artifact_path=PHASE_DIR)
    return f"answer (description, {len(params)} params, {len(metrics)} metrics) and {PHASE_DIR}/ logged to"


# --- three axes: the critical surface and the critical z --------------------------------------------------
def _third_axis(trials: pd.DataFrame, slice: str | None) -> str | None:
    """The slice as the diagram's third axis z: when it is numeric with two values or more."""
    if not slice or slice not in trials.columns or not pd.api.types.is_numeric_dtype(trials[slice]):
        return None
    return slice if trials[slice].nunique() >= 2 else None


def _volume(diagram: PhaseDiagram, trials: pd.DataFrame, table: pd.DataFrame, keys: list[str]) -> dict[str, Any]:
    """The surface and the critical z against the theory: tables for the figures, records for summary.json."""
    critical = compare_critical_z(diagram, theory_critical_z(diagram, trials))
    z_grid = np.asarray(diagram.slice_order_, dtype=float)
    fine = np.linspace(z_grid[0], z_grid[-1], 41)
    edges = [v for v in critical["z_theory"].dropna() if z_grid[0] <= v <= z_grid[-1]]  # the curve's steps
    fine = np.unique(np.round(np.concatenate([fine, z_grid, edges, [v * (1 - 1e-6) for v in edges]]), 9))
    curve = theory_surface(diagram, trials, fine)
    cells = table[table["agree"].notna()]
    n, k = len(cells), int(cells["agree"].astype(bool).sum())
    judged = critical[critical["agree"].notna()]
    surface_columns = keys + ["y_critical", "y_low", "y_high", "censored", "y_bound", "n_seeds", "y_theory",
                              "censored_theory", "agree", "agree_reason"]
    z_columns = [diagram.x, "z_critical", "z_low", "z_high", "censored", "z_bound", "n_seeds", "monotone", "best",
                 "y_best", "note", "z_theory", "censored_theory", "theory_note", "agree", "agree_reason", "delta"]
    return {
        "critical_z_table": critical, "theory_curve": curve,
        "record": {
            "x": diagram.x, "y": diagram.y, "z": diagram.z, "z_grid": z_grid,
            "cells": _records(table[surface_columns]),
            "agreement": {"n_cells": int(len(table)), "n_predicted": n, "n_agree": k,
                          "fraction_agree": k / n if n else None},
            "disagree": [{diagram.x: r[diagram.x], diagram.z: r[diagram.z], "reason": r["agree_reason"]}
                         for r in table.to_dict("records") if r["agree"] is False],
            "critical_z": _records(critical[z_columns]),
            "critical_z_agreement": {
                "n_predicted": int(len(judged)), "n_agree": int(judged["agree"].astype(bool).sum()),
                "fraction_agree": float(judged["agree"].astype(bool).mean()) if len(judged) else None},
        },
    }


def _critical_z_text(row: dict[str, Any], z: str) -> str:
    side = _side(row["censored"])
    if side == "below":
        return f"recovers at no {z} sampled"
    if side == "above":
        return f"still recovers at the largest {z} ({_fmt(row['z_bound'])})"
    interval = "" if not (_finite(row["z_low"]) or _finite(row["z_high"])) else \
        f" in [{_fmt(row['z_low']) if _finite(row['z_low']) else '−∞'}, " \
        f"{_fmt(row['z_high']) if _finite(row['z_high']) else '∞'})"
    return f"{_fmt(row['z_critical'])}{interval}"


def _z_theory_text(row: dict[str, Any]) -> str:
    side = _side(row.get("censored_theory"))
    if side == "below":
        return "never recovers"
    if side == "above":
        return "recovers at every z"
    return _fmt(row.get("z_theory"))


def analyze(
    study_dir_or_parquet: str | Path,
    *,
    x: str | None = None,
    y: str | None = None,
    metric: str | None = None,
    threshold: float | None = None,
    slice: str | None = None,
    tracking_uri: str | None = None,
    log_to_mlflow: bool = True,
    increasing: bool | None = None,
    n_boot: int | None = None,
    random_state: int | None = 0,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Analyse one study; returns the summary (also written to ``<out_dir>/summary.json``).

    ``slice=""`` (or ``"none"``) turns off a slice the spec sets. ``out_dir`` defaults to
    ``<study_dir>/phase``. Raises ValueError / FileNotFoundError with a readable message on bad
    input (no trials, all failed, unknown column, missing choice).
    """
    source = Path(study_dir_or_parquet)
    trials = load_trials(source)
    if len(trials) == 0:
        raise ValueError(f"{source}: the trials table is empty; has the study run any trial?")
    study_dir = study_dir_of(source)
    chosen = _choices(source, dict(x=x, y=y, metric=metric, threshold=threshold, slice=slice,
                                   increasing=increasing, n_boot=n_boot))
    study = str(trials["study"].dropna().iloc[0]) if "study" in trials.columns and trials["study"].notna().any() \
        else study_dir.name
    diagram = PhaseDiagram(
        x=chosen["x"], y=chosen["y"], metric=chosen["metric"], threshold=chosen["threshold"],
        slice=chosen.get("slice"), z=_third_axis(trials, chosen.get("slice")), increasing=chosen.get("increasing"),
        n_boot=int(chosen.get("n_boot", 1000)), random_state=random_state,
    ).fit(trials)
    keys = [diagram.x] + ([diagram.slice] if diagram.slice else [])
    baselines = load_baselines(study_dir)  # oracles and input (analysis.baselines); None for an older study
    predicted = theory_boundaries(diagram, trials, baselines)
    table = compare(diagram, predicted)
    volume = _volume(diagram, trials, table, keys) if diagram.z else None
    claims = expectations(trials)
    from study.tracking import spec_head

    spec_path = study_dir / "spec.yaml"
    spec = spec_head(spec_path.read_text()) if spec_path.exists() else {}

    folder = Path(out_dir) if out_dir else study_dir / PHASE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    figures, figure_notes = _figures(diagram, trials, predicted, table, folder, volume,
                                     references=cell_references(diagram, trials, baselines))

    run_id, message = (None, "MLflow logging turned off")
    if log_to_mlflow:
        from study.tracking import resolve_tracking_uri

        tracking_uri = resolve_tracking_uri(tracking_uri or _study_tracking_uri(study_dir))
        try:
            run_id, message = find_parent_run(study, study_dir, tracking_uri)
        except Exception as err:  # any failure: the report stands without MLflow
            run_id, message = None, f"MLflow store unusable ({type(err).__name__}: {err}); artifacts not logged"
    summary: dict[str, Any] = {
        "study": study,
        "source": str(source.resolve()),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "diagram": {"x": diagram.x, "y": diagram.y, "metric": diagram.metric, "threshold": diagram.threshold,
                    "slice": diagram.slice, "increasing": diagram.increasing_, "increasing_asked": diagram.increasing,
                    "n_boot": diagram.n_boot,
                    "ci": diagram.ci, "log_y": diagram.log_y_, "y_grid": diagram.y_grid_,
                    "x_order": [str(v) for v in diagram.x_order_]},
        "n_trials": int(len(trials)),
        "n_used": int(diagram.boundary_["n_used"].sum()),
        "excluded": diagram.excluded_,
        "notes": diagram.notes_ + figure_notes,
        "spec": spec,
        "boundary": _records(table[keys + [c for c in diagram.boundary_.columns if c not in keys]
                                   + ["y_theory", "censored_theory", "agree", "within_ci", "delta", "agree_reason"]]),
        "theory": {
            "agreement": summarise(table, log_y=diagram.log_y_),
            "disagree": [{"row": _row_name(r, keys), "reason": r["agree_reason"]}
                         for r in table.to_dict("records") if r["agree"] is False],
            "notes": sorted({n for n in predicted["theory_note"] if n}),
            "expectations": claims,
        },
        "surface": volume["record"] if volume else None,
        "search": search_record(study_dir, len(trials)),
        "baselines": _baselines_summary(diagram, trials, predicted, baselines, keys),
        "files": {"figures": figures, "summary": "summary.json", "report": "report.html", "dir": str(folder.resolve())},
        "mlflow": {"tracking_uri": tracking_uri, "parent_run_id": run_id, "logged": False, "message": message},
    }
    summary = _jsonable(summary)
    summary["verdict"] = verdict(summary)
    summary_path = folder / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2))
    (folder / "report.html").write_text(_html(summary, table, keys, folder), encoding="utf-8")
    if run_id is not None:
        try:
            done = _log_answer(run_id, summary, table, trials, keys, folder, tracking_uri)
            logged = not done.startswith("not logged")
            summary["mlflow"].update(logged=logged, message=f"{done} {message}" if logged else done)
        except Exception as err:  # any failure of the upload is reported, not raised
            summary["mlflow"]["message"] = f"logging to run {run_id} failed ({type(err).__name__}: {err})"
        summary_path.write_text(json.dumps(summary, indent=2))
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clphase analyze",
        description="Fit a study's phase diagram, compare it with the theory, write runs/<study>/phase/ "
                    "and log it to the study's MLflow parent run. Defaults come from the analysis: block "
                    f"of the study's spec.yaml ({', '.join(ANALYSIS_KEYS)}).",
    )
    parser.add_argument("source", metavar="STUDY_DIR_OR_PARQUET", help="runs/<study> or its trials.parquet")
    parser.add_argument("--x", help="column along which boundaries are compared (e.g. capacity, n_invariant)")
    parser.add_argument("--y", help="numeric column the boundary lies along (e.g. embedding_dim)")
    parser.add_argument("--metric", help="metric column (e.g. randlabel_acc)")
    parser.add_argument("--threshold", type=float, help="metric value that defines the phase")
    parser.add_argument("--slice", help="third axis, one panel per value (e.g. aug_noise); 'none' for no slice")
    direction = parser.add_mutually_exclusive_group()
    direction.add_argument("--increasing", dest="increasing", action="store_const", const=True,
                           help="the metric rises with y (default: inferred from the data)")
    direction.add_argument("--decreasing", dest="increasing", action="store_const", const=False,
                           help="the metric falls with y (e.g. pca_overlap along nuisance_std)")
    parser.add_argument("--n-boot", type=int, help="bootstrap resamples of the seeds (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random state of the bootstrap")
    parser.add_argument("--out", help="output folder (default: <study_dir>/phase)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: the study's own, from its study.json, "
                        "else MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the report to MLflow")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``clphase analyze`` (``argv`` without the verb); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse has printed
        return int(exit_.code or 0)
    try:
        summary = analyze(
            args.source, x=args.x, y=args.y, metric=args.metric, threshold=args.threshold, slice=args.slice,
            tracking_uri=args.tracking_uri, log_to_mlflow=not args.no_mlflow, increasing=args.increasing,
            n_boot=args.n_boot, random_state=args.seed, out_dir=args.out,
        )
    except (ValueError, FileNotFoundError, NotADirectoryError, KeyError) as err:
        print(f"clphase analyze: error: {err}", file=sys.stderr)
        return 2
    folder = Path(summary["files"]["dir"])
    boundary = summary["boundary"]
    n_censored = sum(1 for r in boundary if r.get("censored"))
    agreement = summary["theory"]["agreement"]
    print(f"{summary['study']}: {len(boundary)} boundaries ({n_censored} censored) of {summary['diagram']['metric']}"
          f" along {summary['diagram']['y']}; report: {folder / 'report.html'}")
    print(f"verdict: {summary['verdict']}")
    if agreement["n_predicted"]:
        print(f"theory: {agreement['n_agree']}/{agreement['n_predicted']} rows agree")
    for note in summary["notes"]:
        print(f"  note: {note}")
    print(f"MLflow: {summary['mlflow']['message']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
