"""``clphase verify``: run each claim's study through the runner, analyse it, and give a verdict.

A study that already finished under ``--out`` is not run again; an interrupted one is resumed.
The verdict table is printed and written as ``<out>/claims.json`` and ``<out>/claims.md``;
``--docs DIR`` also writes ``DIR/claims.md`` with each claim's phase-diagram PNG beside it.
"""

from __future__ import annotations

import inspect
import json
import shutil
import time
from pathlib import Path
from typing import Any

from analysis.claims import CLAIMS, Claim

_PLOTS = ("phase_diagram.png", "metric_curves.png", "loss_vs_accuracy.png")


def _complete(study_dir: Path, n_trials: int) -> bool:
    import pandas as pd

    path = study_dir / "trials.parquet"
    if not path.exists():
        return False
    status = pd.read_parquet(path, columns=["status"])["status"]
    return int(status.isin(["TERMINATED", "ERROR"]).sum()) >= n_trials


def seed_spread(trials: Any, metric: str) -> dict[str, Any] | None:
    """How far the seeds of one cell (``cell``: a config less its seed) spread on ``metric``: the number of
    seeds and the median and largest standard deviation over seeds across cells (finished, non-diverged
    trials). None where the table lacks the metric or the cell column."""
    from analysis.claims import usable

    try:
        t = usable(trials)
    except ValueError:
        return None
    if metric not in t or "cell" not in t or "seed" not in t:
        return None
    std = t.groupby("cell", observed=True)[metric].std().dropna()
    n_seeds = int(t.groupby("cell", observed=True)["seed"].nunique().min()) if len(t) else 0
    if std.empty:
        return {"metric": metric, "n_seeds": n_seeds, "median_std": None, "max_std": None,
                "text": f"{n_seeds} seed(s) per cell"}
    return {"metric": metric, "n_seeds": n_seeds, "median_std": round(float(std.median()), 4),
            "max_std": round(float(std.max()), 4),
            "text": f"{n_seeds} seeds per cell, seed std of {metric} median {std.median():.3f}, max {std.max():.3f}"}


def verify_claim(claim: Claim, *, smoke: bool, out: Path, tracking_uri: str | None, address: str | None,
                 verbose: bool = False) -> dict[str, Any]:
    from analysis.baselines import load_baselines
    from analysis.load import load_history, load_trials
    from analysis.report import analyze
    from study.runner import run_study
    from study.spec import find_spec, load_spec

    spec = load_spec(find_spec(claim.spec), smoke=smoke)
    study_dir = out / spec.name
    start = time.time()
    if not _complete(study_dir, spec.n_trials()):
        run_study(claim.spec, smoke=smoke, resume=study_dir.exists(), out=out, address=address,
                  tracking_uri=tracking_uri, verbose=verbose)
    row: dict[str, Any] = {"claim": claim.name, "paper": claim.paper, "study": spec.name, "smoke": smoke,
                           "prediction": claim.prediction, "rule": claim.rule, "setting": claim.setting,
                           "revised": claim.revised,
                           "trials": spec.n_trials(),
                           "study_dir": str(study_dir)}
    try:
        analyze(study_dir, tracking_uri=tracking_uri)
        row["plots"] = str(study_dir / "phase")
    except (ValueError, KeyError) as err:  # a claim's verdict does not depend on its plots
        row["plots"] = None
        row["analysis_error"] = str(err)
    try:
        history = load_history(study_dir) if (study_dir / "history.parquet").exists() else None
        extra = {"baselines": load_baselines(study_dir)} if "baselines" in inspect.signature(claim.judge).parameters \
            else {}
        trials = load_trials(study_dir)
        verdict = claim.judge(trials, history, **extra)
        row.update(verdict=verdict.verdict, measured=verdict.measured, figures=verdict.figures)
        metric = spec.analysis.get("metric") or spec.objective.metric
        row["seed_spread"] = seed_spread(trials, metric)
        if row["seed_spread"]:
            row["measured"] += f"; {row['seed_spread']['text']}"
    except (ValueError, KeyError) as err:
        row.update(verdict="inconclusive", measured=f"could not judge: {err}", figures={})
    if row["verdict"] == "inconclusive" and claim.decide:  # the budget that would decide it
        row["decide"] = claim.decide
        row["measured"] += f"; would be decided by: {claim.decide}"
    row["wall_s"] = round(time.time() - start, 1)
    return row


def markdown(rows: list[dict[str, Any]], plots_dir: str | None = None) -> str:
    lines = ["| claim | paper | prediction | measured | verdict | plots |", "|---|---|---|---|---|---|"]
    for r in rows:
        plot = (f"![{r['claim']}]({plots_dir}/{r['claim']}_phase_diagram.png)" if plots_dir and r.get("plots")
                else (r.get("plots") or "-"))
        lines.append(f"| {r['claim']} | {r['paper']} | {r['prediction']} | {r['measured']} | "
                     f"**{r['verdict']}** | {plot} |")
    lines += ["", "Verdict rules (fixed before the runs; a rule restated after a run says so, and its run was "
              "repeated):", ""]
    lines += [f"- **{r['claim']}**: {r['rule']}" + (f" *(Restated {r['revised']}.)*" if r.get("revised") else "")
              for r in rows]
    return "\n".join(lines) + "\n"


def write_docs(rows: list[dict[str, Any]], docs: Path, machine: str) -> Path:
    images = docs / "claims"
    images.mkdir(parents=True, exist_ok=True)
    for r in rows:
        for name in _PLOTS:
            source = Path(r["plots"]) / name if r.get("plots") else None
            if source and source.exists():
                shutil.copyfile(source, images / f"{r['claim']}_{name}")
    smoke = any(r["smoke"] for r in rows)
    head = (f"# Claims: measured verdicts\n\nGenerated by `clphase verify{' --smoke' if smoke else ''}` on "
            f"{machine}, {time.strftime('%Y-%m-%d')}. Every number below comes from that run "
            "(`runs/claims/*/trials.parquet`); none is typed by hand. Re-run to regenerate.\n\n")
    body = markdown(rows, "claims")
    details = ["", "## Per-claim figures", ""]
    for r in rows:
        details += [f"### {r['claim']} ({r['paper']}): {r['verdict']}", "",
                    f"Study `{r['study']}`, {r['trials']} trials. {r['measured']}.", "",
                    f"Setting: {r.get('setting') or '-'}", ""]
        if r.get("decide"):
            details += [f"What would decide it: {r['decide']}.", ""]
        if r.get("revised"):
            details += [f"Rule restated {r['revised']}.", ""]
        details += [f"![{r['claim']} {n}](claims/{r['claim']}_{n})" for n in _PLOTS
                    if (images / f"{r['claim']}_{n}").exists()]
        details.append("")
    path = docs / "claims.md"
    path.write_text(head + body + "\n".join(details))
    return path


def verify(names: list[str] | None = None, *, smoke: bool = False, out: str | Path | None = None,
           tracking_uri: str | None = None, address: str | None = None, docs: str | Path | None = None,
           verbose: bool = False) -> list[dict[str, Any]]:
    import platform

    import ray

    names = names or list(CLAIMS)
    unknown = [n for n in names if n not in CLAIMS]
    if unknown:
        raise ValueError(f"unknown claim {unknown}; valid claims: {', '.join(CLAIMS)}")
    out = Path(out or ("runs/claims-smoke" if smoke else "runs/claims")).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = False
    if not ray.is_initialized():  # one Ray for every claim's study
        ray.init(address=address, include_dashboard=False if not address else None, log_to_driver=verbose,
                 logging_level="WARNING")
        started = True
    try:
        rows = []
        for name in names:
            print(f"[clphase verify] {name}: study {CLAIMS[name].spec}{' (smoke)' if smoke else ''}", flush=True)
            rows.append(verify_claim(CLAIMS[name], smoke=smoke, out=out, tracking_uri=tracking_uri,
                                     address=address, verbose=verbose))
            print(f"[clphase verify] {name}: {rows[-1]['verdict']}: {rows[-1]['measured']}", flush=True)
    finally:
        if started:
            ray.shutdown()
    (out / "claims.json").write_text(json.dumps(rows, indent=2, default=str))
    (out / "claims.md").write_text(markdown(rows))
    if docs:
        machine = f"{platform.machine()} with {__import__('os').cpu_count()} CPU cores"
        write_docs(rows, Path(docs), machine)
    return rows
