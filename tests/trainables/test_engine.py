"""The training engine: one loop for K >= 1 configs, equal to a plain PyTorch loop, config by config.

The reference is a loop written straight from the definitions (``_reference``): the registry's encoder
alone, its own generator's batches, the registry's loss on (B, E) embeddings, ``torch.optim.AdamW``. A
config trained in any pack ends where that loop ends: bitwise on CPU when its pack mates have its
shapes, and within float round-off (compared at 1e-4 of scale) when padding changes a matmul's inner
size (the plain loop's ``addmm`` and the pack's ``baddbmm`` round differently too). Padding, resume and
a diverging neighbour are checked exactly.
"""

from __future__ import annotations

import io
import math

import pytest
import torch

from trainables.config import effective
from trainables.encoders import ENCODERS
from trainables.engine import (
    PER_CONFIG_KEYS,
    Pack,
    auto_pack_size,
    pack_cost,
    pack_flops,
    pack_key,
    pack_memory_bytes,
    plan_packs,
    train,
)
from trainables.losses import LOSSES
from trainables.scenarios import SCENARIOS

TIMES = ("train_s", "eval_s", "pack_train_s", "pack_eval_s", "pack_size")
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
    # cl-ica's encoder shape: per-layer sizes, leaky ReLU, output on the sphere
    "sphere-info_nce-leaky-sphere": {"scenario": "sphere_mixing", "latent_dim": 4, "loss": "info_nce",
                                     "encoder": "mlp", "hidden": "8,20,8", "activation": "leaky_relu",
                                     "normalize": "sphere"},
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: extra OpenMP threads only add synchronisation (on a busy machine, a lot)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _configs(case: str, variants=VARIANTS, **extra) -> list[dict]:
    base = {k: v for k, v in SHORT.items() if k != "dim" or CASES[case]["scenario"] != "sphere_mixing"}
    return [effective({**base, **CASES[case], **v, **extra}) for v in variants]


def _run(pack: Pack) -> list[list[dict[str, float]]]:
    """Every report of the pack, driven as the Tune trainable drives it."""
    history = []
    while not pack.done:
        pack.advance(pack.eval_every)
        history.append(pack.evaluate())
    return history


def _reference(config: dict, steps: int) -> torch.nn.Module:
    """The plain loop: one encoder, its own batches, the (B, E) loss, torch's AdamW; no engine code."""
    scenario = SCENARIOS[config["scenario"]](**{k: config[k] for k in _scenario_keys(config)}, device="cpu")
    torch.manual_seed(config["seed"])
    import inspect

    names = set(inspect.signature(ENCODERS[config["encoder"]]).parameters) - {"input_dim", "embedding_dim"}
    model = ENCODERS[config["encoder"]](scenario.input_dim, config["embedding_dim"],
                                        **{k: config[k] for k in names if k in config})
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    generator = torch.Generator().manual_seed(config["seed"])
    loss_kwargs = {"temperature": config["temperature"]} if config["loss"] == "info_nce" else {}
    for _ in range(steps):
        x, x_pos = scenario.pairs(config["batch_size"], generator)
        z = model(torch.cat([x, x_pos]))  # both views in one matmul, as the pack encodes them
        loss = LOSSES[config["loss"]](z[: len(x)], z[len(x):], **loss_kwargs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def _scenario_keys(config: dict) -> list[str]:
    import inspect

    return [k for k in inspect.signature(SCENARIOS[config["scenario"]]).parameters if k in config and k != "device"]


def _same(a: dict, b: dict, rel: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key not in TIMES:
            x, y = a[key], b[key]
            assert (isinstance(x, float) and math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=rel,
                                                                                                     abs=rel), key


def _near(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-4) -> None:
    """Equal up to ``rel`` of the tensor's scale (elementwise rtol would fail entries that cross zero)."""
    torch.testing.assert_close(a, b, rtol=0, atol=rel * float(b.detach().abs().max()))


# ---------------------------------------------------------------------------------------------
# the engine against the plain loop


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_config_of_a_pack_ends_where_the_plain_loop_ends(case):
    # the leaky-ReLU sphere encoder at lr 2e-3 amplifies round-off (addmm vs baddbmm) past 1e-4 within 30
    # steps, alone as in a pack (chaos, not a difference of recipe): it is compared at one lr
    configs = _configs(case, **({"lr": 1e-3} if case.startswith("sphere") else {}))
    pack = Pack(configs)
    pack.advance(30)
    for k, config in enumerate(configs):
        for p, q in zip(_reference(config, 30).parameters(), pack.encoder(k).parameters(), strict=True):
            _near(q, p)


def test_a_config_reports_the_same_numbers_alone_and_beside_mates_of_its_shape():
    # mates differ in seed, lr, weight decay, temperature and aug_noise (three optimiser groups, three
    # streams): over a whole run of 300 steps the config's every report is bitwise its lone run's
    base = {**SHORT, **CASES["hypercube-info_nce-mlp2"], "width": 16, "embedding_dim": 8, "steps": 300,
            "eval_every": 100}
    mates = [{"seed": 0}, {"seed": 1, "lr": 3e-3}, {"seed": 2, "weight_decay": 0.1, "temperature": 0.3},
             {"seed": 0, "aug_noise": 0.4}]
    configs = [effective({**base, **m}) for m in mates]
    pack = Pack(configs)
    packed = _run(pack)
    for k, config in enumerate(configs):
        lone = Pack([config])
        alone = _run(lone)
        for p, q in zip(pack.encoder(k).parameters(), lone.encoder(0).parameters(), strict=True):
            assert torch.equal(p, q)  # training: bitwise
        for a, b in zip(packed, alone, strict=True):
            _same(a[k], b[0], rel=1e-9)  # evaluation: batched LAPACK calls may differ in the last bit
    reordered = _run(Pack(configs[::-1]))  # and wherever it sits in the pack
    for a, b in zip(packed, reordered, strict=True):
        _same(a[0], b[-1], rel=1e-9)


def test_padding_by_wider_mates_changes_a_config_only_by_round_off_over_a_study_length():
    base = {**SHORT, **CASES["hypercube-info_nce-mlp2"], "n_invariant": 3, "steps": 600, "eval_every": 300,
            "batch_size": 128, "n_eval": 1024}
    configs = [effective({**base, **v}) for v in ({"width": 16, "embedding_dim": 4}, {"width": 64, "embedding_dim": 16},
                                                    {"width": 32, "embedding_dim": 8, "seed": 1})]
    packed = _run(Pack(configs))[-1][0]
    alone = _run(Pack(configs[:1]))[-1][0]
    for key in ("randlabel_acc", "cluster_acc", "probe_acc", "ari", "nmi"):
        assert packed[key] == pytest.approx(alone[key], abs=0.02), key
    assert packed["train_loss"] == pytest.approx(alone["train_loss"], rel=1e-3)


def test_padded_entries_stay_exactly_zero_through_training():
    pack = Pack(_configs("hypercube-info_nce-mlp2"))
    pack.advance(30)
    (w0, w1, w2), (b0, b1, b2) = pack.weights, pack.biases  # width_max 16, embedding_dim max 8
    assert w0.shape == (5, 16, 10) and w1.shape == (5, 16, 16) and w2.shape == (5, 8, 16)
    for k, v in enumerate(VARIANTS):
        width, e = v["width"], v["embedding_dim"]
        padded = [w0[k, width:], b0[k, :, width:], w1[k, width:], w1[k, :, width:], b1[k, :, width:],
                  w2[k, e:], w2[k, :, width:], b2[k, :, e:]]
        assert all(torch.count_nonzero(t) == 0 for t in padded), k
        assert torch.count_nonzero(w2[k, :e, :width]) == e * width  # the real part did train


# ---------------------------------------------------------------------------------------------
# what a run reports, resume, divergence


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_scenario_trains_and_reports_its_metrics(scenario):
    history = []
    m = train({"scenario": scenario, **{k: v for k, v in SHORT.items() if k != "dim"}, "steps": 40,
               "eval_every": 20, "embedding_dim": 4, "encoder": "mlp", "width": 16, "depth": 1}, history=history)
    assert [h["step"] for h in history] == [20, 40]
    for key in ("effective_rank", "train_loss", "eval_loss", "train_s", "eval_s", "pack_train_s"):
        assert isinstance(m[key], float) and math.isfinite(m[key]), key
    assert (m["diverged"], m["pack_size"]) == (0, 1) and m["train_s"] > 0 and m["eval_s"] > 0
    assert isinstance(m["n_params"], int) and isinstance(m["step"], int)


def test_a_pack_reports_each_configs_share_of_its_time():
    reports = _run(Pack(_configs("gmm-info_nce-linear")))[-1]
    assert {r["pack_size"] for r in reports} == {5}
    for r in reports:
        assert r["train_s"] == pytest.approx(r["pack_train_s"] / 5)
        assert r["eval_s"] == pytest.approx(r["pack_eval_s"] / 5)


def test_short_training_recovers_the_hypercube_clusters_far_above_an_untrained_encoder():
    config = effective({"scenario": "hypercube", "dim": 12, "n_invariant": 2, "encoder": "mlp", "width": 32,
                        "depth": 1, "embedding_dim": 8, "batch_size": 128, "lr": 3e-3, "n_eval": 1024,
                        "steps": 300, "eval_every": 300})
    untrained = Pack([config]).evaluate()[0]
    trained = train(config)
    assert trained["ari"] > 0.8 > untrained["ari"] + 0.3
    assert trained["cluster_acc"] > 0.95
    assert trained["randlabel_acc"] > untrained["randlabel_acc"] + 0.15


def test_a_pack_restored_from_its_state_continues_exactly():
    configs = _configs("gmm-spectral-mlp2", VARIANTS[:3])
    whole = Pack(configs)
    for _ in range(3):
        whole.advance(12)
    first = Pack(configs)
    first.advance(12)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    first.advance(7)  # the saved state is a copy: training on does not change it
    resumed = Pack(configs)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    assert resumed.step == 12
    resumed.advance(12)
    resumed.advance(12)
    assert resumed.done
    for p, q in zip((*resumed.weights, *resumed.biases), (*whole.weights, *whole.biases), strict=True):
        assert torch.equal(p, q)
    for a, b in zip(resumed.evaluate(), whole.evaluate(), strict=True):
        _same(a, b, rel=1e-12)  # equal parameters; LAPACK's lstsq may differ in the last bit
    with pytest.raises(ValueError, match="another pack"):
        Pack(configs[:2]).load_state_dict(whole.state_dict())


def _torch_adamw(pack: Pack) -> tuple[torch.optim.AdamW, list[list[torch.Tensor]]]:
    """torch.optim.AdamW over copies of the pack's group parameters (the same groups, lr and weight decay)."""
    copies = [[p.detach().clone().requires_grad_() for p in g["params"]] for g in pack.groups]
    groups = [{"params": c, "lr": g["lr"], "weight_decay": g["weight_decay"]}
              for c, g in zip(copies, pack.groups, strict=True)]
    return torch.optim.AdamW(groups), copies


def test_the_optimiser_step_is_torch_adamws_step_bit_for_bit():
    # three groups (two lrs, a weight decay); random gradients, step by step: parameters and moments equal
    mates = [{"seed": 0, "lr": 1e-3}, {"seed": 1, "lr": 1e-3}, {"seed": 2, "lr": 3e-3},
             {"seed": 3, "lr": 3e-3, "weight_decay": 0.1}]
    configs = _configs("hypercube-info_nce-mlp2", mates)
    pack = Pack(configs)
    assert [g["params"][0].shape[0] for g in pack.groups] == [2, 1, 1]  # configs per group
    reference, copies = _torch_adamw(pack)
    generator = torch.Generator().manual_seed(0)
    for _ in range(25):
        for p in (*pack.weights, *pack.biases):
            p.grad.copy_(torch.randn(p.shape, generator=generator))
        for g, c in zip(pack.groups, copies, strict=True):
            for view, q in zip(g["params"], c, strict=True):
                q.grad = view.grad.clone()
        pack._optimizer_step()
        reference.step()
    for g, c in zip(pack.groups, copies, strict=True):
        for j, (view, q) in enumerate(zip(g["params"], c, strict=True)):
            state = reference.state[q]
            assert torch.equal(view, q) and torch.equal(g["exp_avg"][j], state["exp_avg"])
            assert torch.equal(g["exp_avg_sq"][j], state["exp_avg_sq"]) and torch.equal(g["step"][j], state["step"])


def test_a_checkpoint_holding_torch_adamws_state_resumes():
    # checkpoints of earlier versions hold torch.optim.AdamW's state_dict: a pack loads its moments from it
    configs = _configs("gmm-spectral-mlp2", VARIANTS[:3])
    pack = Pack(configs)
    pack.advance(5)
    reference, copies = _torch_adamw(pack)
    for g, c in zip(pack.groups, copies, strict=True):
        for view, q in zip(g["params"], c, strict=True):
            q.grad = view.grad.clone()
    reference.step()
    state = pack.state_dict()
    state["optimizer"] = reference.state_dict()
    resumed = Pack(configs)
    resumed.load_state_dict(state)
    flat = [q for c in copies for q in c]
    held = [(g["exp_avg"][j], g["exp_avg_sq"][j], g["step"][j]) for g in resumed.groups for j in range(len(g["step"]))]
    assert len(held) == len(flat)
    for (m, v, t), q in zip(held, flat, strict=True):
        assert torch.equal(m, reference.state[q]["exp_avg"]) and torch.equal(v, reference.state[q]["exp_avg_sq"])
        assert float(t) == float(reference.state[q]["step"]) == 1.0  # the one step torch's optimiser took


def test_a_diverging_config_stops_where_it_stops_alone_and_leaves_its_neighbours_alone():
    base = {**SHORT, **CASES["hypercube-spectral-mlp1"], "steps": 50, "eval_every": 25}
    # lr 1e4 diverges after one step, lr 30 after a few; the second shares its data stream with it
    configs = [effective({**base, **v}) for v in (VARIANTS[0], {**VARIANTS[1], "lr": 1e4}, VARIANTS[3],
                                                  {**VARIANTS[1], "lr": 30.0})]
    pack = Pack(configs)
    history = _run(pack)
    assert pack.step == 50 and pack.finished == [True] * 4
    for k in (1, 3):
        alone = train(configs[k])
        assert alone["diverged"] == 1 and 0 < alone["step"] < 25
        assert history[0][k]["step"] == alone["step"] and history[0][k]["diverged"] == 1
        assert math.isnan(history[0][k]["train_loss"]) and math.isfinite(history[0][k]["effective_rank"])
        _same(history[0][k], alone, rel=1e-9)  # batched LAPACK calls may differ in the last bit
        _same(history[1][k], alone, rel=1e-9)  # frozen from then on
    for k, rel in ((0, 1e-9), (2, 1e-5)):  # config 2 is padded (width 10 of 16): round-off only
        assert history[-1][k]["step"] == 50 and history[-1][k]["diverged"] == 0
        _same(history[-1][k], train(configs[k]), rel=rel)
    calm = Pack([configs[0], configs[2]])  # the neighbours' trajectories are those of a pack without them
    calm.advance(50)
    for p, q in zip((*pack.weights, *pack.biases), (*calm.weights, *calm.biases), strict=True):
        assert torch.equal(p[[0, 2]], q)


def test_the_same_seed_gives_the_same_metrics_and_another_seed_does_not():
    config = _configs("hypercube-info_nce-mlp2")[0]
    _same(train(config), train(config))
    assert train({**config, "seed": 1})["train_loss"] != train(config)["train_loss"]


def test_the_device_follows_the_machine():
    pack = Pack(_configs("gmm-info_nce-linear")[:1])
    assert pack.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pack.streams[0]["heldout"]["x"].device.type == pack.device.type


# ---------------------------------------------------------------------------------------------
# which configs share a pack, and how many


def test_pack_key_groups_configs_that_differ_only_in_per_config_keys():
    base = _configs("hypercube-info_nce-mlp2")[0]
    assert PER_CONFIG_KEYS == {"seed", "lr", "weight_decay", "temperature", "width", "embedding_dim", "aug_noise"}
    same = [{**base, **v} for v in VARIANTS] + [{**base, "weight_decay": 0.5, "aug_noise": 0.0}]
    assert len({pack_key(c) for c in same}) == 1
    for change in ({"depth": 1}, {"encoder": "linear"}, {"loss": "spectral"}, {"steps": 41}, {"batch_size": 32},
                   {"n_eval": 128}, {"eval_every": 10}, {"n_invariant": 3}, {"dim": 11}, {"device": "cpu"}):
        assert pack_key({**base, **change}) != pack_key(base), change


@pytest.mark.parametrize(("change", "named"), [({"depth": 1}, "'depth'"), ({"n_invariant": 3}, "'n_invariant'"),
                                               ({"steps": 41}, "'steps'"), ({"encoder": "linear"}, "'encoder'")])
def test_configs_that_cannot_share_a_pack_are_refused_naming_the_key(change, named):
    base = _configs("hypercube-info_nce-mlp2")[0]
    with pytest.raises(ValueError, match=f"cannot share a pack: .*{named} takes"):
        Pack([base, effective({**base, "seed": 3, **change})])
    with pytest.raises(ValueError, match="at least one config"):
        Pack([])


def test_a_pack_refuses_what_its_loss_refuses():
    base = _configs("hypercube-info_nce-mlp2")[0]
    with pytest.raises(ValueError, match="temperature"):
        Pack([base, {**base, "temperature": 0.0}])


def test_plan_packs_cuts_each_key_into_packs_of_similar_shape():
    base = _configs("hypercube-info_nce-mlp2")[0]
    cells = [{**base, "width": w, "embedding_dim": e, "seed": s} for s in (0, 1) for w in (128, 32) for e in (2, 8)]
    cells += [effective({**base, "encoder": "linear", "embedding_dim": e}) for e in (2, 4, 8)]  # indices 8, 9, 10
    packs = plan_packs(cells, 4)
    assert sorted(i for pack in packs for i in pack) == list(range(11))
    assert [sorted(p) for p in packs] == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 10]]  # widths 128 and 32 apart
    assert all(len({pack_key(cells[i]) for i in pack}) == 1 for pack in packs)
    singles = plan_packs(cells, 1)
    assert sorted(singles) == [[i] for i in range(11)]
    costs = [pack_flops([cells[i] for i in pack]) for pack in singles]
    assert costs == sorted(costs, reverse=True) and costs[0] > costs[-1]  # the longest trials start first
    assert singles[:2] == [[1], [5]]  # width 128 with embedding_dim 8, seeds 0 and 1 (ties by index)
    # no small remainder: 7 configs of one key in packs of at most 3 are 3 + 2 + 2, not 3 + 3 + 1
    assert sorted(len(p) for p in plan_packs(cells[:4] + cells[8:], 3)) == [2, 2, 3]
    # configs of one (lr, weight_decay) sit next to each other: one optimiser group each
    mixed = [{**base, "lr": lr, "seed": s} for s in range(3) for lr in (1e-3, 3e-3)]
    (pack,) = plan_packs(mixed, 6)
    assert [mixed[i]["lr"] for i in pack] == [1e-3] * 3 + [3e-3] * 3
    assert len(Pack([mixed[i] for i in pack]).groups) == 2
    with pytest.raises(ValueError, match="pack size"):
        plan_packs(cells, 0)


def test_plan_packs_keeps_widths_apart_unless_padding_them_costs_little():
    base = _configs("hypercube-info_nce-mlp2")[0]
    far = [{**base, "width": w, "seed": s} for w in (32, 128) for s in range(8)]
    assert sorted({far[i]["width"] for i in p} == {far[p[0]]["width"]} for p in plan_packs(far, 16)) == [True] * 2
    near = [{**base, "width": w, "seed": s} for w in (120, 128) for s in range(8)]  # padding adds < 25%
    assert [len(p) for p in plan_packs(near, 16)] == [16]
    # the old cut by count alone would have padded width 32 to 128 in a pack of 16
    assert pack_flops(far) > 1.5 * (pack_flops(far[:8]) + pack_flops(far[8:]))


def test_plan_packs_halves_packs_only_where_the_slots_then_end_sooner():
    base = {**_configs("hypercube-info_nce-mlp2")[0], "steps": 3000}
    # 16 configs of one shape: a step costs a + b K for a pack of K, so on s slots s packs of 16 / s end
    # first (2s packs of half the size pay the fixed cost a twice per slot)
    alike = [{**base, "width": 128, "seed": s} for s in range(16)]
    # at 30 steps a trial's fixed cost (start, evaluation, report) outweighs what a cut saves: none is made
    assert [len(p) for p in plan_packs([{**c, "steps": 30} for c in alike], 16, 4)] == [16]
    (whole,) = plan_packs(alike, 16)
    for slots in (1, 2, 4, 8):
        packs = plan_packs(alike, 16, slots)
        assert sorted(len(p) for p in packs) == [16 // slots] * slots
        assert sorted(i for p in packs for i in p) == list(range(16))
        for p in packs:  # a half keeps its order: a run of the whole pack
            j = whole.index(p[0])
            assert whole[j:j + len(p)] == p
        costs = [pack_cost([alike[i] for i in p]) for p in packs]
        assert costs == sorted(costs, reverse=True)
    # a pack costlier than the rest together and one cheap pack, on 2 slots: halving the costly one would
    # put two of its halves on one slot, so nothing is cut
    wide = [{**base, "width": 128, "embedding_dim": e, "seed": s} for s in range(4) for e in (2, 8)]
    cheap = [effective({**base, "encoder": "linear", "embedding_dim": e, "seed": s}) for s in range(4) for e in (2, 8)]
    assert plan_packs(wide + cheap, 8, 2) == plan_packs(wide + cheap, 8)
    assert pack_cost(wide) > pack_cost(cheap) and pack_cost(wide) > pack_flops(wide)


def test_auto_pack_size_follows_the_model_size_on_cpu():
    small = _configs("gmm-info_nce-linear")[0]
    large = effective({**SHORT, **CASES["hypercube-info_nce-mlp2"], "width": 512, "batch_size": 256})
    assert pack_memory_bytes(large) > 10 * pack_memory_bytes(small) > 0
    # the estimate covers at least the four copies of the parameters a pack really holds
    pack = Pack([small])
    assert pack_memory_bytes(small) >= 4 * 4 * sum(p.numel() for p in (*pack.weights, *pack.biases))
    assert auto_pack_size(small, "cpu") == 16
    assert auto_pack_size(large, "cpu") == 8
