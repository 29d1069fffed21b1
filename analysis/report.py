"""``clphase analyze``: fit a study's phase diagram, hold it against the theory, draw and report it.

Writes ``<study_dir>/phase/``: ``phase_diagram.png``, ``metric_curves.png``,
``loss_vs_accuracy.png`` (when the table has ``train_loss``), ``theory_agreement.png`` (when the
theory predicts something for the diagram), ``summary.json`` and a self-contained
``report.html`` (figures embedded), then logs the folder as artifacts (under ``phase/``) of the
study's MLflow parent run: the newest run of experiment = study name tagged
``clphase.role = parent`` whose ``clphase.study_dir`` is this study dir, else the newest parent
run of the experiment. Axis, metric and threshold default to the ``analysis:`` block of the
study's ``spec.yaml``; arguments override it.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from analysis.agreement import compare, summarise
from analysis.load import ANALYSIS_KEYS, load_analysis_defaults, load_trials, study_dir_of
from analysis.phase import PhaseDiagram
from analysis.plots import (
    plot_agreement,
    plot_loss_vs_accuracy,
    plot_metric_curves,
    plot_phase_diagram,
    save_png,
)
from analysis.theory import expectations, theory_boundaries

PHASE_DIR = "phase"
_REQUIRED = ("x", "y", "metric", "threshold")
_NO_SLICE = ("", "none", "None")
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
_TABLE_COLUMNS = ["y_critical", "y_low", "y_high", "censored", "n_seeds", "n_used", "n_trials",
                  "n_cells_missing", "monotone", "y_smooth", "y_theory", "censored_theory", "agree", "note"]


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
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri or mlflow.get_tracking_uri()
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


def _study_tracking_uri(study_dir: str | Path) -> str | None:
    """The store the study itself was recorded in (``study.json``, written by ``clphase run``), if any."""
    import json

    path = Path(study_dir) / "study.json"
    try:
        return json.loads(path.read_text()).get("tracking_uri") if path.exists() else None
    except (OSError, ValueError):
        return None


def _log_artifacts(run_id: str, folder: Path, tracking_uri: str | None) -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_uri).log_artifacts(run_id, str(folder), artifact_path=PHASE_DIR)


# --- the report --------------------------------------------------------------------------------
def _figures(diagram: PhaseDiagram, trials: pd.DataFrame, predicted: pd.DataFrame, table: pd.DataFrame,
             folder: Path) -> tuple[dict[str, str], list[str]]:
    files, notes = {}, []
    has_theory = bool(table["agree"].notna().any())
    files["phase_diagram"] = save_png(plot_phase_diagram(diagram, predicted if has_theory else None),
                                      folder / "phase_diagram.png").name
    files["metric_curves"] = save_png(plot_metric_curves(diagram), folder / "metric_curves.png").name
    if "train_loss" in trials.columns:
        downstream = "probe_acc" if "probe_acc" in trials.columns else diagram.metric
        by = diagram.x if diagram.x in ("capacity", "encoder") else "capacity"
        files["loss_vs_accuracy"] = save_png(plot_loss_vs_accuracy(trials, metric=downstream, by=by),
                                             folder / "loss_vs_accuracy.png").name
    else:
        notes.append("no train_loss column: loss-vs-accuracy figure skipped")
    if has_theory:
        files["theory_agreement"] = save_png(plot_agreement(table, diagram), folder / "theory_agreement.png").name
    else:
        notes.append("the theory makes no quantitative prediction for this diagram: agreement figure skipped")
    return files, notes


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
code{background:#f6f6f6;padding:0 3px}.ok{color:#1a7f37}.bad{color:#c62828}"""

_CAPTIONS = {
    "phase_diagram": "Seed-mean metric over (x, y); white: fitted boundary and interval; triangles: censored "
                     "rows (boundary beyond that edge); red: theory.",
    "metric_curves": "Metric against y per x, mean ± std over seeds; dotted: threshold.",
    "loss_vs_accuracy": "Final contrastive loss against downstream accuracy, per encoder capacity.",
    "theory_agreement": "Fitted against predicted boundary; band: one grid step; green agrees.",
}


def _html(summary: dict[str, Any], table: pd.DataFrame, keys: list[str], folder: Path) -> str:
    esc = html.escape
    d = summary["diagram"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Phase diagram: {esc(summary['study'])}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>Phase diagram: {esc(summary['study'])}</h1>",
             f"<p>Source <code>{esc(summary['source'])}</code>, {summary['n_trials']} trials "
             f"({summary['n_used']} used), analysed {esc(summary['created'])}.</p>",
             f"<p>Boundary of <b>{esc(d['metric'])} {'&ge;' if d['increasing'] else '&le;'} {d['threshold']:g}</b> "
             f"along <b>{esc(d['y'])}</b>, per <b>{esc(d['x'])}</b>"
             + (f" and <b>{esc(d['slice'])}</b>" if d["slice"] else "")
             + f"; {d['ci']:.0%} intervals from {d['n_boot']} bootstrap resamples of the seeds.</p>"]
    notes = summary["notes"]
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    agreement = summary["theory"]["agreement"]
    if agreement["n_predicted"]:
        ratio = agreement.get("mean_log2_ratio")
        parts.append(
            f"<h2>Theory</h2><p>{agreement['n_agree']} of {agreement['n_predicted']} rows agree with the prediction"
            + (f"; mean log2(fitted / predicted) = {ratio:+.2f}" if ratio is not None else "") + ".</p>"
            + "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in summary["theory"]["notes"]) + "</ul>")
    if summary["theory"]["expectations"]:
        parts.append("<h3>Qualitative claims</h3><ul>" + "".join(
            f"<li class='{'ok' if e['holds'] else 'bad'}'>{esc(e['claim'])}: "
            f"{'holds' if e['holds'] else ('cannot tell' if e['holds'] is None else 'does not hold')} "
            f"({esc(e['detail'])})</li>" for e in summary["theory"]["expectations"]) + "</ul>")
    for name, file in summary["files"]["figures"].items():
        data = base64.b64encode((folder / file).read_bytes()).decode("ascii")
        parts.append(f"<h2>{esc(name.replace('_', ' '))}</h2><p>{esc(_CAPTIONS.get(name, ''))}</p>"
                     f"<img alt='{esc(name)}' src='data:image/png;base64,{data}'>")
    shown = table[keys + [c for c in _TABLE_COLUMNS if c in table.columns]]
    parts.append("<h2>Boundaries</h2>" + shown.to_html(index=False, na_rep="—", float_format=lambda v: f"{v:.3g}",
                                                        escape=True))
    mlflow_info = summary["mlflow"]
    parts.append(f"<h2>MLflow</h2><p>{esc(str(mlflow_info.get('message', '')))}</p></body></html>")
    return "\n".join(parts)


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
        slice=chosen.get("slice"), increasing=chosen.get("increasing"),
        n_boot=int(chosen.get("n_boot", 1000)), random_state=random_state,
    ).fit(trials)
    keys = [diagram.x] + ([diagram.slice] if diagram.slice else [])
    predicted = theory_boundaries(diagram, trials)
    table = compare(diagram, predicted)
    claims = expectations(trials)

    folder = Path(out_dir) if out_dir else study_dir / PHASE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    figures, figure_notes = _figures(diagram, trials, predicted, table, folder)

    run_id, message = (None, "MLflow logging turned off")
    if log_to_mlflow:
        import mlflow

        tracking_uri = tracking_uri or _study_tracking_uri(study_dir) or mlflow.get_tracking_uri()
        try:
            run_id, message = find_parent_run(study, study_dir, tracking_uri)
        except Exception as err:  # any failure: the report stands without MLflow
            run_id, message = None, f"MLflow store unusable ({type(err).__name__}: {err}); artifacts not logged"
    summary: dict[str, Any] = {
        "study": study,
        "source": str(source.resolve()),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "diagram": {"x": diagram.x, "y": diagram.y, "metric": diagram.metric, "threshold": diagram.threshold,
                    "slice": diagram.slice, "increasing": diagram.increasing_, "n_boot": diagram.n_boot,
                    "ci": diagram.ci, "log_y": diagram.log_y_, "y_grid": diagram.y_grid_,
                    "x_order": [str(v) for v in diagram.x_order_]},
        "n_trials": int(len(trials)),
        "n_used": int(diagram.boundary_["n_used"].sum()),
        "excluded": diagram.excluded_,
        "notes": diagram.notes_ + figure_notes,
        "boundary": _records(table[keys + [c for c in diagram.boundary_.columns if c not in keys]
                                   + ["y_theory", "censored_theory", "agree", "within_ci", "delta"]]),
        "theory": {
            "agreement": summarise(table, log_y=diagram.log_y_),
            "notes": sorted({n for n in predicted["theory_note"] if n}),
            "expectations": claims,
        },
        "files": {"figures": figures, "summary": "summary.json", "report": "report.html", "dir": str(folder.resolve())},
        "mlflow": {"tracking_uri": tracking_uri, "parent_run_id": run_id, "logged": False, "message": message},
    }
    summary = _jsonable(summary)
    summary_path = folder / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2))
    (folder / "report.html").write_text(_html(summary, table, keys, folder), encoding="utf-8")
    if run_id is not None:
        try:
            _log_artifacts(run_id, folder, tracking_uri)
            summary["mlflow"].update(logged=True, message=f"logged {PHASE_DIR}/ to {message}")
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
    if agreement["n_predicted"]:
        print(f"theory: {agreement['n_agree']}/{agreement['n_predicted']} rows agree")
    for note in summary["notes"]:
        print(f"  note: {note}")
    print(f"MLflow: {summary['mlflow']['message']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
