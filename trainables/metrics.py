"""Held-out evaluation: how much of a scenario's ground truth an encoder's embeddings recover.

``evaluate(z, heldout, truth)`` is what the trainer calls; it and ``evaluate_many`` run in torch
(``trainables.probes``, ``trainables.kmeans``); tests/trainables/reference.py holds the scikit-learn versions,
one embedding at a time, as the tests' reference. The NumPy helpers take arrays (``n`` samples in rows) and
return floats. A non-finite or constant embedding gives NaN, never an exception, so that a diverged run still
evaluates. SciPy and scikit-learn (about 2 s to import in a trial process) are imported only where needed (MCC's
assignment, the kernel regression). Probes and regressions are fitted on one half of the held-out sample
(``fit_test_split``; the embedding standardised with its statistics) and scored on the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from trainables.kmeans import ari_nmi, batched_kmeans
from trainables.probes import binary_probes, least_squares, logistic_probe, r2

NAN = float("nan")
# The probes' and k-means' settings, here only: evaluate_many passes them, the scikit-learn reference reads them.
PROBE_C = 1.0  # inverse L2 strength of every logistic probe, on standardised features
PROBE_MAX_ITER = 500  # lbfgs converges in < 100 iterations on standardised embeddings
KMEANS_N_INIT = 2


def fit_test_split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random halving of ``range(n)``: ``(fit_idx, test_idx)`` of sizes ``n//2`` and ``n - n//2``;
    random, not first/second half, so that a sample stored in cluster order gives both halves every cluster."""
    perm = np.random.default_rng([seed, 0]).permutation(n)
    return perm[: n // 2], perm[n // 2 :]


def is_degenerate(z: np.ndarray) -> bool:
    """True for an embedding no metric can be read from: any NaN/inf, or every dimension constant."""
    return bool(not np.isfinite(z).all() or np.all(np.ptp(z, axis=0) <= 1e-12 * (1.0 + np.abs(z).max(initial=0.0))))


def random_labellings(n_clusters: int, n_labellings: int, seed: int = 0) -> np.ndarray:
    """(n_labellings, n_clusters) 0/1 table: per labelling, ``n_clusters // 2`` random clusters get 0, the rest 1.

    Both classes are present and, for equal-size clusters, the majority class is (close to) half the sample: a
    probe that reads nothing off ``z`` scores about 0.5. Depends only on ``seed``: every trial with the same seed
    is scored on the same labellings.
    """
    if n_clusters < 2:
        raise ValueError(f"random labellings need >= 2 clusters, got {n_clusters}")
    rng = np.random.default_rng([seed, 1])
    bits = np.zeros((n_labellings, n_clusters), dtype=np.int64)
    for row in bits:
        row[rng.permutation(n_clusters)[n_clusters // 2 :]] = 1
    return bits


def subspace_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared cosine of the principal angles between ``span(a)`` and ``span(b)``: ``a`` (D, p), ``b`` (D, q),
    any full-column-rank bases. The ``min(p, q)`` cosines are the singular values of ``Qa^T Qb`` (orthonormalised
    here): 1 when the smaller subspace lies in the larger, 0 when they are orthogonal, ``cos^2 theta`` for two lines
    at angle ``theta``."""
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return NAN
    qa, qb = (np.linalg.qr(np.asarray(m, dtype=np.float64))[0] for m in (a, b))
    cos = np.linalg.svd(qa.T @ qb, compute_uv=False)  # (min(p, q),)
    return float(np.mean(np.clip(cos, 0.0, 1.0) ** 2))


KERNEL_GRID = {"alpha": [1.0, 0.1, 0.01, 0.001], "gamma": list(np.logspace(-2, 2, 4))}
KERNEL_MAX_FIT = 1000  # the fit half is capped: kernel ridge costs O(n^3) per fit, 48 fits per search


def r2_kernel(z_fit: np.ndarray, y_fit: np.ndarray, z_test: np.ndarray, y_test: np.ndarray) -> float:
    """R^2 of a nonlinear (RBF kernel ridge) regression z -> y: von Kügelgen et al. 2021's measure of what a
    representation keeps of a latent block (their ssl_identifiability ``evaluate`` step).

    As there: ``y`` standardised with the fit half's statistics (``z`` comes standardised), a 3-fold grid search
    over ``KERNEL_GRID`` scored by R^2, refit on the whole fit half, R^2 (uniform average over y's dimensions) on
    the test half. Differs in size only: at most ``KERNEL_MAX_FIT`` fit points (theirs: 20,480) and the study's
    test half (theirs: 10 x 4,096).
    """
    if is_degenerate(z_fit):
        return NAN
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GridSearchCV

    y_fit, y_test = y_fit.reshape(len(y_fit), -1), y_test.reshape(len(y_test), -1)
    mean, std = y_fit.mean(0), y_fit.std(0)
    std = np.where(std > 0, std, 1.0)
    z_fit, y_fit = z_fit[:KERNEL_MAX_FIT], ((y_fit - mean) / std)[:KERNEL_MAX_FIT]
    search = GridSearchCV(KernelRidge(kernel="rbf"), KERNEL_GRID, cv=3).fit(z_fit, y_fit)
    return float(r2_score((y_test - mean) / std, search.predict(z_test)))


def mcc(z: np.ndarray, latent: np.ndarray) -> float:
    """Mean correlation coefficient (Hyvärinen & Morioka 2016; cl-ica's MCC).

    ``C_ij = |corr(latent_i, z_j)|``: (k, E); the best one-to-one matching of latent dims to embedding dims
    (``linear_sum_assignment`` maximising ``sum C``) and ``MCC = sum matched / k``. A latent dim left unmatched
    (``E < k``) counts as 0. 1 for a permutation and rescaling of the latent; about 0 for noise; NaN for a
    degenerate ``z``.
    """
    latent = latent.reshape(len(latent), -1)
    if is_degenerate(z):
        return NAN
    from scipy.optimize import linear_sum_assignment

    a, b = latent - latent.mean(axis=0), z - z.mean(axis=0)
    na, nb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)  # a constant column correlates 0, not NaN
    c = np.abs((a / np.where(na > 0, na, np.inf)).T @ (b / np.where(nb > 0, nb, np.inf)))  # (k, E)
    rows, cols = linear_sum_assignment(c, maximize=True)
    return float(c[rows, cols].sum() / latent.shape[1])


def evaluate(z: Tensor, heldout: dict[str, Tensor], truth: dict[str, Any], *, seed: int = 0,
             n_labellings: int = 8) -> dict[str, float]:
    """Every metric the scenario's ground truth allows, on embeddings ``z`` of ``heldout["x"]``.

    ``z``: (n, E) on any device. ``heldout``: ``"x"`` (n, D) and, where the scenario has them, ``"cluster"``,
    ``"label"``, ``"subcluster"`` (n,) int; ``"latent"`` (n, k), ``"content"``, ``"style"`` float. ``truth``:
    static ground truth (``"n_clusters"``, ``"fisher_basis"`` and ``"pca_basis"`` (D, K-1), ...). The returned
    keys depend on ``heldout`` and ``truth`` only, never on ``z``: a degenerate ``z`` (NaN/inf, constant) gives
    the same keys with NaN values.

    ============================  ===================================  ==================
    key                           needs                                 on
    ============================  ===================================  ==================
    ``effective_rank``            always                               all n
    ``probe_acc``                 ``label``                            fit -> test
    ``cluster_acc``               ``cluster``                          fit -> test
    ``randlabel_acc``             ``cluster``                          fit -> test
    ``ari``, ``nmi``              ``cluster``                          all n
    ``sub_randlabel_acc``         ``subcluster``                       fit -> test
    ``subspace_overlap``          ``fisher_basis``                     all n
    ``pca_overlap``               ``fisher_basis`` and ``pca_basis``   (data only)
    ``r2_linear``, ``mcc``        ``latent``                           fit -> test, all n
    ``content_r2``, ``style_r2``  ``content`` / ``style`` (kernel)     fit -> test
    ``content_r2_linear``, ...    ``content`` / ``style`` (linear)     fit -> test
    ============================  ===================================  ==================

    This is ``evaluate_many`` with one embedding: a config evaluated alone and inside a pack runs the same code
    on the same numbers.
    """
    return evaluate_many(z.reshape(1, len(z), -1), [heldout], [truth], [seed], n_labellings=n_labellings)[0]


def evaluate_many(z: Tensor, heldouts: Sequence[dict[str, Tensor]], truths: Sequence[dict[str, Any]],
                  seeds: Sequence[int], *, dims: Sequence[int] | None = None,
                  n_labellings: int = 8) -> list[dict[str, float]]:
    """``evaluate`` for K embeddings at once, batched on their device: one dict per embedding.

    ``z``: (K, n, E); embedding k is ``z[k, :, :dims[k]]`` (all E columns without ``dims``; later columns are
    ignored). ``heldouts``, ``truths``, ``seeds``: per embedding, from one scenario (same keys and n). Every fit
    of every embedding is one row of a batched solve; only the MCC's assignment, the kernel regression and the
    data-only PCA overlap run per embedding on the host.
    """
    k_n, n, e_max = z.shape
    device = z.device
    dims_t = torch.tensor(list(dims) if dims is not None else [e_max] * k_n, device=device)
    real = torch.arange(e_max, device=device)[None, :] < dims_t[:, None]  # (K, E)
    zd = torch.where(real[:, None, :], z.detach().to(torch.float64), 0.0)
    scale = 1e-12 * (1.0 + zd.abs().amax(2).amax(1))  # as is_degenerate: non-finite, or every column constant
    degenerate = ~torch.isfinite(zd).all(2).all(1) | (zd.amax(1) - zd.amin(1) <= scale[:, None]).all(1)
    zd = torch.where(degenerate[:, None, None], 0.0, zd)  # its metrics are NaN (set at the end), computed on zeros

    # fit/test halves (each embedding's own seeded split) and the fit half's standardisation
    fit, test = (torch.as_tensor(np.stack(h), device=device)
                 for h in zip(*(fit_test_split(n, s) for s in seeds), strict=True))  # (K, n//2), (K, n - n//2)

    def halves(x: Tensor) -> tuple[Tensor, ...]:  # (K, n, ...) -> its fit and test samples
        return tuple(x.gather(1, i.view(*i.shape, *[1] * (x.dim() - 2)).expand(*i.shape, *x.shape[2:]))
                     for i in (fit, test))

    z_fit, z_test = halves(zd)
    mean, std = z_fit.mean(1, keepdim=True), z_fit.std(1, correction=0, keepdim=True)
    std = torch.where(std > 1e-12 * (1.0 + mean.abs()), std, 1.0)
    z_fit, z_test = (z_fit - mean) / std, (z_test - mean) / std
    truth_of = {key: torch.stack([h[key] for h in heldouts]).to(device) for key in heldouts[0] if key != "x"}
    out: dict[str, list[float]] = {}

    # effective rank (Roy & Vetterli 2007): exp of the entropy of the normalised singular values
    centred = zd - zd.mean(1, keepdim=True)
    sv = torch.linalg.svdvals(centred)  # (K, min(n, E))
    total = sv.sum(1, keepdim=True)
    prob = sv / torch.where(total > 0, total, 1.0)
    entropy = -torch.where(prob > 0, prob * prob.clamp(min=1e-300).log(), 0.0).sum(1)
    out["effective_rank"] = torch.where(total[:, 0] > 0, entropy.exp(), torch.nan).tolist()

    def accuracy(pred: Tensor, y_fit: Tensor, y_test: Tensor) -> Tensor:  # NaN where the fit half has one class
        return torch.where(y_fit.amax(1) == y_fit.amin(1), torch.nan, (pred == y_test).double().mean(1))

    def probe(labels: Tensor) -> list[float]:  # (K, n) class labels -> test accuracy per embedding
        ids, codes = torch.unique(labels, return_inverse=True)
        y_fit, y_test = halves(codes)
        pred = logistic_probe(z_fit, y_fit, z_test, n_classes=max(2, len(ids)), c=PROBE_C, max_iter=PROBE_MAX_ITER)
        return accuracy(pred, y_fit, y_test).tolist()

    def randlabel(labels: Tensor) -> list[float]:  # mean probe accuracy over random balanced labellings
        bits = []  # (n, L) per embedding; all 0 (so NaN accuracy) with fewer than 2 clusters
        for c, s in zip(labels.cpu().numpy(), seeds, strict=True):
            ids, code = np.unique(c, return_inverse=True)
            bits.append(random_labellings(ids.size, n_labellings, s)[:, code].T if ids.size >= 2
                        else np.zeros((n, n_labellings), dtype=np.int64))
        y_fit, y_test = halves(torch.as_tensor(np.stack(bits), device=device))  # (K, m, L), (K, m', L)
        pred = binary_probes(z_fit, y_fit, z_test, c=PROBE_C, max_iter=PROBE_MAX_ITER)
        return accuracy(pred, y_fit, y_test).mean(1).tolist()

    if "label" in truth_of:
        out["probe_acc"] = probe(truth_of["label"])
    if "cluster" in truth_of:
        c = truth_of["cluster"]
        out["cluster_acc"] = probe(c)
        out["randlabel_acc"] = randlabel(c)
        # k-means on all n standardised samples, one batch per number of clusters wanted
        wanted = [min(int(t["n_clusters"]) if "n_clusters" in t else len(torch.unique(c[i])), n)
                  for i, t in enumerate(truths)]
        z_all, c_all = torch.cat([z_fit, z_test], 1), torch.cat(halves(c), 1)  # fit-then-test order
        scores = torch.full((2, k_n), torch.nan, dtype=torch.float64, device=device)  # ARI, NMI
        for kc in sorted(set(wanted)):
            members = [i for i, w in enumerate(wanted) if w == kc]
            labels = batched_kmeans(z_all[members], kc, [seeds[i] for i in members], n_init=KMEANS_N_INIT)
            scores[:, members] = torch.stack(ari_nmi(c_all[members], labels))
        out["ari"], out["nmi"] = scores.tolist()
    if "subcluster" in truth_of:
        out["sub_randlabel_acc"] = randlabel(truth_of["subcluster"])
    if "fisher_basis" in truths[0]:  # the embedding's linear part (least squares x -> z) against the Fisher basis
        fisher = torch.stack([torch.as_tensor(t["fisher_basis"]) for t in truths]).to(device, torch.float64)
        q_f, _ = torch.linalg.qr(fisher)  # (K, D, q)
        x = torch.stack([h["x"] for h in heldouts]).to(device, torch.float64)
        # gelsd (SVD) on CPU: the default gelsy differs in the last bits from call to call on the same input
        driver = "gelsd" if device.type == "cpu" else None
        w = torch.linalg.lstsq(x - x.mean(1, keepdim=True), centred, driver=driver).solution  # (K, D, E)
        u = torch.linalg.svd(w, full_matrices=False).U  # (K, D, min(D, E))
        q = fisher.shape[2]
        kept = torch.arange(u.shape[2], device=device)[None, :] < dims_t.clamp(max=q)[:, None]  # min(q, D, e_k)
        cos2 = (q_f.transpose(1, 2) @ u).pow(2).sum(1)  # (K, min(D, E))
        out["subspace_overlap"] = ((cos2 * kept).sum(1) / q).tolist()
        if "pca_basis" in truths[0]:  # data only
            unique = {id(t): t for t in truths}  # the configs of one stream share their truth: one computation each
            overlap = {key: subspace_overlap(*(torch.as_tensor(t[b]).detach().cpu().double().numpy()
                                               for b in ("pca_basis", "fisher_basis"))) for key, t in unique.items()}
            out["pca_overlap"] = [overlap[id(t)] for t in truths]

    e_host = dims_t.tolist()  # embedding k is its first e_host[k] columns, on the host too
    for key, name in (("latent", "r2_linear"), ("content", "content_r2_linear"), ("style", "style_r2_linear")):
        if key in truth_of:
            y_fit, y_test = halves(truth_of[key].reshape(k_n, n, -1))
            out[name] = r2(y_test, least_squares(z_fit, y_fit, z_test)).tolist()
            if key == "latent":
                zh, latent = zd.cpu().numpy(), truth_of[key].cpu().numpy()
                out["mcc"] = [mcc(zh[i, :, : e_host[i]], latent[i]) for i in range(k_n)]
            else:  # and by kernel ridge
                zf, zt, yf, yt = (t.cpu().numpy() for t in (z_fit, z_test, y_fit, y_test))
                out[f"{key}_r2"] = [r2_kernel(zf[i, :, : e_host[i]], yf[i], zt[i, :, : e_host[i]], yt[i])
                                    for i in range(k_n)]
    bad = degenerate.tolist()
    return [{key: NAN if bad[i] and key != "pca_overlap" else float(v[i]) for key, v in out.items()}  # pca: data only
            for i in range(k_n)]
