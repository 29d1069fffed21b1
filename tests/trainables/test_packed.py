"""A pack trains each of its configs as that config trains alone (issue 7, item 3).

float32 training is not bitwise reproducible across reassociations of the same sums: batched
matmuls, zero padding and the batched loss round differently from the lone run's kernels by
about 1e-8 per step (the AdamW update itself is reproduced bitwise, see ``packed.py``), and a
ReLU unit whose pre-activation sits within that of zero can switch, after which the two
trajectories part at ~1e-5 per step. A lone run that merely encodes both views in one matmul
parts from itself the same way. So the equivalence tests run short (30 steps) and compare
parameters and embeddings to 1e-4 of their scale, metrics to rel 1e-5 (reached here: 1e-5,
3e-6 and 3e-7, every accuracy identical); what must be exact (padding, resume, isolation of a
diverging config) is compared exactly.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F

from trainables.losses import LOSSES
from trainables.packed import (
    PACKED_LOSSES,
    PER_CONFIG_KEYS,
    ContrastivePack,
    auto_pack_size,
    pack_flops,
    pack_key,
    pack_memory_bytes,
    plan_packs,
)
from trainables.training import ContrastiveRun, train

TIMES = ("train_s", "eval_s")
SHORT = {"steps": 30, "eval_every": 30, "batch_size": 64, "n_eval": 256, "dim": 10}
# what may differ inside a pack: seed, lr, weight_decay, temperature, width, embedding_dim, aug_noise
VARIANTS = [
    {"seed": 0, "lr": 3e-3, "width": 16, "embedding_dim": 8, "temperature": 0.2},
    {"seed": 1, "lr": 1e-3, "width": 12, "embedding_dim": 4, "temperature": 0.5, "weight_decay": 0.1},
    {"seed": 0, "lr": 2e-3, "width": 6, "embedding_dim": 2, "temperature": 0.3, "aug_noise": 0.3},
    {"seed": 2, "lr": 3e-3, "width": 10, "embedding_dim": 6, "temperature": 0.1, "weight_decay": 0.01},
    {"seed": 0, "lr": 2e-3, "width": 16, "embedding_dim": 3, "temperature": 0.4},  # shares seed 0's stream
]
CASES = {
    "hypercube-info_nce-mlp2": {"scenario": "hypercube", "n_invariant": 2, "loss": "info_nce", "encoder": "mlp",
                                "depth": 2},
    "hypercube-spectral-mlp1": {"scenario": "hypercube", "n_invariant": 2, "loss": "spectral", "encoder": "mlp",
                                "depth": 1},
    "gmm-info_nce-linear": {"scenario": "gmm", "n_clusters": 3, "loss": "info_nce", "encoder": "linear"},
    "gmm-spectral-mlp2": {"scenario": "gmm", "n_clusters": 3, "loss": "spectral", "encoder": "mlp", "depth": 2},
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: extra OpenMP threads only add synchronisation (on a busy machine, a lot)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _configs(case: str, variants=VARIANTS) -> list[dict]:
    return [{**SHORT, **CASES[case], **v} for v in variants]


def _train_pack(pack: ContrastivePack) -> list[dict[str, float]]:
    """The pack's final reports, driven as the Tune trainable drives it."""
    reports: list[dict[str, float]] = []
    while not pack.done:
        pack.advance(pack.eval_every)
        reports = pack.evaluate()
    return reports


def _near(packed: torch.Tensor, alone: torch.Tensor, rel: float = 1e-4) -> None:
    """Equal up to ``rel`` of the tensor's scale (elementwise rtol would fail entries that cross zero)."""
    torch.testing.assert_close(packed, alone, rtol=0, atol=rel * float(alone.detach().abs().max()))


def _close(packed: dict[str, float], alone: dict[str, float], rel: float = 1e-5, abs_: float = 1e-6) -> None:
    assert packed.keys() == alone.keys()
    for key in packed:
        if key in TIMES:
            continue
        a, b = packed[key], alone[key]
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=rel, abs=abs_), (key, a, b)


# ---------------------------------------------------------------------------------------------
# the losses


@pytest.mark.parametrize("loss", sorted(PACKED_LOSSES))
def test_packed_losses_equal_the_lone_losses_and_ignore_zero_padding(loss):
    gen = torch.Generator().manual_seed(0)
    dims, temperatures = [2, 5, 8], [0.1, 0.5, 1.0]
    zs = [(torch.randn(32, e, generator=gen), torch.randn(32, e, generator=gen)) for e in dims]
    z1 = torch.stack([F.pad(a, (0, 8 - a.shape[1])) for a, _ in zs]).requires_grad_()  # (3, 32, 8)
    z2 = torch.stack([F.pad(b, (0, 8 - b.shape[1])) for _, b in zs]).requires_grad_()
    kwargs = {"temperature": torch.tensor(temperatures)} if loss == "info_nce" else {}
    packed = PACKED_LOSSES[loss](z1, z2, **kwargs)  # (3,)
    packed.sum().backward()
    for k, (a, b) in enumerate(zs):
        lone_kwargs = {"temperature": temperatures[k]} if loss == "info_nce" else {}
        torch.testing.assert_close(packed[k], LOSSES[loss](a, b, **lone_kwargs), rtol=1e-6, atol=1e-6)
        # the padded columns get exactly zero gradient, so they stay zero under any optimiser
        assert torch.all(z1.grad[k, :, dims[k]:] == 0) and torch.all(z2.grad[k, :, dims[k]:] == 0)


# ---------------------------------------------------------------------------------------------
# equivalence with the lone run


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_config_in_a_pack_ends_as_it_ends_alone(case):
    # K = 5 on the hypercube, 4 on the (slower to score) gmm: still a shared stream, aug_noise and weight decay
    configs = _configs(case, VARIANTS if case.startswith("hypercube") else [VARIANTS[i] for i in (0, 2, 3, 4)])
    pack = ContrastivePack(configs)
    reports = _train_pack(pack)
    zs = pack.embeddings()
    for k, config in enumerate(configs):
        alone = ContrastiveRun(config)
        while not alone.done:
            alone.advance(alone.eval_every)
        metrics = alone.evaluate()
        assert reports[k]["step"] == alone.step == 30 and reports[k]["diverged"] == 0
        assert reports[k]["n_params"] == alone.n_params
        for p, q in zip(alone.model.parameters(), pack.encoder(k).parameters(), strict=True):
            _near(q, p)
        with torch.no_grad():
            _near(zs[k], alone.model(alone.heldout["x"]))
        _close(reports[k], metrics)


def test_padded_entries_stay_exactly_zero_through_training():
    configs = _configs("hypercube-info_nce-mlp2")
    pack = ContrastivePack(configs)
    pack.advance(30)
    (w0, b0), (w1, b1), (w2, b2) = pack.layers  # width_max 16, embedding_dim max 8
    assert w0.shape == (5, 16, 10) and w1.shape == (5, 16, 16) and w2.shape == (5, 8, 16)
    for k, v in enumerate(VARIANTS):
        width, e = v["width"], v["embedding_dim"]
        padded = [w0[k, width:], b0[k, :, width:], w1[k, width:], w1[k, :, width:], b1[k, :, width:],
                  w2[k, e:], w2[k, :, width:], b2[k, :, e:]]
        assert all(torch.count_nonzero(t) == 0 for t in padded), k
        assert torch.count_nonzero(w2[k, :e, :width]) == e * width  # the real part did train


# ---------------------------------------------------------------------------------------------
# checkpoint and divergence


def test_a_pack_restored_from_its_state_continues_exactly():
    configs = _configs("gmm-spectral-mlp2", VARIANTS[:3])
    whole = ContrastivePack(configs)
    whole.advance(12)
    whole.advance(12)
    whole.advance(12)

    first = ContrastivePack(configs)
    first.advance(12)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    first.advance(7)  # the saved state is a copy: training on does not change it
    resumed = ContrastivePack(configs)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    assert resumed.step == 12
    resumed.advance(12)
    resumed.advance(12)
    assert resumed.done and torch.equal(resumed.params, whole.params)
    for a, b in zip(resumed.evaluate(), whole.evaluate(), strict=True):
        _close(a, b, rel=1e-12, abs_=1e-12)  # equal parameters; LAPACK's lstsq may differ in the last bit
    with pytest.raises(ValueError, match="another pack"):
        ContrastivePack(configs[:2]).load_state_dict(whole.state_dict())


def test_a_diverging_config_stops_where_it_stops_alone_and_leaves_its_neighbours_alone():
    base = {**SHORT, **CASES["hypercube-spectral-mlp1"], "steps": 50, "eval_every": 25}
    # lr 1e4 diverges after one step, lr 30 after eight; the second shares its data stream with it
    configs = [{**base, **VARIANTS[0]}, {**base, **VARIANTS[1], "lr": 1e4}, {**base, **VARIANTS[3]},
               {**base, **VARIANTS[1], "lr": 30.0}]
    pack = ContrastivePack(configs)
    history = []
    while not pack.done:
        pack.advance(pack.eval_every)
        history.append(pack.evaluate())
    assert pack.step == 50 and pack.finished == [True] * 4 and pack.diverged == [False, True, False, True]
    for k in (1, 3):
        alone = train(configs[k])
        assert alone["diverged"] == 1 and 0 < alone["step"] < 25
        assert history[0][k]["step"] == alone["step"] and history[0][k]["diverged"] == 1
        assert math.isnan(history[0][k]["train_loss"]) and math.isfinite(history[0][k]["effective_rank"])
        _close(history[0][k], alone)
        _close(history[1][k], alone)  # frozen from then on
    for k in (0, 2):
        assert history[-1][k]["step"] == 50 and history[-1][k]["diverged"] == 0
        _close(history[-1][k], train(configs[k]))
    # and the neighbours' trajectories are exactly those of a pack without the diverging configs
    calm = ContrastivePack([configs[0], configs[2]])
    calm.advance(50)
    for (w, b), (w_calm, b_calm) in zip(pack.layers, calm.layers, strict=True):
        assert torch.equal(w[[0, 2]], w_calm) and torch.equal(b[[0, 2]], b_calm)


# ---------------------------------------------------------------------------------------------
# which configs share a pack, and how many


def test_pack_key_groups_configs_that_differ_only_in_per_config_keys():
    base = _configs("hypercube-info_nce-mlp2")[0]
    assert PER_CONFIG_KEYS == {"seed", "lr", "weight_decay", "temperature", "width", "embedding_dim", "aug_noise"}
    same = [{**base, **v} for v in VARIANTS] + [{**base, "weight_decay": 0.5, "aug_noise": 0.0}]
    assert len({pack_key(c) for c in same}) == 1
    assert pack_key({**base, "device": "cpu"}) != pack_key(base)
    linear = {**base, "encoder": "linear"}
    assert pack_key({**linear, "width": 8}) == pack_key({**linear, "width": 64})  # linear ignores width
    for change in ({"depth": 1}, {"encoder": "linear"}, {"loss": "spectral"}, {"steps": 41}, {"batch_size": 32},
                   {"n_eval": 128}, {"eval_every": 10}, {"n_invariant": 3}, {"dim": 11}, {"scenario": "gmm"}):
        assert pack_key({**base, **change}) != pack_key(base), change


@pytest.mark.parametrize(("change", "named"), [({"depth": 1}, "'depth'"), ({"n_invariant": 3}, "'n_invariant'"),
                                               ({"steps": 41}, "'steps'"), ({"encoder": "linear"}, "'encoder'")])
def test_configs_that_cannot_share_a_pack_are_refused_naming_the_key(change, named):
    base = _configs("hypercube-info_nce-mlp2")[0]
    with pytest.raises(ValueError, match=f"cannot share a pack: .*{named} differs"):
        ContrastivePack([base, {**base, "seed": 3, **change}])
    with pytest.raises(ValueError, match="at least one config"):
        ContrastivePack([])


def test_a_pack_refuses_what_the_lone_run_refuses():
    base = _configs("hypercube-info_nce-mlp2")[0]
    with pytest.raises(ValueError, match="temperature"):
        ContrastivePack([base, {**base, "temperature": 0.0}])


def test_plan_packs_cuts_each_key_into_packs_of_similar_shape():
    base = _configs("hypercube-info_nce-mlp2")[0]
    cells = [{**base, "width": w, "embedding_dim": e, "seed": s} for s in (0, 1) for w in (128, 32) for e in (2, 8)]
    cells += [{**base, "encoder": "linear", "embedding_dim": e} for e in (2, 4, 8)]  # indices 8, 9, 10
    packs = plan_packs(cells, 4)
    assert sorted(i for pack in packs for i in pack) == list(range(11))
    assert packs == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 10]]  # width 128 together, width 32 together
    assert all(len({pack_key(cells[i]) for i in pack}) == 1 for pack in packs)
    singles = plan_packs(cells, 1)
    assert sorted(singles) == [[i] for i in range(11)]
    costs = [pack_flops([cells[i] for i in pack]) for pack in singles]
    assert costs == sorted(costs, reverse=True) and costs[0] > costs[-1]  # the longest trials start first
    assert singles[:2] == [[1], [5]]  # width 128 with embedding_dim 8, seeds 0 and 1 (ties by index)
    # no small remainder: 7 configs of one key in packs of at most 3 are 3 + 2 + 2, not 3 + 3 + 1
    assert sorted(len(p) for p in plan_packs(cells[:4] + cells[8:], 3)) == [2, 2, 3]
    with pytest.raises(ValueError, match="pack size"):
        plan_packs(cells, 0)


def test_auto_pack_size_follows_the_model_size_on_cpu():
    small = {**SHORT, **CASES["gmm-info_nce-linear"]}
    large = {**SHORT, **CASES["hypercube-info_nce-mlp2"], "width": 512, "batch_size": 256}
    assert pack_memory_bytes(large) > 10 * pack_memory_bytes(small) > 0
    # the estimate covers at least the four (K, P) copies of the parameters a pack really holds
    pack = ContrastivePack([small])
    assert pack_memory_bytes(small) >= 4 * 4 * pack.params.numel()
    assert auto_pack_size(small, "cpu") == 16
    assert auto_pack_size(large, "cpu") == 8
