"""``clphase bench`` end to end on a tiny diagram: its three ways, its JSON and where each study's time went."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from study.bench import main

pytestmark = pytest.mark.usefixtures("ray_session")

PHASES = ["prepare", "ray_start", "store_wait", "setup", "to_first_trial", "trials", "after", "total", "shutdown"]


def test_bench_times_the_three_ways_and_says_where_each_study_spent_its_time(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--steps", "20", "--seeds", "2", "--widths", "8", "--dims", "2", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["configs"] == 4 and figures["steps"] == 20  # linear and mlp-8, one dim, two seeds
    ways = figures["ways"]
    assert set(ways) == {"a", "b", "c"} and ways["a"]["wall_vs_a"] == 1.0
    for way in "abc":
        assert ways[way]["wall_s"] > 0
        assert ways[way]["wall_vs_a"] == pytest.approx(ways[way]["wall_s"] / ways["a"]["wall_s"], abs=1e-3)
    for way in "bc":
        entry = ways[way]
        phases = entry["phases_s"]
        assert list(phases) == PHASES and min(phases.values()) >= 0
        # the phases tile the study: up to its summary, then Ray's shutdown and the return
        parts = sum(v for k, v in phases.items() if k not in ("total", "shutdown"))
        assert parts == pytest.approx(phases["total"], abs=0.01)
        assert phases["trials"] > 0 and entry["slots"] == 2  # the session's Ray: 2 CPUs, 1 per trial
        assert 0 < entry["trial_compute_s"] and entry["compute_over_slots_s"] == pytest.approx(
            entry["trial_compute_s"] / 2, abs=0.01)
    assert "where: prepare" in capsys.readouterr().out


def test_the_trial_compute_is_each_packs_training_and_evaluation_once(tmp_path):
    # the bench sums a pack's time once, not once per config of the pack: checked against the study's rows
    from study.bench import bench_spec, through_clphase

    spec = bench_spec(20, 2, [8], [2], 2, 0.0)
    _, where = through_clphase(spec, tmp_path, None)
    trials = pd.read_parquet(tmp_path / "runs" / "bench" / "trials.parquet")
    assert (trials["pack_size"] == 2).all() and len(trials) == 4
    packs = trials.groupby(trials["trial_id"].str.rsplit("-", n=1).str[0]).first()  # one row per trial
    assert len(packs) == 2
    assert where["trial_compute_s"] == pytest.approx((packs["pack_train_s"] + packs["pack_eval_s"]).sum(), abs=0.01)


@pytest.mark.parametrize("args, named", [
    (["--ways", "ax"], "--ways"), (["--ways", ""], "--ways"), (["--pack-size", "0"], "--pack-size"),
    (["--pack-size", "many"], "--pack-size"), (["--steps", "0"], "--steps"), (["--widths", "32", "-4"], "--widths"),
    (["--gpu", "-1"], "--gpu"),
])
def test_bad_arguments_are_refused_with_what_is_valid(args, named, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--out", str(tmp_path / "bench.json")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {named}" in err and ("integer >= 1" in err or "one or more of a" in err or ">= 0" in err)
    assert not (tmp_path / "bench.json").exists()


def test_an_address_where_no_ray_answers_is_refused_before_the_plain_loop_runs(tmp_path, capsys):
    import socket

    with socket.socket() as free:  # a loopback port nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    assert main(["--address", f"127.0.0.1:{port}", "--out", str(tmp_path / "bench.json")]) == 2
    out = capsys.readouterr()
    assert f"no Ray answers at 127.0.0.1:{port} (--address)" in out.err
    assert "(a) plain loop" not in out.out and not (tmp_path / "bench.json").exists()
