"""The Parquet schema of a study (README, "Schema of the Parquet files"), read by real DuckDB and polars."""

from __future__ import annotations

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from study.records import StudyRecords

# 3 capacities x 2 embedding dims x 2 seeds, as the driver records them (effective configs, pack reports)
CAPACITIES = [{"encoder": "linear"}, {"encoder": "mlp", "width": 32, "depth": 2},
              {"encoder": "mlp", "width": 128, "depth": 2}]


def _config(capacity: dict, dim: int, seed: int) -> dict:
    return {"scenario": "hypercube", **capacity, "embedding_dim": dim, "seed": seed, "aug_noise": 0.1, "lr": 0.003}


def _n_params(capacity: dict, dim: int) -> int:
    return 16 * dim if capacity["encoder"] == "linear" else capacity["width"] * (16 + capacity["width"] + dim)


@pytest.fixture
def study(tmp_path):
    records = StudyRecords(tmp_path, "schema", flush_every_s=3600)
    k = 0
    for capacity in reversed(CAPACITIES):  # written largest first: the order must come from the sizes
        for dim in (2, 8):
            for seed in (0, 1):
                config = _config(capacity, dim, seed)
                trial = f"p{k // 4}-{k % 4:03d}"
                records.start(trial, config)
                acc = 0.7 if capacity["encoder"] == "linear" else (0.99 if dim == 8 else 0.8)
                for step in (50, 100):
                    records.report(trial, config, {
                        "step": step, "randlabel_acc": acc + seed * 0.001, "train_loss": 3.5, "diverged": 0,
                        "n_params": _n_params(capacity, dim), "train_s": 0.25, "eval_s": 0.05,
                        "pack_train_s": 1.0, "pack_eval_s": 0.2, "pack_size": 4, "node_ip": "127.0.0.1",
                    })
                records.finish(trial, config, "TERMINATED", flush=False)
                k += 1
    records.flush(force=True)
    return tmp_path


def test_trials_columns_have_their_documented_types(study):
    schema = pq.read_schema(study / "trials.parquet")
    types = {name: schema.field(name).type for name in schema.names}
    assert schema.names[:6] == ["study", "trial_id", "cell", "status", "capacity", "capacity_rank"]
    assert types["capacity"] == pa.dictionary(pa.int32(), pa.string(), ordered=True)
    for name in ("width", "depth", "embedding_dim", "seed", "step", "n_params", "diverged", "pack_size",
                 "capacity_rank"):
        assert types[name] == pa.int64(), name
    for name in ("error", "status", "cell", "config_id", "node_ip", "node_id"):
        assert types[name] == pa.string(), name  # error too, although no trial failed
    for name in ("randlabel_acc", "train_s", "pack_train_s", "wall_s", "pack_wall_s", "aug_noise"):
        assert types[name] == pa.float64(), name
    history = pq.read_schema(study / "history.parquet")
    assert history.names[:2] == ["trial_id", "step"] and history.field("step").type == pa.int64()
    assert history.field("n_params").type == pa.int64() and "cell" not in history.names


def test_pandas_reads_capacity_ordered_and_integers_as_integers(study):
    trials = pd.read_parquet(study / "trials.parquet")
    assert list(trials["capacity"].cat.categories) == ["linear", "mlp-32x2", "mlp-128x2"]
    assert trials["capacity"].cat.ordered
    assert str(trials["width"].dtype) == "Int64" and trials.loc[trials.encoder == "linear", "width"].isna().all()
    assert trials["seed"].dtype == "int64"
    assert trials["error"].isna().all()
    # seeds of one cell share it; configs do not
    assert [sorted(group["seed"]) for _, group in trials.groupby("cell")] == [[0, 1]] * 6
    assert trials["cell"].nunique() == 6 and trials["config_id"].is_unique
    # the pack's time and each config's share of it
    assert (trials["train_s"] * trials["pack_size"] == trials["pack_train_s"]).all()
    assert (trials["wall_s"] * trials["pack_size"]).round(9).equals(trials["pack_wall_s"].round(9))


def test_duckdb_finds_a_boundary_without_rebuilding_capacity(study):
    rows = duckdb.sql(f"""
        SELECT capacity, min(embedding_dim) AS first_dim
        FROM (SELECT capacity, capacity_rank, embedding_dim, cell, avg(randlabel_acc) AS acc
              FROM '{study / "trials.parquet"}' GROUP BY ALL)
        WHERE acc >= 0.95 GROUP BY capacity, capacity_rank ORDER BY capacity_rank
    """).fetchall()
    assert rows == [("mlp-32x2", 8), ("mlp-128x2", 8)]
    mlp = duckdb.sql(f"SELECT DISTINCT capacity FROM '{study / 'trials.parquet'}' WHERE width = 32").fetchall()
    assert mlp == [("mlp-32x2",)]  # an integer column: no 32.0 anywhere
    steps = duckdb.sql(f"SELECT typeof(step), count(*) FROM '{study / 'history.parquet'}' GROUP BY 1").fetchall()
    assert steps == [("BIGINT", 24)]


def test_polars_groups_a_cell_s_seeds(study):
    trials = pl.read_parquet(study / "trials.parquet")
    assert trials.schema["width"] == pl.Int64 and trials.schema["error"] == pl.String
    cells = (trials.group_by("cell", "capacity", "capacity_rank", "embedding_dim")
             .agg(pl.col("randlabel_acc").mean(), pl.len().alias("seeds"))
             .sort("capacity_rank", "embedding_dim"))
    assert cells["seeds"].to_list() == [2] * 6
    assert cells["capacity"].cast(pl.String).to_list() == ["linear", "linear", "mlp-32x2", "mlp-32x2",
                                                            "mlp-128x2", "mlp-128x2"]
