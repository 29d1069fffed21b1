"""Benchmark: packs of K configs against the same K configs trained one after another.

    .venv/bin/python benchmarks/pack_speed.py [--steps 600] [--threads 1] [--device cpu] [--json out.json]

Quickstart-sized configs (hypercube dim 16, n_invariant 3, info_nce t=0.1, mlp depth 2, width 32
and 128 x embedding_dim 2, 4, 8, 16, seeds 0/1, batch 256, lr 3e-3, 600 steps, evaluated every
300) trained three ways: (a) one ``ContrastiveRun`` per config, the loop of ``train(config)``;
(c) one ``ContrastivePack`` of all eight (widths padded to 128); (c') ``plan_packs(configs, 4)``:
two packs, one per width. The three are advanced in turns, ``--chunk`` steps at a time, so that
a machine whose load changes during the run slows them alike; each is timed by wall clock and
by CPU time (with one torch thread, CPU time is what the process really got). Held-out
evaluation (the same sklearn work per config, packed or not) is timed apart. Also prints the
largest metric difference between (c) and (a): after 600 steps of this chaotic float32
training it is ~1e-2, the size of the difference between two lone implementations that only
reassociate sums (see ``trainables/packed.py``). ``--threads 1`` (default) is what a ``cpu: 1``
Ray trial gets.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainables.packed import ContrastivePack, auto_pack_size, plan_packs  # noqa: E402
from trainables.training import ContrastiveRun  # noqa: E402

BASE = {"scenario": "hypercube", "dim": 16, "n_invariant": 3, "aug_noise": 0.1, "loss": "info_nce",
        "temperature": 0.1, "encoder": "mlp", "depth": 2, "batch_size": 256, "lr": 3e-3, "n_eval": 2048}


def configs(steps: int, eval_every: int) -> list[dict]:
    cells = itertools.product([32, 128], [2, 4, 8, 16])
    return [{**BASE, "width": w, "embedding_dim": e, "seed": i % 2, "steps": steps, "eval_every": eval_every}
            for i, (w, e) in enumerate(cells)]


class Clock:
    """Wall and CPU seconds spent inside ``timed`` calls."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def timed(self, fn: Callable[..., Any], *args: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn(*args)
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        return out


def largest_difference(a: list[dict], b: list[dict]) -> tuple[float, str]:
    """The largest |a - b| / max(1, |b|) over every metric of every config, and its key."""
    worst, worst_key = 0.0, ""
    for x, y in zip(a, b, strict=True):
        for key in x:
            if key not in ("train_s", "eval_s") and not (math.isnan(x[key]) and math.isnan(y[key])):
                d = abs(x[key] - y[key]) / max(1.0, abs(y[key]))
                worst, worst_key = (d, key) if d > worst else (worst, worst_key)
    return worst, worst_key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--eval-every", type=int, default=300)
    parser.add_argument("--chunk", type=int, default=50, help="steps each way trains before the next takes its turn")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--split", type=int, default=4, help="pack size of (c'), cut by plan_packs")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfgs = configs(args.steps, args.eval_every)
    print(f"{len(cfgs)} configs, {args.steps} steps, on {args.device} ({os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads); auto_pack_size here: {auto_pack_size(cfgs[-1], args.device)}",
          flush=True)
    ContrastivePack(cfgs[:2], device=args.device).advance(5)  # warm-up: imports, kernels

    train = {"a": Clock(), "c": Clock(), "c'": Clock()}
    evals = {"a": Clock(), "c": Clock(), "c'": Clock()}
    lone = [train["a"].timed(ContrastiveRun, c, args.device) for c in cfgs]
    pack = train["c"].timed(ContrastivePack, cfgs, args.device)
    plan = plan_packs(cfgs, args.split)
    split = [train["c'"].timed(ContrastivePack, [cfgs[i] for i in p], args.device) for p in plan]
    finals: dict[str, list[dict]] = {}
    while not pack.done:
        n = min(args.chunk, pack.eval_every - pack.step % pack.eval_every)  # the same n for every way
        for run in lone:
            train["a"].timed(run.advance, n)
        train["c"].timed(pack.advance, n)
        for p in split:
            train["c'"].timed(p.advance, n)
        if pack.step % pack.eval_every == 0 or pack.done:
            finals["a"] = [evals["a"].timed(run.evaluate) for run in lone]
            finals["c"] = evals["c"].timed(pack.evaluate)
            by_pack = [evals["c'"].timed(p.evaluate) for p in split]
            order = [i for p in plan for i in p]
            finals["c'"] = [r for _, r in sorted(zip(order, [r for rs in by_pack for r in rs], strict=True),
                                                 key=lambda pair: pair[0])]

    figures: dict[str, object] = {
        "configs": len(cfgs), "steps": args.steps, "device": args.device, "cores": os.cpu_count(),
        "threads": torch.get_num_threads(), "machine": platform.machine(), "torch": torch.__version__,
        "split": args.split,
    }
    names = {"a": f"(a) {len(cfgs)} lone runs", "c": "(c) one pack of 8", "c'": f"(c') packs of {args.split}"}
    for key, label in names.items():
        t, e = train[key], evals[key]
        print(f"{label:18s} train wall {t.wall:7.2f} s cpu {t.cpu:7.2f} s | eval wall {e.wall:6.2f} s "
              f"cpu {e.cpu:6.2f} s | train cpu / (a) {t.cpu / train['a'].cpu:.2f}", flush=True)
        figures[key] = {"train_wall_s": round(t.wall, 2), "train_cpu_s": round(t.cpu, 2),
                        "eval_wall_s": round(e.wall, 2), "eval_cpu_s": round(e.cpu, 2),
                        "train_cpu_ratio": round(t.cpu / train["a"].cpu, 3),
                        "train_wall_ratio": round(t.wall / train["a"].wall, 3)}
    for key in ("c", "c'"):
        diff, diff_key = largest_difference(finals[key], finals["a"])
        print(f"largest metric difference {key} vs (a): {diff:.1e} ({diff_key})", flush=True)
        figures[f"largest_metric_difference_{key}"] = [diff, diff_key]
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
