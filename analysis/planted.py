"""Trial tables with a planted phase boundary: ground truth for ``PhaseDiagram`` (like ``make_blobs``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_Y = (2, 4, 8, 16, 32, 64, 128)


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def parse_capacity(label: str) -> dict[str, Any]:
    """``"linear"`` -> encoder only; ``"mlp-64x2"`` -> encoder, width, depth."""
    if "-" not in label:
        return {"encoder": label, "width": np.nan, "depth": np.nan}
    encoder, shape = label.split("-", 1)
    width, depth = shape.split("x")
    return {"encoder": encoder, "width": float(width), "depth": float(depth)}


def count_params(encoder: str, width: float, depth: float, input_dim: int, embedding_dim: int) -> int:
    """Parameters of ``trainables.encoders.linear`` / ``mlp`` (weights and biases)."""
    if encoder == "linear" or np.isnan(width):
        return input_dim * embedding_dim + embedding_dim
    w, d = int(width), int(depth)
    return (input_dim + 1) * w + (d - 1) * (w + 1) * w + (w + 1) * embedding_dim


def planted_metric(
    y: np.ndarray, y_critical: float, *, threshold: float, low: float = 0.5, high: float = 1.0,
    width: float = 0.5, increasing: bool = True,
) -> np.ndarray:
    """Expected metric: ``low + (high - low) * sigmoid(±(log2 y - log2 y*) / width + logit(q))``
    with ``q = (threshold - low) / (high - low)``, so it equals ``threshold`` exactly at ``y*``.
    ``y* = inf`` never crosses; ``y* = 0`` is past the threshold everywhere."""
    with np.errstate(divide="ignore"):
        z = (np.log2(np.asarray(y, dtype=float)) - np.log2(y_critical)) / width
    z = z if increasing else -z
    return low + (high - low) / (1 + np.exp(-(z + _logit((threshold - low) / (high - low)))))


def make_phase_trials(
    critical: Mapping[Any, float],
    *,
    x: str = "capacity",
    y: str = "embedding_dim",
    slice: str | None = None,
    y_values: Sequence[float] = DEFAULT_Y,
    n_seeds: int = 5,
    metric: str = "randlabel_acc",
    threshold: float = 0.9,
    low: float = 0.5,
    high: float = 1.0,
    width: float = 0.5,
    noise: float = 0.02,
    increasing: bool = True,
    scenario: str = "hypercube",
    study: str = "planted",
    random_state: int | None = 0,
) -> pd.DataFrame:
    """A ``trials.parquet``-shaped table whose seed-mean ``metric`` crosses ``threshold`` at ``critical``.

    ``critical`` maps each x value (or each ``(x, slice)`` pair when ``slice`` is given) to its
    critical y (``inf``: never crosses, ``0``: always past). Each trial's metric is
    ``planted_metric`` plus N(0, noise²), clipped to [0, 1]. With ``x="capacity"`` the x values are
    capacity labels (``linear``, ``mlp-64x2``) and the encoder columns follow from them.
    """
    rng = np.random.default_rng(random_state)
    rows = []
    dim = 16
    for key, y_star in critical.items():
        x_value, s_value = key if slice else (key, None)
        base: dict[str, Any] = {
            "scenario": scenario, "dim": dim, "n_invariant": 3, "loss": "info_nce", "temperature": 0.1,
            "aug_noise": 0.1, "encoder": "mlp", "width": 64.0, "depth": 2.0,
        }
        if x == "capacity":
            base.update(parse_capacity(str(x_value)))
        else:
            base[x] = x_value
        if slice:
            base[slice] = s_value
        expected = planted_metric(np.asarray(y_values), y_star, threshold=threshold, low=low, high=high,
                                  width=width, increasing=increasing)
        for seed in range(n_seeds):
            for y_value, mean in zip(y_values, expected, strict=True):
                value = float(np.clip(mean + rng.normal(0, noise), 0, 1))
                cfg = {**base, y: y_value, "seed": seed}
                n_params = count_params(cfg["encoder"], cfg["width"], cfg["depth"], dim, int(cfg["embedding_dim"])
                                        if "embedding_dim" in cfg else 16)
                rows.append({
                    **cfg, metric: value,
                    "probe_acc": float(np.clip(value + rng.normal(0, noise), 0, 1)),
                    "train_loss": float(4.0 - 0.15 * np.log2(n_params) - value + rng.normal(0, 0.05)),
                    "diverged": 0, "n_params": n_params, "wall_s": 1.0, "train_s": 0.8, "eval_s": 0.2,
                    "error": None,
                })
    table = pd.DataFrame(rows)
    table.insert(0, "status", "TERMINATED")
    table.insert(0, "trial_id", [f"t{i:05d}" for i in range(len(table))])
    table.insert(0, "study", study)
    return table


# --- three axes: a planted critical surface and critical z ------------------------------------------------
def volume_metric(y: np.ndarray, z: float, *, y_half: float, top: float, slope: float, low: float = 0.5,
                  width: float = 0.5) -> np.ndarray:
    """Expected metric at (z, y): ``low + (h(z) - low) * sigmoid((log2 y - log2 y_half) / width)`` with the
    ceiling ``h(z) = clip(top - slope * z, low, 1)``, linear in z: the metric rises with y towards a
    ceiling that falls with z (as the Bayes ceiling of randlabel_acc falls with aug_noise)."""
    ceiling = float(np.clip(top - slope * z, low, 1.0))
    u = (np.log2(np.asarray(y, dtype=float)) - np.log2(y_half)) / width
    return low + (ceiling - low) / (1 + np.exp(-u))


def volume_truth(
    rows: Mapping[Any, tuple[float, float, float]], *, z_values: Sequence[float], y_values: Sequence[float] = DEFAULT_Y,
    threshold: float = 0.9, low: float = 0.5, width: float = 0.5,
) -> tuple[dict[tuple[Any, float], float], dict[Any, float]]:
    """The planted answer of ``make_volume_trials``: the critical y of each (x, z) (``inf`` where the
    ceiling is at or below the threshold or the crossing lies beyond the largest y), and the critical z of
    each x, where the expected metric at the largest y, linear in z, meets the threshold (``inf``: still
    past it at the largest z; ``-inf``: at none)."""
    surface, critical_z = {}, {}
    y_max = float(max(y_values))
    for x, (y_half, top, slope) in rows.items():
        for z in z_values:
            ceiling = float(np.clip(top - slope * z, low, 1.0))
            q = (threshold - low) / (ceiling - low) if ceiling > low else math.inf
            y_star = y_half * 2 ** (width * _logit(q)) if q < 1 else math.inf
            surface[(x, float(z))] = y_star if y_star <= y_max else math.inf
        at_max = 1 / (1 + math.exp(-(math.log2(y_max) - math.log2(y_half)) / width))
        z_star = (top - (low + (threshold - low) / at_max)) / slope if slope else math.inf
        recovered = [volume_metric(np.array([y_max]), z, y_half=y_half, top=top, slope=slope, low=low,
                                   width=width)[0] >= threshold for z in z_values]
        critical_z[x] = -math.inf if not any(recovered) else math.inf if recovered[-1] else z_star
    return surface, critical_z


def make_volume_trials(
    rows: Mapping[Any, tuple[float, float, float]],
    *,
    z_values: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8),
    y_values: Sequence[float] = DEFAULT_Y,
    x: str = "capacity",
    y: str = "embedding_dim",
    z: str = "aug_noise",
    n_seeds: int = 4,
    metric: str = "randlabel_acc",
    low: float = 0.5,
    width: float = 0.5,
    noise: float = 0.01,
    scenario: str = "hypercube",
    study: str = "planted_volume",
    random_state: int | None = 0,
) -> pd.DataFrame:
    """A ``trials.parquet``-shaped table over (x, y, z): ``rows`` maps each x value to ``(y_half, top,
    slope)`` of ``volume_metric``; each trial's metric is that plus N(0, noise²), clipped to [0, 1].
    ``volume_truth`` gives the planted critical surface and critical z."""
    rng = np.random.default_rng(random_state)
    out = []
    for x_value, (y_half, top, slope) in rows.items():
        base: dict[str, Any] = {"scenario": scenario, "dim": 16, "n_invariant": 3, "loss": "info_nce",
                                "temperature": 0.1, "encoder": "mlp", "width": 64.0, "depth": 2.0}
        if x == "capacity":
            base.update(parse_capacity(str(x_value)))
        else:
            base[x] = x_value
        for z_value in z_values:
            expected = volume_metric(np.asarray(y_values), z_value, y_half=y_half, top=top, slope=slope, low=low,
                                     width=width)
            for seed in range(n_seeds):
                for y_value, mean in zip(y_values, expected, strict=True):
                    cfg = {**base, z: z_value, y: y_value, "seed": seed}
                    value = float(np.clip(mean + rng.normal(0, noise), 0, 1))
                    n_params = count_params(cfg["encoder"], cfg["width"], cfg["depth"], 16,
                                            int(cfg.get("embedding_dim", 16)))
                    out.append({**cfg, metric: value, "probe_acc": float(np.clip(value + rng.normal(0, noise), 0, 1)),
                                "train_loss": float(4.0 - 0.15 * np.log2(n_params) - value + rng.normal(0, 0.05)),
                                "diverged": 0, "n_params": n_params, "wall_s": 1.0, "train_s": 0.8, "eval_s": 0.2,
                                "error": None})
    table = pd.DataFrame(out)
    table.insert(0, "status", "TERMINATED")
    table.insert(0, "trial_id", [f"t{i:05d}" for i in range(len(table))])
    table.insert(0, "study", study)
    return table
