"""Synthetic scenarios: data with known ground truth, each with its positive-pair sampler.

A factory takes the scenario's config keys as keyword arguments and returns a :class:`Scenario`. ``data_seed``
fixes its frozen parts (mixture means, mixing network g, label direction w); the generator handed to ``pairs`` /
``heldout`` drives all sampling, on its own device (results go to the scenario's ``device``). DESIGN.md,
"Precise sampling", says what every study means by each scenario.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

Device = str | torch.device
LEAKY_SLOPE = 0.2  # cl-ica's leaky-ReLU slope in the mixing network
_F64 = torch.float64


@dataclass(frozen=True)
class Scenario:
    """A data distribution with a positive-pair sampler and its ground truth.

    ``pairs(B, gen) -> (x, x_pos)``, a positive pair ``x_pos ~ p(x_pos | x)`` (cl-ica's notation), each ``(B,
    input_dim)`` float32 on the scenario's device. ``heldout(n, gen) -> {"x": (n, input_dim), ...per-sample truth}``
    (``cluster``, ``label``, ``subcluster`` int64 ``(n,)``; ``latent``, ``content``, ``style`` float32 ``(n, k)``).
    ``truth``: the static ground truth (``n_clusters``, ``fisher_basis``, ...).
    """

    name: str
    input_dim: int
    pairs: Callable[[int, torch.Generator], tuple[Tensor, Tensor]]
    heldout: Callable[[int, torch.Generator], dict[str, Tensor]]
    truth: dict[str, Any]


def _scenario(name: str, input_dim: int, truth: dict[str, Any], anchor: Callable[..., Tensor],
              positive: Callable[..., Tensor], observe: Callable[..., Tensor], labels: Callable[..., dict]) -> Scenario:
    """A Scenario from its parts: ``anchor(n, gen)`` draws n latents a, ``positive(a, gen)`` a positive latent
    for each, ``observe(a, gen)`` their inputs x; ``labels(a)`` is a's heldout truth. Draws in order a, a', x, x'."""

    def pairs(batch_size: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        a = anchor(batch_size, gen)
        a_pos = positive(a, gen)
        return observe(a, gen), observe(a_pos, gen)

    def heldout(n: int, gen: torch.Generator) -> dict[str, Tensor]:
        a = anchor(n, gen)
        return {"x": observe(a, gen), **labels(a)}

    return Scenario(name, input_dim, pairs, heldout, truth)


def _checked(scenario: Callable[..., Scenario]) -> Callable[..., Scenario]:
    """Checks each keyword argument's type and range (``trainables.config.params_of``), raising ``ConfigError``
    (a ``ValueError``) naming it; limits between arguments (``n_invariant <= dim``) are each scenario's own."""

    @functools.wraps(scenario)
    def checked(**kwargs: Any) -> Scenario:
        from trainables.config import params_of  # config imports this module
        params = params_of(checked)
        return scenario(**{k: params[k].check(k, v) if k in params else v for k, v in kwargs.items()})

    return checked


def _randn(gen: torch.Generator, *shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.randn(shape, generator=gen, device=gen.device, dtype=dtype)


def _rand(gen: torch.Generator, *shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.rand(shape, generator=gen, device=gen.device, dtype=dtype)


def _randint(gen: torch.Generator, low: int, high: int, *shape: int) -> Tensor:
    return torch.randint(low, high, shape, generator=gen, device=gen.device)


def _frozen_generator(data_seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(int(data_seed))


def _random_orthogonal(n: int, gen: torch.Generator) -> Tensor:
    """Haar-distributed (n, n) orthogonal matrix, float64 (QR of a Gaussian, signs fixed)."""
    q, r = torch.linalg.qr(_randn(gen, n, n, dtype=_F64))
    return q * torch.sign(torch.diagonal(r))


def _simplex(k: int) -> Tensor:
    """(k, k-1) float64 vertices of a centred regular simplex with unit pairwise distance: the rows
    ``e_i - 1/k`` (pairwise distance sqrt 2) written in the Helmert basis of the sum-zero subspace."""
    j = torch.arange(1, k, dtype=_F64)  # Helmert column j-1: 1 on rows < j, -j on row j (then unit norm)
    helmert = torch.triu(torch.ones(k, k - 1, dtype=_F64)) - torch.diag(j, -1)[:, : k - 1]
    return (torch.eye(k, dtype=_F64) - 1.0 / k) @ (helmert / (j * (j + 1)).sqrt()) / math.sqrt(2.0)  # unit columns


@dataclass(frozen=True, eq=False)
class InvertibleMLP:
    """g(z) = W_L σ(W_{L-1} ... σ(W_1 z)), σ = leaky ReLU(0.2), no bias, no activation at the end; ``weights``:
    square ``(n, n)`` matrices (``h -> h @ W.T``); ``inverse`` undoes g exactly; 0 layers = identity."""

    weights: tuple[Tensor, ...]
    inverses: tuple[Tensor, ...] = field(repr=False)

    def __call__(self, z: Tensor) -> Tensor:  # (n, d) -> (n, d)
        for i, w in enumerate(self.weights):
            z = (torch.where(z > 0, z, LEAKY_SLOPE * z) if i > 0 else z) @ w.T
        return z

    def inverse(self, x: Tensor) -> Tensor:  # (n, d) -> (n, d)
        for i, w_inv in enumerate(reversed(self.inverses)):
            x = (torch.where(x > 0, x, x / LEAKY_SLOPE) if i > 0 else x) @ w_inv.T
        return x


@functools.lru_cache(maxsize=64)
def _mixing_weights(n: int, n_layers: int, data_seed: int, pool: int, cond_ratio: float) -> tuple[Tensor, ...]:
    """The accepted (n, n) float64 layers of ``invertible_mlp``, cached (a pool of SVDs costs ~0.1 s at n = 5)."""
    gen = _frozen_generator(data_seed)

    def draw(k: int) -> Tensor:  # (k, n, n): entries U(-1, 1), unit-norm columns
        a = _rand(gen, k, n, n, dtype=_F64) * 2 - 1
        return a / a.norm(dim=1, keepdim=True)

    weights: list[Tensor] = []
    if n_layers > 0:
        threshold = torch.sort(torch.linalg.cond(draw(pool))).values[int((pool - 1) * cond_ratio)]
        while len(weights) < n_layers:  # cl-ica draws one matrix at a time; a batch of draws, in order
            candidates = draw(pool)
            weights += list(candidates[torch.linalg.cond(candidates) <= threshold][: n_layers - len(weights)])
    return tuple(weights)


def invertible_mlp(n: int, n_layers: int, data_seed: int = 0, device: Device = "cpu", *,
                   pool: int = 25_000, cond_ratio: float = 0.0) -> InvertibleMLP:
    """cl-ica's ``construct_invertible_mlp`` (Zimmermann et al. 2021), drawn from ``data_seed``.

    Each layer (entries U(-1, 1), unit-norm columns) is accepted only if its 2-norm condition number is at most the
    ``cond_ratio`` quantile of a pool of ``pool`` such matrices; cl-ica's main_mlp.py uses ``cond_thresh_ratio=0.0``
    (the best of 25,000: about 1.4 at n = 5), von Kügelgen et al. 0.001. Candidates are drawn ``pool`` at a time,
    the first acceptable ones kept (another random stream than the reference's one-by-one draws, the same law).
    """
    weights = _mixing_weights(n, n_layers, data_seed, pool, cond_ratio)
    to = dict(device=torch.device(device), dtype=torch.float32)
    return InvertibleMLP(tuple(w.to(**to) for w in weights), tuple(torch.linalg.inv(w).to(**to) for w in weights))


def sample_vmf(mu: Tensor, kappa: float, gen: torch.Generator, max_rounds: int = 1000) -> Tensor:
    """Exact draws z' ~ vMF(mu, kappa) on S^(d-1), one per row of ``mu`` (n, d) unit vectors.

    Wood (1994): the cosine w = <z', mu> is drawn by rejection from a Beta((d-1)/2, (d-1)/2) proposal (the Beta
    variate as a ratio of two chi^2_(d-1) sums, so that only ``gen`` is used), the tangent direction uniformly on
    the sphere orthogonal to mu. Computed in float64 on ``gen.device``; returns (n, d) float64. E<z', mu> =
    I_{d/2}(kappa) / I_{d/2-1}(kappa).
    """
    n, d = mu.shape
    m = d - 1
    b = m / (2 * kappa + math.sqrt(4 * kappa**2 + m**2))  # stable form of (-2k + sqrt(4k^2 + m^2)) / m
    x0 = (1 - b) / (1 + b)
    c = kappa * x0 + m * math.log(1 - x0**2)
    w = torch.empty(n, dtype=_F64, device=gen.device)
    pending = torch.arange(n, device=gen.device)
    for _ in range(max_rounds):
        if (k := pending.numel()) == 0:
            break
        chi2 = _randn(gen, k, 2, m, dtype=_F64).square().sum(-1)  # (k, 2)
        beta = chi2[:, 0] / chi2.sum(1)
        w_try = (1 - (1 + b) * beta) / (1 - (1 - b) * beta)
        accept = kappa * w_try + m * torch.log(1 - x0 * w_try) - c >= torch.log(_rand(gen, k, dtype=_F64))
        w[pending[accept]] = w_try[accept]
        pending = pending[~accept]
    if pending.numel() > 0:
        raise RuntimeError(f"vMF rejection sampler did not finish in {max_rounds} rounds (kappa={kappa})")
    mu = mu.to(device=gen.device, dtype=_F64)
    xi = _randn(gen, n, d, dtype=_F64)
    tangent = xi - (xi * mu).sum(1, keepdim=True) * mu
    tangent = tangent / tangent.norm(dim=1, keepdim=True)
    return w[:, None] * mu + torch.sqrt(1 - w**2)[:, None] * tangent


# --- scenarios ---------------------------------------------------------------------------------------------
@_checked
def hypercube(*, dim: int = 16, n_invariant: int = 3, aug_noise: float = 0.1, spurious: str = "redraw",
              data_seed: int = 0, device: Device = "cpu") -> Scenario:
    """Hypercube with invariant and spurious bits (HaoChen & Ma 2022; Saunshi et al. 2022).

    b ~ U{±1}^dim, x = b + aug_noise·ε, ε ~ N(0, I); the positive b' keeps the first s = ``n_invariant`` bits
    and re-draws the other dim - s (``spurious="redraw"``, HaoChen & Ma) or multiplies each by its own τ ~ U(0, 1]
    (``"scale"``, Saunshi et al.'s disjoint augmentation); x' = b' + aug_noise·ε'. Heldout truth: ``cluster`` =
    sum_j [b_j > 0] 2^j over the invariant bits, in [0, 2^s); ``label`` = [w · b_inv > 0] with w ~ N(0, I_s)
    fixed by ``data_seed`` (ties have probability 0); ``bits`` = b (n, dim).
    """
    s = n_invariant
    if s > dim:
        raise ValueError(f"n_invariant must be <= dim, got n_invariant={s} > dim={dim}")
    w = _randn(_frozen_generator(data_seed), s, dtype=_F64)  # (s,)

    def bits(n: int, width: int, gen: torch.Generator) -> Tensor:  # (n, width) in {±1}
        return _randint(gen, 0, 2, n, width).float() * 2 - 1

    def positive(b: Tensor, gen: torch.Generator) -> Tensor:
        spu = bits(len(b), dim - s, gen) if spurious == "redraw" else b[:, s:] * (1 - _rand(gen, len(b), dim - s))
        return torch.cat([b[:, :s], spu], dim=1)

    def labels(b: Tensor) -> dict[str, Tensor]:
        inv = b[:, :s]  # (n, s)
        cluster = ((inv > 0).long() * 2 ** torch.arange(s, device=inv.device)).sum(1)
        label = (inv.double() @ w.to(inv.device) > 0).long()
        return {k: v.to(device) for k, v in {"cluster": cluster, "label": label, "bits": b}.items()}

    truth = {"n_clusters": 2**s, "n_invariant": s, "label_direction": w.to(device)}
    return _scenario("hypercube", dim, truth, lambda n, gen: bits(n, dim, gen), positive,
                     lambda b, gen: (b + aug_noise * _randn(gen, len(b), dim)).to(device), labels)


@_checked
def gmm(*, dim: int = 16, n_clusters: int = 4, separation: float = 4.0, nuisance_std: float = 3.0,
        aug_noise: float = 0.1, cov_tilt: float = 0.0, data_seed: int = 0, device: Device = "cpu") -> Scenario:
    """Gaussian mixture with a shared anisotropic covariance (Bansal, Kavis & Sanghavi 2024).

    K = ``n_clusters`` equally likely components; means μ_k at the vertices of a centred regular simplex with
    pairwise distance ``separation``, rotated into a random (K-1)-dim subspace U of R^dim. Shared covariance Σ:
    std 1 on U, ``nuisance_std`` on its orthogonal complement; x = μ_c + Σ^{1/2} ε. At cov_tilt = 0 the mixture
    has variance 1 + separation²/(2K) along U, so PCA picks nuisance directions once nuisance_std² exceeds that,
    while the Fisher subspace span{Σ^-1(μ_k - μ̄)} stays U. The positive is a fresh draw from the anchor's
    component with probability 1 - aug_noise, else from a uniformly drawn component.

    ``cov_tilt`` (radians, default 0 = DESIGN.md's model) rotates Σ's unit-variance directions by that angle
    towards nuisance directions (U_j, N_j plane by plane, for the first min(K-1, dim-K+1) pairs), so that the
    Fisher subspace differs from the mean subspace. Truth: ``fisher_basis`` and ``pca_basis`` (dim, K-1)
    orthonormal, ``mean_basis`` U, ``means`` (K, dim), ``covariance`` (dim, dim), ``pca_eigenvalues`` (dim,)
    descending (under ties ``pca_basis`` is one choice of PCA subspace).
    """
    k = n_clusters
    if k - 1 > dim:
        raise ValueError(f"n_clusters - 1 must be <= dim (the means span a (K-1)-dim subspace), "
                         f"got n_clusters={k}, dim={dim}")
    frame = _random_orthogonal(dim, _frozen_generator(data_seed))  # (D, D)
    mean_basis = frame[:, : k - 1]  # U (D, K-1)
    means = separation * _simplex(k) @ mean_basis.T  # (K, D)
    eig = frame.clone()  # Σ's eigenvectors: unit-variance ones first, then nuisance ones
    n_rot = min(k - 1, dim - k + 1)
    u, v = frame[:, :n_rot], frame[:, k - 1 : k - 1 + n_rot]
    eig[:, :n_rot] = math.cos(cov_tilt) * u + math.sin(cov_tilt) * v
    eig[:, k - 1 : k - 1 + n_rot] = -math.sin(cov_tilt) * u + math.cos(cov_tilt) * v
    stds = torch.tensor([1.0] * (k - 1) + [nuisance_std] * (dim - k + 1), dtype=_F64)
    cov = eig @ torch.diag(stds**2) @ eig.T  # (D, D)
    centred = means - means.mean(0)  # (K, D)
    fisher_dirs = torch.linalg.solve(cov, centred.T)  # (D, K) Σ^-1 (μ_k - μ̄)
    fisher_basis = torch.linalg.svd(fisher_dirs, full_matrices=False).U[:, : k - 1]
    evals, evecs = torch.linalg.eigh(cov + centred.T @ centred / k)  # the mixture's covariance, ascending
    truth = dict(fisher_basis=fisher_basis, pca_basis=evecs.flip(1)[:, : k - 1], pca_eigenvalues=evals.flip(0),
                 mean_basis=mean_basis, means=means, covariance=cov)
    to = dict(device=device, dtype=torch.float32)
    means_d, eig_d, stds_d = means.to(**to), eig.to(**to), stds.to(**to)

    def positive(c: Tensor, gen: torch.Generator) -> Tensor:  # components (n,) int64
        same = _rand(gen, len(c)) < 1 - aug_noise
        return torch.where(same, c, _randint(gen, 0, k, len(c)))

    return _scenario("gmm", dim, {"n_clusters": k, **{key: t.to(**to) for key, t in truth.items()}},
                     lambda n, gen: _randint(gen, 0, k, n), positive,
                     lambda c, gen: means_d[c.to(device)] + (_randn(gen, len(c), dim).to(device) * stds_d) @ eig_d.T,
                     lambda c: {"cluster": c.to(device), "label": c.to(device).clone()})


@_checked
def sphere_mixing(*, latent_dim: int = 5, kappa: float = 10.0, mixing_layers: int = 3, data_seed: int = 0,
                  device: Device = "cpu") -> Scenario:
    """Latents on the sphere seen through an invertible MLP (Zimmermann et al. 2021, cl-ica).

    z ~ U(S^(latent_dim-1)), positive z' ~ vMF(z, kappa) (exact, :func:`sample_vmf`); x = g(z), x' = g(z'), g a
    frozen ``mixing_layers``-layer leaky-ReLU MLP (:func:`invertible_mlp`, drawn from ``data_seed``; 0 layers =
    identity). Heldout truth: ``latent`` = z (n, latent_dim). Static truth: ``mixing`` = g (with ``g.inverse``).
    """
    g = invertible_mlp(latent_dim, mixing_layers, data_seed, device)

    def anchor(n: int, gen: torch.Generator) -> Tensor:  # (n, latent_dim) float64, uniform on the sphere
        z = _randn(gen, n, latent_dim, dtype=_F64)
        return z / z.norm(dim=1, keepdim=True)

    return _scenario("sphere_mixing", latent_dim, {"mixing": g, "latent_dim": latent_dim}, anchor,
                     lambda z, gen: sample_vmf(z, kappa, gen), lambda z, gen: g(z.float().to(device)),
                     lambda z: {"latent": z.float().to(device)})


@_checked
def content_style(*, content_dim: int = 5, style_dim: int = 5, aug_noise: float = 1.0,
                  style_change_prob: float = 0.75, dependence: bool = True, mixing_layers: int = 3,
                  data_seed: int = 0, device: Device = "cpu") -> Scenario:
    """Content and style latents behind an invertible MLP (von Kügelgen et al. 2021's numerical experiment:
    ssl_identifiability's ``--style-change-prob 0.75 --statistical-dependence --content-dependent-style``; the
    setting Bizeul et al. 2024 discuss).

    z = (c, s): c ~ N(0, Σ_c), s = s0 + B c + a with s0 ~ N(0, Σ_s) (style depends on content); with
    ``dependence`` Σ_c, Σ_s and the change covariance Σ_a are Wishart(df = dim, I) draws and B, a standard normal,
    all frozen by ``data_seed``; without it Σ = I and B = a = 0. The positive keeps c exactly and changes each
    style dimension with probability ``style_change_prob``: s' = s + m ⊙ aug_noise·ε, m_j ~
    Bernoulli(style_change_prob), ε ~ N(0, Σ_a). x = g(z), x' = g(c, s'), g the frozen ``mixing_layers``-layer
    :func:`invertible_mlp` with the reference's rule (0.1% quantile of 25,000). Differs from the reference on
    purpose: the content block is drawn from Σ_c (the reference's sampler reads Σ_s for both blocks, a
    late-binding slip), and ``aug_noise`` scales the change (the reference's ε has unit scale: aug_noise = 1).
    Heldout truth: ``latent`` = (c, s) (n, content_dim + style_dim), ``content`` (n, content_dim), ``style``
    (n, style_dim). Static truth: ``mixing`` = g.
    """
    n_c, n_s = content_dim, style_dim
    frozen = _frozen_generator(data_seed)
    if dependence:
        wisharts = [a @ a.T for a in (_randn(frozen, k, k, dtype=_F64) for k in (n_c, n_s, n_s))]  # A A^T, A ~ N
        chol_c, chol_s, chol_a = (torch.linalg.cholesky(w) for w in wisharts)
        b_mat, offset = _randn(frozen, n_s, n_c, dtype=_F64), _randn(frozen, n_s, dtype=_F64)
    else:
        chol_c, chol_s, chol_a = torch.eye(n_c, dtype=_F64), *(torch.eye(n_s, dtype=_F64),) * 2
        b_mat, offset = torch.zeros(n_s, n_c, dtype=_F64), torch.zeros(n_s, dtype=_F64)
    chol_c, chol_s, chol_a, b_mat, offset = (t.to(device) for t in (chol_c, chol_s, chol_a, b_mat, offset))
    g = invertible_mlp(n_c + n_s, mixing_layers, data_seed, device, cond_ratio=0.001)

    def anchor(n: int, gen: torch.Generator) -> Tensor:  # (n, c + s) float64
        c = _randn(gen, n, n_c, dtype=_F64).to(device) @ chol_c.T
        s = _randn(gen, n, n_s, dtype=_F64).to(device) @ chol_s.T + c @ b_mat.T + offset
        return torch.cat([c, s], dim=1)

    def positive(z: Tensor, gen: torch.Generator) -> Tensor:
        change = (_rand(gen, len(z), n_s, dtype=_F64) < style_change_prob).to(device)
        eps = _randn(gen, len(z), n_s, dtype=_F64).to(device) @ chol_a.T
        return torch.cat([z[:, :n_c], z[:, n_c:] + change * aug_noise * eps], dim=1)

    truth = {"mixing": g, "content_dim": n_c, "style_dim": n_s}
    return _scenario("content_style", n_c + n_s, truth, anchor, positive, lambda z, gen: g(z.float()),
                     lambda z: {"latent": z.float(), "content": z[:, :n_c].float(), "style": z[:, n_c:].float()})


@_checked
def nested_clusters(*, dim: int = 16, n_groups: int = 4, n_sub: int = 4, group_separation: float = 8.0,
                    sub_separation: float = 2.0, cluster_std: float = 0.3, aug_noise: float = 0.0,
                    data_seed: int = 0, device: Device = "cpu") -> Scenario:
    """Groups of close sub-clusters (HaoChen & Ma 2022, the Lipschitz example).

    r = ``n_groups`` group centres at the vertices of a centred regular simplex with pairwise distance
    ``group_separation`` in a random subspace; each group holds ``n_sub`` sub-cluster centres, a simplex with
    pairwise distance ``sub_separation`` in its own random subspace around the group centre (r0 = n_groups·n_sub
    sub-clusters). x = centre + cluster_std·ε, sub-cluster uniform. The positive is a fresh draw from the
    anchor's sub-cluster with probability 1 - aug_noise, else from a different sub-cluster of the same group,
    drawn uniformly (n_sub = 1: the same one). aug_noise = 0 (default) is HaoChen & Ma's setting: each
    sub-cluster is its own component of the augmentation graph, yet sub-clusters of a group are close, so a
    smooth encoder sees about r clusters. Heldout truth: ``cluster`` = ``label`` = group in [0, n_groups),
    ``subcluster`` in [0, r0) (group = subcluster // n_sub). Static truth: ``group_centres`` (r, dim),
    ``subcluster_centres`` (r0, dim).
    """
    r = n_groups
    if r - 1 > dim or n_sub - 1 > dim:
        raise ValueError(f"n_groups - 1 and n_sub - 1 must be <= dim (each set of centres is a simplex), "
                         f"got n_groups={r}, n_sub={n_sub}, dim={dim}")
    frozen = _frozen_generator(data_seed)
    groups = group_separation * _simplex(r) @ _random_orthogonal(dim, frozen)[:, : r - 1].T  # (r, D)
    sub_bases = [_random_orthogonal(dim, frozen)[:, : n_sub - 1] for _ in range(r)]  # r x (D, n_sub-1)
    offsets = torch.stack([sub_separation * _simplex(n_sub) @ b.T for b in sub_bases])  # (r, n_sub, D)
    centres = (groups[:, None, :] + offsets).reshape(r * n_sub, dim)  # (r0, D), id = group * n_sub + sub
    centres_d = centres.to(device=device, dtype=torch.float32)

    truth = {"n_clusters": r, "n_subclusters": r * n_sub,
             "group_centres": groups.to(device=device, dtype=torch.float32), "subcluster_centres": centres_d}

    def positive(sub: Tensor, gen: torch.Generator) -> Tensor:  # sub-cluster ids (n,) int64
        if n_sub == 1:
            return sub
        same = _rand(gen, len(sub)) < 1 - aug_noise
        other = sub // n_sub * n_sub + (sub % n_sub + _randint(gen, 1, n_sub, len(sub))) % n_sub
        return torch.where(same, sub, other)

    def labels(sub: Tensor) -> dict[str, Tensor]:
        group = (sub // n_sub).to(device)
        return {"cluster": group, "label": group.clone(), "subcluster": sub.to(device)}

    return _scenario("nested_clusters", dim, truth, lambda n, gen: _randint(gen, 0, r * n_sub, n), positive,
                     lambda sub, gen: centres_d[sub.to(device)] + cluster_std * _randn(gen, len(sub), dim).to(device),
                     labels)


SCENARIOS: dict[str, Callable[..., Scenario]] = {
    f.__name__: f for f in (hypercube, gmm, sphere_mixing, content_style, nested_clusters)}
