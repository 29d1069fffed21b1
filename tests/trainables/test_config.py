import math

import pytest

from trainables.config import (
    KWARG_BOUNDS,
    TRAINING,
    TRAINING_DEFAULTS,
    ConfigError,
    effective,
    flatten,
    known_keys,
    params_of,
    resolve,
)
from trainables.encoders import ENCODERS
from trainables.engine import Pack
from trainables.losses import LOSSES
from trainables.scenarios import SCENARIOS

FUNCTIONS = [(kind, name, fn) for kind, registry in (("scenario", SCENARIOS), ("encoder", ENCODERS), ("loss", LOSSES))
             for name, fn in registry.items()]


def test_unknown_key_is_named_with_a_suggestion_and_the_valid_keys():
    with pytest.raises(ConfigError) as err:
        resolve({"embeding_dim": 4})
    message = str(err.value)
    assert "'embeding_dim'" in message and "did you mean 'embedding_dim'" in message
    assert "valid keys:" in message and "n_invariant" in message
    assert err.value.key == "embeding_dim"


@pytest.mark.parametrize("kind,key", [("scenario", "scenario"), ("encoder", "encoder"), ("loss", "loss")])
def test_unknown_names_list_the_registry(kind, key):
    with pytest.raises(ConfigError, match=f"unknown {kind} 'nope'; valid {kind}s: "):
        resolve({key: "nope"})


@pytest.mark.parametrize("key,value", [("steps", "many"), ("lr", "fast"), ("n_invariant", 2.5), ("width", True),
                                       ("steps", True), ("seed", False), ("spurious", True), ("lr", None)])
def test_ill_typed_values_name_the_key(key, value):
    with pytest.raises(ConfigError, match=key) as err:
        resolve({"encoder": "mlp", key: value})
    assert err.value.key == key and repr(value) in str(err.value)


@pytest.mark.parametrize("key,value,valid", [
    ("temperature", 0, "> 0"), ("temperature", math.nan, "> 0"), ("temperature", -0.1, "> 0"),
    ("lr", math.nan, "> 0"), ("lr", math.inf, "> 0"), ("lr", 0.0, "> 0"), ("weight_decay", -1, ">= 0"),
    ("seed", -1, "[0, 2147483647]"), ("seed", 2**40, "[0, 2147483647]"), ("batch_size", 1, "negatives"),
    ("n_eval", 1, ">= 2"), ("steps", 0, ">= 1"), ("embedding_dim", 0, ">= 1"), ("width", 0, ">= 1"),
    ("n_invariant", 63, "[1, 62]"), ("aug_noise", -0.5, ">= 0"), ("dim", math.inf, ">= 1"),
    ("device", "tpu", "'cuda:N'"), ("spurious", "shuffle", "'redraw', 'scale'"), ("hidden", "50,,2", "'50,250,50'"),
    ("activation", "tanh", "'relu'"),
])
def test_out_of_range_and_non_finite_values_say_what_is_valid(key, value, valid):
    with pytest.raises(ConfigError) as err:
        resolve({"encoder": "mlp", key: value})
    message = str(err.value)
    assert message.startswith(f"{key} must be") and valid in message and repr(value) in message


def test_a_range_may_depend_on_the_function():
    assert resolve({"scenario": "hypercube", "aug_noise": 2.0}).scenario_kwargs["aug_noise"] == 2.0
    with pytest.raises(ConfigError, match=r"aug_noise must be a finite number in \[0, 1\]"):
        resolve({"scenario": "gmm", "aug_noise": 2.0})


def test_a_loss_takes_no_embeddings_from_the_config():
    assert "z1" not in known_keys() and "input_dim" not in known_keys()
    with pytest.raises(ConfigError, match="unknown config key 'z1'"):
        resolve({"z1": 5})


def test_a_number_written_as_a_string_gets_a_hint():
    with pytest.raises(ConfigError, match="a string, not a number"):
        resolve({"lr": "1e-3"})
    with pytest.raises(ConfigError, match="booleans: quote it"):
        resolve({"spurious": False})  # YAML's `spurious: no`


def test_integral_floats_and_ints_are_accepted_where_they_mean_the_same():
    r = resolve({"steps": 10.0, "lr": 1, "encoder": "mlp", "width": 8})
    assert r.training["steps"] == 10 and isinstance(r.training["steps"], int)
    assert r.training["lr"] == 1.0 and isinstance(r.training["lr"], float)
    assert {k: r.encoder_kwargs[k] for k in ("embedding_dim", "width", "depth")} == {"embedding_dim": 16, "width": 8,
                                                                                     "depth": 2}


def test_keys_of_another_encoder_are_ignored_for_this_one_but_still_typed():
    r = resolve({"encoder": "linear", "width": 64})
    assert "width" not in r.encoder_kwargs and r.encoder_kwargs["embedding_dim"] == 16
    assert "width" not in effective({"encoder": "linear", "width": 64})
    with pytest.raises(ConfigError, match="width must be an integer"):
        resolve({"encoder": "linear", "width": True})


def test_effective_is_the_whole_config_a_trial_runs():
    config = effective({"scenario": "gmm", "n_clusters": 3, "encoder": "linear", "loss": "spectral"})
    assert set(config) == set(TRAINING) | set(params_of(SCENARIOS["gmm"])) | set(params_of(ENCODERS["linear"]))
    assert config["n_clusters"] == 3 and config["dim"] == 16 and "temperature" not in config
    assert effective(config) == config  # resolving an effective config changes nothing


def test_nested_grid_cells_flatten_and_conflicts_are_errors():
    assert flatten({"capacity": {"encoder": "mlp", "width": 8}, "seed": 1}) == {"encoder": "mlp", "width": 8, "seed": 1}
    with pytest.raises(ConfigError, match="set twice"):
        flatten({"capacity": {"encoder": "mlp"}, "encoder": "linear"})


def test_impossible_combinations_are_rejected_with_a_reason():
    with pytest.raises(ValueError, match="n_invariant"):
        Pack([effective({"scenario": "hypercube", "dim": 4, "n_invariant": 5})])
    with pytest.raises(ConfigError, match="batch_size"):
        resolve({"batch_size": 1})


def test_known_keys_cover_the_contract():
    keys = set(known_keys())
    for key in ["scenario", "encoder", "width", "depth", "embedding_dim", "loss", "temperature", "aug_noise", "steps",
                "batch_size", "lr", "weight_decay", "eval_every", "seed", "dim", "n_invariant", "n_clusters",
                "separation", "nuisance_std", "latent_dim", "kappa", "mixing_layers"]:
        assert key in keys, key
    assert TRAINING_DEFAULTS == {k: p.default for k, p in TRAINING.items()}


# --- one statement of each key's type and range ----------------------------------------------------------
@pytest.mark.parametrize("kind,name,fn", FUNCTIONS, ids=[f"{k}:{n}" for k, n, _ in FUNCTIONS])
def test_every_keyword_argument_has_a_type_and_a_range(kind, name, fn):
    for key, p in params_of(fn).items():
        assert p.type in (int, float, str, bool), (name, key)
        assert p.check(key, p.default) == p.default, (name, key)  # the function's default is valid
        if p.type in (int, float):
            assert p.bounds.low is not None or p.bounds.high is not None, f"{name}.{key} has no range in KWARG_BOUNDS"
        if p.type is str:
            assert p.bounds.choices or p.bounds.pattern, f"{name}.{key} has no choices in KWARG_BOUNDS"


def test_the_bounds_table_names_only_real_arguments():
    for entry in KWARG_BOUNDS:
        function, _, key = entry.rpartition(".")
        owners = [fn for _, name, fn in FUNCTIONS if key in params_of(fn) and function in ("", name)]
        assert owners, f"KWARG_BOUNDS[{entry!r}] is no function's argument"


def _just_outside(p):
    b = p.bounds
    if b.low is not None:
        return b.low if b.open_low else (b.low - 1 if p.type is int else b.low - 1e-3)
    return b.high + 1 if p.type is int else b.high + 1e-3


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_table_is_never_looser_than_the_scenario_itself(name):
    """A value the table refuses, the scenario refuses too: the table says early what the trial would say late."""
    for key, p in params_of(SCENARIOS[name]).items():
        if p.type not in (int, float):
            continue
        bad = _just_outside(p)
        with pytest.raises(ConfigError):
            p.check(key, bad)
        with pytest.raises(ValueError, match=key):
            SCENARIOS[name](**{key: bad})
