"""Contrastive losses: pure functions of two embedding batches of positive pairs.

Row i of ``z1`` and row i of ``z2`` embed the two views of one positive pair
``(x, x_pos)``, ``x_pos ~ p(x_pos | x)``; every other row of the batch is a negative.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

_LOG2E = 1.0 / math.log(2.0)


def info_nce(z1: Tensor, z2: Tensor, temperature: float | Tensor = 0.1) -> Tensor:
    """Symmetric InfoNCE on cosine similarities (van den Oord et al. 2018; Chen et al. 2020), (..., B, E) -> (...).

    ``L = -1/(2B) sum_i [log softmax_j(s_ij / t)_i + log softmax_j(s_ji / t)_i]``, ``s_ij = cos(z1_i, z2_j)``. Each
    anchor has B candidates, so identical constant embeddings give exactly ``log(B)``. Leading dimensions are
    independent problems (a pack's configs); ``temperature`` is a number or one value per problem, on the host
    (read without a device sync). Zero-padded embedding columns change nothing. Computed by ``_ExpOnceInfoNCE``
    (one exponential pass over the logits, 2.5x faster forward and backward at K=16, B=256), or where ``1/t``
    exceeds ``_fast_path_limit`` by the stable ``_log_softmax_info_nce``, which is also the tests' reference.
    """
    t = torch.as_tensor(temperature, dtype=torch.float64).flatten()
    if not bool(torch.isfinite(t).all() and (t > 0).all()):
        raise ValueError(f"temperature must be a finite number > 0, got {t.tolist()}")
    lead, (b, e) = z1.shape[:-2], z1.shape[-2:]
    z1, z2 = z1.reshape(-1, b, e), z2.reshape(-1, b, e)  # (K, B, E)
    scale = (_LOG2E / t).to(z1.device, z1.dtype).expand(len(z1))  # (K,) base-2 logit scale
    u1 = F.normalize(z1, dim=2) * scale[:, None, None]
    u2 = F.normalize(z2, dim=2)
    stable = bool((1.0 / t > _fast_path_limit(z1.dtype, b)).any())
    loss = _log_softmax_info_nce(u1, u2) if stable else _ExpOnceInfoNCE.apply(u1, u2)
    return loss.reshape(lead)


def spectral(z1: Tensor, z2: Tensor) -> Tensor:
    """Spectral contrastive loss (HaoChen, Wei, Gaidon & Ma 2021, eq. 5), (..., B, E) -> (...).

    ``L = -2/B sum_i <z1_i, z2_i> + 1/(B(B-1)) sum_{i != j} <z1_i, z2_j>^2``, the empirical form of
    ``-2 E[f(x)^T f(x+)] + E[(f(x)^T f(x'))^2]`` on unnormalised embeddings.
    """
    b = z1.shape[-2]
    gram = z1 @ z2.transpose(-1, -2)  # (..., B, B)
    diagonal = gram.diagonal(dim1=-2, dim2=-1)  # (..., B)
    positive = diagonal.sum(-1) * (-2.0 / b)
    off_diagonal = (gram.pow(2).sum((-2, -1)) - diagonal.pow(2).sum(-1)) / (b * (b - 1))
    return positive + off_diagonal


def _fast_path_limit(dtype: torch.dtype, batch: int) -> float:
    """Largest ``1/t`` for which ``info_nce`` may exponentiate the raw logits in ``dtype``: the logits lie in
    [-1/t, 1/t], so every ``exp(logit)`` and every reciprocal of a row or column sum (at most ``B exp(1/t)``)
    stays a normal float when ``1/t + log B <= -log(tiny) - 1`` (float32, B = 256: ``t >= 0.0124``).
    """
    return -math.log(torch.finfo(dtype).tiny) - 1.0 - math.log(batch)


class _ExpOnceInfoNCE(torch.autograd.Function):
    """Per-config InfoNCE, (K, B, E) -> (K,), from ``u1 = normalize(z1) log2(e) / t`` and ``u2 = normalize(z2)``.

    ``L2 = u1 @ u2^T`` are the logits ``cos / t`` in base 2, so ``E = exp2(L2) = exp(cos / t)`` is computed in
    place on the matmul's output: one (K, B, B) tensor, one pass of exponentials (``exp2``: the faster CPU
    kernel) and no max shift, as ``|cos / t| <= 1/t`` keeps ``E`` in range (``_fast_path_limit``; twice the
    ``1/t`` a one-sided shift admits). With row and column sums ``r``, ``c``: ``loss = 0.5 mean_i (log r_i +
    log c_i) - mean_i L_ii``. Backward, with ``a = g ln2 / (2B)``, never forms ``dLoss/dL2 = a (E_ij (1/r_i +
    1/c_j) - 2 I)``: ``dU1 = a ((E u2) / r + E (u2 / c) - 2 u2)`` is one bmm of ``E`` with ``[u2, u2 / c]``,
    ``dU2 = a (E^T (u1 / r) + (E^T u1) / c - 2 u1)`` one of ``[u1 / r, u1]^T`` with ``E`` (scaling ``E`` in place
    would halve the matmuls but needs a (K, B, B) outer sum: slower on a busy CPU, and no ``retain_graph``).
    First order only: ``create_graph=True`` raises rather than return gradients silently treated as constants.
    """

    @staticmethod
    def forward(ctx, u1: Tensor, u2: Tensor) -> Tensor:
        e = torch.bmm(u1, u2.transpose(1, 2)).exp2_()  # (K, B, B) exp(cos / t)
        r, c = e.sum(2), e.sum(1)  # (K, B) row and column sums
        positive = (u1 * u2).sum(2).mean(1) * math.log(2.0)  # (K,) mean diagonal logit, in nats
        ctx.save_for_backward(u1, u2, e, r, c)
        return 0.5 * (r.log().mean(1) + c.log().mean(1)) - positive

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        if torch.is_grad_enabled():
            raise RuntimeError("batched_info_nce: double backward (create_graph=True) is not supported")
        u1, u2, e, r, c = ctx.saved_tensors
        n = u1.shape[2]
        scale = (grad * (0.5 * math.log(2.0) / u1.shape[1]))[:, None, None]  # (K, 1, 1)
        inv_r, inv_c = r.reciprocal()[:, :, None], c.reciprocal()[:, :, None]  # (K, B, 1)
        g1 = g2 = None
        if ctx.needs_input_grad[0]:
            p = torch.bmm(e, torch.cat([u2, u2 * inv_c], 2))  # (K, B, 2E): E u2, E (u2 / c)
            g1 = torch.addcmul(p[..., n:], p[..., :n], inv_r).sub_(u2, alpha=2.0).mul_(scale)
        if ctx.needs_input_grad[1]:
            p = torch.bmm(torch.cat([u1 * inv_r, u1], 2).transpose(1, 2), e).transpose(1, 2)  # E^T (u1/r), E^T u1
            g2 = torch.addcmul(p[..., :n], p[..., n:], inv_c).sub_(u1, alpha=2.0).mul_(scale)
        return g1, g2


def _log_softmax_info_nce(u1: Tensor, u2: Tensor) -> Tensor:
    """``_ExpOnceInfoNCE``'s reference, same inputs and output: the stable (max-shifted) ``log_softmax`` form."""
    logits = torch.bmm(u1, u2.transpose(1, 2)) * math.log(2.0)  # (K, B, B) cos / t
    rows = logits.log_softmax(2).diagonal(dim1=1, dim2=2)
    cols = logits.log_softmax(1).diagonal(dim1=1, dim2=2)
    return -0.5 * (rows.mean(1) + cols.mean(1))


LOSSES: dict[str, Callable[..., Tensor]] = {"info_nce": info_nce, "spectral": spectral}
