"""Reference implementations (scikit-learn and NumPy, one embedding at a time) of what
``trainables.metrics.evaluate_many`` computes batched in torch: the tests hold the two side by side."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, r2_score

from trainables.metrics import KMEANS_N_INIT, NAN, PROBE_C, PROBE_MAX_ITER, is_degenerate, random_labellings


def standardise(z_fit: np.ndarray, z_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale each embedding dimension with the fit half's mean and std.

    A dimension that is constant on the fit half keeps scale 1 (it becomes zero, not inf).
    """
    mean = z_fit.mean(axis=0)
    std = z_fit.std(axis=0)
    std = np.where(std > 1e-12 * (1.0 + np.abs(mean)), std, 1.0)
    return (z_fit - mean) / std, (z_test - mean) / std


def linear_probe_acc(z_fit: np.ndarray, y_fit: np.ndarray, z_test: np.ndarray, y_test: np.ndarray) -> float:
    """Test accuracy of a multinomial logistic-regression probe ``y ~ softmax(W z + b)``.

    ``z_*``: (n_*, E) embeddings (standardise them first), ``y_*``: (n_*,) integer labels.
    L2-regularised (``C = PROBE_C``), lbfgs. NaN when ``z`` is not finite or ``y_fit`` has
    fewer than two classes (no probe can be fitted).
    """
    if not (np.isfinite(z_fit).all() and np.isfinite(z_test).all()) or np.unique(y_fit).size < 2:
        return NAN

    probe = LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER)
    with warnings.catch_warnings():
        # an unconverged probe still gives a valid (lower-bound) accuracy; a sweep of
        # thousands of trials should not print a warning for each
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(z_fit, y_fit)
    return float(np.mean(probe.predict(z_test) == y_test))


def randlabel_acc(
    z_fit: np.ndarray,
    c_fit: np.ndarray,
    z_test: np.ndarray,
    c_test: np.ndarray,
    *,
    n_labellings: int = 8,
    seed: int = 0,
) -> float:
    """Mean linear-probe test accuracy over random binary labellings of the true clusters.

    ``c_*``: (n_*,) cluster ids. Labelling ``l`` maps cluster ``c`` to ``bits[l, c]``
    (``random_labellings``); the probe predicts that bit from ``z``. 1.0 means every sampled
    labelling is linearly decodable, HaoChen & Ma 2022's strong sense of cluster recovery;
    about 0.5 means ``z`` carries no cluster information. NaN with fewer than two clusters.
    """
    ids, codes = np.unique(np.concatenate([c_fit, c_test]), return_inverse=True)
    if ids.size < 2:
        return NAN
    codes_fit, codes_test = codes[: len(c_fit)], codes[len(c_fit) :]
    bits = random_labellings(ids.size, n_labellings, seed)
    accs = [linear_probe_acc(z_fit, b[codes_fit], z_test, b[codes_test]) for b in bits]
    return float(np.mean(accs))


def kmeans_ari_nmi(
    z: np.ndarray, clusters: np.ndarray, n_clusters: int, seed: int = 0
) -> tuple[float, float]:
    """Adjusted Rand index and normalised mutual information of k-means on ``z`` against ``clusters``.

    ``z``: (n, E), ``clusters``: (n,) true ids; k-means with ``k = n_clusters``,
    ``KMEANS_N_INIT`` seeded restarts. Both are 1 for a perfect recovery and about 0 for
    a clustering independent of the truth.
    """
    if is_degenerate(z):
        return NAN, NAN

    km = KMeans(n_clusters=n_clusters, n_init=KMEANS_N_INIT, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct points than k
        pred = km.fit_predict(z)
    return float(adjusted_rand_score(clusters, pred)), float(normalized_mutual_info_score(clusters, pred))


def effective_rank(z: np.ndarray, *, center: bool = True) -> float:
    """Effective rank (Roy & Vetterli 2007): ``exp(H(p))``, ``p_i = s_i / sum_j s_j``.

    ``s``: singular values of ``z`` (n, E), centred over samples unless ``center=False``;
    ``H(p) = -sum_i p_i log p_i``. Between 1 (rank one) and ``min(n, E)`` (all singular
    values equal). NaN for a non-finite or all-zero matrix.
    """
    z = np.asarray(z, dtype=np.float64)
    if not np.isfinite(z).all():
        return NAN
    if center:
        z = z - z.mean(axis=0)
    s = np.linalg.svd(z, compute_uv=False)
    total = s.sum()
    if not total > 0:
        return NAN
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def linearised_subspace(x: np.ndarray, z: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` input directions a linearised encoder emphasises most: (D, min(k, D, E)), orthonormal.

    Least squares ``z - z̄ ≈ (x - x̄) W`` gives ``W``: (D, E), the best linear stand-in for the
    encoder; its top-``k`` left singular vectors span the inputs with the largest gain. For a
    linear encoder ``z = x A`` this is exactly the top-``k`` left singular space of ``A``.
    """
    xc = x - x.mean(axis=0)
    zc = z - z.mean(axis=0)
    w, *_ = np.linalg.lstsq(xc, zc, rcond=None)  # (D, E)
    u, _, _ = np.linalg.svd(w, full_matrices=False)  # (D, min(D, E))
    return u[:, :k]


def r2_linear(z_fit: np.ndarray, y_fit: np.ndarray, z_test: np.ndarray, y_test: np.ndarray) -> float:
    """Test R^2 of an ordinary least-squares map ``y ≈ z W + b``, uniformly averaged over ``y``'s dims.

    ``z_*``: (n_*, E), ``y_*``: (n_*, k) or (n_*,). 1 when ``y`` is a linear function of ``z``
    (Zimmermann et al. 2021's identifiability up to a linear map), about 0 (or below) when
    independent. NaN for a non-finite ``z``.
    """
    if not (np.isfinite(z_fit).all() and np.isfinite(z_test).all()):
        return NAN

    reg = LinearRegression().fit(z_fit, y_fit)
    return float(r2_score(y_test, reg.predict(z_test), multioutput="uniform_average"))
