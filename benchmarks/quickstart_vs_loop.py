"""Benchmark: the quickstart's configs through `clphase run` (Ray Tune) vs a plain sequential loop.

    .venv/bin/python benchmarks/quickstart_vs_loop.py [--spec quickstart] [--smoke] [--json out.json]

(a) the floor a user would write by hand: one process, ``train(config)`` for every cell in turn
(torch's default threads); (b) ``clphase run``: a fresh local Ray, one trial per cell, Parquet and
MLflow recording included, wall time from the call to the return (Ray start-up included).
Prints both wall times and the ratio (b)/(a); the project's target is (b) <= 0.75 x (a) on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def plain_loop(configs: list[dict]) -> float:
    from trainables.training import train

    start = time.perf_counter()
    for config in configs:
        train(config)
    return time.perf_counter() - start


def through_clphase(spec: str, smoke: bool) -> float:
    from study.runner import run_study

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        result = run_study(spec, smoke=smoke, out=Path(folder) / "runs",
                           tracking_uri=f"sqlite:///{Path(folder) / 'mlflow.db'}")
        wall = time.perf_counter() - start
        assert result.n_finished == result.n_trials, result
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="quickstart")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from study.spec import find_spec, load_spec

    spec = load_spec(find_spec(args.spec), smoke=args.smoke)
    configs = spec.cells()
    print(f"{len(configs)} configs of {spec.name}{' (smoke)' if args.smoke else ''} on {os.cpu_count()} cores",
          flush=True)
    loop_s = plain_loop(configs)
    print(f"(a) plain loop:    {loop_s:7.1f} s", flush=True)
    tune_s = through_clphase(args.spec, args.smoke)
    print(f"(b) clphase run:   {tune_s:7.1f} s   ratio (b)/(a) = {tune_s / loop_s:.2f}  (target <= 0.75)", flush=True)
    figures = {"spec": spec.name, "smoke": args.smoke, "configs": len(configs), "cores": os.cpu_count(),
               "machine": platform.machine(), "python": sys.version.split()[0], "plain_loop_s": round(loop_s, 2),
               "clphase_s": round(tune_s, 2), "ratio": round(tune_s / loop_s, 3)}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
