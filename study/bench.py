"""``clphase bench``: one fixed set of configs three ways, timed end to end.

(a) a plain sequential PyTorch loop in one process, calling ``train(config)`` for every cell: the
floor a user would write by hand; (b) clphase through Ray Tune, one config per trial (Ray start-up,
Parquet and MLflow recording included); (c) clphase with packs (``pack_size`` configs per trial).
Default set: a 64-cell hypercube phase diagram (4 capacities x 4 embedding dims x 4 seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml


def bench_spec(steps: int, seeds: int, widths: list[int], dims: list[int], pack_size: int | str | None,
               gpu: float) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "bench",
        "description": "clphase bench: hypercube capacity x embedding_dim x seeds",
        "trainable": {"scenario": "hypercube", "dim": 16, "n_invariant": 3, "aug_noise": 0.1, "steps": steps,
                      "eval_every": steps, "batch_size": 256, "lr": 0.003, "temperature": 0.1},
        "grid": {"capacity": {"linear": True, "widths": widths, "depths": [2]}, "embedding_dim": dims},
        "seeds": list(range(seeds)),
        "resources": {"cpu": 1, "gpu": gpu},
    }
    if pack_size is not None:
        spec["pack_size"] = pack_size
    return spec


def _gpu_sampler() -> subprocess.Popen | None:
    """nvidia-smi sampling utilisation and memory every 0.5 s, when there is a GPU."""
    try:
        return subprocess.Popen(
            ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-lms", "500"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    except (FileNotFoundError, OSError):
        return None


def _gpu_stats(proc: subprocess.Popen | None) -> dict[str, float] | None:
    if proc is None:
        return None
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    samples = [tuple(float(v) for v in line.split(",")) for line in out.strip().splitlines() if "," in line]
    if not samples:
        return None
    util, mem = zip(*samples, strict=True)
    return {"gpu_util_mean": sum(util) / len(util), "gpu_util_max": max(util), "gpu_mem_max_mib": max(mem)}


def _create_store(tracking_uri: str) -> None:
    """A new sqlite MLflow store with its tables (MLflow migrates a new database's schema: seconds), made in a
    process of its own, so that (b) still imports MLflow as a study's first run in a process does."""
    code = "import mlflow, sys; mlflow.MlflowClient(sys.argv[1]).search_experiments(max_results=1)"
    subprocess.run([sys.executable, "-c", code, tracking_uri], check=True, capture_output=True)


def plain_loop(configs: list[dict[str, Any]]) -> float:
    from trainables.engine import train

    start = time.perf_counter()
    for config in configs:
        train(config)
    return time.perf_counter() - start


def through_clphase(spec: dict[str, Any], folder: Path, address: str | None,
                    tracking_uri: str | None = None) -> tuple[float, dict[str, Any]]:
    """The study's wall time, and where it went: the runner's phases (run_summary.json's ``timings_s``, plus
    Ray's shutdown and the return), the trials' own compute (each pack's training and evaluation, summed)
    and that compute spread over the slots Ray held (the least the trials could have taken). The study
    records into ``tracking_uri`` (default: a new sqlite store in ``folder``)."""
    import pandas as pd

    from study.runner import run_study

    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    start = time.perf_counter()
    result = run_study(path, out=folder / "runs", tracking_uri=tracking_uri or f"sqlite:///{folder / 'mlflow.db'}",
                       address=address)
    wall = time.perf_counter() - start
    if result.n_finished != result.n_trials:
        raise RuntimeError(f"bench study did not finish: {result}")
    summary = json.loads((result.study_dir / "run_summary.json").read_text())
    phases = dict(summary["timings_s"])
    phases["shutdown"] = round(wall - phases["total"], 3)
    frame = pd.read_parquet(result.study_dir / "trials.parquet")
    compute = float(((frame["pack_train_s"] + frame["pack_eval_s"]) / frame["pack_size"]).sum())  # each pack once
    return wall, {"phases_s": phases, "trial_compute_s": round(compute, 2), "slots": summary["slots"],
                  "compute_over_slots_s": round(compute / max(1, summary["slots"]), 2)}


def _where(entry: dict[str, Any]) -> str:
    p, compute, slots = entry["phases_s"], entry["trial_compute_s"], entry["slots"]
    return (f"prepare {p['prepare']:.1f} | Ray start {p['ray_start']:.1f} | store wait {p['store_wait']:.1f} | "
            f"setup {p['setup']:.1f} | to first trial {p['to_first_trial']:.1f} | trials {p['trials']:.1f} (their "
            f"compute {compute:.1f} s over {slots} slots: {entry['compute_over_slots_s']:.1f}) | after "
            f"{p['after']:.1f} | shutdown {p['shutdown']:.1f} s")


def run_bench(*, steps: int = 400, seeds: int = 4, widths: tuple[int, ...] = (32, 64, 128),
              dims: tuple[int, ...] = (2, 4, 8, 16), pack_size: int | str = "auto", ways: str = "abc",
              address: str | None = None, gpu: float | None = None) -> dict[str, Any]:
    import torch

    from study.spec import parse_spec

    on_gpu = torch.cuda.is_available() if gpu is None else gpu > 0
    share = (gpu if gpu is not None else 0.25) if on_gpu else 0.0
    base = bench_spec(steps, seeds, list(widths), list(dims), None, share)
    configs = parse_spec(base).cells()
    packed = parse_spec(bench_spec(steps, seeds, list(widths), list(dims), pack_size, share))  # refused before (a)
    if set(ways) & set("bc"):
        from study.runner import _check_local_gpus, ray_address

        address = ray_address(address)  # no Ray there, or no GPU here for --gpu: refused before anything runs
        if not address:
            _check_local_gpus(packed)
    figures: dict[str, Any] = {
        "configs": len(configs), "steps": steps, "machine": platform.machine(), "cpus": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "ways": {},
    }
    print(f"[clphase bench] {len(configs)} configs x {steps} steps on "
          f"{figures['gpu'] or str(os.cpu_count()) + ' CPU cores'}", flush=True)
    asked = pack_size  # "auto" also lets the runner balance the packs over the trials that run at once
    if pack_size == "auto" and not on_gpu:  # the size the run will use, for the record
        from study.runner import resolve_pack_size

        pack_size = resolve_pack_size(packed)
    figures["pack_size"] = pack_size
    with tempfile.TemporaryDirectory() as store:  # (b) and (c)'s MLflow store
        tracking_uri = None
        if set(ways) & set("bc"):  # (b) and (c) record into one store, created untimed, as a project's studies do
            tracking_uri = f"sqlite:///{Path(store) / 'mlflow.db'}"
            _create_store(tracking_uri)
        runs = {
            "a": ("plain loop", lambda folder: (plain_loop(configs), {})),
            "b": ("clphase, one config per trial", lambda folder: through_clphase(base, folder, address, tracking_uri)),
            "c": (f"clphase, packs of {pack_size}", lambda folder: through_clphase(
                bench_spec(steps, seeds, list(widths), list(dims), asked, share), folder, address, tracking_uri)),
        }
        for way in ways:
            name, fn = runs[way]
            sampler = _gpu_sampler() if on_gpu else None
            with tempfile.TemporaryDirectory() as folder:
                wall, where = fn(Path(folder))
            entry: dict[str, Any] = {"name": name, "wall_s": round(wall, 2),
                                     "trials_per_min": round(len(configs) / wall * 60, 1), **where}
            gpu_stats = _gpu_stats(sampler)
            if gpu_stats:
                entry.update({k: round(v, 1) for k, v in gpu_stats.items()})
            figures["ways"][way] = entry
            print(f"[clphase bench] ({way}) {name}: {entry['wall_s']} s, {entry['trials_per_min']} configs/min",
                  flush=True)
            if where:
                print(f"[clphase bench]     where: {_where(entry)}", flush=True)
    if "a" in figures["ways"]:
        floor = figures["ways"]["a"]["wall_s"]
        for entry in figures["ways"].values():
            entry["wall_vs_a"] = round(entry["wall_s"] / floor, 3)
    return figures


def _ways(text: str) -> str:
    if not text or set(text) - set("abc"):
        raise argparse.ArgumentTypeError(f"{text!r}: give one or more of a (plain loop), b (a trial each), c (packs), "
                                         "e.g. abc or bc")
    return "".join(dict.fromkeys(text))  # each way once, in the order given


def _pack_size(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: an integer >= 1, or auto")
    return int(text)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: an integer >= 1")
    return int(text)


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: a GPU share >= 0 (0: train on the CPU)")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clphase bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=_positive, default=400)
    parser.add_argument("--seeds", type=_positive, default=4)
    parser.add_argument("--widths", type=_positive, nargs="+", default=[32, 64, 128])
    parser.add_argument("--dims", type=_positive, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--pack-size", type=_pack_size, default="auto", help="configs per packed trial, or auto")
    parser.add_argument("--ways", type=_ways, default="abc",
                        help="which of a (plain loop), b (a trial each), c (packs)")
    parser.add_argument("--gpu", type=_share, default=None, help="GPU share per trial (default 0.25 on a GPU)")
    parser.add_argument("--address", default=None)
    parser.add_argument("--out", "--json", dest="out", default="bench.json",
                        help="where to write the figures (JSON; --json is the old name)")
    args = parser.parse_args(argv)
    from study.cli import _join_local_ray

    _join_local_ray(args.address)  # clphase ray up's head: its token, set before Ray's import, as clphase run does
    from study.runner import StudyError
    from study.spec import SpecError

    try:
        figures = run_bench(steps=args.steps, seeds=args.seeds, widths=tuple(args.widths), dims=tuple(args.dims),
                            pack_size=args.pack_size, ways=args.ways, address=args.address, gpu=args.gpu)
    except (SpecError, StudyError) as err:
        print(f"clphase bench: error: {err}", file=sys.stderr)
        return 2
    Path(args.out).write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    print(f"[clphase bench] figures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
