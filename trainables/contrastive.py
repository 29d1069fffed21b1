"""The Ray Tune function trainable: the only module of ``trainables`` that imports Ray.

Every trial trains a pack (``trainables.engine.Pack``) of the K >= 1 effective configs in ``config["pack"]``,
resolved once in the driver (a grid's packs, a searcher's suggestions: ``study.suggest``). Every ``eval_every``
steps it reports each config's held-out metrics under ``"pack"`` (one Parquet row and one MLflow child per
config, in the driver) with a checkpoint of the whole pack, and, for Tune's bookkeeping, the objective's best
value over the pack under its own name. It resumes from Tune's checkpoint after a failure or a restored study
and uses the GPU Ray gave it (capping its memory to its fractional share).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from trainables.engine import Pack, train
from trainables.gate import hold

__all__ = ["contrastive", "train", "trial_device"]

_STATE = "state.pt"


def trial_device() -> torch.device:
    """The device Ray assigned: its GPU (Ray sets CUDA_VISIBLE_DEVICES) or the CPU."""
    resources = ray.get_runtime_context().get_assigned_resources()
    torch.set_num_threads(max(1, int(resources.get("CPU", 1))))
    gpu_share = resources.get("GPU", 0.0)
    if not (gpu_share > 0 and torch.cuda.is_available()):
        return torch.device("cpu")
    if gpu_share < 1:
        torch.cuda.set_per_process_memory_fraction(gpu_share, torch.device("cuda", 0))
    return torch.device("cuda", 0)


def contrastive(config: dict[str, Any]) -> None:
    """Tune trainable: one pack, reported every ``eval_every`` steps with a checkpoint."""
    configs = config["pack"]
    objective, mode = config.get("objective", "randlabel_acc"), config.get("mode", "max")
    requested = str(configs[0].get("device", "auto"))
    pack = Pack(configs, device=trial_device() if requested == "auto" else requested)
    if (checkpoint := tune.get_checkpoint()) is not None:
        with checkpoint.as_directory() as folder:
            pack.load_state_dict(torch.load(Path(folder) / _STATE, map_location=pack.device, weights_only=False))
    node_id = ray.get_runtime_context().get_node_id()  # node_ip alone cannot tell two nodes of one host apart

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

    if pack.done:  # restored from its final checkpoint (its driver died after it ended): report once more
        report(save=False)
    while not pack.done:
        pack.advance(pack.eval_every)
        report(save=True)
