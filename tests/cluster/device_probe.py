"""Run by tests/cluster/test_trial_device.py in a fresh process: a local Ray with one logical GPU, and
one Tune trial per case that reports what ``trainables.contrastive.trial_device()`` chose.

Two trials: one given no GPU, one given a quarter of it. Each reports the device as this machine's
torch sees it, then as a torch that sees CUDA would (the memory cap is recorded, not applied).
Prints one JSON line: case -> report.
"""

from __future__ import annotations

import json
import os

GPU_SHARES = {"no_gpu": 0.0, "quarter_gpu": 0.25}


def probe(config: dict) -> None:
    """Report trial_device() as it is, then again with torch pretending to see CUDA."""
    import ray
    import torch
    from ray import tune

    from trainables.contrastive import trial_device

    report = {
        "assigned_gpu": ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"),
        "device": str(trial_device()),
    }
    caps: list[list] = []  # the memory cap trial_device sets, recorded instead of applied
    torch.cuda.is_available = lambda: True
    torch.cuda.set_per_process_memory_fraction = lambda fraction, device=None: caps.append([fraction, str(device)])
    report["device_if_cuda"] = str(trial_device())
    report["memory_caps_if_cuda"] = json.dumps(caps)
    tune.report(report)


def main() -> None:
    import ray
    from ray import tune

    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False, _temp_dir=os.environ["PROBE_RAY_TEMP"])
    trainable = tune.with_resources(probe, lambda config: {"cpu": 1, "gpu": GPU_SHARES[config["case"]]})
    tuner = tune.Tuner(
        trainable,
        param_space={"case": tune.grid_search(list(GPU_SHARES))},
        tune_config=tune.TuneConfig(reuse_actors=False),  # the patched torch dies with its trial
        run_config=tune.RunConfig(storage_path=os.environ["PROBE_STORAGE"], verbose=0),
    )
    reports = {r.config["case"]: r.metrics for r in tuner.fit()}
    keys = ("assigned_gpu", "cuda_visible_devices", "device", "device_if_cuda", "memory_caps_if_cuda")
    print(json.dumps({case: {k: m.get(k) for k in keys} for case, m in reports.items()}))
    ray.shutdown()


if __name__ == "__main__":
    main()
