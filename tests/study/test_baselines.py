"""A study's baselines end to end (real local Ray, real sqlite MLflow, real Parquet): measured once at the end
of the run, one row per baseline and setting, logged on the parent run, not redone on --resume; and the
spec-time refusal of a threshold above every oracle."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
from mlflow import MlflowClient

from analysis.baselines import BASELINES_FILE, load_baselines
from study.baselines import SPEC_CHECK_TOLERANCE, check_threshold
from study.runner import run_study
from study.spec import SpecError, parse_spec
from tests.study.conftest import TINY, write_spec
from trainables.baselines import measure
from trainables.config import effective


@pytest.mark.usefixtures("ray_session")
def test_a_study_measures_its_baselines_once_per_setting(tmp_path, tmp_store, capsys) -> None:
    spec = write_spec(tmp_path, name="with_baselines", grid={"aug_noise": [0.0, 0.4], "embedding_dim": [2, 4]},
                      seeds=[0, 1], pack_size=8)
    result = run_study(spec, out=tmp_path / "runs", tracking_uri=tmp_store)
    assert result.n_finished == 8
    path = result.study_dir / BASELINES_FILE
    frame = pd.read_parquet(path)
    # 3 baselines x 2 aug_noise x 2 seeds; embedding_dim is an encoder axis and does not count
    assert len(frame) == 12 and set(frame["baseline"]) == {"invariant_coords", "cluster_posterior", "input"}
    assert sorted(frame.groupby(["aug_noise", "seed"]).size()) == [3, 3, 3, 3]
    assert "embedding_dim" not in frame.columns and set(frame["study"]) == {"with_baselines"}

    # the same numbers as measured directly, and each trial's setting is in the file
    trials = pd.read_parquet(result.study_dir / "trials.parquet")
    config = effective({**TINY, "aug_noise": 0.4, "seed": 1})
    direct = {r["baseline"]: r["randlabel_acc"] for r in measure([config])}
    mine = frame[(frame["aug_noise"] == 0.4) & (frame["seed"] == 1)].set_index("baseline")["randlabel_acc"]
    assert mine.to_dict() == pytest.approx(direct, abs=1e-9)
    baselines = load_baselines(result.study_dir)
    assert not baselines.values(trials, "randlabel_acc").isna().any().any()

    run = MlflowClient(tmp_store).get_run(result.parent_run_id)
    expected = baselines.parent_metrics()
    assert expected["baseline/input/randlabel_acc/aug_noise 0.4"] == pytest.approx(
        frame[(frame["baseline"] == "input") & (frame["aug_noise"] == 0.4)]["randlabel_acc"].mean(), abs=1e-6)
    for key, value in expected.items():
        assert run.data.metrics[key] == pytest.approx(value), key
    assert run.info.status == "FINISHED"

    before = path.stat().st_mtime_ns
    capsys.readouterr()
    run_study(spec, out=tmp_path / "runs", tracking_uri=tmp_store, resume=True)
    assert path.stat().st_mtime_ns == before  # nothing new to measure: the file is not rewritten
    assert "baselines:" not in capsys.readouterr().out


def test_a_missing_setting_is_added_without_redoing_the_others(tmp_path) -> None:
    from study.baselines import compute_baselines

    configs = [effective({**TINY, "aug_noise": a}) for a in (0.0, 0.4)]
    frame, new = compute_baselines(configs[:1], tmp_path, "grow")
    assert (len(frame), new) == (3, 3)
    first = pd.read_parquet(tmp_path / BASELINES_FILE)
    frame, new = compute_baselines(configs, tmp_path, "grow")
    assert (len(frame), new) == (6, 3)
    again = pd.read_parquet(tmp_path / BASELINES_FILE)
    pd.testing.assert_frame_equal(again.iloc[:3].reset_index(drop=True), first)
    assert compute_baselines(configs, tmp_path, "grow")[1] == 0


SPEC = {"name": "reach", "trainable": {**TINY, "aug_noise": 0.8}, "grid": {"embedding_dim": [2, 4]},
        "analysis": {"x": "capacity", "y": "embedding_dim", "metric": "randlabel_acc", "threshold": 0.99}}


def test_a_threshold_above_every_oracle_is_refused_naming_both() -> None:
    # aug_noise 0.8 flips each of the 2 invariant bits with probability Phi(-1.25) = 0.11: the Bayes
    # posterior of the clusters, the best any encoder can give, reaches randlabel_acc of about 0.87
    with pytest.raises(SpecError, match=r"analysis.threshold 0.99 lies above every oracle of randlabel_acc: "
                                        r"the best, cluster_posterior, measures 0\.[78]\d\d"):
        parse_spec(copy.deepcopy(SPEC), "reach.yaml")


def test_a_threshold_an_oracle_reaches_passes() -> None:
    ok = copy.deepcopy(SPEC)
    ok["analysis"]["threshold"] = 0.8
    parse_spec(ok, "reach.yaml")
    sweep = copy.deepcopy(SPEC)  # one setting the oracle reaches (aug_noise 0) is enough
    sweep["grid"]["aug_noise"] = [0.0, 0.8]
    parse_spec(sweep, "reach.yaml")
    other = copy.deepcopy(SPEC)  # effective_rank: no oracle bounds it, no check
    other["analysis"].update(metric="effective_rank", threshold=50.0)
    parse_spec(other, "reach.yaml")


def test_the_check_uses_every_oracle_of_the_scenario() -> None:
    # gmm: probe_acc of the Fisher projection is the Bayes accuracy of LDA (about 0.95 at separation 4)
    spec = {"name": "gmm_reach", "trainable": {"scenario": "gmm", "encoder": "linear", "steps": 40, "eval_every": 20,
                                               "batch_size": 64},
            "grid": {"embedding_dim": [2, 3]},
            "analysis": {"x": "capacity", "y": "embedding_dim", "metric": "probe_acc", "threshold": 0.995}}
    with pytest.raises(SpecError, match="fisher_projection"):
        parse_spec(spec, "gmm_reach.yaml")
    spec["analysis"]["threshold"] = 0.9
    check_threshold(parse_spec(spec, "gmm_reach.yaml"))
    assert 0 < SPEC_CHECK_TOLERANCE < 0.05
