"""Baselines: every metric measured on representations that need no training.

An *oracle* is a representation the theory names as ideal for a function class (``BASELINES``, with what each is
ideal for); the *input* is x itself, the floor an encoder must beat (cl-ica's identity baseline: the metric of g(z)).
Each is a pure function of a scenario's held-out sample and truth, ``(heldout, truth) -> (n, E)``, measured by
``trainables.metrics.evaluate_many`` with the same probes, held-out sample (drawn as the engine draws it,
``seed + 0x5EED``), split and labellings as a trial of that seed, so a baseline reads exactly as a trained encoder's
embedding would. (On a GPU the engine draws its held-out sample there, with another random stream: the same
distribution and size, other draws.) Every oracle is a function of x and the scenario's frozen parameters, never of
the held-out labels: an encoder could output it, so a threshold above every oracle of its metric is out of any
encoder's reach.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from trainables.engine import _EVAL_STREAM, _kwargs
from trainables.metrics import evaluate_many
from trainables.scenarios import SCENARIOS, Scenario

__all__ = ["BASELINES", "MAX_POSTERIOR_CLASSES", "RECOVERY_METRICS", "SETTING_KEYS", "Baseline", "heldout_of",
           "measure", "representations", "setting_of"]

# One-hot-like oracles over more classes than this are left out: beyond it the probes leave Newton for L-BFGS,
# and a 2048-point held-out half sees each of 2^7 patterns about 8 times, too few to read a labelling from.
MAX_POSTERIOR_CLASSES = 64
# Metrics whose ideal is the oracle (higher is better, and the oracle is the best representation there is):
# the spec check and the probe's ceiling in analysis.theory use these only. Not: effective_rank, pca_overlap
# (of the data alone), style_r2 (the ideal content encoder keeps little style), losses.
RECOVERY_METRICS = ("probe_acc", "cluster_acc", "randlabel_acc", "ari", "nmi", "sub_randlabel_acc",
                    "subspace_overlap", "r2_linear", "mcc", "content_r2", "content_r2_linear")
SETTING_KEYS = ("seed", "n_eval")  # besides the scenario's own keys, what a held-out sample depends on

Representation = Callable[[Mapping[str, Tensor], Mapping[str, Any]], "Tensor | None"]


@dataclass(frozen=True)
class Baseline:
    """A representation measured like an embedding: ``represent(heldout, truth) -> (n, E)`` float, or None
    where the setting has none (e.g. more than ``MAX_POSTERIOR_CLASSES`` clusters). ``undefined``: metrics
    that do not exist for it (reported NaN)."""

    name: str
    kind: str  # "oracle" or "input"
    ideal_for: str
    represent: Representation
    undefined: tuple[str, ...] = ()


def _bit_posterior(x: Tensor, sigma: float) -> Tensor:
    """(n, s) -> (n, 2^s) P(b_inv = pattern c | x_inv), patterns in cluster-id order (bit j of c: b_j > 0).

    x = b + sigma eps with b_j uniform on {-1, +1}: the bits are independent given x, each with
    log P(b_j = +-1 | x_j) = -log(1 + exp(-+2 x_j / sigma^2)); sigma = 0: the one-hot of sign(x)."""
    s = x.shape[1]
    bits = (torch.arange(2**s)[:, None] >> torch.arange(s)) & 1  # (2^s, s)
    x = x.double()
    if sigma == 0:
        code = ((x > 0).long() * 2 ** torch.arange(s)).sum(1)
        return torch.nn.functional.one_hot(code, 2**s).double()
    logit = 2 * x / sigma**2  # (n, s)
    log_plus, log_minus = -torch.nn.functional.softplus(-logit), -torch.nn.functional.softplus(logit)
    log_post = torch.where(bits[None].bool(), log_plus[:, None, :], log_minus[:, None, :]).sum(2)  # (n, 2^s)
    return log_post.exp()


def _hypercube_posterior(heldout: Mapping[str, Tensor], truth: Mapping[str, Any]) -> Tensor | None:
    s = int(truth["n_invariant"])
    return None if 2**s > MAX_POSTERIOR_CLASSES else _bit_posterior(heldout["x"][:, :s], float(truth["aug_noise"]))


def _gaussian_posterior(x: Tensor, centres: Tensor, std: float) -> Tensor:
    """(n, D), (k, D) -> (n, k) P(component | x) for equally likely isotropic Gaussians of std ``std``."""
    d2 = torch.cdist(x.double(), centres.double()).square()  # (n, k)
    if std == 0:
        return torch.nn.functional.one_hot(d2.argmin(1), len(centres)).double()
    return torch.softmax(-d2 / (2 * std**2), dim=1)


def _nested_posterior(by: str) -> Representation:
    def represent(heldout: Mapping[str, Tensor], truth: Mapping[str, Any]) -> Tensor | None:
        centres = truth["subcluster_centres"]  # (r0, D), id = group * n_sub + sub
        r0, r = int(truth["n_subclusters"]), int(truth["n_clusters"])
        if (r0 if by == "subcluster" else r) > MAX_POSTERIOR_CLASSES:
            return None
        post = _gaussian_posterior(heldout["x"], centres, float(truth["cluster_std"]))  # (n, r0)
        return post if by == "subcluster" else post.reshape(len(post), r, r0 // r).sum(2)
    return represent


# The identity's linearised map is I: every input direction has the same gain, so "the top-q directions"
# that subspace_overlap compares with the Fisher subspace are not defined (round-off would pick them).
INPUT = Baseline("input", "input", "no encoder: x itself, the floor an encoder must beat", lambda h, t: h["x"],
                 undefined=("subspace_overlap",))
BASELINES: dict[str, tuple[Baseline, ...]] = {
    "hypercube": (
        Baseline("invariant_coords", "oracle", "a linear encoder: x[:, :s], the s invariant coordinates",
                 lambda h, t: h["x"][:, : int(t["n_invariant"])]),
        Baseline("cluster_posterior", "oracle", "an encoder that recovers every cluster: P(cluster | x) over "
                 "the 2^s patterns (the cluster one-hots at aug_noise 0)", _hypercube_posterior),
        INPUT),
    "gmm": (
        Baseline("fisher_projection", "oracle", "a linear encoder: x on the Fisher subspace (Bansal et al. 2024)",
                 lambda h, t: h["x"].double() @ torch.as_tensor(t["fisher_basis"]).double()),
        INPUT),
    "sphere_mixing": (
        Baseline("latent", "oracle", "an encoder that inverts the mixing: z = g^-1(x) (Zimmermann et al. 2021)",
                 lambda h, t: h["latent"]),
        INPUT),
    "content_style": (
        Baseline("content", "oracle", "a contrastive encoder: the content block of g^-1(x) (von Kügelgen et al. "
                 "2021)", lambda h, t: h["content"]),
        INPUT),
    "nested_clusters": (
        Baseline("group_posterior", "oracle", "a smooth encoder of embedding_dim ~ r: P(group | x), the group "
                 "one-hots (HaoChen & Ma 2022)", _nested_posterior("group")),
        Baseline("subcluster_posterior", "oracle", "an encoder that keeps all r0 sub-clusters: P(sub-cluster | x)",
                 _nested_posterior("subcluster")),
        INPUT),
}


def setting_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """What a config's held-out sample depends on: its scenario, the scenario's keys, seed and n_eval."""
    name = config["scenario"]
    return {"scenario": name, **_kwargs(SCENARIOS[name], config), **{k: config[k] for k in SETTING_KEYS}}


def heldout_of(setting: Mapping[str, Any]) -> tuple[Scenario, dict[str, Tensor]]:
    """The scenario and held-out sample of a setting, on the CPU, drawn as ``trainables.engine.Pack`` draws them."""
    fn = SCENARIOS[setting["scenario"]]
    scenario = fn(**_kwargs(fn, setting), device="cpu")
    generator = torch.Generator().manual_seed(int(setting["seed"]) + _EVAL_STREAM)
    return scenario, scenario.heldout(int(setting["n_eval"]), generator)


def representations(scenario: Scenario, heldout: Mapping[str, Tensor],
                    setting: Mapping[str, Any]) -> dict[str, Tensor]:
    """Every baseline this setting has (``setting``: the scenario's keys, see ``setting_of``): name -> (n, E)
    float64."""
    # frozen parameters an oracle needs that the truth does not carry
    truth = {**{k: setting[k] for k in ("aug_noise", "cluster_std") if k in setting}, **scenario.truth}
    zs = {baseline.name: baseline.represent(heldout, truth) for baseline in BASELINES[scenario.name]}
    return {name: z.reshape(len(z), -1).double() for name, z in zs.items() if z is not None}


def _digest(seed: int, z: Tensor, heldout: Mapping[str, Tensor], truth: Mapping[str, Any]) -> bytes:
    """What ``evaluate`` reads of one embedding: equal digests give equal metrics (a setting key that changes
    only the positive pairs, e.g. ``aug_noise`` of ``gmm``, leaves the held-out sample as it is)."""
    h = hashlib.blake2b(str(seed).encode())
    parts = [("z", z), *sorted(heldout.items()), *sorted((k, v) for k, v in truth.items()
                                                         if isinstance(v, Tensor | int | float))]
    for key, value in parts:
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes() if isinstance(value, Tensor)
                 else repr(value).encode())
    return h.digest()


def measure(configs: Sequence[Mapping[str, Any]], *, names: Sequence[str] | None = None,
            batch: int = 16) -> list[dict[str, Any]]:
    """Every baseline of every distinct setting of ``configs`` (effective configs; the encoder's keys are ignored):
    one row each, ``scenario``, ``baseline``, ``kind``, ``ideal_for``, ``dims``, the setting's keys and every metric
    ``evaluate`` reports. Each scenario is built once per setting; representations of one scenario and sample shape
    are evaluated ``batch`` at a time by one ``evaluate_many`` call, and a representation whose held-out sample, truth
    and seed another one already has is evaluated once. ``names``: only these baselines."""
    settings: dict[tuple, dict[str, Any]] = {}
    for setting in map(setting_of, configs):
        settings.setdefault(tuple(setting.items()), setting)
    jobs: dict[tuple, dict[bytes, tuple]] = {}  # (scenario, sample shapes) -> digest -> (seed, z, heldout, truth)
    placed: list[tuple[dict[str, Any], Baseline, int, bytes]] = []
    for setting in settings.values():
        scenario, heldout = heldout_of(setting)
        # evaluate_many stacks the held-out samples: one batch holds settings whose samples have one shape
        seed, group = int(setting["seed"]), (setting["scenario"], *((k, tuple(v.shape)) for k, v in heldout.items()))
        for name, z in representations(scenario, heldout, setting).items():
            if names is None or name in names:
                digest = _digest(seed, z, heldout, scenario.truth)
                jobs.setdefault(group, {}).setdefault(digest, (seed, z, heldout, scenario.truth))
                spec = next(b for b in BASELINES[scenario.name] if b.name == name)
                placed.append((setting, spec, int(z.shape[1]), digest))
    results: dict[bytes, dict[str, float]] = {}
    for group_jobs in jobs.values():
        todo = list(group_jobs.items())
        for start in range(0, len(todo), batch):
            digests, chunk = zip(*todo[start:start + batch], strict=True)
            seeds, zs, heldouts, truths = (list(column) for column in zip(*chunk, strict=True))
            dims = [z.shape[1] for z in zs]
            stacked = torch.stack([torch.nn.functional.pad(z, (0, max(dims) - z.shape[1])) for z in zs])  # (K, n, E)
            results.update(zip(digests, evaluate_many(stacked, heldouts, truths, seeds, dims=dims), strict=True))
    return [{"scenario": setting["scenario"], "baseline": spec.name, "kind": spec.kind, "ideal_for": spec.ideal_for,
             "dims": dims, **{k: v for k, v in setting.items() if k != "scenario"},
             **{k: (math.nan if k in spec.undefined else v) for k, v in results[digest].items()}}
            for setting, spec, dims, digest in placed]
