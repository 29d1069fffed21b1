"""Planted studies: trial tables with a known boundary, written as a study dir and logged to MLflow."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis.planted import make_phase_trials

Y_GRID = (2, 4, 8, 16, 32, 64, 128)
# capacity -> planted critical embedding_dim (inf: never crosses; 0.5: past it at the smallest y)
PLANTED = {"linear": math.inf, "mlp-16x1": 6.0, "mlp-64x1": 12.0, "mlp-64x2": 24.0, "mlp-256x2": 0.5}
CONFIG_KEYS = ["scenario", "dim", "n_invariant", "loss", "temperature", "aug_noise", "encoder", "width", "depth",
               "embedding_dim", "seed"]
METRIC_KEYS = ["randlabel_acc", "probe_acc", "train_loss", "diverged", "n_params", "wall_s", "train_s", "eval_s"]
SPEC_ANALYSIS = {"x": "capacity", "y": "embedding_dim", "metric": "randlabel_acc", "threshold": 0.9}


@pytest.fixture
def planted_critical() -> dict[str, float]:
    return dict(PLANTED)


@pytest.fixture
def y_grid() -> tuple[int, ...]:
    return Y_GRID


@pytest.fixture
def planted() -> pd.DataFrame:
    """Five capacities x seven embedding dims x five seeds, boundaries as in PLANTED."""
    return make_phase_trials(PLANTED, y_values=Y_GRID, n_seeds=5, noise=0.02, random_state=7)


def _write_study(study_dir: Path, trials: pd.DataFrame, analysis: dict | None = None) -> Path:
    """A study dir as ``clphase run`` leaves it: trials/history Parquet and the spec copy."""
    study_dir.mkdir(parents=True, exist_ok=True)
    trials.to_parquet(study_dir / "trials.parquet", index=False)
    history = pd.DataFrame({"trial_id": np.repeat(trials["trial_id"].to_numpy(), 2), "step": [0, 100] * len(trials),
                            "train_loss": 1.0})
    history.to_parquet(study_dir / "history.parquet", index=False)
    spec = {"name": study_dir.name, "trainable": {"scenario": "hypercube"}}
    if analysis is not None:
        spec["analysis"] = analysis
    (study_dir / "spec.yaml").write_text(yaml.safe_dump(spec))
    return study_dir


@pytest.fixture
def write_study():
    return _write_study


@pytest.fixture
def study_dir(tmp_path: Path, planted: pd.DataFrame) -> Path:
    return _write_study(tmp_path / "runs" / "planted", planted, SPEC_ANALYSIS)


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One real sqlite MLflow store for the session (creating one runs its migrations: seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _log_study(tracking_uri: str, trials: pd.DataFrame, study: str, study_dir: Path, artifacts: Path) -> str:
    """Mirror a trials table into MLflow as the study runner does; returns the parent run id.

    Experiment = study name; parent run tagged clphase.role/clphase.study_dir; one child run per
    trial with tags mlflow.parentRunId and trial_id, params = config as strings (keys a trial's
    config lacks are not logged), metrics, status FINISHED/FAILED, tag error.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(study)
    experiment = found.experiment_id if found else client.create_experiment(study, artifact_location=artifacts.as_uri())
    parent = client.create_run(experiment, tags={"clphase.role": "parent",
                                                 "clphase.study_dir": str(study_dir.resolve())})
    parent_id = parent.info.run_id
    for row in trials.to_dict("records"):
        run = client.create_run(experiment, tags={"mlflow.parentRunId": parent_id, "trial_id": row["trial_id"]})
        params = [Param(k, str(row[k])) for k in CONFIG_KEYS if not pd.isna(row[k])]
        metrics = [Metric(k, float(row[k]), 0, 100) for k in METRIC_KEYS if not pd.isna(row[k])]
        tags = [RunTag("error", row["error"])] if isinstance(row.get("error"), str) else []
        client.log_batch(run.info.run_id, params=params, metrics=metrics, tags=tags)
        client.set_terminated(run.info.run_id, "FINISHED" if row["status"] == "TERMINATED" else "FAILED")
    client.set_terminated(parent_id, "FINISHED")
    return parent_id


@pytest.fixture
def log_study():
    return _log_study
