"""Loading: Parquet and MLflow give the same tidy table."""

from __future__ import annotations

import pandas as pd
import pandas.testing as pdt
import pytest

from analysis.load import (
    add_capacity,
    capacity_of,
    load_analysis_defaults,
    load_history,
    load_mlflow_trials,
    load_trials,
)


def test_load_trials_from_the_study_dir_or_its_parquet(study_dir, planted_critical):
    from_dir = load_trials(study_dir)
    pdt.assert_frame_equal(from_dir, load_trials(study_dir / "trials.parquet"))
    assert list(from_dir.columns[:3]) == ["study", "trial_id", "status"]
    assert list(from_dir["capacity"].cat.categories) == list(planted_critical)  # ordered by n_params
    assert from_dir["capacity"].cat.ordered
    assert len(load_history(study_dir)) == 2 * len(from_dir)


def test_missing_sources_say_what_to_give(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_trials(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no trials.parquet"):
        load_trials(tmp_path)


def test_capacity_labels():
    assert capacity_of({"encoder": "linear", "width": 64, "depth": 2}) == "linear"
    assert capacity_of({"encoder": "mlp", "width": 64.0, "depth": 2.0}) == "mlp-64x2"
    assert capacity_of({"encoder": "conv1d", "width": float("nan"), "depth": float("nan")}) == "conv1d"
    table = add_capacity(pd.DataFrame({"encoder": ["mlp", "linear", "mlp"], "width": [256, None, 16],
                                       "depth": [1, None, 1]}))
    assert list(table["capacity"].cat.categories) == ["linear", "mlp-16x1", "mlp-256x1"]


def test_analysis_defaults_come_from_the_spec(study_dir, tmp_path):
    assert load_analysis_defaults(study_dir) == {"x": "capacity", "y": "embedding_dim", "metric": "randlabel_acc",
                                                 "threshold": 0.9}
    assert load_analysis_defaults(tmp_path) == {}
    (tmp_path / "spec.yaml").write_text("name: s\nanalysis: {x: capacity, colour: red}\n")
    with pytest.raises(ValueError, match=r"unknown analysis key\(s\) \['colour'\]; valid: x, y, metric"):
        load_analysis_defaults(tmp_path)


def test_mlflow_gives_the_same_table_as_parquet(tmp_path, planted, write_study, tracking_uri, log_study):
    # linear (no width/depth params) and one MLP, one seed: a small mirror keeps the test fast
    keep = planted["encoder"].eq("linear") | (planted["width"].eq(64) & planted["depth"].eq(2))
    trials = planted[keep].query("seed == 0").reset_index(drop=True)
    trials.loc[3, ["status", "randlabel_acc", "error"]] = ["ERROR", float("nan"), "RuntimeError: boom"]
    study = write_study(tmp_path / "runs" / "mirror", trials.assign(study="mirror"))
    log_study(tracking_uri, trials.assign(study="mirror"), "mirror", study, tmp_path / "artifacts")
    from_parquet = load_trials(study)
    from_mlflow = load_mlflow_trials("mirror", tracking_uri=tracking_uri)
    columns = list(from_parquet.columns)
    assert set(columns) == set(from_mlflow.columns)
    from_mlflow = from_mlflow[columns]
    for table in (from_parquet, from_mlflow):
        table["error"] = table["error"].fillna("")
    pdt.assert_frame_equal(from_mlflow, from_parquet, check_dtype=False)
    assert from_mlflow["seed"].dtype.kind == "i" and from_mlflow["temperature"].dtype.kind == "f"


def test_mlflow_keeps_the_newest_run_of_a_trial_and_names_missing_experiments(
    tmp_path, planted, tracking_uri, log_study
):
    first = planted.head(6).assign(study="twice")
    log_study(tracking_uri, first, "twice", tmp_path, tmp_path / "artifacts")
    parent = log_study(tracking_uri, first.assign(randlabel_acc=0.123), "twice", tmp_path, tmp_path / "artifacts")
    table = load_mlflow_trials("twice", tracking_uri=tracking_uri)
    assert len(table) == 6 and (table["randlabel_acc"] == 0.123).all()
    assert len(load_mlflow_trials("twice", tracking_uri=tracking_uri, parent_run_id=parent)) == 6
    with pytest.raises(ValueError, match="no MLflow experiment 'absent'.*experiments: .*twice"):
        load_mlflow_trials("absent", tracking_uri=tracking_uri)


def test_mlflow_does_not_mix_studies_of_one_name_recorded_in_other_folders(tmp_path, planted, tracking_uri, log_study):
    # a full run and a smoke run of one spec into other --out folders share the experiment
    full = planted.head(6).assign(study="shared", steps=600)
    smoke = planted.head(4).assign(study="shared", steps=100, trial_id=[f"smoke-{i}" for i in range(4)])
    log_study(tracking_uri, full, "shared", tmp_path / "runs" / "shared", tmp_path / "artifacts")
    log_study(tracking_uri, smoke, "shared", tmp_path / "smoke" / "shared", tmp_path / "artifacts")
    with pytest.raises(ValueError, match=r"holds 2 studies of that name.*pass study_dir="):
        load_mlflow_trials("shared", tracking_uri=tracking_uri)
    one = load_mlflow_trials("shared", tracking_uri=tracking_uri, study_dir=tmp_path / "smoke" / "shared")
    assert sorted(one["trial_id"]) == [f"smoke-{i}" for i in range(4)]
    assert len(load_mlflow_trials("shared", tracking_uri=tracking_uri, study_dir=tmp_path / "runs" / "shared")) == 6
    with pytest.raises(ValueError, match="holds no study recorded in"):
        load_mlflow_trials("shared", tracking_uri=tracking_uri, study_dir=tmp_path / "elsewhere")
