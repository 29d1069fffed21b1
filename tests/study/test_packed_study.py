"""A packed study writes the same tables as the same study one config per trial."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow import MlflowClient

from study.runner import pack_slots, resolve_pack_size, run_study
from study.spec import SpecError, parse_spec
from tests.study.conftest import TINY, write_spec
from trainables.engine import auto_pack_size

pytestmark = pytest.mark.usefixtures("ray_session")
GRID = {"capacity": [{"encoder": "mlp", "width": 8, "depth": 1}, {"encoder": "mlp", "width": 16, "depth": 1}],
        "embedding_dim": [2, 4, 8]}
KEYS = ["width", "embedding_dim", "seed"]


def test_a_packed_study_gives_the_tables_of_an_unpacked_one(tmp_path, tmp_store):
    trainable = {**TINY, "steps": 30, "eval_every": 15}
    lone = run_study(write_spec(tmp_path, name="lone", grid=GRID, seeds=[0, 1], trainable=trainable),
                     out=tmp_path / "runs", tracking_uri=tmp_store)
    packed = run_study(write_spec(tmp_path, name="packed", grid=GRID, seeds=[0, 1], trainable=trainable,
                                  pack_size=5), out=tmp_path / "runs", tracking_uri=tmp_store)
    assert (lone.n_finished, packed.n_finished) == (12, 12)
    a = pd.read_parquet(lone.study_dir / "trials.parquet").set_index(KEYS).sort_index()
    b = pd.read_parquet(packed.study_dir / "trials.parquet").set_index(KEYS).sort_index()
    assert set(a.columns) == set(b.columns) and list(a.index) == list(b.index)
    # 12 configs of one pack key, widths 8 and 16 apart (padding 8 to 16 would add more than 25% to their
    # steps), each width's 6 in packs of at most 5: 3 + 3, twice
    trials = b["trial_id"].str.rsplit("-", n=1).str[0]
    assert trials.nunique() == 4 and trials.value_counts().eq(3).all()
    assert b.reset_index().groupby(trials.values)["width"].nunique().eq(1).all()
    for metric in ["train_loss", "eval_loss", "effective_rank"]:
        pd.testing.assert_series_equal(a[metric], b[metric], rtol=1e-4, check_names=False)
    for metric in ["randlabel_acc", "cluster_acc", "probe_acc"]:  # probe accuracies: a flip of one point at most
        assert (a[metric] - b[metric]).abs().max() <= 2 / 128 + 1e-9, metric
    history = pd.read_parquet(packed.study_dir / "history.parquet")
    assert len(history) == 24 and history.groupby("trial_id").size().eq(2).all()
    client = MlflowClient(tmp_store)
    experiment = client.get_experiment_by_name("packed")
    children = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert sorted(c.data.tags["trial_id"] for c in children) == sorted(b["trial_id"])


def test_packs_need_the_grid_searcher():
    base = {"name": "p", "trainable": dict(TINY), "grid": {"embedding_dim": [2]}, "pack_size": 4}
    with pytest.raises(SpecError, match="pack_size"):
        parse_spec({**base, "scheduler": {"type": "asha"}})
    assert parse_spec({**base, "pack_size": "auto"}).pack_size == "auto"


def test_auto_pack_size_on_cpus_is_the_most_demanding_configs_whatever_the_cells_order():
    grid = {"capacity": {"linear": True, "widths": [16, 512], "depths": [2]}, "embedding_dim": [2, 4]}
    base = {"name": "p", "trainable": dict(TINY), "pack_size": "auto"}
    sizes = {auto_pack_size(c, "cpu") for c in parse_spec({**base, "grid": grid}).cells()}
    assert sizes == {8, 16}  # the rule gives the width-512 MLP fewer configs per pack than the others
    for capacity in (grid["capacity"], {"widths": [512, 16], "depths": [2], "linear": True}):
        spec = parse_spec({**base, "grid": {"embedding_dim": [4, 2], "capacity": capacity}})
        assert resolve_pack_size(spec) == 8
    assert resolve_pack_size(parse_spec({**base, "grid": {"embedding_dim": [2, 4]}})) == 16


def test_auto_packs_are_balanced_over_the_trials_that_run_at_once():
    base = {"name": "p", "trainable": dict(TINY), "grid": {"embedding_dim": [2]}, "pack_size": "auto"}
    assert pack_slots(parse_spec(base)) == 2  # the session's Ray has 2 CPUs, a trial takes 1
    assert pack_slots(parse_spec({**base, "max_concurrent": 1})) == 1
    assert pack_slots(parse_spec({**base, "pack_size": 4})) == 1  # a size asked for is kept
    assert pack_slots(parse_spec({**base, "resources": {"cpu": 1, "gpu": 0.5}})) == 1  # GPU packs stay whole
