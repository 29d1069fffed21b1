import textwrap

import pytest
import yaml

from study.cli import main
from study.spec import SpecError, bundled_specs, expand_axis, load_spec, parse_spec, scenario_metrics
from trainables.config import effective
from trainables.scenarios import SCENARIOS

BASE = {"name": "t", "trainable": {"scenario": "hypercube", "steps": 10}, "grid": {"embedding_dim": [2, 4]}}


def _err(data, **kw):
    with pytest.raises(SpecError) as err:
        parse_spec(data, "t.yaml", **kw)
    return str(err.value)


@pytest.mark.parametrize("name", sorted(bundled_specs()))
@pytest.mark.parametrize("smoke", [False, True])
def test_every_bundled_spec_validates_with_its_smoke_block(name, smoke):
    spec = load_spec(bundled_specs()[name], smoke=smoke)
    assert spec.n_trials() >= 1
    if smoke:
        assert spec.n_trials() <= 4
    head = bundled_specs()[name].read_text().splitlines()[:8]
    assert any(line.startswith("# Question") for line in head) and any(line.startswith("# Run") for line in head)
    assert any(line.startswith("# Expect") for line in head)


def test_grid_cells_cross_every_axis_and_seeds():
    spec = parse_spec({**BASE, "grid": {"capacity": {"linear": True, "widths": [8, 16]}, "embedding_dim": [2, 4]},
                       "seeds": [0, 1, 2]})
    cells = spec.cells()
    assert len(cells) == spec.n_trials() == 3 * 2 * 3
    assert {c["encoder"] for c in cells} == {"linear", "mlp"}
    assert {(c.get("width"), c["embedding_dim"], c["seed"]) for c in cells} == {
        (w, e, s) for w in (None, 8, 16) for e in (2, 4) for s in (0, 1, 2)}


def test_axis_shorthands():
    assert expand_axis("embedding_dim", {"log2": [2, 16]}) == [2, 4, 8, 16]
    assert expand_axis("capacity", {"linear": False, "widths": [4], "depths": [1, 2]}) == [
        {"encoder": "mlp", "width": 4, "depth": 1}, {"encoder": "mlp", "width": 4, "depth": 2}]


def test_unknown_top_level_key_is_named_with_the_valid_ones():
    message = _err({**BASE, "gird": {}})
    assert "unknown key 'gird'" in message and "grid" in message and "searcher" in message


def test_unknown_nested_key_lists_that_sections_keys():
    message = _err({**BASE, "scheduler": {"type": "asha", "grace": 2}})
    assert "scheduler.grace" in message and "grace_period" in message


def test_unknown_config_key_in_the_trainable_block_lists_config_keys():
    message = _err({**BASE, "trainable": {"scenario": "hypercube", "n_invarant": 2}})
    assert "'n_invarant'" in message and "n_invariant" in message


@pytest.mark.parametrize("patch,needle", [
    ({"num_samples": "many"}, "num_samples"),
    ({"resources": {"gpu": 1.5}}, "fraction"),
    ({"grid": {"embedding_dim": []}}, "empty"),
    ({"grid": {"embedding_dim": "big"}}, "grid.embedding_dim"),
    ({"searcher": {"type": "optuna"}}, "search: block"),
    ({"searcher": {"type": "bayes"}}, "searcher.type"),
    ({"search": {"lr": {"loguniform": [1e-4, 1e-2]}}}, "optuna"),
    ({"trainable": {"scenario": "hypercube", "dim": 4, "n_invariant": 6}}, "n_invariant"),
    ({"trainable": {"scenario": "torus"}}, "valid scenarios"),
])
def test_bad_specs_say_what_is_wrong(patch, needle):
    assert needle in _err({**BASE, **patch})


def test_smoke_needs_a_smoke_block_and_merges_it():
    assert "smoke" in _err(BASE, smoke=True)
    spec = parse_spec({**BASE, "smoke": {"trainable": {"steps": 3}, "grid": {"embedding_dim": [2]}}}, smoke=True)
    assert spec.trainable == {"scenario": "hypercube", "steps": 3} and spec.n_trials() == 1


def test_invalid_yaml_and_missing_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="invalid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "nope.yaml")


def test_cli_reports_a_bad_spec_in_one_line_and_exits_2(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(textwrap.dedent(yaml.safe_dump({**BASE, "grid": {"embeding_dim": [2]}})))
    assert main(["run", str(spec), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "embeding_dim" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing started


# --- one resolution: the effective configs, once -------------------------------------------------------
def test_cells_are_the_effective_configs_in_tune_order_resolved_once():
    spec = parse_spec({**BASE, "grid": {"capacity": {"linear": True, "widths": [8]}, "embedding_dim": [2, 4]},
                       "seeds": [0, 1]})
    cells = spec.cells()
    assert cells is spec.cells()  # cached on the spec
    assert cells == [effective({**spec.trainable, "capacity": c, "embedding_dim": e, "seed": s})
                     for c in spec.grid_axes()["capacity"] for e in (2, 4) for s in (0, 1)]
    assert "width" not in cells[0] and cells[-1]["width"] == 8  # the linear encoder's cells drop width
    assert cells[0]["lr"] == 1e-3 and cells[0]["dim"] == 16  # defaults filled in


def test_the_grid_size_is_refused_from_the_axes_before_anything_is_enumerated():
    huge = {**BASE, "grid": {"embedding_dim": list(range(1, 1001)), "lr": [1e-4 * i for i in range(1, 1001)],
                             "dim": list(range(8, 1008))}}  # 10^9 cells: enumerating them would never end
    message = _err(huge)
    assert "1,000,000,000 cells" in message and "max_cells" in message and "--max-cells" in message
    big = {**BASE, "grid": {"embedding_dim": list(range(1, 201)), "lr": [1e-4 * i for i in range(1, 1001)]}}
    assert "200,000 cells" in _err(big)
    assert len(parse_spec(big, max_cells=200_000).cells()) == 200_000
    assert parse_spec({**big, "max_cells": 300_000}).n_trials() == 200_000
    assert "--max-cells must be" in _err(BASE, max_cells=0)


def test_yaml_1_1_exponents_are_numbers_and_duplicate_keys_are_errors(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: t\ntrainable: {lr: 1e-3, weight_decay: 5E-4, steps: 1e3}\n")
    spec = load_spec(path)
    assert spec.trainable == {"lr": 0.001, "weight_decay": 0.0005, "steps": 1000.0}
    assert spec.cells()[0]["steps"] == 1000
    path.write_text("name: t\ntrainable:\n  lr: 0.1\n  steps: 10\n  lr: 0.2\n")
    with pytest.raises(SpecError, match="duplicate key 'lr'"):
        load_spec(path)
    path.write_text("name: t\ntrainable: {lr: '1e-3'}\n")
    with pytest.raises(SpecError, match="a string, not a number"):
        load_spec(path)


def test_folders_and_binary_files_are_refused_as_specs(tmp_path):
    with pytest.raises(SpecError, match="is a folder"):
        load_spec(tmp_path)
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"name: t\n\xff\xfe\x00")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(binary)
    empty = tmp_path / "e.yaml"
    empty.write_text("")
    with pytest.raises(SpecError, match="empty"):
        load_spec(empty)


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a/b", "-x", "", "x" * 129])
def test_a_study_name_is_one_folder_name(name):
    assert "name" in _err({**BASE, "name": name})


@pytest.mark.parametrize("patch,needle", [
    ({"grid": {"n_clusters": [2, 4]}}, "grid.n_clusters: no cell uses 'n_clusters'"),
    ({"trainable": {"scenario": "hypercube", "kappa": 2.0}}, "trainable.kappa: no cell uses 'kappa'"),
    ({"grid": {"encoder": ["linear"], "width": [8, 16]}}, "grid.width: no cell uses 'width'"),
    ({"grid": {"encoder": ["linear", "mlp"], "width": [8, 16]}}, "width is not used by"),
    ({"grid": {"embedding_dim": [2, 2]}}, "same config"),
    ({"seeds": [0, 0]}, "same config"),
])
def test_keys_no_cell_uses_and_repeated_cells_are_refused(patch, needle):
    assert needle in _err({**BASE, **patch})


@pytest.mark.parametrize("patch,needle", [
    ({"objective": {"metric": "randlabel_ac"}}, "did you mean 'randlabel_acc'"),
    ({"objective": {"metric": "r2_linear"}}, "not a metric of scenario 'hypercube'"),
    ({"objective": {"metric": "n_params"}}, "bookkeeping"),
    ({"analysis": {"x": "capacity", "y": "embeding_dim"}}, "analysis.y"),
    ({"analysis": {"metric": "probe_accc"}}, "did you mean 'probe_acc'"),
    ({"analysis": {"treshold": 0.9}}, "did you mean 'threshold'"),
    ({"analysis": {"threshold": "high"}}, "analysis.threshold"),
    ({"analysis": {"n_boot": 0}}, "analysis.n_boot"),
])
def test_objective_and_analysis_name_what_the_cells_produce(patch, needle):
    assert needle in _err({**BASE, **patch})


def test_the_analysis_model_has_the_keys_analyze_reads():
    from analysis.load import ANALYSIS_KEYS
    from study.spec import Analysis

    assert tuple(Analysis.model_fields) == ANALYSIS_KEYS


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_metric_names_of_each_scenario_are_what_it_reports(name):
    import torch

    from trainables.metrics import evaluate

    scenario = SCENARIOS[name](device="cpu")
    heldout = scenario.heldout(64, torch.Generator().manual_seed(0))
    reported = set(evaluate(torch.randn(64, 3), heldout, scenario.truth)) | {"train_loss", "eval_loss"}
    assert scenario_metrics(scenario) == reported


@pytest.mark.parametrize("patch,needle", [
    ({"searcher": {"type": "optuna"}, "search": {"lr": {"loguniform": [-1.0, 0.1]}}}, "search.lr"),
    ({"searcher": {"type": "optuna"}, "search": {"embedding_dim": {"uniform": [2, 8]}}}, "randint"),
    ({"searcher": {"type": "optuna"}, "search": {"temperature": {"uniform": [0.0, 1.0]}}}, "temperature must be"),
    ({"searcher": {"type": "optuna"}, "search": {"lr": {"loguniform": [1e-3]}}}, "search.lr"),
    ({"searcher": {"type": "optuna"}, "search": {"width": {"choice": [8, True]}}}, "width must be"),
])
def test_search_distributions_are_checked_at_their_ends(patch, needle):
    grid = {} if "search" in patch else BASE["grid"]
    assert needle in _err({**BASE, "grid": grid, **patch})


def test_the_smoke_block_is_checked_with_the_full_spec():
    message = _err({**BASE, "smoke": {"trainable": {"steps": 0}}})
    assert "with its smoke: block" in message and "steps must be" in message


def test_the_resume_command_carries_what_the_study_was_run_with():
    import argparse

    from study.cli import _resume_command

    args = argparse.Namespace(spec="my spec.yaml", smoke=True, out="/data/my runs", address="auto", max_cells=50000)
    assert _resume_command(args) == ("clphase run 'my spec.yaml' --resume --smoke --out '/data/my runs' "
                                     "--address auto --max-cells 50000")
    plain = argparse.Namespace(spec="quickstart", smoke=False, out="runs", address=None, max_cells=None)
    assert _resume_command(plain) == "clphase run quickstart --resume"
