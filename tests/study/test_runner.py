"""End to end with a real local Ray and a real sqlite MLflow store."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from study.records import TUNE_FIELDS
from study.runner import StudyError, run_study
from study.spec import load_spec
from study.suggest import optuna_packs
from tests.study.conftest import TINY, free_port, write_spec
from trainables.config import TRAINING, effective

pytestmark = pytest.mark.usefixtures("ray_session")


def _mlflow(store: str, study: str):
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name(study)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("clphase.role") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def test_a_grid_study_lands_once_per_trial_in_parquet_and_mlflow(tmp_path, tmp_store):
    spec = write_spec(tmp_path, grid={"capacity": [{"encoder": "linear"}, {"encoder": "mlp", "width": 8, "depth": 1}],
                                      "embedding_dim": [2, 4]})
    result = run_study(spec, out=tmp_path / "runs", tracking_uri=tmp_store)
    assert (result.n_trials, result.n_finished, result.n_failed, result.interrupted) == (4, 4, 0, False)

    trials = pd.read_parquet(result.study_dir / "trials.parquet")
    history = pd.read_parquet(result.study_dir / "history.parquet")
    assert len(trials) == 4 and trials["trial_id"].is_unique and set(trials["status"]) == {"TERMINATED"}
    for column in ["study", "trial_id", "status", "scenario", "encoder", "embedding_dim", "seed", "randlabel_acc",
                   "n_params", "wall_s", "train_s", "eval_s", "diverged", "node_ip"]:
        assert column in trials, column
    assert not any(c.startswith("config/") for c in trials.columns)
    assert not (set(trials.columns) & (TUNE_FIELDS - {"node_ip", "node_id", "trial_id"}))
    assert trials["node_id"].notna().all() and trials["node_id"].nunique() == 1  # one node here
    assert sorted(trials.groupby(["encoder", "embedding_dim"]).size()) == [1, 1, 1, 1]
    linear_params = trials.loc[trials.encoder == "linear", "n_params"].max()
    assert (trials.loc[trials.encoder == "mlp", "n_params"] > linear_params).all()
    assert len(history) == 8 and sorted(history["step"].unique()) == [20, 40]

    client, parents, children = _mlflow(tmp_store, "tiny")
    assert len(parents) == 1 and parents[0].info.run_id == result.parent_run_id
    assert parents[0].info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(result.parent_run_id)] == ["tiny.yaml"]
    assert (tmp_path / "mlartifacts").is_dir() and not (tmp_path / "runs" / "mlruns").exists()  # beside the db
    assert len(children) == 4
    assert {c.data.tags["trial_id"] for c in children} == set(trials["trial_id"])
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == result.parent_run_id
        assert child.info.status == "FINISHED"
        assert child.data.params["embedding_dim"] in {"2", "4"} and child.data.params["scenario"] == "hypercube"
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "randlabel_acc")]
        assert steps == [20, 40]
        row = trials[trials.trial_id == child.data.tags["trial_id"]].iloc[0]
        assert child.data.metrics["randlabel_acc"] == pytest.approx(row["randlabel_acc"])

    with pytest.raises(StudyError, match="--resume"):  # a second run never overwrites the first
        run_study(spec, out=tmp_path / "runs", tracking_uri=tmp_store)
    assert len(pd.read_parquet(result.study_dir / "trials.parquet")) == 4


def test_a_trial_that_raises_is_recorded_failed_and_the_study_goes_on(tmp_path, tmp_store, capsys):
    # the study's own trainable, failing for one cell inside its trial: a real runtime failure in a Ray worker
    from trainables.contrastive import contrastive

    def faulty(config):
        if config["pack"][0]["embedding_dim"] == 4:
            raise RuntimeError("this cell's trial fails on purpose")
        contrastive(config)

    spec = write_spec(tmp_path, name="faulty", grid={"embedding_dim": [2, 4]}, max_failures=0)
    result = run_study(spec, out=tmp_path / "runs", tracking_uri=tmp_store, trainable=faulty)
    assert (result.n_finished, result.n_failed) == (1, 1)
    from study.runner import describe

    assert f"{result.study_dir}/trials.parquet, history.parquet" in describe(result, "randlabel_acc")
    progress = [line for line in capsys.readouterr().out.splitlines() if "configs done" in line]
    # the progress line's best is the best finished config's final value, as the study's end says
    assert progress[-1].split("best randlabel_acc ")[1].split(" ")[0] == f"{result.best['randlabel_acc']:.4g}"
    none = run_study(write_spec(tmp_path, name="nothing", grid={"embedding_dim": [4]}, max_failures=0),
                     out=tmp_path / "runs", tracking_uri=tmp_store, trainable=faulty)
    assert (none.n_finished, none.n_failed) == (0, 1) and not (none.study_dir / "history.parquet").exists()
    assert f"{none.study_dir}/trials.parquet\n" in describe(none, "randlabel_acc")  # no table it did not write
    trials = pd.read_parquet(result.study_dir / "trials.parquet").set_index("embedding_dim")
    assert trials.loc[2, "status"] == "TERMINATED" and trials.loc[4, "status"] == "ERROR"
    assert "fails on purpose" in trials.loc[4, "error"]
    _, _, children = _mlflow(tmp_store, "faulty")
    status = {c.data.params["embedding_dim"]: c.info.status for c in children}
    assert status == {"2": "FINISHED", "4": "FAILED"}
    failed = next(c for c in children if c.info.status == "FAILED")
    assert failed.data.tags["error"]


def test_an_optuna_study_samples_within_its_distributions(tmp_path, tmp_store):
    spec = write_spec(tmp_path, name="tpe", grid={}, num_samples=3, max_concurrent=2,
                      searcher={"type": "optuna", "sampler": "tpe", "seed": 3},
                      search={"lr": {"loguniform": [1e-4, 1e-2]}, "embedding_dim": {"choice": [2, 8]}})
    result = run_study(spec, out=tmp_path / "runs", tracking_uri=tmp_store)
    trials = pd.read_parquet(result.study_dir / "trials.parquet")
    assert len(trials) == 3 and set(trials["status"]) == {"TERMINATED"}
    assert trials["lr"].between(1e-4, 1e-2).all() and set(trials["embedding_dim"]) <= {2, 8}
    assert trials["lr"].nunique() == 3


def test_optuna_suggestions_reach_tune_as_packs_of_one_resolved_in_the_driver(tmp_path):
    spec = load_spec(write_spec(tmp_path, name="tpe", grid={}, num_samples=3, max_concurrent=2,
                                searcher={"type": "optuna", "sampler": "random", "seed": 3},
                                search={"lr": {"loguniform": [1e-4, 1e-2]}, "embedding_dim": {"choice": [2, 8]}}))
    searcher = optuna_packs(spec)
    suggestions = [searcher.suggest("a"), searcher.suggest("b")]
    assert searcher.suggest("c") is None  # two in flight at most
    for suggestion in suggestions:
        assert set(suggestion) == {"pack", "objective", "mode"}
        assert (suggestion["objective"], suggestion["mode"]) == (spec.objective.metric, spec.objective.mode)
        (config,) = suggestion["pack"]
        assert config == effective(config) and set(TRAINING) <= set(config)  # every key, resolved
        assert {k: config[k] for k in TINY if k not in ("lr", "embedding_dim")} == \
            {k: v for k, v in effective(TINY).items() if k in TINY and k not in ("lr", "embedding_dim")}
        assert 1e-4 <= config["lr"] <= 1e-2 and config["embedding_dim"] in (2, 8)
    assert suggestions[0]["pack"][0]["lr"] != suggestions[1]["pack"][0]["lr"]


def test_asha_stops_a_clearly_worse_trial_early(tmp_path, tmp_store):
    # Sequential trials: the strong one sets the rung's cutoff, the weak one falls below it and stops.
    strong = {"encoder": "mlp", "width": 32, "depth": 1, "embedding_dim": 8}
    weak = {"encoder": "linear", "embedding_dim": 1}
    spec = write_spec(tmp_path, name="asha", grid={"capacity": [strong, weak]}, max_concurrent=1,
                      trainable={**TINY, "steps": 120, "eval_every": 20},
                      scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2})
    result = run_study(spec, out=tmp_path / "runs", tracking_uri=tmp_store)
    trials = pd.read_parquet(result.study_dir / "trials.parquet").set_index("encoder")
    assert set(trials["status"]) == {"TERMINATED"}
    assert trials.loc["mlp", "step"] == 120
    assert trials.loc["linear", "step"] < 120


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_a_gpu_request_without_a_gpu_is_refused_before_anything_starts(tmp_path, tmp_store):
    spec = write_spec(tmp_path, name="gpu", resources={"cpu": 1, "gpu": 0.25})
    with pytest.raises(StudyError, match="no GPU"):
        run_study(spec, out=tmp_path / "runs", tracking_uri=tmp_store)
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "mlflow.db").exists()


def test_an_unreachable_tracking_server_is_a_clear_error(tmp_path):
    spec = write_spec(tmp_path, name="nosrv")
    with pytest.raises(StudyError, match="cannot reach the MLflow tracking store"):
        run_study(spec, out=tmp_path / "runs", tracking_uri=f"http://127.0.0.1:{free_port()}")
    assert not (tmp_path / "runs" / "nosrv" / "trials.parquet").exists()


def test_address_auto_is_resolved_and_checked_before_ray_is_asked(tmp_path, monkeypatch, ray_session):
    import socket

    import ray._private.services as services

    from study.runner import ray_address

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    resolved = ray_address("auto")  # the session's Ray is running: auto finds it, as ray.init would
    host, port = resolved.rsplit(":", 1)
    socket.create_connection((host, int(port)), timeout=10).close()
    # Without any Ray on the machine (Ray's discovery of GCS processes finds none; the session's Ray is left
    # out by hand here), auto is refused at once instead of retried by ray.init
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: [])
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # where Ray records the last `ray start` of this machine
    with pytest.raises(StudyError, match="--address auto finds no running Ray"):
        ray_address("auto")
    dead = free_port()
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{dead}")  # a Ray that has died since
    with pytest.raises(StudyError, match=rf"no Ray answers at 127.0.0.1:{dead} \(--address\)"):
        ray_address("auto")
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    with pytest.raises(StudyError, match=r"\(RAY_ADDRESS\)"):
        ray_address(None)
