"""The Tune trainable under a real local Ray: every scenario runs, a pack reports each of its configs, and
a failed trial resumes from its checkpoint."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import cloudpickle
import pytest
from ray import tune

from trainables.config import effective
from trainables.contrastive import contrastive, train
from trainables.scenarios import SCENARIOS

pytestmark = pytest.mark.usefixtures("ray_session")
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import test modules

SMALL = {"steps": 40, "eval_every": 20, "batch_size": 64, "n_eval": 256, "embedding_dim": 4, "encoder": "mlp",
         "width": 16, "depth": 1}


def _tune(trainable, param_space, tmp_path, max_failures=0):
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=param_space,
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="t", verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=max_failures)),
    )
    return tuner.fit()


def test_one_trial_of_every_scenario_runs_through_tune(tmp_path):
    # packs of one, as the driver hands a searcher's suggestions over
    packs = [[effective({**SMALL, "scenario": name})] for name in sorted(SCENARIOS)]
    results = _tune(contrastive, {"pack": tune.grid_search(packs)}, tmp_path)
    assert len(results) == len(SCENARIOS) and not results.errors
    for result in results:
        (metrics,) = result.metrics["pack"]
        assert metrics["step"] == 40 and metrics["diverged"] == 0 and metrics["pack_size"] == 1
        assert math.isfinite(metrics["effective_rank"])
        assert result.metrics["randlabel_acc"] == metrics.get("randlabel_acc", float("nan")) or \
            math.isnan(result.metrics["randlabel_acc"])
        assert result.checkpoint is not None
        assert list(result.metrics_dataframe["step"]) == [20, 40]


def test_a_pack_trial_reports_each_config_and_the_best_objective(tmp_path):
    configs = [effective({**SMALL, "scenario": "hypercube", "dim": 8, "n_invariant": 2, "embedding_dim": e})
               for e in (2, 8)]
    results = _tune(contrastive, {"pack": configs, "objective": "cluster_acc", "mode": "min"}, tmp_path)
    (result,) = results
    reports = result.metrics["pack"]
    assert [r["step"] for r in reports] == [40, 40] and {r["pack_size"] for r in reports} == {2}
    assert result.metrics["cluster_acc"] == min(r["cluster_acc"] for r in reports)
    for report, config in zip(reports, configs, strict=True):
        alone = train(config)
        assert report["cluster_acc"] == pytest.approx(alone["cluster_acc"], abs=1e-9)


def flaky(config):
    """The real trainable, with one fault injected right after its first checkpoint."""
    marker = Path(config["marker"])
    real_report = tune.report

    def report(metrics, checkpoint=None):
        real_report(metrics, checkpoint=checkpoint)
        if not marker.exists():
            marker.touch()
            raise RuntimeError("injected fault after the first checkpoint")

    tune.report = report
    try:
        contrastive({k: v for k, v in config.items() if k != "marker"})
    finally:
        tune.report = real_report


def test_a_failed_trial_resumes_from_its_checkpoint_and_ends_as_if_never_interrupted(tmp_path):
    config = {**SMALL, "scenario": "hypercube", "dim": 8, "n_invariant": 2, "steps": 60}
    results = _tune(flaky, {"pack": [effective(config)], "marker": str(tmp_path / "failed_once")}, tmp_path,
                    max_failures=1)
    assert (tmp_path / "failed_once").exists() and not results.errors
    (resumed,) = results[0].metrics["pack"]
    plain = train(config)
    for key, value in plain.items():
        if key not in ("train_s", "eval_s", "pack_train_s", "pack_eval_s"):
            assert resumed[key] == pytest.approx(value, rel=1e-6, nan_ok=True), key


def test_a_diverging_trial_ends_cleanly_through_tune(tmp_path):
    config = effective({**SMALL, "scenario": "hypercube", "loss": "spectral", "lr": 1e4})
    results = _tune(contrastive, {"pack": [config]}, tmp_path)
    assert not results.errors
    assert results[0].metrics["pack"][0]["diverged"] == 1
