"""Metrics against closed forms, brute force and planted ground truth."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles

from tests.trainables.reference import (
    effective_rank,
    kmeans_ari_nmi,
    linear_probe_acc,
    linearised_subspace,
    r2_linear,
    randlabel_acc,
    standardise,
)
from trainables.metrics import evaluate, evaluate_many, fit_test_split, mcc, random_labellings, subspace_overlap


def one_hot_clusters(n: int, k: int, seed: int = 0, noise: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) one-hot embeddings of random cluster ids plus tiny noise, and the (n,) ids."""
    rng = np.random.default_rng(seed)
    c = rng.integers(0, k, n)
    return np.eye(k)[c] + noise * rng.normal(size=(n, k)), c


def halves(z: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[np.ndarray, ...]:
    fit, test = fit_test_split(len(z), seed)
    z_fit, z_test = standardise(z[fit], z[test])
    return z_fit, y[fit], z_test, y[test]


def cube_corners(n: int, s: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, s) uniform corners of {±1}^s and their (n,) cluster id (the bit pattern as an integer)."""
    b = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n, s))
    return b, ((b > 0).astype(np.int64) * 2 ** np.arange(s)).sum(axis=1)


def orthonormal(d: int, k: int, seed: int = 0) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(d, k)))[0]


# --- split, standardisation, probes ---------------------------------------------------------


def test_fit_test_split_is_a_seeded_partition() -> None:
    fit, test = fit_test_split(101, seed=3)
    assert len(fit) == 50 and len(test) == 51
    assert sorted(np.concatenate([fit, test])) == list(range(101))
    np.testing.assert_array_equal(fit, fit_test_split(101, seed=3)[0])
    assert not np.array_equal(fit, fit_test_split(101, seed=4)[0])


def test_standardise_uses_fit_statistics_and_keeps_constant_dims_finite() -> None:
    z_fit = np.array([[0.0, 5.0], [2.0, 5.0]])
    z_test = np.array([[4.0, 5.0]])
    s_fit, s_test = standardise(z_fit, z_test)
    np.testing.assert_allclose(s_fit, [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(s_test, [[3.0, 0.0]])


def test_linear_probe_separable_is_one_and_noise_is_chance() -> None:
    z, c = one_hot_clusters(1024, 5)
    assert linear_probe_acc(*halves(z, c)) == 1.0
    noise = np.random.default_rng(1).normal(size=(2048, 8))
    y = np.random.default_rng(2).integers(0, 2, 2048)
    assert abs(linear_probe_acc(*halves(noise, y)) - 0.5) < 0.05


def test_linear_probe_is_nan_without_two_classes_or_finite_z() -> None:
    z = np.random.default_rng(0).normal(size=(20, 3))
    assert math.isnan(linear_probe_acc(z[:10], np.zeros(10, dtype=int), z[10:], np.zeros(10, dtype=int)))
    y = np.arange(20) % 2
    z[3, 1] = np.nan
    assert math.isnan(linear_probe_acc(z[:10], y[:10], z[10:], y[10:]))


# --- random labellings ------------------------------------------------------------------------


def test_random_labellings_are_balanced_seeded_and_varied() -> None:
    bits = random_labellings(7, 50, seed=0)
    assert bits.shape == (50, 7)
    assert set(bits.sum(axis=1)) == {4}  # 7 // 2 zeros, both classes always present
    np.testing.assert_array_equal(bits, random_labellings(7, 50, seed=0))
    assert len({tuple(b) for b in bits}) > 20


def test_randlabel_acc_is_one_for_one_hot_clusters() -> None:
    z, c = one_hot_clusters(1024, 16)
    assert randlabel_acc(*halves(z, c), n_labellings=8) == 1.0


def test_randlabel_acc_is_half_for_embeddings_independent_of_the_clusters() -> None:
    rng = np.random.default_rng(0)
    c = rng.integers(0, 8, 2048)
    z = rng.normal(size=(2048, 16))
    assert abs(randlabel_acc(*halves(z, c), n_labellings=8) - 0.5) < 0.05


def test_randlabel_acc_separates_linear_from_rich_encoders_of_the_hypercube() -> None:
    # HaoChen & Ma 2022: z = b (a linear encoder of the invariant bits) identifies every cluster
    # but not every labelling (parity-like ones); the 2^s Walsh monomials make all of them linear.
    b, c = cube_corners(1024, 3)
    noise = 0.05 * np.random.default_rng(1).normal(size=(1024, 7))
    z_linear = b + noise[:, :3]
    assert linear_probe_acc(*halves(z_linear, c)) == 1.0
    assert randlabel_acc(*halves(z_linear, c), n_labellings=8) < 0.95
    subsets = [s for r in (1, 2, 3) for s in itertools.combinations(range(3), r)]
    monomials = [np.prod(b[:, list(s)], axis=1) for s in subsets]
    z_walsh = np.stack(monomials, axis=1) + noise
    assert randlabel_acc(*halves(z_walsh, c), n_labellings=8) == 1.0


def test_randlabel_acc_is_nan_with_one_cluster() -> None:
    z = np.random.default_rng(0).normal(size=(40, 3))
    c = np.zeros(40, dtype=int)
    assert math.isnan(randlabel_acc(z[:20], c[:20], z[20:], c[20:]))


# --- k-means ----------------------------------------------------------------------------------


def test_kmeans_recovers_one_hot_clusters_and_not_noise() -> None:
    z, c = one_hot_clusters(1024, 8)
    ari, nmi = kmeans_ari_nmi(z, c, 8, seed=0)
    assert ari > 0.99 and nmi > 0.99
    noise = np.random.default_rng(1).normal(size=(1024, 8))
    ari, _ = kmeans_ari_nmi(noise, c, 8, seed=0)
    assert abs(ari) < 0.02


# --- effective rank ---------------------------------------------------------------------------


def test_effective_rank_closed_forms() -> None:
    e = 12
    assert effective_rank(np.eye(e), center=False) == pytest.approx(e, abs=1e-9)
    # centring the identity leaves e - 1 equal singular values and one zero
    assert effective_rank(np.eye(e)) == pytest.approx(e - 1, abs=1e-9)
    rng = np.random.default_rng(0)
    rank_one = np.outer(rng.normal(size=500), rng.normal(size=e))
    assert effective_rank(rank_one) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("k", [1, 4, 16])
def test_effective_rank_of_isotropic_sample_in_k_dims(k: int) -> None:
    rng = np.random.default_rng(k)
    basis = orthonormal(32, k, seed=k)  # (E, k)
    z = rng.normal(size=(8192, k)) @ basis.T + 5.0  # an offset that centring must remove
    assert effective_rank(z) == pytest.approx(k, rel=0.01)


def test_effective_rank_matches_its_formula_and_is_scale_invariant() -> None:
    z = np.random.default_rng(0).normal(size=(50, 6)) * np.arange(1, 7)
    s = np.linalg.svd(z - z.mean(axis=0), compute_uv=False)
    p = s / s.sum()
    assert effective_rank(z) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-12)
    assert effective_rank(1e-3 * z) == pytest.approx(effective_rank(z), rel=1e-9)


def test_effective_rank_of_degenerate_input_is_nan() -> None:
    assert math.isnan(effective_rank(np.ones((10, 4))))
    assert math.isnan(effective_rank(np.full((10, 4), np.inf)))


# --- subspaces --------------------------------------------------------------------------------


def test_subspace_overlap_with_itself_and_its_orthogonal_complement() -> None:
    q = orthonormal(10, 10)
    a, b = q[:, :3], q[:, 3:7]
    assert subspace_overlap(a, a) == pytest.approx(1.0)
    assert subspace_overlap(a, a @ np.array([[2.0, 1, 0], [0, 1, 0], [0, 3, -1]])) == pytest.approx(1.0)
    assert subspace_overlap(a, b) == pytest.approx(0.0, abs=1e-12)
    assert subspace_overlap(a[:, :1], a) == pytest.approx(1.0)  # a line inside the subspace


@pytest.mark.parametrize("theta", [0.0, 0.3, np.pi / 4, 1.2, np.pi / 2])
def test_subspace_overlap_of_a_planted_angle_is_cos_squared(theta: float) -> None:
    q = orthonormal(6, 4, seed=1)
    a = q[:, :1]
    b = np.cos(theta) * q[:, :1] + np.sin(theta) * q[:, 1:2]
    assert subspace_overlap(a, b) == pytest.approx(np.cos(theta) ** 2, abs=1e-12)
    # two planted angles in a plane pair: the mean of the squared cosines
    a2 = q[:, [0, 2]]
    b2 = np.stack([b[:, 0], np.cos(0.7) * q[:, 2] + np.sin(0.7) * q[:, 3]], axis=1)
    assert subspace_overlap(a2, b2) == pytest.approx((np.cos(theta) ** 2 + np.cos(0.7) ** 2) / 2, abs=1e-12)


def test_subspace_overlap_matches_scipy_principal_angles() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(9, 3)), rng.normal(size=(9, 5))
    assert subspace_overlap(a, b) == pytest.approx(np.mean(np.cos(subspace_angles(a, b)) ** 2), abs=1e-10)


def test_linearised_subspace_of_planted_linear_encoders() -> None:
    d, k = 12, 3
    rng = np.random.default_rng(0)
    fisher = orthonormal(d, k, seed=2)  # (D, K-1)
    x = rng.normal(size=(2000, d)) * rng.uniform(0.5, 5.0, size=d)  # anisotropic
    onto_fisher = fisher @ fisher.T  # (D, D) projection
    onto_complement = np.eye(d) - onto_fisher
    assert subspace_overlap(linearised_subspace(x, x @ onto_fisher, k), fisher) == pytest.approx(1, abs=1e-9)
    assert subspace_overlap(linearised_subspace(x, x @ onto_complement, k), fisher) < 1e-9
    # a random linear encoder through the Fisher basis, with a wider embedding than K-1
    a = fisher @ rng.normal(size=(k, 16))
    u = linearised_subspace(x, np.tanh(0.01 * x @ a) + 1e-6 * rng.normal(size=(2000, 16)), k)
    assert u.shape == (d, k)
    assert subspace_overlap(u, fisher) > 0.99


# --- latent recovery --------------------------------------------------------------------------


def test_r2_linear_is_one_for_an_invertible_map_and_zero_for_noise() -> None:
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(2000, 5))
    z = latent @ rng.normal(size=(5, 5)) + 3.0
    assert r2_linear(*halves(z, latent)) == pytest.approx(1.0, abs=1e-9)
    noise = rng.normal(size=(2000, 10))
    assert abs(r2_linear(*halves(noise, latent))) < 0.03
    # R^2 is averaged uniformly: recovering 2 of 4 latent dims scores 1/2
    assert r2_linear(*halves(latent[:, :2] + 0.0, latent[:, :4])) == pytest.approx(0.5, abs=0.02)


def test_mcc_is_one_for_permuted_rescaled_latents_and_small_for_noise() -> None:
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(2000, 4))
    z = latent[:, [2, 0, 3, 1]] * np.array([3.0, -0.5, 7.0, -2.0]) + 1.0
    assert mcc(z, latent) == pytest.approx(1.0, abs=1e-12)
    assert mcc(rng.normal(size=(2000, 4)), latent) < 0.1


def brute_force_mcc(z: np.ndarray, latent: np.ndarray) -> float:
    """Best injective matching latent -> embedding (or embedding -> latent when E < k) by enumeration."""
    k, e = latent.shape[1], z.shape[1]
    c = np.abs(np.corrcoef(latent.T, z.T)[:k, k:])  # (k, E)
    if e >= k:
        best = max(sum(c[i, p[i]] for i in range(k)) for p in itertools.permutations(range(e), k))
    else:
        best = max(sum(c[p[j], j] for j in range(e)) for p in itertools.permutations(range(k), e))
    return best / k


@pytest.mark.parametrize("e", [2, 3, 5])
def test_mcc_matches_brute_force_over_all_matchings(e: int) -> None:
    rng = np.random.default_rng(e)
    latent = rng.normal(size=(300, 3))
    z = latent @ rng.normal(size=(3, e)) + 0.5 * rng.normal(size=(300, e))
    assert mcc(z, latent) == pytest.approx(brute_force_mcc(z, latent), abs=1e-12)


def test_mcc_of_degenerate_embeddings_is_nan() -> None:
    latent = np.random.default_rng(0).normal(size=(100, 2))
    assert math.isnan(mcc(np.ones((100, 3)), latent))
    assert math.isnan(mcc(np.full((100, 3), np.nan), latent))


# --- evaluate ---------------------------------------------------------------------------------


def gmm_like(n: int = 1024, d: int = 10, k: int = 4, seed: int = 0) -> tuple[dict, dict]:
    """Clusters planted in the span of a (D, K-1) 'Fisher' basis; the 'PCA' basis is orthogonal to it."""
    rng = np.random.default_rng(seed)
    q = orthonormal(d, d, seed=seed)
    fisher, pca = q[:, : k - 1], q[:, k - 1 : 2 * (k - 1)]
    c = rng.integers(0, k, n)
    means = 4.0 * rng.normal(size=(k, k - 1)) @ fisher.T  # (K, D)
    x = means[c] + rng.normal(size=(n, d))
    heldout = {
        "x": torch.tensor(x, dtype=torch.float32),
        "cluster": torch.tensor(c),
        "label": torch.tensor(c % 2),
    }
    truth = {"n_clusters": k, "fisher_basis": torch.tensor(fisher), "pca_basis": torch.tensor(pca)}
    return heldout, truth


def test_evaluate_gmm_planted_fisher_encoder() -> None:
    heldout, truth = gmm_like()
    fisher = truth["fisher_basis"].float()
    out = evaluate(heldout["x"] @ fisher, heldout, truth)
    assert set(out) == {
        "effective_rank", "probe_acc", "cluster_acc", "randlabel_acc", "ari", "nmi",
        "subspace_overlap", "pca_overlap",
    }  # fmt: skip
    assert all(isinstance(v, float) for v in out.values())
    assert out["subspace_overlap"] == pytest.approx(1.0, abs=1e-6)
    assert out["pca_overlap"] == pytest.approx(0.0, abs=1e-12)
    assert out["cluster_acc"] > 0.95 and out["ari"] > 0.8
    assert out["effective_rank"] <= 3.0 + 1e-9
    complement = np.linalg.svd(np.eye(10) - fisher.numpy() @ fisher.numpy().T)[0][:, :7]  # (D, D-K+1)
    z = heldout["x"] @ torch.tensor(
        complement @ np.random.default_rng(1).normal(size=(7, 3)), dtype=torch.float32
    )
    assert evaluate(z, heldout, truth)["subspace_overlap"] == pytest.approx(0.0, abs=1e-6)


def test_evaluate_penalises_an_embedding_narrower_than_the_fisher_subspace() -> None:
    heldout, truth = gmm_like()
    z = heldout["x"] @ truth["fisher_basis"].float()[:, :1]  # holds one of K-1 = 3 Fisher directions
    assert evaluate(z, heldout, truth)["subspace_overlap"] == pytest.approx(1 / 3, abs=1e-6)


def test_evaluate_latent_and_content_style_keys() -> None:
    rng = np.random.default_rng(0)
    n = 1024
    content, style = rng.normal(size=(n, 3)), rng.normal(size=(n, 2))
    x = np.concatenate([content, style], axis=1)
    heldout = {k: torch.tensor(v) for k, v in {"x": x, "content": content, "style": style}.items()}
    z = torch.tensor(content @ rng.normal(size=(3, 8)) + 0.01 * rng.normal(size=(n, 8)))  # content, no style
    out = evaluate(z, heldout, {})
    assert set(out) == {"effective_rank", "content_r2", "style_r2", "content_r2_linear", "style_r2_linear"}
    assert out["content_r2"] > 0.9 and abs(out["style_r2"]) < 0.03
    assert out["content_r2_linear"] > 0.9 and abs(out["style_r2_linear"]) < 0.03
    heldout = {"x": torch.tensor(x), "latent": torch.tensor(content)}
    out = evaluate(torch.tensor(content[:, ::-1] * 2.0), heldout, {})
    assert set(out) == {"effective_rank", "r2_linear", "mcc"}
    assert out["r2_linear"] == pytest.approx(1.0, abs=1e-9) and out["mcc"] == pytest.approx(1.0, abs=1e-9)


def test_content_r2_is_the_nonlinear_regression_and_sees_what_a_linear_one_misses() -> None:
    # content held through an invertible nonlinear map (von Kügelgen et al.'s point: identified up to one),
    # style not at all: the kernel ridge R^2 of content is near 1, the linear one well below it
    rng = np.random.default_rng(3)
    n = 2048
    content, style = rng.uniform(-2, 2, size=(n, 2)), rng.normal(size=(n, 2))
    heldout = {k: torch.tensor(v) for k, v in {"x": np.concatenate([content, style], 1), "content": content,
                                               "style": style}.items()}
    z = torch.tensor(np.stack([np.tanh(2 * content[:, 0]), np.exp(content[:, 1])], 1))  # monotone, not linear
    out = evaluate(z, heldout, {})
    assert out["content_r2"] > 0.98 and out["content_r2"] > out["content_r2_linear"] + 0.1
    assert abs(out["style_r2"]) < 0.05 and abs(out["style_r2_linear"]) < 0.05


def test_evaluate_subclusters_and_determinism() -> None:
    z, c = one_hot_clusters(1024, 12)
    heldout = {"x": torch.tensor(z), "cluster": torch.tensor(c // 3), "subcluster": torch.tensor(c)}
    truth = {"n_clusters": 4, "n_subclusters": 12}
    out = evaluate(torch.tensor(z), heldout, truth, seed=5, n_labellings=4)
    assert out["randlabel_acc"] == 1.0 and out["sub_randlabel_acc"] == 1.0
    assert out == evaluate(torch.tensor(z), heldout, truth, seed=5, n_labellings=4)
    # a smooth encoder that keeps only the groups: group labellings decodable, sub-cluster ones not
    coarse = torch.tensor(np.eye(4)[c // 3] + 0.01 * np.random.default_rng(0).normal(size=(1024, 4)))
    out = evaluate(coarse, heldout, truth)
    assert out["randlabel_acc"] == 1.0 and out["sub_randlabel_acc"] < 0.9


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "constant"])
def test_evaluate_degenerate_embeddings_give_nan_not_an_exception(bad: float | str) -> None:
    heldout, truth = gmm_like(n=256)
    heldout["latent"] = torch.randn(256, 2)
    heldout["subcluster"] = heldout["cluster"]
    z = torch.ones(256, 5) if bad == "constant" else torch.randn(256, 5)
    if bad != "constant":
        z[7, 2] = bad
    out = evaluate(z, heldout, truth)
    assert set(out) == set(evaluate(torch.randn(256, 5), heldout, truth))
    assert all(math.isnan(v) for key, v in out.items() if key != "pca_overlap")
    assert out["pca_overlap"] == pytest.approx(0.0, abs=1e-12)  # a property of the data, not of z


def reference_evaluate(z: np.ndarray, heldout: dict, truth: dict, seed: int) -> dict[str, float]:
    """The metrics of ``evaluate`` computed one by one with the scikit-learn building blocks above."""
    n = len(z)
    fit, test = fit_test_split(n, seed)
    z_fit, z_test = standardise(z[fit], z[test])
    c = heldout["cluster"].numpy()
    out = {
        "effective_rank": effective_rank(z),
        "probe_acc": linear_probe_acc(z_fit, heldout["label"].numpy()[fit], z_test, heldout["label"].numpy()[test]),
        "cluster_acc": linear_probe_acc(z_fit, c[fit], z_test, c[test]),
        "randlabel_acc": randlabel_acc(z_fit, c[fit], z_test, c[test], seed=seed),
    }
    order = np.concatenate([fit, test])
    out["ari"], out["nmi"] = kmeans_ari_nmi(np.concatenate([z_fit, z_test]), c[order], truth["n_clusters"], seed)
    fisher = truth["fisher_basis"].numpy()
    u = linearised_subspace(heldout["x"].numpy().astype(np.float64), z, fisher.shape[1])
    out["subspace_overlap"] = subspace_overlap(u, fisher) * u.shape[1] / fisher.shape[1]
    latent = heldout["latent"].numpy()
    out["r2_linear"] = r2_linear(z_fit, latent[fit], z_test, latent[test])
    out["mcc"] = mcc(z, latent)
    return out


def noisy_encoders(heldout: dict, truth: dict, dims: list[int], noise: list[float], seed: int = 0) -> list[np.ndarray]:
    """Embeddings that keep the Fisher directions (and random others) under growing noise."""
    rng = np.random.default_rng(seed)
    x = heldout["x"].numpy().astype(np.float64)
    return [x @ rng.normal(size=(x.shape[1], e)) + s * rng.normal(size=(len(x), e)) for e, s in zip(dims, noise,
                                                                                                     strict=True)]


def test_evaluate_agrees_with_the_sklearn_building_blocks() -> None:
    """The batched evaluation (torch L-BFGS probes, torch k-means) against sklearn, metric by metric."""
    heldout, truth = gmm_like(n=2048, k=6, seed=3)
    heldout["latent"] = heldout["x"][:, :3] * 2.0
    m = 1024  # test half
    for seed, z in enumerate(noisy_encoders(heldout, truth, [2, 5, 8, 12], [0.5, 2.0, 8.0, 30.0])):
        got = evaluate(torch.tensor(z), heldout, truth, seed=seed)
        ref = reference_evaluate(z, heldout, truth, seed)
        for key in ("effective_rank", "subspace_overlap", "r2_linear", "mcc"):
            assert got[key] == pytest.approx(ref[key], rel=1e-6, abs=1e-9), key
        for key in ("probe_acc", "cluster_acc", "randlabel_acc"):  # sklearn stops at its looser tolerance
            assert got[key] == pytest.approx(ref[key], abs=4 / m), key
        # two k-means implementations may settle in different local optima on overlapping clusters;
        # on the well-separated ones (ARI near 1) they agree closely
        tolerance = 0.02 if ref["ari"] > 0.95 else 0.15
        assert got["ari"] == pytest.approx(ref["ari"], abs=tolerance)
        assert got["nmi"] == pytest.approx(ref["nmi"], abs=tolerance)
    assert got["cluster_acc"] < 0.9  # the noisiest encoder: the comparison covered imperfect probes too


def test_evaluate_many_is_each_embedding_evaluated_alone() -> None:
    """A pack's zero-padded (K, n, E_max) embeddings, other columns garbage: each row as if evaluated alone."""
    heldout, truth = gmm_like(n=1024, k=5, seed=1)
    heldout["latent"] = heldout["x"][:, :2]
    heldout["subcluster"] = heldout["cluster"]
    dims = [1, 3, 6, 4]
    zs = noisy_encoders(heldout, truth, dims, [0.3, 1.0, 3.0, 1.0], seed=2)
    seeds = [4, 5, 6, 4]
    packed = np.random.default_rng(0).normal(size=(4, 1024, 6)) * 100  # columns past dims[k] must be ignored
    for i, z in enumerate(zs):
        packed[i, :, : dims[i]] = z
    many = evaluate_many(torch.tensor(packed), [heldout] * 4, [truth] * 4, seeds, dims=dims)
    for i, z in enumerate(zs):
        alone = evaluate(torch.tensor(z), heldout, truth, seed=seeds[i])
        assert many[i].keys() == alone.keys()
        for key, value in alone.items():
            assert many[i][key] == pytest.approx(value, rel=1e-6, abs=2 / 512), (i, key)
    assert many[0]["subspace_overlap"] < many[2]["subspace_overlap"]  # 1 of K-1 = 4 directions at most


def test_evaluate_of_a_gmm_is_bitwise_the_same_every_call() -> None:
    """The subspace overlap's least-squares fit must not vary in its last bits between calls (LAPACK's gelsy,
    torch's default CPU driver, does: the same study would record different numbers on a rerun)."""
    from trainables.scenarios import gmm

    scenario = gmm(dim=16, n_clusters=4, cov_tilt=0.3)
    heldout = scenario.heldout(1024, torch.Generator().manual_seed(3))
    z = heldout["x"] @ torch.randn(16, 8, generator=torch.Generator().manual_seed(4))
    first = evaluate(z, heldout, scenario.truth, seed=1, n_labellings=2)
    assert math.isfinite(first["subspace_overlap"])
    for _ in range(10):
        assert evaluate(z, heldout, scenario.truth, seed=1, n_labellings=2) == first
