import math

import pytest
import torch

from trainables.scenarios import SCENARIOS
from trainables.training import ContrastiveRun, train

SMALL = {"steps": 40, "eval_every": 20, "batch_size": 64, "n_eval": 256, "embedding_dim": 4,
         "encoder": "mlp", "width": 16, "depth": 1}
HYPERCUBE = {"scenario": "hypercube", "dim": 12, "n_invariant": 2, "encoder": "mlp", "width": 32, "depth": 1,
             "embedding_dim": 8, "batch_size": 128, "lr": 3e-3, "n_eval": 1024}
TIMES = ("train_s", "eval_s")


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if k not in TIMES:
            assert (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k], k


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_scenario_trains_and_reports_its_metrics(scenario):
    history = []
    m = train({"scenario": scenario, **SMALL}, history=history)
    assert [h["step"] for h in history] == [20, 40]
    for key in ("effective_rank", "train_loss", "eval_loss", "n_params", "train_s", "eval_s", "diverged"):
        assert key in m and math.isfinite(m[key]), key
    assert m["diverged"] == 0 and m["train_s"] > 0 and m["eval_s"] > 0


def test_the_same_seed_gives_the_same_metrics_and_another_seed_does_not():
    a, b = train({**HYPERCUBE, "steps": 60}), train({**HYPERCUBE, "steps": 60})
    _same(a, b)
    c = train({**HYPERCUBE, "steps": 60, "seed": 1})
    assert c["train_loss"] != a["train_loss"]


def test_a_run_restored_from_its_state_continues_exactly():
    whole = ContrastiveRun({**HYPERCUBE, "steps": 60})
    whole.advance(30)
    whole.advance(30)

    first = ContrastiveRun({**HYPERCUBE, "steps": 60})
    first.advance(30)
    state = first.state_dict()
    resumed = ContrastiveRun({**HYPERCUBE, "steps": 60})
    resumed.load_state_dict(state)
    resumed.advance(30)
    assert resumed.step == 60
    for p, q in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p, q)
    _same(whole.evaluate(), resumed.evaluate())


def test_a_diverging_run_ends_cleanly_with_diverged_set():
    m = train({**HYPERCUBE, "loss": "spectral", "lr": 1e4, "steps": 50, "eval_every": 25})
    assert m["diverged"] == 1
    assert m["step"] < 50
    assert math.isnan(m["train_loss"])


def test_short_training_recovers_the_hypercube_clusters_far_above_an_untrained_encoder():
    untrained = ContrastiveRun({**HYPERCUBE, "steps": 300}).evaluate()
    trained = train({**HYPERCUBE, "steps": 300, "eval_every": 300})
    assert trained["ari"] > 0.8 > untrained["ari"] + 0.3
    assert trained["cluster_acc"] > 0.95
    assert trained["randlabel_acc"] > untrained["randlabel_acc"] + 0.15


def test_plain_device_choice_follows_the_machine():
    run = ContrastiveRun({**SMALL, "scenario": "gmm"})
    assert run.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert run.heldout["x"].device.type == run.device.type
