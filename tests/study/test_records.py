"""Parquet records: every report survives a crash of the driver, and nothing is recorded twice."""

from __future__ import annotations

import pandas as pd

from study.records import StudyRecords

CONFIG = {"scenario": "hypercube", "embedding_dim": 4, "seed": 0}


def test_a_report_is_on_disk_before_the_next_parquet_write(tmp_path):
    records = StudyRecords(tmp_path, "s", flush_every_s=3600)
    records.start("t0", CONFIG)
    records.report("t0", CONFIG, {"step": 10, "randlabel_acc": 0.5})
    records.flush(force=True)
    records.report("t0", CONFIG, {"step": 20, "randlabel_acc": 0.7})  # not flushed: the driver "crashes" here
    assert sorted(pd.read_parquet(tmp_path / "history.parquet")["step"]) == [10]

    reloaded = StudyRecords(tmp_path, "s")
    assert sorted(step for _, step in reloaded.history) == [10, 20]
    assert not reloaded.report("t0", CONFIG, {"step": 20, "randlabel_acc": 0.7})  # a re-report is no new row
    reloaded.flush(force=True)
    assert sorted(pd.read_parquet(tmp_path / "history.parquet")["step"]) == [10, 20]
    assert not reloaded.pending_path.exists()


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path):
    records = StudyRecords(tmp_path, "s", flush_every_s=3600)
    records.report("t0", CONFIG, {"step": 10, "randlabel_acc": 0.5})
    with open(records.pending_path, "a") as f:
        f.write('{"trial_id": "t0", "st')
    assert sorted(step for _, step in StudyRecords(tmp_path, "s").history) == [10]


def test_finishing_a_trial_writes_both_tables_at_once(tmp_path):
    records = StudyRecords(tmp_path, "s", flush_every_s=3600)
    records.start("t0", CONFIG)
    records.report("t0", CONFIG, {"step": 10, "randlabel_acc": 0.5, "node_ip": "127.0.0.1"})
    records.finish("t0", CONFIG, "TERMINATED")
    trials = pd.read_parquet(tmp_path / "trials.parquet")
    assert trials.loc[0, "status"] == "TERMINATED" and trials.loc[0, "randlabel_acc"] == 0.5
    assert trials.loc[0, "wall_s"] >= 0 and trials.loc[0, "embedding_dim"] == 4
