"""Batched k-means, adjusted Rand index and normalised mutual information in torch.

scikit-learn's ``KMeans`` + ``adjusted_rand_score`` + ``normalized_mutual_info_score`` for a pack of ``K`` embeddings
at once, on their device: the ``K`` problems (times ``n_init`` restarts) are stacked along a batch dimension and run
together with ``bmm``/``scatter``, in float64, each centred on its own mean as scikit-learn does. As there: greedy
k-means++ (``2 + int(log(n_clusters))`` candidates per centre), at most ``max_iter`` Lloyd iterations until the
labels stop changing or the squared centre shift is ``<= tol * var``, empty clusters re-seeded with the farthest
points, the restart of lowest inertia kept. One difference: ``var`` averages over the features that are not
identically zero, so zero-padded embeddings give the labels of unpadded ones bit for bit (sums over features also
run one feature after the other).

Problem ``k``'s labels depend only on ``z[k]``, ``n_clusters``, ``seeds[k]`` and the keyword arguments (its own CPU
generator draws all its random numbers up front; the global RNG is never used): no reduction mixes problems, and a
problem that stops leaves the working set. On CUDA the segment sums are one-hot ``bmm`` (no floating-point
atomics), reproducible, but they can differ from the CPU's at exact near-ties.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

_DTYPE = torch.float64
_EPS = torch.finfo(torch.float64).eps
_CHUNK_ELEMENTS = 2**20  # points times centres per problem in one distance block


def _fsum(t: Tensor, dim: int) -> Tensor:
    """Sum over the feature dimension ``dim`` in feature order: unlike torch's reductions, whose grouping
    depends on the length, appending zero features cannot change its last bit."""
    parts = t.unbind(dim)
    return sum(parts[1:], parts[0])


def _segment_sum(values_t: Tensor, index: Tensor, n_segments: int) -> Tensor:
    """``out[b, c] = sum of values[b, :, i] over i with index[b, i] == c``: (B, E, m), (B, m) -> (B, C, E).
    A ``scatter_add`` on CPU (deterministic); elsewhere a one-hot ``bmm``, as CUDA's is not."""
    if values_t.device.type == "cpu":
        out = values_t.new_zeros(*values_t.shape[:2], n_segments)
        return out.scatter_add_(2, index.unsqueeze(1).expand_as(values_t), values_t).transpose(1, 2)
    one_hot = (index.unsqueeze(1) == torch.arange(n_segments, device=index.device).view(1, -1, 1)).to(values_t.dtype)
    return torch.bmm(one_hot, values_t.transpose(1, 2))


def _nearest(x_t1: Tensor, centres: Tensor) -> Tensor:
    """Index of the nearest centre (the first on ties) of every point: (B, 1 + E, n), (B, C, E) -> (B, n).
    ``x_t1 = [1; x^T]``: one ``bmm`` with ``[|c|^2, -2 c]`` gives ``|c|^2 - 2 x.c`` (C, n) per problem; the first
    centre attaining the minimum is found with integer arithmetic. Points go in blocks whose size depends only
    on the number of centres, never on ``B``."""
    n, c = x_t1.shape[2], centres.shape[1]
    a = torch.cat([_fsum(centres * centres, 2).unsqueeze(2), -2.0 * centres], dim=2)  # (B, C, 1 + E)
    w_dtype = torch.int16 if c < 2**15 else torch.int32
    w = torch.arange(c, 0, -1, dtype=w_dtype, device=centres.device).view(1, c, 1)  # C - index
    step = max(1, _CHUNK_ELEMENTS // c)
    blocks = (torch.bmm(a, x_t1[:, :, i : i + step]) for i in range(0, n, step))  # each (B, C, block)
    return torch.cat([c - ((d == d.amin(1, keepdim=True)).to(w_dtype) * w).amax(1).long() for d in blocks], dim=1)


def _points(x_t: Tensor, idx: Tensor) -> Tensor:
    """Points ``idx`` (B, m) of every problem, from ``x_t`` (B, E, n): (B, m, E)."""
    return x_t.gather(2, idx.unsqueeze(1).expand(-1, x_t.shape[1], -1)).transpose(1, 2)


def _sq_dist_to_centre(x_t: Tensor, centres: Tensor, labels: Tensor) -> Tensor:
    """Squared distance of every point ``x_t`` (B, E, n) to its centre ``centres[labels]``, (B, C, E): (B, n)."""
    return _fsum((x_t - centres.transpose(1, 2).gather(2, labels.unsqueeze(1).expand_as(x_t))) ** 2, 1)


def _kmeans_plusplus(x_t: Tensor, u: Tensor) -> Tensor:
    """Greedy k-means++ centres (B, C, E) of the points ``x_t`` (B, E, n), from the uniforms ``u`` (B, C, L):
    ``u[:, 0, 0]`` for the first centre, ``u[:, c]`` for centre ``c``'s ``L`` candidates."""
    bsz, _, n = x_t.shape
    x_sq = _fsum(x_t * x_t, 1)  # (B, n)
    rows = torch.arange(bsz, device=x_t.device)

    def sq_dist(points: Tensor) -> Tensor:  # (B, L, E) -> (B, L, n), clipped at 0 as scikit-learn
        d = torch.baddbmm(x_sq.unsqueeze(1), points, x_t, alpha=-2.0)
        return d.add_(_fsum(points * points, 2).unsqueeze(2)).clamp_(min=0.0)

    centres = [_points(x_t, (u[:, :1, 0] * n).long().clamp_(max=n - 1))]  # each (B, 1, E)
    closest = sq_dist(centres[0]).squeeze(1)  # (B, n)
    for c in range(1, u.shape[1]):
        cum = closest.cumsum(1)
        cand = torch.searchsorted(cum, u[:, c, :] * cum[:, -1:]).clamp_(max=n - 1)  # (B, L)
        cand_x = _points(x_t, cand)  # (B, L, E)
        d = torch.minimum(sq_dist(cand_x), closest.unsqueeze(1))  # (B, L, n)
        best = d.sum(2).argmin(1)  # (B,), the first on ties
        closest = d[rows, best]
        centres.append(cand_x[rows, best].unsqueeze(1))
    return torch.cat(centres, dim=1)


def _lloyd_step(x_t1: Tensor, centres: Tensor) -> tuple[Tensor, Tensor]:
    """One Lloyd iteration on ``x_t1 = [1; x^T]`` (B, 1 + E, n): the labels under ``centres`` and the new centres.
    Empty clusters are re-seeded as in scikit-learn: the ``j``-th empty cluster takes the ``j``-th point farthest
    from its assigned centre, which leaves its old cluster; one still empty keeps its old centre."""
    bsz, n_clusters = x_t1.shape[0], centres.shape[1]
    x_t = x_t1[:, 1:]  # (B, E, n)
    labels = _nearest(x_t1, centres)
    flat = labels + n_clusters * torch.arange(bsz, device=labels.device).unsqueeze(1)
    counts = torch.bincount(flat.view(-1), minlength=bsz * n_clusters).view(bsz, n_clusters)
    sums = _segment_sum(x_t, labels, n_clusters)  # (B, C, E)
    empty = counts == 0
    if bool(empty.any()):
        # rows without an empty cluster go through the same arithmetic with zero weights and stay unchanged
        far = _sq_dist_to_centre(x_t, centres, labels).argsort(dim=1, descending=True, stable=True)[:, :n_clusters]
        rank = (empty.long().cumsum(1) - 1).clamp_(min=0)
        moved = far.gather(1, rank)  # (B, C): the point given to cluster c (meaningful where c is empty)
        moved_x = _points(x_t, moved)  # (B, C, E)
        donor = labels.gather(1, moved)  # (B, C)
        sums = sums - _segment_sum((moved_x * empty.to(x_t.dtype).unsqueeze(2)).transpose(1, 2), donor, n_clusters)
        counts = counts - torch.zeros_like(counts).scatter_add_(1, donor, empty.long())
        sums = torch.where(empty.unsqueeze(2), moved_x, sums)
        counts = torch.where(empty, torch.ones_like(counts), counts)
    new = sums / counts.clamp(min=1).unsqueeze(2).to(sums.dtype)
    return labels, torch.where((counts > 0).unsqueeze(2), new, centres)


def _lloyd(x_t1: Tensor, centres: Tensor, tol: Tensor, max_iter: int) -> tuple[Tensor, Tensor]:
    """Lloyd iterations on B problems at once, each frozen once it stops: (labels (B, n), inertia (B,)).
    Only the rows still running are computed: a row that stops leaves the working set."""
    bsz, _, n = x_t1.shape
    rows = torch.arange(bsz, device=x_t1.device)  # the working set: the rows still running, and their state
    x_w, labels_w, centres_w, tol_w = x_t1, x_t1.new_full((bsz, n), -1, dtype=torch.long), centres, tol
    labels, final = torch.empty_like(labels_w), torch.empty_like(centres)
    strict = torch.zeros_like(rows, dtype=torch.bool)  # stopped as the labels stopped changing
    for _ in range(max_iter):
        new_labels, new_centres = _lloyd_step(x_w, centres_w)
        same = (new_labels == labels_w).all(1)
        stop = same | (_fsum((new_centres - centres_w) ** 2, 2).sum(1) <= tol_w)
        labels_w, centres_w = new_labels, new_centres
        if bool(stop.any()):
            done = rows[stop]
            labels[done], final[done], strict[done] = labels_w[stop], centres_w[stop], same[stop]
            rows, x_w, labels_w, centres_w, tol_w = (t[~stop] for t in (rows, x_w, labels_w, centres_w, tol_w))
            if rows.numel() == 0:
                break
    labels[rows], final[rows] = labels_w, centres_w  # the rows that ran into max_iter
    # as scikit-learn: unless the labels stopped changing, re-assign to the final centres
    labels = torch.where(strict.unsqueeze(1), labels, _nearest(x_t1, final))
    return labels, _sq_dist_to_centre(x_t1[:, 1:], final, labels).sum(1)


def batched_kmeans(z: Tensor, n_clusters: int, seeds: Sequence[int], *, n_init: int = 2, max_iter: int = 100,
                   tol: float = 1e-4) -> Tensor:
    """k-means labels of ``K`` independent problems: ``z`` (K, n, E) -> (K, n) long in ``[0, n_clusters)``.

    ``z``: any real dtype and device (computed in float64 there); ``seeds``: ``K`` ints. Fewer distinct points than
    clusters is fine (some clusters then stay empty). Raises ``ValueError`` on a bad shape or argument,
    ``n < n_clusters`` or non-finite ``z``.
    """
    if z.ndim != 3:
        raise ValueError(f"z must be (K, n, E), got shape {tuple(z.shape)}")
    n_problems, n, n_features = z.shape
    seeds = [int(s) for s in seeds]
    if len(seeds) != n_problems:
        raise ValueError(f"need one seed per problem: {len(seeds)} seeds for K={n_problems}")
    if n_clusters < 1 or n_init < 1 or max_iter < 1 or n_features < 1:
        raise ValueError(f"n_clusters, n_init, max_iter and E must be >= 1, "
                         f"got {n_clusters}, {n_init}, {max_iter}, {n_features}")
    if n < n_clusters:
        raise ValueError(f"n_samples={n} should be >= n_clusters={n_clusters}")
    if n_problems == 0:
        return torch.zeros(0, n, dtype=torch.long, device=z.device)
    x_t = z.to(_DTYPE).transpose(1, 2).contiguous()  # (K, E, n): per-feature reductions run along rows
    if not bool(torch.isfinite(x_t).all()):
        raise ValueError("z must be finite")
    x_t -= x_t.mean(dim=2, keepdim=True)  # centred, as scikit-learn
    n_nonzero = (z != 0).any(dim=1).sum(1).clamp(min=1).to(_DTYPE)  # features not identically zero
    tol_k = tol * _fsum((x_t * x_t).mean(dim=2), 1) / n_nonzero  # (K,): tol times their mean variance
    shape = (n_init, n_clusters, 2 + int(math.log(n_clusters)))  # (restarts, centres, k-means++ candidates)
    u = torch.stack([torch.rand(shape, generator=torch.Generator().manual_seed(s), dtype=_DTYPE) for s in seeds])
    # restarts become extra problems: row k * n_init + i is restart i of problem k
    xb_t1 = torch.cat([x_t.new_ones(n_problems, 1, n), x_t], dim=1).repeat_interleave(n_init, dim=0)  # [1; x^T]
    centres = _kmeans_plusplus(xb_t1[:, 1:], u.to(z.device).flatten(0, 1))
    labels, inertia = _lloyd(xb_t1, centres, tol_k.repeat_interleave(n_init), max_iter)
    best = inertia.view(n_problems, n_init).argmin(1)  # the first restart on ties
    return labels.view(n_problems, n_init, n)[torch.arange(n_problems, device=z.device), best]


# --- ARI and NMI ----------------------------------------------------------------------------


def _row_codes(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Distinct labels per row: (ids (K, n) global ids sorted by (row, label), counts (U,), row of each id (U,))."""
    shifted = labels - labels.min()
    span = shifted.max() + 1
    rows = torch.arange(labels.shape[0], device=labels.device).unsqueeze(1)
    uniq, ids, counts = torch.unique(rows * span + shifted, sorted=True, return_inverse=True, return_counts=True)
    return ids, counts, uniq // span


def _pad_rows(values: Tensor, row_of: Tensor, n_rows: int) -> Tensor:
    """Scatter ``values`` (U,), sorted by ``row_of``, into a zero-padded (n_rows, max per row) table."""
    per_row = torch.bincount(row_of, minlength=n_rows)
    pos = torch.arange(values.shape[0], device=values.device) - (per_row.cumsum(0) - per_row)[row_of]
    return values.new_zeros(n_rows, int(per_row.max())).index_put_((row_of, pos), values)


def _entropy(counts: Tensor, n: int) -> Tensor:
    """scikit-learn's ``_entropy`` per row from zero-padded label counts (K, m): (K,), 0 for a single label."""
    present = counts > 0
    c = counts.to(_DTYPE)
    terms = torch.where(present, (c / n) * (torch.log(c.clamp(min=1)) - math.log(n)), 0.0)
    return torch.where(present.sum(1) == 1, 0.0, -terms.sum(1))


def ari_nmi(true: Tensor, pred: Tensor) -> tuple[Tensor, Tensor]:
    """Adjusted Rand index and normalised mutual information of ``K`` labellings: (K, n), (K, n) -> (K,), (K,).

    Row by row equal to scikit-learn's ``adjusted_rand_score(true[k], pred[k])`` and ``normalized_mutual_info_score(
    true[k], pred[k])`` (``average_method='arithmetic'``), special cases included: identical partitions (e.g. both a
    single cluster, both all singletons, or n = 0) give ARI 1; both labellings a single cluster gives NMI 1;
    otherwise either labelling a single cluster, or zero mutual information, gives NMI 0. Labels: any integers,
    compared within a row. Float64 on their device.
    """
    if true.shape != pred.shape or true.ndim != 2:
        raise ValueError(f"true and pred must both be (K, n), got {tuple(true.shape)} and {tuple(pred.shape)}")
    n_rows, n = true.shape
    if n_rows == 0 or n == 0:
        ones = torch.ones(n_rows, dtype=_DTYPE, device=true.device)
        return ones, ones.clone()
    true, pred = true.long(), pred.to(device=true.device, dtype=torch.long)
    t_ids, t_counts, t_row = _row_codes(true)
    p_ids, p_counts, p_row = _row_codes(pred)
    n_pred_ids = p_counts.shape[0]
    pairs, nij = torch.unique(t_ids * n_pred_ids + p_ids, sorted=True, return_counts=True)
    pair_t, pair_p = pairs // n_pred_ids, pairs % n_pred_ids
    pair_row = t_row[pair_t]

    a = _pad_rows(t_counts, t_row, n_rows)  # (K, ma) class sizes, zero-padded
    b = _pad_rows(p_counts, p_row, n_rows)  # (K, mb) cluster sizes
    c = _pad_rows(nij, pair_row, n_rows)  # (K, m) non-zero contingency entries
    outer = _pad_rows(t_counts[pair_t] * p_counts[pair_p], pair_row, n_rows)  # a_i * b_j of each entry
    n_classes, n_clusters = (a > 0).sum(1), (b > 0).sum(1)

    # ARI from the pair confusion matrix, as sklearn.metrics.cluster.pair_confusion_matrix (exact in int64)
    sum_sq = (c * c).sum(1)
    tp, fp, fn = sum_sq - n, (b * b).sum(1) - sum_sq, (a * a).sum(1) - sum_sq
    tn = n * n - fp - fn - sum_sq
    tp_, fp_, fn_, tn_ = (v.to(_DTYPE) for v in (tp, fp, fn, tn))
    denominator = (tp_ + fn_) * (fn_ + tn_) + (tp_ + fp_) * (fp_ + tn_)
    identical = (fn == 0) & (fp == 0)
    ari = torch.where(identical, 1.0, 2.0 * (tp_ * tn_ - fn_ * fp_) / torch.where(identical, 1.0, denominator))

    # NMI as sklearn.metrics.cluster.mutual_info_score and normalized_mutual_info_score
    c_, log_n = c.to(_DTYPE), math.log(n)
    c_nm = c_ / n
    log_outer = -torch.log(outer.clamp(min=1).to(_DTYPE)) + log_n + log_n
    terms = c_nm * (torch.log(c_.clamp(min=1)) - log_n) + c_nm * log_outer
    mi = torch.where((c > 0) & (terms.abs() >= _EPS), terms, 0.0).sum(1).clamp(min=0.0)
    mi = torch.where((n_classes == 1) | (n_clusters == 1), 0.0, mi)
    normaliser = (_entropy(a, n) + _entropy(b, n)) / 2
    nmi = torch.where(mi == 0, 0.0, mi / torch.where(mi == 0, 1.0, normaliser))
    return ari, torch.where((n_classes == 1) & (n_clusters == 1), 1.0, nmi)
