"""Parquet records: every report survives a crash of the driver, and nothing is recorded twice."""

from __future__ import annotations

import io
import json
import re
import time

import pandas as pd
import pytest

from study.cli import main
from study.progress import ProgressLine
from study.records import RecordsUnreadable, StudyRecords
from study.runner import StudyError
from study.spec import load_spec
from tests.study.conftest import write_spec

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


def test_a_finished_trial_is_on_disk_before_the_next_parquet_write(tmp_path):
    records = StudyRecords(tmp_path, "s", flush_every_s=3600)
    for t in ("t0", "t1"):
        records.start(t, CONFIG)
        records.report(t, CONFIG, {"step": 10, "randlabel_acc": 0.5, "node_ip": "127.0.0.1"})
    records.finish("t0", CONFIG, "TERMINATED")
    records.finish("t1", CONFIG, "ERROR", "boom", flush=False)
    records.flush()  # throttled: nothing written; the driver "crashes" here
    assert pd.read_parquet(tmp_path / "trials.parquet").set_index("trial_id")["status"].to_dict() == \
        {"t0": "TERMINATED", "t1": "RUNNING"}
    with open(records.finished_path, "a") as f:
        f.write('{"trial_id": "t1", "sta')  # a line cut short by the crash

    reloaded = StudyRecords(tmp_path, "s")
    assert reloaded.is_finished("t1") and reloaded.trials["t1"]["error"] == "boom"
    assert reloaded.trials["t1"]["randlabel_acc"] == 0.5 and reloaded.trials["t1"]["wall_s"] >= 0
    reloaded.flush(force=True)
    trials = pd.read_parquet(tmp_path / "trials.parquet").set_index("trial_id")
    assert trials["status"].to_dict() == {"t0": "TERMINATED", "t1": "ERROR"} and trials.loc["t1", "error"] == "boom"
    assert trials.loc["t1", "embedding_dim"] == 4 and not reloaded.finished_path.exists()


def test_finishing_a_trial_writes_both_tables_at_once(tmp_path):
    records = StudyRecords(tmp_path, "s", flush_every_s=3600)
    records.start("t0", CONFIG)
    records.report("t0", CONFIG, {"step": 10, "randlabel_acc": 0.5, "node_ip": "127.0.0.1"})
    records.finish("t0", CONFIG, "TERMINATED")
    trials = pd.read_parquet(tmp_path / "trials.parquet")
    assert trials.loc[0, "status"] == "TERMINATED" and trials.loc[0, "randlabel_acc"] == 0.5
    assert trials.loc[0, "wall_s"] >= 0 and trials.loc[0, "embedding_dim"] == 4


@pytest.mark.parametrize("name", ["trials.parquet", "history.parquet"])
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_table_is_named_with_what_to_do(tmp_path, name, damage):
    records = StudyRecords(tmp_path, "s")
    records.start("t0", CONFIG)
    records.report("t0", CONFIG, {"step": 10, "randlabel_acc": 0.5})
    records.finish("t0", CONFIG, "TERMINATED")
    path = tmp_path / name
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2] if damage == "truncated" else b"not parquet")
    with pytest.raises(RecordsUnreadable, match=re.escape(str(path))) as caught:
        StudyRecords(tmp_path, "s")
    assert isinstance(caught.value, StudyError) and "--resume" in str(caught.value) and ".bad" in str(caught.value)


def test_resume_over_a_damaged_table_exits_2_with_the_file_named(tmp_path, tmp_store, capsys):
    spec = write_spec(tmp_path, name="damaged")
    study_dir = tmp_path / "runs" / "damaged"
    study_dir.mkdir(parents=True)
    state = {"spec": load_spec(spec).model_dump(mode="json"), "smoke": False, "parent_run_id": None,
             "tracking_uri": tmp_store, "spec_path": str(spec)}
    (study_dir / "study.json").write_text(json.dumps(state))
    (study_dir / "trials.parquet").write_bytes(b"PAR1 cut short")
    code = main(["run", str(spec), "--resume", "--out", str(tmp_path / "runs"), "--tracking-uri", tmp_store])
    err = capsys.readouterr().err
    assert code == 2 and str(study_dir / "trials.parquet") in err and "Traceback" not in err


def test_the_progress_line_counts_configs_and_running_never_exceeds_what_is_left():
    line = ProgressLine("s", total=30, metric="randlabel_acc", mode="max", stream=io.StringIO())
    line.running, line.done = 20, 30  # the last scheduler step saw two packs of 10 running; all have ended since
    assert "30/30 configs done · 0 running" in line.line()
    line.running, line.done = 20, 10
    assert "10/30 configs done · 20 running" in line.line()


def test_the_configs_of_a_pack_share_its_wall_time_and_each_holds_its_share(tmp_path):
    records = StudyRecords(tmp_path, "s", flush_every_s=3600)
    configs = [{**CONFIG, "seed": seed} for seed in range(4)]
    started = time.time()
    for k, config in enumerate(configs):
        records.start(f"p-{k:03d}", config, started_at=started)
    time.sleep(0.05)
    for k, config in enumerate(configs):
        records.report(f"p-{k:03d}", config, {"step": 10, "randlabel_acc": 0.5, "pack_size": 4})
        records.finish(f"p-{k:03d}", config, "TERMINATED", flush=False)
        time.sleep(0.02)  # the driver's bookkeeping between configs is no part of the pack's time
    records.flush(force=True)
    trials = pd.read_parquet(tmp_path / "trials.parquet")
    assert trials["pack_wall_s"].nunique() == 1 and trials["pack_wall_s"].iloc[0] >= 0.05
    assert (trials["wall_s"] * 4).round(12).equals(trials["pack_wall_s"].round(12))
    assert trials["cell"].nunique() == 1 and trials["config_id"].nunique() == 4
