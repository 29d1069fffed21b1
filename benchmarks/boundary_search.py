"""Benchmark: the boundary searcher against the full grid it searches, on the quickstart and on phase_volume.

    .venv/bin/python benchmarks/boundary_search.py [--studies quickstart phase_volume] [--smoke] [--out DIR]
                                                   [--fresh] [--json FILE]

Each study's spec runs twice with ``run_study`` (a real Ray Tune sweep, Parquet and MLflow records): as the
full grid (``searcher: {type: grid}``) and with the boundary searcher (``searcher: {type: boundary}``), as
studies ``<name>-grid`` and ``<name>-boundary`` under ``--out`` (default ``runs/bench-boundary``; a run
already there is reused unless ``--fresh``). Both tables are fitted by ``analysis.phase.PhaseDiagram`` with
the spec's ``analysis:`` block, and for each study it prints the configs (rows of trials.parquet) and the
Tune trials (packs) each used, the fraction of the grid's configs the search needed, the wall time of
each sweep, and per row the distance between the two boundaries in grid steps: each boundary is placed at
its interpolated position on the grid's y axis (log2 for positive y), a censored one half a step beyond
the end it lies past, so that a row both call censored on the same side is 0 apart.
The targets (issue 17): every row within one grid step, with at most 40% of the grid's configs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.load import load_trials  # noqa: E402
from analysis.phase import PhaseDiagram  # noqa: E402
from study.boundary import SUMMARY_FILE, settings  # noqa: E402
from study.runner import run_study  # noqa: E402
from study.spec import find_spec, load_spec  # noqa: E402


def _variant(spec_path: Path, searcher: str, folder: Path) -> Path:
    """The spec as study ``<name>-<searcher>`` with that searcher (the boundary searcher's own settings kept)."""
    data = yaml.safe_load(spec_path.read_text())
    block = data.get("searcher") or {}
    data["searcher"] = {**block, "type": "boundary"} if searcher == "boundary" else {"type": "grid"}
    data["name"] = f"{data['name']}-{searcher}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _run(spec_path: Path, out: Path, smoke: bool, fresh: bool) -> dict[str, Any]:
    spec = load_spec(spec_path, smoke=smoke)
    study_dir = out / spec.name
    if fresh and study_dir.exists():
        shutil.rmtree(study_dir)
    if not (study_dir / "run_summary.json").exists():
        start = time.time()
        run_study(spec_path, smoke=smoke, out=out, tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
        print(f"  {spec.name}: {time.time() - start:.0f} s", flush=True)
    trials = load_trials(study_dir)
    trials = trials[trials["status"] == "TERMINATED"]
    run = json.loads((study_dir / "run_summary.json").read_text())
    packs = trials["trial_id"].astype(str).str.replace(r"-\d{3}$", "", regex=True).nunique()
    return {"dir": study_dir, "trials": trials, "configs": len(trials), "packs": int(packs), "wall_s": run["wall_s"]}


def _positions(trials: pd.DataFrame, analysis: dict[str, Any], ys: list[float], increasing: bool) -> pd.Series:
    """Each row's boundary in grid steps along ``ys`` (censored: half a step beyond the range)."""
    diagram = PhaseDiagram(x=analysis["x"], y=analysis["y"], metric=analysis["metric"],
                           threshold=float(analysis["threshold"]), slice=analysis.get("slice"),
                           increasing=increasing, n_boot=0).fit(trials)
    keys = [diagram.x] + ([diagram.slice] if diagram.slice else [])
    t = np.log2(ys) if min(ys) > 0 else np.asarray(ys, dtype=float)
    out = {}
    for _, row in diagram.boundary_.iterrows():
        if row["censored"] == "below":
            position = -0.5
        elif row["censored"] == "above":
            position = len(ys) - 0.5
        else:
            y = row["y_critical"]
            position = float(np.interp(np.log2(y) if min(ys) > 0 else y, t, np.arange(len(ys))))
        out[tuple(str(row[k]) for k in keys)] = position
    return pd.Series(out)


def compare(name: str, out: Path, smoke: bool, fresh: bool) -> dict[str, Any]:
    base = find_spec(name)
    print(f"{name}{' (smoke)' if smoke else ''}:", flush=True)
    grid = _run(_variant(base, "grid", out / "specs"), out, smoke, fresh)
    found = _run(_variant(base, "boundary", out / "specs"), out, smoke, fresh)
    chosen = settings(load_spec(_variant(base, "boundary", out / "specs"), smoke=smoke))
    analysis = {"x": chosen["x"], "y": chosen["y"], "metric": chosen["metric"], "threshold": chosen["threshold"],
                "slice": chosen["slice"]}
    ys = sorted(chosen["axes"]["y"][1])
    a = _positions(grid["trials"], analysis, ys, chosen["increasing"])
    b = _positions(found["trials"], analysis, ys, chosen["increasing"])
    distance = (a - b.reindex(a.index)).abs()
    search = json.loads((found["dir"] / SUMMARY_FILE).read_text())
    return {
        "study": name, "smoke": smoke, "grid_configs": grid["configs"], "grid_trials": grid["packs"],
        "grid_wall_s": grid["wall_s"], "boundary_configs": found["configs"], "boundary_trials": found["packs"],
        "boundary_wall_s": found["wall_s"], "fraction": round(found["configs"] / grid["configs"], 3),
        "rounds": len(search["rounds"]), "stop": search["stop"],
        "rows": [{"row": " / ".join(k), "grid": round(float(a[k]), 2), "boundary": round(float(b.get(k, np.nan)), 2),
                  "distance": round(float(distance[k]), 2)} for k in a.index],
        "max_distance": round(float(distance.max()), 2), "rows_within_one_step": int((distance <= 1).sum()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", nargs="+", default=["quickstart", "phase_volume"])
    parser.add_argument("--smoke", action="store_true", help="the specs' smoke versions")
    parser.add_argument("--out", default="runs/bench-boundary")
    parser.add_argument("--fresh", action="store_true", help="rerun studies already in --out")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    results = [compare(name, out, args.smoke, args.fresh) for name in args.studies]
    for r in results:
        print(f"\n{r['study']}{' (smoke)' if r['smoke'] else ''}: boundary search {r['boundary_configs']} configs "
              f"in {r['boundary_trials']} trials ({r['rounds']} rounds, {r['stop']}), grid {r['grid_configs']} "
              f"configs in {r['grid_trials']} trials: {r['fraction']:.0%} of the grid; wall "
              f"{r['boundary_wall_s']:.0f} s vs {r['grid_wall_s']:.0f} s; {r['rows_within_one_step']}/"
              f"{len(r['rows'])} rows within one grid step (max {r['max_distance']:g})")
        width = max(len(row["row"]) for row in r["rows"])
        print(f"  {'row':{width}s}  grid  boundary  distance (grid steps)")
        for row in r["rows"]:
            print(f"  {row['row']:{width}s}  {row['grid']:4.2f}  {row['boundary']:8.2f}  {row['distance']:4.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
