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


# ---------------------------------------------------------------------------------------------
# K configs at once: one exponential pass over the (K, B, B) logits

_LOG2E = 1.0 / math.log(2.0)


def _fast_path_limit(dtype: torch.dtype, batch: int) -> float:
    """Largest ``1/t`` for which ``batched_info_nce`` may exponentiate the raw logits in ``dtype``.

    Cosines lie in [-1, 1], so the logits lie in [-1/t, 1/t]: every ``exp(logit)`` and every
    reciprocal of a row or column sum (at most ``B exp(1/t)``) stays a normal float when
    ``1/t + log B <= -log(tiny) - 1``. float32 with B = 256: ``1/t <= 80.8`` (``t >= 0.0124``).
    """
    return -math.log(torch.finfo(dtype).tiny) - 1.0 - math.log(batch)


class _ExpOnceInfoNCE(torch.autograd.Function):
    """Per-config symmetric InfoNCE from ``u1 = normalize(z1) log2(e) / t`` and ``u2 = normalize(z2)``, (K, B, E).

    ``L2 = u1 @ u2^T`` are the logits in base 2 (``L2 = L log2 e`` with ``L = cos / t``), so
    ``E = exp2(L2) = exp(L)`` is computed in place on the matmul's output: the one (K, B, B) tensor
    and the one pass of exponentials (``exp2`` is the faster kernel on CPU). No shift and no max
    reduction: ``|L| <= 1/t`` keeps ``E`` in range (``_fast_path_limit``; the symmetric bound
    ``[-1/t, 1/t]`` admits about twice the ``1/t`` of the one-sided shift ``L - 1/t``). With row and
    column sums ``r``, ``c``: ``loss = 0.5 mean_i (log r_i - L_ii) + 0.5 mean_i (log c_i - L_ii)``.

    Backward, with ``a = g ln2 / (2B)`` per config: ``dLoss/dL2 = a (E_ij (1/r_i + 1/c_j) - 2 I)``,
    whose products with the embeddings are taken without forming it (no (K, B, B) temporary, no
    pass over ``E`` but two matmuls; the identity term goes to the (K, B, E) side):
    ``dU1 = a ((E u2) / r + E (u2 / c) - 2 u2)`` from one bmm of ``E`` with ``[u2, u2 / c]``,
    ``dU2 = a (E^T (u1 / r) + (E^T u1) / c - 2 u1)`` from one bmm of ``[u1 / r, u1]^T`` with ``E``.
    (Overwriting ``E`` with ``E (1/r_i + 1/c_j)`` halves the matmuls' columns but needs a (K, B, B)
    outer sum: slower on one CPU thread beside other work, and it would forbid ``retain_graph``.)
    First order only: double backward is not supported, and a backward with ``create_graph=True``
    raises rather than return gradients that would silently be treated as constants.
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
    """The stable form of ``_ExpOnceInfoNCE`` (max-shifted ``log_softmax``), same inputs, (K,)."""
    logits = torch.bmm(u1, u2.transpose(1, 2)) * math.log(2.0)  # (K, B, B) cos / t
    rows = logits.log_softmax(2).diagonal(dim1=1, dim2=2)
    cols = logits.log_softmax(1).diagonal(dim1=1, dim2=2)
    return -0.5 * (rows.mean(1) + cols.mean(1))


def batched_info_nce(z1: Tensor, z2: Tensor, temperature: Tensor, *, t_host: Tensor | None = None) -> Tensor:
    """(K, B, E), (K, B, E), (K,) -> (K,): row k equals info_nce(z1[k], z2[k], temperature[k]) up to float round-off.

    One exponential pass over the (K, B, B) logits in the forward and none in the backward
    (``_ExpOnceInfoNCE``), where the ``log_softmax`` form (``_log_softmax_info_nce``) makes four,
    plus the zero-filled tensors of ``diagonal``'s backward.
    Configs with ``1/t`` beyond ``_fast_path_limit`` (float32, B = 256: ``t < 0.0124``; float64:
    ``t < 0.0014``) are computed with the stable ``log_softmax`` form instead, the others with the
    fast one, in the same call.

    Zero-padded embedding columns change nothing; every operation is batched over the config
    axis, so nothing of config j reaches config k. ``temperature`` may be a scalar (broadcast to K)
    and may require grad. It is read on the host once per call (a device sync on CUDA), also to
    reject ``t <= 0``, unless the caller passes the same values as ``t_host`` (a CPU tensor), as a
    pack does on every step. First derivatives only: double backward (``create_graph=True``) raises.
    """
    k, b = z1.shape[0], z1.shape[1]
    temperature = torch.as_tensor(temperature, dtype=z1.dtype, device=z1.device).expand(k)
    t_host = (temperature.detach() if t_host is None else torch.as_tensor(t_host).expand(k)).to("cpu", torch.float64)
    if not bool((t_host > 0).all()):
        raise ValueError(f"temperature must be > 0, got {t_host.tolist()}")
    slow = 1.0 / t_host > _fast_path_limit(z1.dtype, b)  # (K,) bool, on the host
    u1 = F.normalize(z1, dim=2) * (_LOG2E / temperature)[:, None, None]  # (K, B, E) base-2 logit side
    u2 = F.normalize(z2, dim=2)
    if not bool(slow.any()):
        return _ExpOnceInfoNCE.apply(u1, u2)
    if bool(slow.all()):
        return _log_softmax_info_nce(u1, u2)
    fast_idx = (~slow).nonzero().squeeze(1).to(z1.device)
    slow_idx = slow.nonzero().squeeze(1).to(z1.device)
    fast = _ExpOnceInfoNCE.apply(u1[fast_idx], u2[fast_idx])
    stable = _log_softmax_info_nce(u1[slow_idx], u2[slow_idx])
    return torch.cat([fast, stable])[torch.argsort(torch.cat([fast_idx, slow_idx]))]
