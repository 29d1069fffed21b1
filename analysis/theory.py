"""What the theory papers predict, per scenario, as functions of the scenario's parameters.

``predict(params, y=..., metric=..., threshold=...)`` gives the predicted boundary of one row of
a phase diagram (the params are the config keys constant over that row), or None where the papers
make no quantitative prediction. ``PREDICTIONS`` maps scenario names to those functions;
``expectations(trials)`` checks the qualitative claims that have no boundary (trends).

- hypercube (HaoChen & Ma 2022): clusters = the 2^s patterns of the s = ``n_invariant`` shared
  bits. A ReLU MLP needs embedding_dim ~ 2^s before every labelling of the clusters is linearly
  decodable (``randlabel_acc`` -> 1); a linear encoder makes only labellings that are threshold
  functions of the s bits decodable, so its ``randlabel_acc`` has a ceiling below 1 for s >= 2
  (``hypercube_linear_ceiling``).
- gmm (Bansal, Kavis & Sanghavi 2024): linear InfoNCE recovers the Fisher subspace at any
  ``nuisance_std``; PCA recovers it only while the mean directions carry more variance than the
  nuisance ones (``gmm_pca_overlap``, closed form).
- sphere_mixing (Zimmermann et al. 2021): ``r2_linear`` -> 1 once a nonlinear encoder's
  embedding_dim reaches ``latent_dim`` (kappa moderate).
- content_style (Bizeul, Schölkopf & Allen 2024): content kept (``content_r2``
  high once embedding_dim >= content dim), style discarded (``style_r2`` falls with aug_noise).
- nested_clusters (HaoChen & Ma 2022): group recovery needs embedding_dim ~ n_groups, not the
  number of sub-clusters r0 = n_groups · n_sub.

Theory in the units of the measurement: each prediction states the read-out it assumes (``readout``:
the 0-1-optimal halfspace, the Bayes classifier, population least squares, ...), the plateau it predicts
in that read-out (``ceiling``) and the study's baseline that is ideal for the row's function class
(``oracle``, see ``trainables.baselines``). The study's own probe (an L2 logistic regression, a kernel
ridge fitted on half the held-out sample) may not reach the theory's read-out: on XOR-type labellings of
the hypercube a logistic probe of the invariant coordinates scores about chance where the best halfspace
scores 3/4. Given the oracle's measured value (the probe's own ceiling), ``predict`` judges the
threshold against that: a phase whose threshold the probe cannot reach even on the ideal representation
is predicted "never reached" (``in_probe_units``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

EXACT_MAX_S = 4  # threshold functions of up to 4 inputs are enumerated exactly
# OEIS A000609: number of threshold functions of n or fewer inputs (constants included), n = 0..8
THRESHOLD_FUNCTION_COUNTS = (2, 4, 14, 104, 1882, 94572, 15028134, 8378070864, 17561539552946)


@dataclass(frozen=True)
class TheoryBoundary:
    """A predicted boundary along ``y``: a value, or a side of every range (``censored``); the read-out it
    assumes, the metric's plateau in that read-out, and the baseline ideal for the row (see the module
    docstring); ``probe_ceiling``: that baseline's measured value, once ``in_probe_units`` has seen it."""

    y_critical: float = math.nan
    censored: str | None = None  # "below": past the threshold at any y; "above": never past it
    note: str = ""
    readout: str = ""
    ceiling: float = math.nan
    oracle: str | None = None
    probe_ceiling: float = math.nan


# --- hypercube ----------------------------------------------------------------------------------
def hypercube_mlp_critical_dim(n_invariant: int) -> int:
    """Embedding dimension at which a ReLU MLP makes every labelling of the 2^s clusters linearly
    decodable: on the order of 2^s (2^s - 1 points in general position already suffice for an
    affine probe; the optimal spectral embedding of 2^s disconnected clusters has 2^s dims)."""
    return 2 ** int(n_invariant)


@cache
def threshold_functions(s: int) -> np.ndarray:
    """Truth tables of every linear threshold function of s inputs (constants included).

    Vertex ``v`` of {0,1}^s is the bit pattern of the integer v; a table is an integer whose bit
    v is f(v). Enumerated as [w·v >= t] over integer weights |w_i| <= s (enough for s <= 4, whose
    largest minimal weight is 3); ``len`` matches OEIS A000609 (2, 4, 14, 104, 1882).
    """
    if not 0 <= s <= EXACT_MAX_S:
        raise ValueError(f"threshold functions are enumerated for 0 <= s <= {EXACT_MAX_S}, got {s}")
    n = 2**s
    vertices = (np.arange(n)[:, None] >> np.arange(s)) & 1  # (2^s, s)
    grid = np.arange(-s, s + 1)
    weights = np.array(np.meshgrid(*[grid] * s, indexing="ij")).reshape(s, -1).T if s else np.zeros((1, 0))
    scores = vertices @ weights.T  # (2^s, n_weights)
    bit = (1 << np.arange(n, dtype=np.int64))[:, None]
    limit = s * s + 1
    tables = [((scores >= t) * bit).sum(axis=0) for t in range(-limit, limit + 2)]
    return np.unique(np.concatenate(tables))


def _balanced_labellings(s: int) -> np.ndarray:
    """Every labelling of the 2^s clusters with half of them 1 (as bit masks), as
    ``trainables.metrics.random_labellings`` draws them."""
    n = 2**s
    return np.array([sum(1 << i for i in ones) for ones in combinations(range(n), n - n // 2)], dtype=np.int64)


def _popcount(values: np.ndarray) -> np.ndarray:
    """Number of set bits of each non-negative int64."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(values).astype(np.int64)
    values = values.astype(np.int64)
    count = np.zeros(values.shape, dtype=np.int64)
    while values.any():
        count += values & 1
        values = values >> 1
    return count


def hypercube_linear_separable_fraction(n_invariant: int) -> float:
    """Fraction of balanced labellings of the 2^s clusters that a linear probe of b decodes exactly."""
    s = int(n_invariant)
    tables = set(threshold_functions(s).tolist())
    labellings = _balanced_labellings(s)
    return float(np.mean([int(v) in tables for v in labellings]))


@cache
def hypercube_linear_ceiling(n_invariant: int) -> float:
    """Ceiling of ``randlabel_acc`` for a linear encoder on ``hypercube`` with s = ``n_invariant``.

    A linear encoder followed by a linear probe is a halfspace in x, and only the invariant bits
    carry the label, so each balanced labelling of the 2^s equally likely clusters is decoded at
    best with the accuracy of the best threshold function of the s bits. The ceiling is the mean
    of that best accuracy over balanced labellings: exact for s <= 4 (s=1: 1, s=2: 11/12, ...).
    It bounds the logistic probe of ``trainables.metrics`` from above and is not tight: on a
    labelling that is not a threshold function (XOR for s=2) logistic regression does not find
    the best halfspace and scores near or below chance, so measured values sit lower still.
    For s > 4 it returns an upper bound: a labelling that is not a threshold function errs on at
    least one of the 2^s clusters, and at most A000609(s) (else 2^(s^2)) labellings are.
    """
    s = int(n_invariant)
    if s < 1:
        raise ValueError(f"randlabel_acc needs >= 2 clusters, i.e. n_invariant >= 1, got {s}")
    n = 2**s
    if s > EXACT_MAX_S:
        count = THRESHOLD_FUNCTION_COUNTS[s] if s < len(THRESHOLD_FUNCTION_COUNTS) else 2.0 ** (s * s)
        p_separable = min(1.0, count / math.comb(n, n // 2))
        return p_separable + (1 - p_separable) * (1 - 1 / n)
    tables, labellings = threshold_functions(s), _balanced_labellings(s)
    best = np.concatenate([  # agreements of each labelling with its best threshold function
        (n - _popcount(chunk[:, None] ^ tables[None, :])).max(axis=1)
        for chunk in np.array_split(labellings, max(1, len(labellings) // 512))
    ])
    return float(best.mean() / n)


# --- hypercube: the noise axis --------------------------------------------------------------------
BAYES_QUADRATURE_MAX_S = 3  # Gauss-Hermite product quadrature up to s = 3; Monte Carlo beyond
_BAYES_NODES = 48


@dataclass(frozen=True)
class Ceiling:
    """A predicted accuracy and its numerical error (0 up to quadrature error; a Monte Carlo standard error)."""

    value: float
    error: float
    method: str


def _bayes_accuracies(x: np.ndarray, labellings: np.ndarray, sigma: float, weights: np.ndarray) -> np.ndarray:
    """Per labelling (L, 2^s): E[max_c P(y = c | x)] over invariant coordinates ``x`` (N, s) with ``weights``
    (N,) summing to 1. P(b | x) is exact: the bits are independent given x, each with
    P(b_i = +1 | x_i) = logistic(2 x_i / sigma^2), and the posterior of a pattern enumerates the 2^s."""
    s = x.shape[1]
    patterns = ((np.arange(2**s)[:, None] >> np.arange(s)) & 1) * 2 - 1  # (2^s, s) in {+-1}, cluster id order
    logit = np.clip(2 * x / sigma**2, -700, 700)  # (N, s)
    log_plus, log_minus = -np.logaddexp(0, -logit), -np.logaddexp(0, logit)
    post = np.exp(np.where(patterns[None] > 0, log_plus[:, None, :], log_minus[:, None, :]).sum(2))  # (N, 2^s)
    p1 = post @ labellings.T.astype(float)  # (N, L): P(y = 1 | x) for each labelling
    return weights @ np.maximum(p1, 1 - p1)


@cache
def hypercube_bayes_ceiling(n_invariant: int, aug_noise: float, n_samples: int = 200_000,
                            n_labellings: int = 64, seed: int = 0) -> Ceiling:
    """The best accuracy any encoder (any read-out of x) reaches on a random balanced labelling of the
    2^s clusters of ``hypercube`` when x = b + aug_noise · eps: the Bayes ceiling of ``randlabel_acc``.

    Derivation. The label y = f(b_inv) depends on the s invariant bits only, and the other coordinates of x
    are independent of them, so the Bayes classifier reads x_inv = b_inv + sigma eps (sigma = aug_noise).
    Given x_inv the bits are independent with P(b_i = +1 | x_i) = 1 / (1 + exp(-2 x_i / sigma^2)) (two
    Gaussians of equal variance at +-1), so P(b_inv = p | x) is the product over i, and
    P(y = 1 | x) = sum over the 2^(s-1) patterns p with f(p) = 1. The Bayes accuracy of f is
    E_x[max(P(y = 1 | x), P(y = 0 | x))], and the ceiling is its mean over balanced labellings f (as
    ``trainables.metrics.random_labellings`` draws them). Flipping bits permutes the patterns and maps
    balanced labellings onto balanced labellings, so the mean over labellings is the same for every true
    pattern: the expectation runs over x = 1 + sigma eps alone. s = 1: Phi(1 / sigma) in closed form.

    Numerics: for s <= 3, a Gauss-Hermite product quadrature with 48 nodes per coordinate over every balanced
    labelling (70 at s = 3), error ~1e-5 against Monte Carlo (``error`` 0: quadrature, not sampling). For
    s > 3, Monte Carlo over ``n_samples`` draws and ``n_labellings`` random balanced labellings; ``error`` is
    its standard error (over labellings, and no smaller than the sampling one).
    """
    s, sigma = int(n_invariant), float(aug_noise)
    if s < 1:
        raise ValueError(f"randlabel_acc needs >= 2 clusters, i.e. n_invariant >= 1, got {s}")
    if sigma <= 0:
        return Ceiling(1.0, 0.0, "noise-free: every pattern is read exactly")
    if s == 1:
        from scipy.stats import norm

        return Ceiling(float(norm.cdf(1 / sigma)), 0.0, "closed form Phi(1/sigma)")
    if s <= BAYES_QUADRATURE_MAX_S:
        nodes, w = np.polynomial.hermite_e.hermegauss(_BAYES_NODES)  # probabilists' Hermite: weight exp(-t^2/2)
        grid = np.stack(np.meshgrid(*[nodes] * s, indexing="ij"), -1).reshape(-1, s)  # (q^s, s)
        weights = np.prod(np.stack(np.meshgrid(*[w / w.sum()] * s, indexing="ij"), -1).reshape(-1, s), 1)
        masks = _balanced_labellings(s)
        labellings = (masks[:, None] >> np.arange(2**s)) & 1  # (L, 2^s)
        value = float(_bayes_accuracies(1 + sigma * grid, labellings, sigma, weights).mean())
        return Ceiling(value, 0.0, f"Gauss-Hermite quadrature ({_BAYES_NODES}^{s} nodes), "
                                   f"all {len(labellings)} balanced labellings")
    rng = np.random.default_rng([seed, s])
    labellings = np.zeros((n_labellings, 2**s), dtype=np.int64)
    for row in labellings:
        row[rng.permutation(2**s)[2**s // 2:]] = 1
    x = 1 + sigma * rng.standard_normal((n_samples, s))
    per_label = _bayes_accuracies(x, labellings, sigma, np.full(n_samples, 1 / n_samples))
    error = max(float(per_label.std(ddof=1) / math.sqrt(n_labellings)), 0.5 / math.sqrt(n_samples))
    return Ceiling(float(per_label.mean()), error, f"Monte Carlo, {n_samples} samples x {n_labellings} labellings")


def hypercube_critical_noise(n_invariant: int, threshold: float) -> float:
    """The aug_noise at which the Bayes ceiling of randlabel_acc falls to ``threshold`` (bisection on the
    ceiling, which decreases in the noise from 1 to 1/2): beyond it no encoder recovers the clusters."""
    if not 0.5 < threshold < 1:
        raise ValueError(f"the ceiling runs from 1 (no noise) to 1/2: a threshold in (0.5, 1), got {threshold}")
    lo, hi = 1e-3, 1.0
    while hypercube_bayes_ceiling(n_invariant, round(hi, 6)).value > threshold:
        lo, hi = hi, 2 * hi
    for _ in range(30):
        mid = round(0.5 * (lo + hi), 6)
        if hypercube_bayes_ceiling(n_invariant, mid).value > threshold:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# --- gmm -------------------------------------------------------------------------------------------
def gmm_between_var(n_clusters: int, separation: float) -> float:
    """Between-class variance per mean direction of ``trainables.scenarios.gmm``: the K equally
    likely means are the vertices of a centred regular simplex with pairwise distance
    ``separation``, μ_k = separation (e_k - 1/K) / sqrt 2 in the sum-zero subspace, so
    (1/K) Σ_k μ_k μ_kᵀ = separation² / (2K) · I on the (K-1)-dim mean subspace."""
    if n_clusters < 2:
        raise ValueError(f"a mixture needs n_clusters >= 2, got {n_clusters}")
    return float(separation) ** 2 / (2 * int(n_clusters))


def gmm_pca_critical_nuisance(between_var: float) -> float:
    """``nuisance_std`` at which PCA stops finding the mean subspace: the mean directions have
    variance 1 + between_var, the nuisance ones nuisance_std², so sqrt(1 + between_var)."""
    return math.sqrt(1.0 + between_var)


def gmm_pca_overlap(n_clusters: int, dim: int, nuisance_std: float, between_var: float) -> float:
    """Population ``pca_overlap``: mean squared cosine of the principal angles between the top K-1
    principal components and the Fisher subspace (= the mean subspace, since the covariance is
    isotropic within it). Eigenvalues: 1 + between_var (K-1 mean directions), nuisance_std²
    (dim - K + 1 others). Mean directions on top: 1; nuisance on top: what mean directions are
    left among the top K-1; a tie makes the top K-1 a random subspace of R^dim: (K-1)/dim."""
    k = int(n_clusters) - 1
    n_nuisance = int(dim) - k
    signal, nuisance = 1.0 + between_var, float(nuisance_std) ** 2
    if n_nuisance <= 0:
        return 1.0
    if math.isclose(signal, nuisance):
        return k / int(dim)
    if signal > nuisance:
        return 1.0
    return max(0, k - n_nuisance) / k


# --- predictions per scenario ----------------------------------------------------------------------
def _get(params: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value = params.get(name)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            return value
    return None


def _constant(value: float, threshold: float, increasing: bool, note: str) -> TheoryBoundary:
    """A metric predicted not to depend on y: past the threshold everywhere or nowhere."""
    past = value >= threshold if increasing else value <= threshold
    return TheoryBoundary(censored="below" if past else "above", note=f"{note} (predicted {value:.3g} at any y)")


def _nonlinear(encoder: Any) -> bool:
    return encoder is not None and str(encoder) != "linear"


def _stated(found: TheoryBoundary | None, readout: str, ceiling: float = math.nan,
            oracle: str | None = None) -> TheoryBoundary | None:
    """``found`` with the read-out it assumes, its plateau in that read-out and the row's ideal baseline."""
    return None if found is None else replace(found, readout=readout, ceiling=float(ceiling), oracle=oracle)


# The read-outs the hypercube's predictions assume (HaoChen & Ma 2022 count decodable labellings).
HALFSPACE_READOUT = "the 0-1-optimal halfspace: the best threshold function of the s invariant bits"
LINEAR_READOUT = "any linear read-out of the embedding (the 2^s cluster means in general position)"
BAYES_READOUT = "the Bayes classifier on x = b + aug_noise eps"


def predict_hypercube(params: Mapping[str, Any], *, y: str, metric: str, threshold: float,
                      increasing: bool = True) -> TheoryBoundary | None:
    """randlabel_acc along embedding_dim (at the row's aug_noise) or along aug_noise (at its embedding_dim).

    Along embedding_dim: a ReLU MLP crosses at ~2^s where the Bayes ceiling at the row's noise is above the
    threshold, and never where it is not; the linear encoder is capped by min(linear ceiling, Bayes ceiling).
    Along aug_noise: an MLP wide enough (embedding_dim >= 2^s) stops recovering at the critical noise where
    the Bayes ceiling falls to the threshold; below 2^s dims, or linear, it is capped at every noise.
    """
    s, encoder = _get(params, "n_invariant"), _get(params, "encoder")
    if s is None or encoder is None or metric != "randlabel_acc" or y not in ("embedding_dim", "aug_noise"):
        return None
    s = int(s)
    linear = str(encoder) == "linear"
    linear_ceiling = hypercube_linear_ceiling(s) if linear else 1.0
    kind = " (upper bound)" if linear and s > EXACT_MAX_S else ""
    if y == "aug_noise":
        width = _get(params, "embedding_dim")
        if linear or (width is not None and int(width) < 2**s):
            cap = linear_ceiling if linear else math.nan
            if math.isnan(cap):
                return _stated(TheoryBoundary(censored="below" if not increasing else "above", note=(
                    f"{encoder} with embedding_dim {width} < 2^{s}: not every labelling is decodable at any noise")),
                    LINEAR_READOUT)
            return _stated(_constant(cap, threshold, increasing,
                                     f"linear encoder: randlabel_acc at most {cap:.3f}{kind} at any aug_noise"),
                           HALFSPACE_READOUT, cap, "invariant_coords")
        if not 0.5 < threshold < 1:
            return None
        sigma = hypercube_critical_noise(s, threshold)
        return _stated(TheoryBoundary(sigma, note=(
            f"{encoder}: recovers the {2**s} clusters while the Bayes ceiling of randlabel_acc (the best any "
            f"encoder can do on x = b + aug_noise eps) is above {threshold:g}: up to aug_noise = {sigma:.3f}")),
            BAYES_READOUT, oracle="cluster_posterior")
    noise = float(_get(params, "aug_noise") or 0.0)
    bayes = hypercube_bayes_ceiling(s, round(noise, 6))
    oracle = "invariant_coords" if linear else "cluster_posterior"
    if bayes.value < threshold:
        return _stated(TheoryBoundary(censored="above", note=(
            f"Bayes ceiling {bayes.value:.3f} < threshold {threshold:g} at aug_noise {noise:g}: no encoder "
            "recovers the clusters at any embedding_dim")), BAYES_READOUT, bayes.value, oracle)
    if linear:
        ceiling = min(linear_ceiling, bayes.value)
        if threshold > ceiling:
            return _stated(TheoryBoundary(censored="above", note=(
                f"linear encoder: randlabel_acc ceiling {ceiling:.3f}{kind} < threshold {threshold:g} at any "
                f"embedding_dim: only labellings that are threshold functions of the {s} invariant bits are "
                "decodable (HaoChen & Ma 2022)")), HALFSPACE_READOUT, ceiling, oracle)
        if s > EXACT_MAX_S:
            return None
        return _stated(TheoryBoundary(float(s), note=(
            f"linear encoder: ceiling {ceiling:.3f} >= threshold, reached once embedding_dim holds the "
            f"{s} invariant directions")), HALFSPACE_READOUT, ceiling, oracle)
    return _stated(TheoryBoundary(float(hypercube_mlp_critical_dim(s)), note=(
        f"{encoder}: embedding_dim ~ 2^{s} = {2**s} makes every labelling of the {2**s} clusters "
        f"linearly decodable (HaoChen & Ma 2022); Bayes ceiling {bayes.value:.3f} at aug_noise {noise:g}")),
        f"{LINEAR_READOUT}; its plateau: {BAYES_READOUT}", bayes.value, oracle)


PCA_READOUT = "population PCA of the mixture's covariance (closed form)"
SUBSPACE_READOUT = "principal angles of the encoder's linearised subspace with the Fisher subspace (population)"


def predict_gmm(params: Mapping[str, Any], *, y: str, metric: str, threshold: float,
                increasing: bool = True) -> TheoryBoundary | None:
    k, dim = _get(params, "n_clusters"), _get(params, "dim")
    separation, encoder = _get(params, "separation"), _get(params, "encoder")
    if k is None or (_get(params, "cov_tilt") or 0.0) != 0.0:
        return None  # a tilted covariance moves the Fisher subspace off the means: no closed form here
    k = int(k)
    if metric == "pca_overlap":
        if separation is None or dim is None:
            return None
        between = gmm_between_var(k, separation)
        if y == "nuisance_std":
            low = gmm_pca_overlap(k, dim, 10 * (1 + between), between)
            if not low < threshold <= 1.0:
                return _stated(_constant(1.0 if threshold <= low else low, threshold, increasing, "PCA overlap"),
                               PCA_READOUT)
            return _stated(TheoryBoundary(gmm_pca_critical_nuisance(between), note=(
                f"PCA finds the mean subspace while 1 + separation²/(2K) = {1 + between:.3g} > nuisance_std²: "
                f"boundary at nuisance_std = {gmm_pca_critical_nuisance(between):.3g}")), PCA_READOUT)
        nuisance = _get(params, "nuisance_std")
        if nuisance is None or y in ("separation", "n_clusters", "dim"):
            return None
        return _stated(_constant(gmm_pca_overlap(k, dim, nuisance, between), threshold, increasing,
                                 "PCA overlap does not depend on the encoder"), PCA_READOUT)
    if metric == "subspace_overlap" and str(encoder) == "linear":
        if (_get(params, "aug_noise") or 0.0) >= 1.0:
            return None  # positives from a uniformly drawn component: no signal to recover
        if y == "embedding_dim":
            return _stated(TheoryBoundary(max(1.0, threshold * (k - 1)), note=(
                f"linear InfoNCE recovers the {k - 1}-dim Fisher subspace (Bansal et al. 2024); an embedding of "
                f"E < {k - 1} dims holds E/{k - 1} of it")), SUBSPACE_READOUT, 1.0, "fisher_projection")
        if y in ("nuisance_std", "separation", "aug_noise"):
            width = _get(params, "embedding_dim")
            best = 1.0 if width is None else min(int(width), k - 1) / (k - 1)
            return _stated(_constant(best, threshold, increasing,
                                     f"linear InfoNCE keeps the Fisher subspace at any {y} < 1 (Bansal et al. 2024)"
                                     if y == "aug_noise" else
                                     f"linear InfoNCE keeps the Fisher subspace at any {y} (Bansal et al. 2024)"),
                           SUBSPACE_READOUT, best, "fisher_projection")
    return None


def predict_sphere_mixing(params: Mapping[str, Any], *, y: str, metric: str, threshold: float,
                          increasing: bool = True) -> TheoryBoundary | None:
    latent = _get(params, "latent_dim")
    if metric != "r2_linear" or y != "embedding_dim" or latent is None or not _nonlinear(_get(params, "encoder")):
        return None
    return _stated(TheoryBoundary(float(latent), note=(
        f"InfoNCE inverts g up to an orthogonal map once embedding_dim >= latent_dim = {latent} "
        "(Zimmermann et al. 2021; kappa moderate)")),
        "population least squares from the embedding to z (R^2 = 1 for an orthogonal map)", 1.0, "latent")


def predict_content_style(params: Mapping[str, Any], *, y: str, metric: str, threshold: float,
                          increasing: bool = True) -> TheoryBoundary | None:
    content = _get(params, "content_dim")
    if metric != "content_r2" or content is None:
        return None
    if y == "aug_noise":
        width = _get(params, "embedding_dim")
        if width is not None and int(width) < int(content):
            return None
        return _stated(_constant(1.0, threshold, increasing, "contrastive learning keeps the content at any "
                                 "augmentation strength (Bizeul et al. 2024)"), CONTENT_READOUT, 1.0, "content")
    if y != "embedding_dim":
        return None
    return _stated(TheoryBoundary(float(content), note=(
        f"contrastive learning keeps the {content} content dims (Bizeul et al. 2024): "
        "content_r2 high once embedding_dim >= content_dim")), CONTENT_READOUT, 1.0, "content")


CONTENT_READOUT = "any regression of the content on the embedding (population R^2 = 1)"
NESTED_READOUT = "any linear read-out of the embedding (the cluster means in general position)"


def nested_augmentation_components(n_groups: int, n_sub: int, aug_noise: float) -> int:
    """Connected components of ``nested_clusters``' augmentation graph (vertices: sub-clusters; an edge where a
    positive pair can join two). aug_noise = 0: a positive stays in its sub-cluster, so r0 = n_groups x n_sub
    components; aug_noise > 0: any two sub-clusters of a group are joined, so n_groups components."""
    return int(n_groups) * (int(n_sub) if float(aug_noise) == 0 or int(n_sub) == 1 else 1)


def predict_nested_clusters(params: Mapping[str, Any], *, y: str, metric: str, threshold: float,
                            increasing: bool = True) -> TheoryBoundary | None:
    """HaoChen & Ma 2022: the spectral contrastive optimum with unlimited capacity needs one dimension per
    component of the augmentation graph (``nested_augmentation_components``: r0 without augmentation noise,
    r with any); a smooth low-capacity encoder sees the r groups either way. So group recovery needs
    embedding_dim ~ r at every aug_noise; sub-cluster recovery needs ~r0 at aug_noise 0, and at aug_noise > 0
    the sub-clusters of a group are one component: nothing in the objective separates them."""
    groups = _get(params, "n_groups")
    if y != "embedding_dim" or groups is None:
        return None
    noise = float(_get(params, "aug_noise") or 0.0)
    if metric in ("randlabel_acc", "cluster_acc"):
        return _stated(TheoryBoundary(float(groups), note=(
            f"a smooth encoder recovers the r = {groups} groups with embedding_dim ~ r (HaoChen & Ma 2022), at "
            f"aug_noise {noise:g} as without")), NESTED_READOUT, 1.0, "group_posterior")
    per_group = _get(params, "n_sub")
    if metric == "sub_randlabel_acc" and per_group is not None:
        components = nested_augmentation_components(int(groups), int(per_group), noise)
        if components == int(groups) and int(per_group) > 1:
            return _stated(TheoryBoundary(censored="above", note=(
                f"aug_noise {noise:g} > 0 joins each group's {per_group} sub-clusters into one component of the "
                "augmentation graph: no embedding_dim makes every sub-cluster labelling decodable")), NESTED_READOUT)
        return _stated(TheoryBoundary(float(components), note=f"all r0 = {components} sub-clusters need "
                                      "embedding_dim ~ r0"), NESTED_READOUT, 1.0, "subcluster_posterior")
    return None


Predictor = Callable[..., "TheoryBoundary | None"]
PREDICTIONS: dict[str, Predictor] = {
    "hypercube": predict_hypercube,
    "gmm": predict_gmm,
    "sphere_mixing": predict_sphere_mixing,
    "content_style": predict_content_style,
    "nested_clusters": predict_nested_clusters,
}


PROBE_GAP = 0.01  # a theory ceiling this far above the probe's is said to be out of the probe's reach


def in_probe_units(found: TheoryBoundary | None, oracles: Mapping[str, float] | None, *, threshold: float,
                   increasing: bool = True) -> TheoryBoundary | None:
    """``found`` as the study's probe can measure it. ``oracles``: each baseline's measured metric on the
    row (the highest seed mean over its cells). The probe's ceiling is the value of ``found.oracle``, the
    representation ideal for the row's function class: where a metric that must rise to the threshold
    stays below it even there, the phase is predicted never reached (whatever the theory's read-out
    reaches), and the note says both ceilings. Other predictions only gain ``probe_ceiling``."""
    if found is None or found.oracle is None or not oracles:
        return found
    probe = oracles.get(found.oracle)
    if probe is None or not math.isfinite(float(probe)):
        return found
    probe = float(probe)
    found = replace(found, probe_ceiling=probe)
    theory = f"{found.ceiling:.3f} for {found.readout}" if math.isfinite(found.ceiling) else found.readout
    if increasing and threshold > probe and found.censored != "above":
        return replace(found, y_critical=math.nan, censored="above", note=(
            f"{found.note}. In the probe's units: its ceiling, measured on the ideal representation "
            f"({found.oracle}), is {probe:.3f} < threshold {threshold:g}, so never reached (the theory's "
            f"{theory} is out of this probe's reach)"))
    if math.isfinite(found.ceiling) and found.ceiling > probe + PROBE_GAP:
        return replace(found, note=f"{found.note}. The probe's own ceiling ({found.oracle}, measured) is {probe:.3f}, "
                                   f"below the theory's {theory}")
    return found


def predict(params: Mapping[str, Any], *, y: str, metric: str, threshold: float,
            increasing: bool = True, oracles: Mapping[str, float] | None = None) -> TheoryBoundary | None:
    """The predicted boundary for one row of a phase diagram (``params``: its constant config); with
    ``oracles`` (the study's baselines measured on the row, ``analysis.baselines``), in the probe's units
    (``in_probe_units``)."""
    predictor = PREDICTIONS.get(str(_get(params, "scenario")))
    if predictor is None:
        return None
    found = predictor(params, y=y, metric=metric, threshold=threshold, increasing=increasing)
    return in_probe_units(found, oracles, threshold=threshold, increasing=increasing)


def constant_params(rows: pd.DataFrame) -> dict[str, Any]:
    """The config a group of trials shares (a row of a diagram): every column with one value over them."""
    out = {}
    for column in rows.columns:
        values = rows[column].dropna().unique()
        if len(values) == 1:
            value = values[0]
            out[column] = value.item() if isinstance(value, np.generic) else value
    return out


THEORY_COLUMNS = ["y_theory", "censored_theory", "theory_note", "theory_readout", "theory_ceiling", "oracle",
                  "oracle_value"]


def row_oracles(rows: pd.DataFrame, y: str, metric: str, baselines: Any) -> dict[str, float]:
    """Each baseline's ``metric`` on one row of a diagram (``baselines``: ``analysis.baselines.Baselines``):
    the highest over the row's cells of its mean over the cell's seeds, read at each trial's own setting."""
    if baselines is None or not len(rows) or y not in rows.columns:
        return {}
    values = baselines.values(rows, metric)
    best = values.groupby(rows[y].to_numpy()).mean().max()
    return {name: float(v) for name, v in best.items() if pd.notna(v)}


def theory_boundaries(diagram: Any, trials: pd.DataFrame, baselines: Any = None) -> pd.DataFrame:
    """One prediction per row of a fitted ``PhaseDiagram``: its keys, ``y_theory``, ``censored_theory``,
    ``theory_note``, ``theory_readout`` and ``theory_ceiling`` (the read-out the prediction assumes and the
    plateau it predicts there), ``oracle`` (the baseline ideal for the row) and ``oracle_value`` (its
    measured value, the probe's ceiling); NaN / None / "" where the theory says nothing. With
    ``baselines`` (``analysis.baselines.load_baselines``) the predictions are in the probe's units
    (``in_probe_units``)."""
    keys = [diagram.x] + ([diagram.slice] if diagram.slice else [])
    out = []
    for _, row in diagram.boundary_.iterrows():
        mask = np.ones(len(trials), dtype=bool)
        for k in keys:
            mask &= (trials[k].astype(object) == row[k]).to_numpy()
        mine = trials[mask]
        if "status" in mine.columns and (mine["status"] == "TERMINATED").any():
            mine = mine[mine["status"] == "TERMINATED"]
        params = constant_params(mine.drop(columns=[diagram.y]))
        params.update({k: row[k] for k in keys})
        found = predict(params, y=diagram.y, metric=diagram.metric, threshold=diagram.threshold,
                        increasing=diagram.increasing_, oracles=row_oracles(mine, diagram.y, diagram.metric, baselines))
        found = found or TheoryBoundary()
        out.append({**{k: row[k] for k in keys}, "y_theory": found.y_critical,
                    "censored_theory": found.censored, "theory_note": found.note,
                    "theory_readout": found.readout, "theory_ceiling": found.ceiling, "oracle": found.oracle,
                    "oracle_value": found.probe_ceiling})
    return pd.DataFrame(out, columns=keys + THEORY_COLUMNS)


# --- qualitative claims ----------------------------------------------------------------------------
def _trend(trials: pd.DataFrame, x: str, y: str) -> float:
    """Spearman correlation of y with x (NaN with fewer than two distinct x)."""
    data = trials[[x, y]].dropna()
    if data[x].nunique() < 2:
        return math.nan
    return float(data[x].rank().corr(data[y].rank()))


def expectations(trials: pd.DataFrame) -> list[dict[str, Any]]:
    """Qualitative claims of the papers checked on the trials: ``claim``, ``holds`` (bool, or None
    when the table cannot tell) and ``detail``."""
    ok = trials[trials["status"] == "TERMINATED"] if "status" in trials.columns else trials
    out: list[dict[str, Any]] = []
    scenarios = set(ok["scenario"].dropna()) if "scenario" in ok.columns else set()

    def claim(text: str, holds: bool | None, detail: str) -> None:
        out.append({"claim": text, "holds": holds, "detail": detail})

    if "gmm" in scenarios:
        gmm = ok[ok["scenario"] == "gmm"]
        if {"nuisance_std", "pca_overlap"} <= set(gmm.columns):
            rho = _trend(gmm, "nuisance_std", "pca_overlap")
            claim("PCA overlap with the Fisher subspace falls as nuisance_std grows",
                  None if math.isnan(rho) else rho < 0, f"Spearman rho = {rho:.3f}")
        if {"nuisance_std", "pca_overlap", "subspace_overlap"} <= set(gmm.columns):
            lin = gmm[gmm["encoder"] == "linear"] if "encoder" in gmm.columns else gmm
            top = lin[lin["nuisance_std"] == lin["nuisance_std"].max()]
            a, b = top["subspace_overlap"].mean(), top["pca_overlap"].mean()
            claim("linear InfoNCE overlap beats PCA's at the largest nuisance_std (Bansal et al. 2024)",
                  None if math.isnan(a) or math.isnan(b) else bool(a > b),
                  f"subspace_overlap {a:.3f} vs pca_overlap {b:.3f}")
    if "content_style" in scenarios:
        cs = ok[ok["scenario"] == "content_style"]
        if {"content_r2", "style_r2"} <= set(cs.columns):
            a, b = cs["content_r2"].mean(), cs["style_r2"].mean()
            claim("content is kept better than style (content_r2 > style_r2)",
                  None if math.isnan(a) or math.isnan(b) else bool(a > b), f"{a:.3f} vs {b:.3f}")
        # No trend of style_r2 with aug_noise is claimed: with content-dependent style a content-only code predicts
        # style to the content oracle's R^2 at every aug_noise (the content_style claim's revised rule)
    return out
