"""Configs per minute of the training engine alone, one config at a time against packs, on one device.

    .venv/bin/python benchmarks/engine_throughput.py [--device auto] [--steps 400] [--pack-sizes 1 16 auto]

The diagram of ``clphase bench`` (hypercube, linear and MLP widths x embedding dims x seeds), trained and
evaluated by ``trainables.engine.Pack`` directly, without Ray, Parquet or MLflow: packs cut by
``plan_packs`` for each pack size (1: every config alone; ``auto``: ``smallest_pack_size`` on that device, as
``pack_size: auto`` on CPUs), run one after the other. It isolates what the device decides in
``clphase bench``'s (c) against (b), the packs' speed-up, and needs only torch and NumPy, so it also runs
where Ray and MLflow are not installed (a lent GPU machine). On CUDA it synchronises before each clock
read and reports the peak memory. One small pack runs first, untimed, so that no row pays the process's
first-use costs (imports, allocator). Prints one row per pack size, with its mean randlabel_acc (the rows
agree up to the round-off of a pack's padded embedding dims); ``--json FILE`` writes them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from trainables.config import effective
from trainables.engine import Pack, pick_device, plan_packs, smallest_pack_size


def diagram(steps: int, seeds: int, widths: list[int], dims: list[int], device: str) -> list[dict[str, Any]]:
    base = {"scenario": "hypercube", "dim": 16, "n_invariant": 3, "aug_noise": 0.1, "steps": steps,
            "eval_every": steps, "batch_size": 256, "lr": 0.003, "temperature": 0.1, "device": device}
    capacities = [{"encoder": "linear"}] + [{"encoder": "mlp", "width": w, "depth": 2} for w in widths]
    return [effective({**base, **c, "embedding_dim": e, "seed": s})
            for c in capacities for e in dims for s in range(seeds)]


def run(configs: list[dict[str, Any]], size: int, device: torch.device) -> dict[str, Any]:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    packs = plan_packs(configs, size)
    sync()
    start = time.perf_counter()
    best = []
    for members in packs:
        pack = Pack([configs[i] for i in members], device=device)
        pack.advance(pack.steps)
        best += [m["randlabel_acc"] for m in pack.evaluate()]
    sync()
    wall = time.perf_counter() - start
    row = {"pack_size": size, "packs": len(packs), "wall_s": round(wall, 2),
           "configs_per_min": round(len(configs) / wall * 60, 1), "mean_randlabel_acc": round(sum(best) / len(best), 4)}
    if device.type == "cuda":
        row["peak_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--pack-sizes", nargs="+", default=["1", "16", "auto"])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (a trial uses its CPU share: 1)")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    configs = diagram(args.steps, args.seeds, args.widths, args.dims, str(device))
    sizes = [smallest_pack_size(configs, device) if s == "auto" else int(s) for s in args.pack_sizes]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"{len(configs)} configs x {args.steps} steps on {name}")
    warm = Pack([{**configs[0], "steps": 2, "eval_every": 2}], device=device)  # first-use costs, untimed
    warm.advance(2)
    warm.evaluate()
    rows = [run(configs, size, device) for size in sizes]
    alone = next((r for r in rows if r["pack_size"] == 1), None)
    for r in rows:
        if alone:
            r["vs_alone"] = round(r["configs_per_min"] / alone["configs_per_min"], 2)
        print(json.dumps(r))
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "configs": len(configs), "steps": args.steps,
                                               "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
