"""Encoders f: R^input_dim -> R^embedding_dim, with their capacity as plain keyword arguments.

Every encoder is Linear layers joined by one activation, optionally followed by a fixed
normalisation of its output (``normalize``): the shape the training engine stacks into packs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

# leaky_relu: negative slope 0.01, torch's default and cl-ica's encoders'
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU}
NORMALIZATIONS = ("none", "sphere")


class SphereNorm(nn.Module):
    """f(x) / |f(x)|: the output on the unit sphere (cl-ica's ``fixed_sphere`` output normalisation)."""

    def forward(self, z: Tensor) -> Tensor:  # (..., E) -> (..., E), unit norm
        return F.normalize(z, dim=-1)


def _finish(layers: list[nn.Module], normalize: str) -> nn.Module:
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize {normalize!r}; valid: {', '.join(NORMALIZATIONS)}")
    if normalize == "sphere":
        layers.append(SphereNorm())
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


def linear(input_dim: int, embedding_dim: int, normalize: str = "none") -> nn.Module:
    """f(x) = W x + b: captures only directions of x (HaoChen & Ma 2022's linear class)."""
    return _finish([nn.Linear(input_dim, embedding_dim)], normalize)


def hidden_sizes(width: int, depth: int, hidden: str) -> list[int]:
    """The hidden layers' sizes: ``hidden`` ("50,250,250") when given, else ``depth`` layers of ``width``."""
    if hidden:
        try:
            sizes = [int(s) for s in hidden.split(",")]
        except ValueError:
            raise ValueError(f"hidden must be comma-separated layer sizes like '50,250,50', got {hidden!r}") from None
    else:
        sizes = [width] * depth
    if not sizes or min(sizes) < 1 or depth < 1:
        raise ValueError(f"mlp needs width >= 1 and depth >= 1 (or hidden sizes >= 1), got width={width}, "
                         f"depth={depth}, hidden={hidden!r}")
    return sizes


def mlp(input_dim: int, embedding_dim: int, width: int = 64, depth: int = 2, hidden: str = "",
        activation: str = "relu", normalize: str = "none") -> nn.Module:
    """An MLP with ``depth`` hidden layers of ``width`` units, or the sizes listed in ``hidden`` (cl-ica's encoder is
    ``hidden: "50,250,250,250,250,50"`` for 5 latents), ``activation`` between layers and a linear head."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    sizes = [input_dim, *hidden_sizes(width, depth, hidden)]
    layers = [m for fan_in, size in itertools.pairwise(sizes)
              for m in (nn.Linear(fan_in, size), ACTIVATIONS[activation]())]
    return _finish([*layers, nn.Linear(sizes[-1], embedding_dim)], normalize)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


ENCODERS: dict[str, Callable[..., nn.Module]] = {"linear": linear, "mlp": mlp}
