import textwrap

import pytest
import yaml

from study.cli import main
from study.spec import SpecError, bundled_specs, expand_axis, load_spec, parse_spec

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
