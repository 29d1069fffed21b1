"""Theory predictions against hand-computed values and independent brute force."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.optimize import linprog

from analysis.agreement import compare, summarise
from analysis.load import tidy
from analysis.phase import PhaseDiagram
from analysis.planted import make_phase_trials
from analysis.theory import (
    THRESHOLD_FUNCTION_COUNTS,
    expectations,
    gmm_between_var,
    gmm_pca_critical_nuisance,
    gmm_pca_overlap,
    hypercube_linear_ceiling,
    hypercube_linear_separable_fraction,
    hypercube_mlp_critical_dim,
    predict,
    theory_boundaries,
    threshold_functions,
)


# --- hypercube ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("s", range(5))
def test_threshold_functions_are_counted_as_oeis_a000609(s):
    assert len(threshold_functions(s)) == THRESHOLD_FUNCTION_COUNTS[s]


@pytest.mark.parametrize("s", [2, 3])
def test_threshold_functions_match_random_real_hyperplanes(s):
    """Independent enumeration: halfspaces with Gaussian weights hit every threshold function."""
    rng = np.random.default_rng(0)
    vertices = (np.arange(2**s)[:, None] >> np.arange(s)) & 1
    w = rng.normal(size=(200_000, s))
    b = rng.uniform(-1, 1, size=200_000) * np.abs(w).sum(axis=1)
    tables = ((vertices @ w.T + b) >= 0).T @ (1 << np.arange(2**s))
    tables = np.concatenate([tables, [0, 2 ** (2**s) - 1]])  # the two constants
    assert set(np.unique(tables)) == set(threshold_functions(s).tolist())


def _separable(points: np.ndarray, labels: np.ndarray) -> bool:
    """LP feasibility of a strict separator: sign(w·x + b) = labels with margin 1."""
    signs = 2 * labels - 1
    a_ub = -signs[:, None] * np.hstack([points, np.ones((len(points), 1))])
    res = linprog(np.zeros(points.shape[1] + 1), A_ub=a_ub, b_ub=-np.ones(len(points)),
                  bounds=[(None, None)] * (points.shape[1] + 1), method="highs")
    return res.status == 0


@pytest.mark.parametrize("s, expected", [(1, 1.0), (2, 4 / 6), (3, 14 / 70)])
def test_separable_fraction_by_linear_programming(s, expected):
    n = 2**s
    vertices = ((np.arange(n)[:, None] >> np.arange(s)) & 1).astype(float)
    count = 0
    for ones in combinations(range(n), n - n // 2):
        labels = np.zeros(n)
        labels[list(ones)] = 1
        count += _separable(vertices, labels)
    assert count / math.comb(n, n // 2) == pytest.approx(expected)
    assert hypercube_linear_separable_fraction(s) == pytest.approx(expected)


def test_linear_ceiling_by_hand():
    # s = 1: both balanced labellings of 2 clusters are a sign of the bit.
    assert hypercube_linear_ceiling(1) == 1.0
    # s = 2: of the 6 balanced labellings of 4 clusters, 4 are a coordinate (accuracy 1) and
    # 2 are XOR/XNOR, whose best halfspace gets 3 of 4 clusters: (4 + 2 * 3/4) / 6 = 11/12.
    assert hypercube_linear_ceiling(2) == pytest.approx(11 / 12)
    assert hypercube_linear_ceiling(3) < hypercube_linear_ceiling(2)
    assert 0.5 < hypercube_linear_ceiling(4) < hypercube_linear_ceiling(3)
    # s > 4: an upper bound below 1
    assert hypercube_linear_ceiling(5) < 1.0
    with pytest.raises(ValueError, match="n_invariant >= 1"):
        hypercube_linear_ceiling(0)


def test_hypercube_predictions():
    params = {"scenario": "hypercube", "n_invariant": 3, "encoder": "mlp"}
    mlp = predict(params, y="embedding_dim", metric="randlabel_acc", threshold=0.9)
    assert mlp.y_critical == 8 == hypercube_mlp_critical_dim(3) and mlp.censored is None
    linear = predict({**params, "encoder": "linear"}, y="embedding_dim", metric="randlabel_acc", threshold=0.9)
    assert math.isnan(linear.y_critical) and linear.censored == "above" and "0.886" in linear.note
    reachable = predict({**params, "encoder": "linear"}, y="embedding_dim", metric="randlabel_acc", threshold=0.8)
    assert reachable.y_critical == 3
    assert predict(params, y="embedding_dim", metric="ari", threshold=0.9) is None
    assert predict({**params, "scenario": "unknown"}, y="embedding_dim", metric="randlabel_acc", threshold=0.9) is None


# --- gmm ------------------------------------------------------------------------------------------------
def test_gmm_pca_overlap_closed_form_by_hand():
    assert gmm_between_var(4, 4.0) == 2.0  # separation² / (2K): the gmm study's 1 + 2 = 3 = sqrt(3)²
    beta = 2.0
    assert gmm_pca_critical_nuisance(beta) == pytest.approx(math.sqrt(3))
    assert gmm_pca_overlap(3, 10, 0.5, beta) == 1.0  # mean directions on top
    assert gmm_pca_overlap(3, 10, 3.0, beta) == 0.0  # 8 nuisance directions on top
    assert gmm_pca_overlap(3, 10, math.sqrt(3), beta) == pytest.approx(2 / 10)  # tie: random subspace
    assert gmm_pca_overlap(3, 3, 5.0, beta) == 0.5  # one nuisance direction, one mean direction left


@pytest.mark.parametrize("nuisance_std", [0.8, 1.5, 2.5])  # the boundary is sqrt(1 + 9/8) = 1.46
def test_gmm_pca_overlap_matches_the_eigenvectors_of_the_population_covariance(nuisance_std):
    k, dim, separation = 4, 6, 3.0
    simplex = np.eye(k) - 1 / k  # K centred vertices spanning K-1 dims, pairwise distance sqrt 2
    basis, _ = np.linalg.qr(simplex.T)
    means = separation / math.sqrt(2) * simplex @ basis[:, : k - 1]  # (K, K-1)
    assert np.linalg.norm(means[0] - means[1]) == pytest.approx(separation)
    means = np.hstack([means, np.zeros((k, dim - k + 1))])  # (K, dim)
    within = np.diag([1.0] * (k - 1) + [nuisance_std**2] * (dim - k + 1))
    cov = within + means.T @ means / k
    top = np.linalg.eigh(cov)[1][:, -(k - 1):]
    fisher = np.eye(dim)[:, : k - 1]
    overlap = np.linalg.norm(top.T @ fisher) ** 2 / (k - 1)
    predicted = gmm_pca_overlap(k, dim, nuisance_std, gmm_between_var(k, separation))
    assert overlap == pytest.approx(predicted, abs=1e-9)


def test_gmm_predictions():
    params = {"scenario": "gmm", "n_clusters": 4, "dim": 16, "separation": 4.0, "encoder": "linear"}  # gmm.yaml
    pca = predict(params, y="nuisance_std", metric="pca_overlap", threshold=0.5, increasing=False)
    assert pca.y_critical == pytest.approx(math.sqrt(3))
    assert predict({**params, "cov_tilt": 0.3}, y="nuisance_std", metric="pca_overlap", threshold=0.5) is None
    fisher = predict(params, y="nuisance_std", metric="subspace_overlap", threshold=0.9, increasing=False)
    assert fisher.censored == "above"  # never falls below the threshold
    dims = predict(params, y="embedding_dim", metric="subspace_overlap", threshold=0.9)
    assert dims.y_critical == pytest.approx(2.7)  # 0.9 of the K-1 = 3 Fisher directions
    flat = predict({**params, "nuisance_std": 3.0}, y="embedding_dim", metric="pca_overlap", threshold=0.5)
    assert flat.censored == "above"  # PCA overlap 0 at any embedding_dim
    study = predict({**params, "embedding_dim": 3, "aug_noise": 0.25}, y="nuisance_std", metric="subspace_overlap",
                    threshold=0.9)
    assert study.censored == "below"  # gmm.yaml's diagram: past 0.9 at every nuisance_std
    narrow = predict({**params, "embedding_dim": 2}, y="nuisance_std", metric="subspace_overlap", threshold=0.9)
    assert narrow.censored == "above" and "0.667" in narrow.note


def test_other_scenarios_predict_from_their_parameters():
    sphere = predict({"scenario": "sphere_mixing", "latent_dim": 5, "encoder": "mlp"}, y="embedding_dim",
                     metric="r2_linear", threshold=0.9)
    assert sphere.y_critical == 5
    assert predict({"scenario": "sphere_mixing", "latent_dim": 5, "encoder": "linear"}, y="embedding_dim",
                   metric="r2_linear", threshold=0.9) is None
    content = predict({"scenario": "content_style", "content_dim": 3}, y="embedding_dim", metric="content_r2",
                      threshold=0.8)
    assert content.y_critical == 3
    kept = predict({"scenario": "content_style", "content_dim": 3, "embedding_dim": 6}, y="aug_noise",
                   metric="content_r2", threshold=0.8)
    assert kept.censored == "below"
    nested = predict({"scenario": "nested_clusters", "n_groups": 4, "n_sub": 5}, y="embedding_dim",
                     metric="randlabel_acc", threshold=0.9)
    assert nested.y_critical == 4
    sub = predict({"scenario": "nested_clusters", "n_groups": 4, "n_sub": 5}, y="embedding_dim",
                  metric="sub_randlabel_acc", threshold=0.9)
    assert sub.y_critical == 20


# --- per-row predictions and agreement --------------------------------------------------------------
def _hypercube_diagram(critical, **kwargs):
    trials = tidy(make_phase_trials(critical, x="n_invariant", random_state=0, **kwargs))
    diagram = PhaseDiagram(x="n_invariant", y="embedding_dim", metric="randlabel_acc", threshold=0.9,
                           random_state=0).fit(trials)
    return diagram, trials


def test_theory_boundaries_take_each_rows_parameters_and_agree_with_a_theory_planted_table():
    diagram, trials = _hypercube_diagram({s: float(2**s) for s in (2, 3, 4, 5)})
    predicted = theory_boundaries(diagram, trials)
    assert list(predicted["y_theory"]) == [4.0, 8.0, 16.0, 32.0]
    table = compare(diagram, predicted)
    assert table["agree"].tolist() == [True] * 4 and table["within_ci"].all()
    summary = summarise(table)
    assert summary["fraction_agree"] == 1.0 and abs(summary["mean_log2_ratio"]) < 0.5


def test_agreement_detects_a_boundary_four_times_the_prediction():
    diagram, trials = _hypercube_diagram({s: float(2 ** (s + 2)) for s in (2, 3)})
    table = compare(diagram, theory_boundaries(diagram, trials))
    assert table["agree"].tolist() == [False, False]
    assert summarise(table)["mean_log2_ratio"] == pytest.approx(2.0, abs=0.5)


def test_agreement_of_censored_rows():
    trials = tidy(make_phase_trials({"linear": math.inf, "mlp-64x2": 8.0, "mlp-16x1": 0.5}, random_state=0))
    diagram = PhaseDiagram(x="capacity", y="embedding_dim", metric="randlabel_acc", threshold=0.9,
                           random_state=0).fit(trials)
    table = compare(diagram, theory_boundaries(diagram, trials))
    by = dict(zip(table["capacity"], table["agree"], strict=True))
    assert by == {"linear": True, "mlp-16x1": False, "mlp-64x2": True}  # s = 3: linear never, MLP at 8
    assert table.loc[table["capacity"] == "linear", "censored_theory"].item() == "above"


def test_expectations_check_the_qualitative_claims():
    rows = []
    for noise in (0.5, 1.0, 2.0, 4.0):
        for seed in range(3):
            rows.append({"scenario": "gmm", "status": "TERMINATED", "encoder": "linear", "nuisance_std": noise,
                         "seed": seed, "subspace_overlap": 0.95, "pca_overlap": 1.0 if noise < 1.7 else 0.05})
            rows.append({"scenario": "content_style", "status": "TERMINATED", "aug_noise": noise / 4,
                         "seed": seed, "content_r2": 0.9, "style_r2": 0.8 - noise / 8})
    claims = {c["claim"]: c["holds"] for c in expectations(pd.DataFrame(rows))}
    assert len(claims) == 3 and all(claims.values())
    # style_r2 flat in aug_noise at the content oracle's level is what the revised content_style claim expects:
    # no qualitative claim says otherwise
    flat = [{**r, "style_r2": 0.41} if r["scenario"] == "content_style" else r for r in rows]
    assert all(c["holds"] for c in expectations(pd.DataFrame(flat)))


@pytest.mark.parametrize("nuisance_std", [1.0, 1.7, 1.75, 4.0])
def test_gmm_pca_overlap_is_what_the_gmm_scenario_computes(nuisance_std):
    """The closed form against the scenario's own population PCA basis (gmm.yaml's parameters:
    K = 4, dim = 16, separation = 4, boundary at nuisance_std = sqrt(1 + 16/8) = 1.732)."""
    scenarios = pytest.importorskip("trainables.scenarios")
    truth = scenarios.gmm(dim=16, n_clusters=4, separation=4.0, nuisance_std=nuisance_std).truth
    pca, fisher = (truth[k].double().cpu().numpy() for k in ("pca_basis", "fisher_basis"))
    overlap = np.linalg.norm(pca.T @ fisher) ** 2 / fisher.shape[1]
    assert overlap == pytest.approx(gmm_pca_overlap(4, 16, nuisance_std, gmm_between_var(4, 4.0)), abs=1e-4)


# --- the noise axis: the hypercube's Bayes ceiling ------------------------------------------------------------
def _bayes_monte_carlo(s: int, sigma: float, n: int, seed: int) -> tuple[float, float]:
    """Straight from the definition, sharing no code with the module: draw b over every pattern, add noise,
    score each pattern's likelihood by its Gaussian density, predict the labelling's more probable class."""
    from trainables.metrics import random_labellings

    rng = np.random.default_rng(seed)
    patterns = np.array([[1 if (p >> i) & 1 else -1 for i in range(s)] for p in range(2**s)])
    truth = rng.integers(0, 2**s, n)
    x = patterns[truth] + sigma * rng.standard_normal((n, s))
    density = np.exp(-((x[:, None, :] - patterns[None]) ** 2).sum(2) / (2 * sigma**2))  # (n, 2^s)
    accs = []
    for labels in random_labellings(2**s, 16, seed):
        p1 = (density * labels).sum(1) / density.sum(1)
        accs.append(np.mean((p1 > 0.5) == (labels[truth] == 1)))
    return float(np.mean(accs)), float(np.std(accs, ddof=1) / np.sqrt(len(accs)) + 1 / np.sqrt(n))


@pytest.mark.parametrize(("s", "sigma"), [(1, 0.7), (2, 0.4), (2, 1.0), (3, 0.6), (4, 0.8)])
def test_the_bayes_ceiling_matches_a_brute_force_monte_carlo(s, sigma):
    from analysis.theory import hypercube_bayes_ceiling

    ceiling = hypercube_bayes_ceiling(s, sigma)
    estimate, error = _bayes_monte_carlo(s, sigma, 100_000, seed=s)
    assert abs(ceiling.value - estimate) < 4 * (error + ceiling.error), (ceiling, estimate, error)


def test_the_bayes_ceiling_closed_forms_and_limits():
    from scipy.stats import norm

    from analysis.theory import hypercube_bayes_ceiling

    assert hypercube_bayes_ceiling(1, 0.5).value == pytest.approx(norm.cdf(2.0))
    assert hypercube_bayes_ceiling(3, 0.0).value == 1.0
    assert hypercube_bayes_ceiling(2, 0.05).value == pytest.approx(1.0, abs=1e-9)
    assert 0.5 < hypercube_bayes_ceiling(3, 200.0).value < 0.502  # -> 1/2: labels no longer seen
    values = [hypercube_bayes_ceiling(3, sigma).value for sigma in (0.2, 0.4, 0.6, 0.8, 1.2)]
    assert values == sorted(values, reverse=True)  # more noise, lower ceiling
    # more clusters to tell apart at the same noise: a lower ceiling
    assert hypercube_bayes_ceiling(2, 0.6).value > hypercube_bayes_ceiling(3, 0.6).value


def test_the_critical_noise_is_where_the_ceiling_crosses_the_threshold():
    from analysis.theory import hypercube_bayes_ceiling, hypercube_critical_noise

    for s, threshold in ((2, 0.95), (3, 0.95), (3, 0.8)):
        sigma = hypercube_critical_noise(s, threshold)
        assert hypercube_bayes_ceiling(s, round(sigma * 0.98, 6)).value > threshold
        assert hypercube_bayes_ceiling(s, round(sigma * 1.02, 6)).value < threshold
    with pytest.raises(ValueError, match="threshold"):
        hypercube_critical_noise(3, 0.4)


def test_nested_clusters_augmentation_graph_components_against_a_union_find():
    from analysis.theory import nested_augmentation_components
    from trainables.scenarios import nested_clusters

    for r, n_sub, noise in ((4, 4, 0.0), (4, 4, 0.3), (3, 1, 0.5), (2, 5, 1.0)):
        sc = nested_clusters(n_groups=r, n_sub=n_sub, aug_noise=noise, dim=16, cluster_std=0.01)  # views exact
        parent = list(range(r * n_sub))

        def find(i, parent=parent):
            while parent[i] != i:
                i = parent[i]
            return i

        # the sub-cluster of each view, read off the nearest centre, joins the two views' components
        x, x_pos = sc.pairs(4000, torch.Generator().manual_seed(0))
        centres = sc.truth["subcluster_centres"]
        a, b = torch.cdist(x, centres).argmin(1), torch.cdist(x_pos, centres).argmin(1)
        for i, j in zip(a.tolist(), b.tolist(), strict=True):
            parent[find(i)] = find(j)
        assert len({find(i) for i in range(r * n_sub)}) == nested_augmentation_components(r, n_sub, noise)
