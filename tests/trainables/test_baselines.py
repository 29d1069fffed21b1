"""Baselines against planted truth and closed forms: each oracle reaches its metric's known value, the input
is the identity encoder, every oracle is a function of x, and each setting is measured once."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from trainables.baselines import (
    BASELINES,
    MAX_POSTERIOR_CLASSES,
    _bit_posterior,
    _gaussian_posterior,
    heldout_of,
    measure,
    representations,
    setting_of,
)
from trainables.config import effective
from trainables.engine import Pack
from trainables.scenarios import SCENARIOS


def rows_of(config: dict, **kw) -> dict[str, dict]:
    return {r["baseline"]: r for r in measure([effective(config)], **kw)}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_has_the_input_and_an_oracle(name: str) -> None:
    kinds = [b.kind for b in BASELINES[name]]
    assert kinds.count("input") == 1 and kinds.count("oracle") >= 1
    assert len({b.name for b in BASELINES[name]}) == len(kinds)


def test_latents_are_the_oracle_of_linear_r2_and_mcc() -> None:
    rows = rows_of({"scenario": "sphere_mixing", "latent_dim": 4, "mixing_layers": 3, "n_eval": 1024})
    assert rows["latent"]["r2_linear"] == pytest.approx(1.0, abs=1e-9)
    assert rows["latent"]["mcc"] == pytest.approx(1.0, abs=1e-6)  # float32 latents
    assert rows["input"]["r2_linear"] < 0.99  # three leaky-ReLU layers are not a linear map of z


@pytest.mark.parametrize("tilt", [0.0, 0.6])
def test_the_fisher_projection_has_subspace_overlap_one(tilt: float) -> None:
    # a tilted covariance puts the Fisher subspace off the means' subspace: the oracle follows the Fisher one
    rows = rows_of({"scenario": "gmm", "dim": 12, "n_clusters": 4, "nuisance_std": 4.0, "cov_tilt": tilt,
                    "n_eval": 1024})
    assert rows["fisher_projection"]["subspace_overlap"] == pytest.approx(1.0, abs=1e-9)
    assert rows["fisher_projection"]["dims"] == 3
    assert math.isnan(rows["input"]["subspace_overlap"])  # the identity has every direction at equal gain


def test_cluster_one_hots_make_every_labelling_decodable() -> None:
    config = {"scenario": "hypercube", "dim": 10, "n_invariant": 3, "aug_noise": 0.0, "n_eval": 1024}
    scenario, heldout = heldout_of(setting_of(effective(config)))
    z = representations(scenario, heldout, setting_of(effective(config)))["cluster_posterior"]
    torch.testing.assert_close(z, torch.nn.functional.one_hot(heldout["cluster"], 8).double())  # noise 0: one-hots
    rows = rows_of(config)
    for metric in ("randlabel_acc", "cluster_acc", "ari", "nmi"):
        assert rows["cluster_posterior"][metric] == pytest.approx(1.0), metric
    assert rows["invariant_coords"]["probe_acc"] == 1.0  # the label sign(w . b_inv) is linear in them
    assert rows["invariant_coords"]["randlabel_acc"] < 0.85  # most labellings of 8 clusters are not


def test_the_bit_posterior_is_the_bayes_posterior() -> None:
    """Brute force: P(p | x) = N(x; p, s^2 I) / sum_q N(x; q, s^2 I) over the 2^s patterns in {+-1}^s."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(200, 3, generator=gen, dtype=torch.float64) * 0.7 + torch.sign(torch.randn(200, 3, generator=gen))
    sigma = 0.6
    patterns = torch.tensor([[1.0 if (c >> j) & 1 else -1.0 for j in range(3)] for c in range(8)], dtype=torch.float64)
    log_lik = -((x[:, None, :] - patterns[None]) ** 2).sum(2) / (2 * sigma**2)
    torch.testing.assert_close(_bit_posterior(x, sigma), torch.softmax(log_lik, 1))
    torch.testing.assert_close(_gaussian_posterior(x, patterns, sigma), torch.softmax(log_lik, 1))


def test_the_posterior_oracle_measures_the_bayes_ceiling() -> None:
    """randlabel_acc on P(cluster | x) is the probe's measure of the Bayes ceiling (the Bayes decision of a
    labelling is linear in the posterior): at aug_noise 0.6 and s = 3 the ceiling is 0.921."""
    from analysis.theory import hypercube_bayes_ceiling

    rows = measure([effective({"scenario": "hypercube", "n_invariant": 3, "aug_noise": 0.6, "seed": s})
                    for s in range(3)], names=["cluster_posterior"])
    mean = sum(r["randlabel_acc"] for r in rows) / len(rows)
    assert mean == pytest.approx(hypercube_bayes_ceiling(3, 0.6).value, abs=0.015)


def test_group_and_subcluster_posteriors_recover_their_clusters() -> None:
    rows = rows_of({"scenario": "nested_clusters", "dim": 16, "n_groups": 4, "n_sub": 3, "cluster_std": 0.05,
                    "n_eval": 1024})
    assert rows["group_posterior"]["randlabel_acc"] == 1.0 and rows["group_posterior"]["cluster_acc"] == 1.0
    assert rows["subcluster_posterior"]["sub_randlabel_acc"] == 1.0
    assert rows["group_posterior"]["sub_randlabel_acc"] < 0.9  # one-hots of the groups cannot tell sub-clusters apart
    assert (rows["group_posterior"]["dims"], rows["subcluster_posterior"]["dims"]) == (4, 12)


def test_the_content_block_is_the_oracle_of_content_r2() -> None:
    rows = rows_of({"scenario": "content_style", "content_dim": 3, "style_dim": 2, "n_eval": 400})
    assert rows["content"]["content_r2_linear"] == pytest.approx(1.0, abs=1e-9)
    assert rows["content"]["content_r2"] > 0.98
    assert rows["content"]["content_r2_linear"] > rows["input"]["content_r2_linear"]


@pytest.mark.parametrize("config", [
    {"scenario": "hypercube", "dim": 8, "n_invariant": 2, "aug_noise": 0.3, "seed": 4},
    {"scenario": "gmm", "dim": 6, "n_clusters": 3, "seed": 1},
    {"scenario": "sphere_mixing", "latent_dim": 3, "seed": 2},
    {"scenario": "nested_clusters", "dim": 8, "n_groups": 3, "n_sub": 2},
])
def test_the_input_baseline_is_the_identity_encoder(config: dict) -> None:
    """A linear encoder with W = I, b = 0, trained for no step, evaluated by the engine itself."""
    config = effective({**config, "encoder": "linear", "n_eval": 512, "steps": 1, "eval_every": 1})
    dim = SCENARIOS[config["scenario"]](**{k: config[k] for k in setting_of(config) if k in config
                                           and k not in ("scenario", "seed", "n_eval")}).input_dim
    config["embedding_dim"] = dim
    pack = Pack([config], device="cpu")
    with torch.no_grad():
        pack.weights[0].copy_(torch.eye(dim)[None])
        pack.biases[0].zero_()
    trained = pack.evaluate()[0]
    baseline = rows_of(config)["input"]
    assert math.isnan(baseline.get("subspace_overlap", math.nan))  # undefined for the identity (see INPUT)
    for metric in set(baseline) & set(trained) - {"n_params", "step", "subspace_overlap"}:
        assert baseline[metric] == pytest.approx(trained[metric], abs=1e-6, nan_ok=True), metric


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_baseline_is_a_function_of_x_alone(name: str) -> None:
    """Scrambling the held-out labels and latents (everything but x) leaves every representation as it is."""
    setting = setting_of(effective({"scenario": name, "n_eval": 256}))
    scenario, heldout = heldout_of(setting)
    before = representations(scenario, heldout, setting)
    perm = torch.randperm(256, generator=torch.Generator().manual_seed(0))
    scrambled = {k: (v if k == "x" else v[perm]) for k, v in heldout.items()}
    after = representations(scenario, scrambled, setting)
    for key in before:
        if key in ("latent", "content"):  # the truth itself: g^-1(x), which the scrambled sample no longer pairs
            z = scenario.truth["mixing"].inverse(heldout["x"]).double()
            torch.testing.assert_close(before[key], z[:, :before[key].shape[1]], atol=1e-4, rtol=1e-4)
        else:
            torch.testing.assert_close(before[key], after[key])


def test_one_row_per_baseline_and_setting_whatever_the_encoder() -> None:
    grid = itertools.product(["linear", "mlp"], [2, 8], [0.0, 0.5], [0, 1])
    configs = [effective({"scenario": "hypercube", "dim": 8, "n_invariant": 2, "encoder": e, "embedding_dim": d,
                          "aug_noise": a, "seed": s, "n_eval": 256}) for e, d, a, s in grid]
    rows = measure(configs)
    assert len(rows) == 3 * 2 * 2  # 3 baselines x 2 aug_noise x 2 seeds; encoder and embedding_dim do not count
    assert {(r["baseline"], r["aug_noise"], r["seed"]) for r in rows} == set(itertools.product(
        ["invariant_coords", "cluster_posterior", "input"], [0.0, 0.5], [0, 1]))
    assert all("embedding_dim" not in r and "encoder" not in r for r in rows)
    again = measure(configs[:1])  # measured alone or batched with others: the same numbers
    mine = next(r for r in rows if (r["baseline"], r["aug_noise"], r["seed"]) == ("input", 0.0, 0))
    assert again[2]["randlabel_acc"] == pytest.approx(mine["randlabel_acc"], abs=1e-9)


def test_a_setting_key_that_leaves_the_heldout_sample_gives_equal_rows() -> None:
    # gmm's aug_noise only changes the positives: its held-out sample, and so every baseline, is the same
    rows = measure([effective({"scenario": "gmm", "aug_noise": a, "n_eval": 256}) for a in (0.0, 0.5)])
    by = {(r["baseline"], r["aug_noise"]): r for r in rows}
    for name in ("fisher_projection", "input"):
        assert by[(name, 0.0)]["randlabel_acc"] == by[(name, 0.5)]["randlabel_acc"]


def test_too_many_clusters_leave_out_the_posterior() -> None:
    s = int(math.log2(MAX_POSTERIOR_CLASSES)) + 1
    rows = rows_of({"scenario": "hypercube", "dim": s + 1, "n_invariant": s, "n_eval": 256})
    assert set(rows) == {"invariant_coords", "input"}


def test_settings_whose_samples_differ_in_shape_are_measured_each_as_alone() -> None:
    # a sweep over the input dimension: one scenario and n_eval, held-out samples of two shapes
    configs = [effective({"scenario": "hypercube", "dim": d, "n_invariant": 3, "n_eval": 256}) for d in (8, 16)]
    together = measure(configs)
    assert sorted((r["dim"], r["baseline"]) for r in together) == sorted(
        (d, b.name) for d in (8, 16) for b in BASELINES["hypercube"])
    for config in configs:
        alone = {r["baseline"]: r for r in measure([config])}
        for row in (r for r in together if r["dim"] == config["dim"]):
            assert row["randlabel_acc"] == alone[row["baseline"]]["randlabel_acc"]
