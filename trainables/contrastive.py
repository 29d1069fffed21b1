"""The Ray Tune function trainable: the only module of ``trainables`` that imports Ray.

It drives ``ContrastiveRun`` (see ``trainables.training``): reports the held-out metrics
every ``eval_every`` steps with ``tune.report``, each with a checkpoint of the whole run
state, resumes from Tune's checkpoint after a failure or a restored study, uses the GPU Ray
gave it (capping its memory to its fractional share) and ends a diverging run cleanly.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from trainables.gate import hold
from trainables.packed import ContrastivePack
from trainables.training import ContrastiveRun, train

__all__ = ["contrastive", "contrastive_pack", "train", "trial_device"]

_STATE = "state.pt"


def trial_device() -> torch.device:
    """The device Ray assigned: its GPU (Ray sets CUDA_VISIBLE_DEVICES) or the CPU."""
    resources = ray.get_runtime_context().get_assigned_resources()
    n_cpu = max(1, int(resources.get("CPU", 1)))
    torch.set_num_threads(n_cpu)
    gpu_share = resources.get("GPU", 0.0)
    if gpu_share > 0 and torch.cuda.is_available():
        device = torch.device("cuda", 0)
        if gpu_share < 1:
            torch.cuda.set_per_process_memory_fraction(gpu_share, device)
        return device
    return torch.device("cpu")


def contrastive(config: dict[str, Any]) -> None:
    """Tune trainable: one config, reported every ``eval_every`` steps with a checkpoint."""
    requested = str(config.get("device", "auto"))
    run = ContrastiveRun(config, device=trial_device() if requested == "auto" else requested)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            run.load_state_dict(torch.load(Path(folder) / _STATE, map_location=run.device, weights_only=False))
    node_id = ray.get_runtime_context().get_node_id()  # node_ip alone cannot tell two nodes of one host apart
    if run.done:  # restored from its final checkpoint (its driver died after it ended): report once more
        tune.report({**run.evaluate(), "node_id": node_id})
    while not run.done:
        run.advance(run.eval_every)
        metrics = {**run.evaluate(), "node_id": node_id}
        with tempfile.TemporaryDirectory() as folder:
            torch.save(run.state_dict(), Path(folder) / _STATE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        hold(tune.get_context().get_trial_id(), node_id, run.step, last=run.done)


def contrastive_pack(config: dict[str, Any]) -> None:
    """Tune trainable for a pack: ``config["pack"]`` lists K configs trained as one vectorised model.

    Each report carries every config's metrics under ``"pack"`` (the driver unpacks them into one
    Parquet row and one MLflow child per config) and, for Tune's bookkeeping, ``objective``'s best
    value over the pack under its own name.
    """
    objective, mode = config.get("objective", "randlabel_acc"), config.get("mode", "max")
    pack = ContrastivePack(config["pack"], device=trial_device())
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            pack.load_state_dict(torch.load(Path(folder) / _STATE, map_location=pack.device, weights_only=False))
    node_id = ray.get_runtime_context().get_node_id()

    def report(save: bool) -> None:
        metrics = [{**m, "node_id": node_id} for m in pack.evaluate()]
        values = [m[objective] for m in metrics if objective in m and m[objective] == m[objective]]
        best = (max(values) if mode == "max" else min(values)) if values else float("nan")
        result = {"step": pack.step, objective: best, "pack": metrics}
        if not save:
            tune.report(result)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(pack.state_dict(), Path(folder) / _STATE)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))
        hold(tune.get_context().get_trial_id(), node_id, pack.step, last=pack.done)

    if pack.done:  # restored from its final checkpoint: report once more
        report(save=False)
    while not pack.done:
        pack.advance(pack.eval_every)
        report(save=True)

