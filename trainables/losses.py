"""Contrastive losses: pure functions of two embedding batches of positive pairs.

Row i of ``z1`` and row i of ``z2`` embed the two views of one positive pair
``(x, x_pos)``, ``x_pos ~ p(x_pos | x)``; every other row of the batch is a negative.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def info_nce(z1: Tensor, z2: Tensor, temperature: float = 0.1) -> Tensor:
    """Symmetric InfoNCE on cosine similarities (van den Oord et al. 2018; Chen et al. 2020).

    ``L = -1/(2B) sum_i [log softmax_j(s_ij / t)_i + log softmax_j(s_ji / t)_i]`` with
    ``s_ij = <z1_i, z2_j> / (|z1_i| |z2_j|)``. Each anchor has B candidates, so identical
    constant embeddings give exactly ``log(B)``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)  # (B, E)
    logits = z1 @ z2.T / temperature  # (B, B)
    target = torch.arange(z1.shape[0], device=z1.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def spectral(z1: Tensor, z2: Tensor) -> Tensor:
    """Spectral contrastive loss (HaoChen, Wei, Gaidon & Ma 2021, eq. 5).

    ``L = -2/B sum_i <z1_i, z2_i> + 1/(B(B-1)) sum_{i != j} <z1_i, z2_j>^2``,
    the empirical form of ``-2 E[f(x)^T f(x+)] + E[(f(x)^T f(x'))^2]`` on unnormalised embeddings.
    """
    b = z1.shape[0]
    gram = z1 @ z2.T  # (B, B)
    positive = torch.diagonal(gram).sum() * (-2.0 / b)
    off_diagonal = (gram.pow(2).sum() - torch.diagonal(gram).pow(2).sum()) / (b * (b - 1))
    return positive + off_diagonal


LOSSES: dict[str, Callable[..., Tensor]] = {"info_nce": info_nce, "spectral": spectral}
