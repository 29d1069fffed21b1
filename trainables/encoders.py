"""Encoders f: R^input_dim -> R^embedding_dim, with their capacity as plain keyword arguments."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def linear(input_dim: int, embedding_dim: int) -> nn.Module:
    """f(x) = W x + b: captures only directions of x (HaoChen & Ma 2022's linear class)."""
    return nn.Linear(input_dim, embedding_dim)


def mlp(input_dim: int, embedding_dim: int, width: int = 64, depth: int = 2) -> nn.Module:
    """ReLU MLP with ``depth`` hidden layers of ``width`` units and a linear head."""
    if width < 1 or depth < 1:
        raise ValueError(f"mlp needs width >= 1 and depth >= 1, got width={width}, depth={depth}")
    layers: list[nn.Module] = []
    fan_in = input_dim
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), nn.ReLU()]
        fan_in = width
    layers.append(nn.Linear(fan_in, embedding_dim))
    return nn.Sequential(*layers)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


ENCODERS: dict[str, Callable[..., nn.Module]] = {"linear": linear, "mlp": mlp}
