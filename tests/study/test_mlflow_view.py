"""What a researcher sees in MLflow: the study's experiment opens on its runs, runs named by what varies,
capacity a param and a tag, metrics without ``step``; written by the real mirror into a real sqlite store."""

from __future__ import annotations

import socket

import pytest
from mlflow import MlflowClient

from study.cli import main
from study.records import cell_id
from study.spec import bundled_specs
from study.tracking import EXPERIMENT_TAGS, MlflowMirror, run_name, spec_head

KEYS = ["encoder", "width", "depth", "embedding_dim", "seed"]  # the runner's name keys of a capacity x dim grid
MLP = {"scenario": "hypercube", "encoder": "mlp", "width": 32, "depth": 2, "embedding_dim": 8, "seed": 0,
       "aug_noise": 0.1, "lr": 0.003}
LINEAR = {"scenario": "hypercube", "encoder": "linear", "embedding_dim": 2, "seed": 1, "aug_noise": 0.1, "lr": 0.003}
SPEC = """# Question: does it work,
#   and when?
# Run:      clphase run it
# Expect:   (Someone 2024) it works once embedding_dim
#           is 8.
name: view
"""


def _report(step: int, acc: float) -> dict:
    return {"trial_id": "x", "step": step, "randlabel_acc": acc, "train_loss": 3.5, "diverged": 0, "n_params": 1864,
            "train_s": 0.25, "pack_train_s": 1.0, "pack_size": 4}


@pytest.fixture
def mirrored(tmp_path, tmp_store):
    spec = tmp_path / "view.yaml"
    spec.write_text(SPEC)
    mirror = MlflowMirror(tmp_store, "view", tmp_path / "runs" / "view", KEYS)
    parent = mirror.open(None, spec)
    for trial, config in (("t-000", MLP), ("t-001", LINEAR)):
        mirror.trial_started(trial, config)
        for step, acc in ((50, 0.5), (100, 0.9)):
            mirror.report(trial, config, {**_report(step, acc), "trial_id": trial})
        mirror.trial_ended(trial, config, "TERMINATED", None)
    mirror.close("FINISHED")
    return MlflowClient(tmp_store), parent, mirror


def test_the_experiment_is_tagged_as_model_training_and_the_parent_states_the_question(mirrored):
    client, parent, _ = mirrored
    experiment = client.get_experiment_by_name("view")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development" == EXPERIMENT_TAGS[
        "mlflow.experimentKind"]
    description = client.get_run(parent).data.tags["mlflow.note.content"]
    assert "**Question.** Does it work, and when?" in description
    assert "**Expectation.** (Someone 2024) it works once embedding_dim is 8." in description


def test_children_are_named_by_what_varies_and_carry_capacity(mirrored):
    client, parent, _ = mirrored
    children = {r.data.tags["trial_id"]: r for r in client.search_runs(
        [client.get_experiment_by_name("view").experiment_id], f"tags.mlflow.parentRunId = '{parent}'")}
    mlp, linear = children["t-000"], children["t-001"]
    assert (mlp.info.run_name, linear.info.run_name) == ("mlp-32x2 d=8 s0", "linear d=2 s1")
    assert mlp.data.params["capacity"] == mlp.data.tags["capacity"] == "mlp-32x2"
    assert linear.data.params["capacity"] == "linear" and "width" not in linear.data.params
    assert mlp.data.params["embedding_dim"] == "8" and mlp.data.params["aug_noise"] == "0.1"
    assert mlp.data.tags["cell"] == cell_id(MLP)
    assert "step" not in mlp.data.metrics and "trial_id" not in mlp.data.metrics
    assert mlp.data.metrics["n_params"] == 1864 and mlp.data.metrics["pack_train_s"] == 1.0
    assert [m.step for m in client.get_metric_history(mlp.info.run_id, "randlabel_acc")] == [50, 100]
    # the UI's filter: capacity and a number param, as MLflow compares params (strings)
    found = client.search_runs([mlp.info.experiment_id], "params.capacity = 'mlp-32x2' and params.embedding_dim = '8'")
    assert [r.info.run_id for r in found] == [mlp.info.run_id]


def test_a_resumed_mirror_knows_each_child_s_last_step_without_a_step_metric(mirrored, tmp_path, tmp_store):
    _, parent, first = mirrored
    again = MlflowMirror(tmp_store, "view", tmp_path / "runs" / "view", KEYS)
    again.open(parent, None)
    assert again.logged_step == {"t-000": 100, "t-001": 100}
    assert again.children == first.children and again.ended == {"t-000", "t-001"}


def test_an_experiment_made_before_the_tag_gets_it(tmp_path, tmp_store):
    client = MlflowClient(tmp_store)
    client.create_experiment("older")
    MlflowMirror(tmp_store, "older", tmp_path, KEYS).open(None, None)
    assert client.get_experiment_by_name("older").tags["mlflow.experimentKind"] == "custom_model_development"


def test_run_names_put_capacity_first_and_the_seed_last():
    keys = ["aug_noise", "encoder", "width", "depth", "embedding_dim", "lr", "seed"]
    assert run_name(MLP, keys) == "mlp-32x2 noise=0.1 d=8 lr=0.003 s0"
    assert run_name(MLP, ["embedding_dim"]) == "d=8"
    assert run_name(MLP, []) == ""


def test_every_bundled_spec_states_its_question_and_expectation():
    for name, path in bundled_specs().items():
        head = spec_head(path.read_text())
        assert head.get("question") and head.get("expect"), name
        assert "#" not in head["question"] and "\n" not in head["expect"], name


def test_ui_refuses_a_port_that_is_taken(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code = main(["ui", "--tracking-uri", "sqlite:///unused.db", "--port", str(taken.getsockname()[1])])
    err = capsys.readouterr().err
    assert code == 2 and "is in use" in err and "--port" in err
