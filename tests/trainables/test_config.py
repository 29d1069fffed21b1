import pytest

from trainables.config import ConfigError, effective, flatten, known_keys, resolve
from trainables.training import ContrastiveRun


def test_unknown_key_is_named_with_a_suggestion_and_the_valid_keys():
    with pytest.raises(ConfigError) as err:
        resolve({"embeding_dim": 4})
    message = str(err.value)
    assert "'embeding_dim'" in message and "did you mean 'embedding_dim'" in message
    assert "valid keys:" in message and "n_invariant" in message


@pytest.mark.parametrize("kind,key", [("scenario", "scenario"), ("encoder", "encoder"), ("loss", "loss")])
def test_unknown_names_list_the_registry(kind, key):
    with pytest.raises(ConfigError, match=f"unknown {kind} 'nope'; valid {kind}s: "):
        resolve({key: "nope"})


@pytest.mark.parametrize("key,value", [("steps", "many"), ("lr", "fast"), ("n_invariant", 2.5), ("width", True)])
def test_ill_typed_values_name_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        resolve({"encoder": "mlp", key: value})


def test_integral_floats_and_ints_are_accepted_where_they_mean_the_same():
    r = resolve({"steps": 10.0, "lr": 1, "encoder": "mlp", "width": 8})
    assert r.training["steps"] == 10 and isinstance(r.training["steps"], int)
    assert r.training["lr"] == 1.0 and isinstance(r.training["lr"], float)
    assert r.encoder_kwargs == {"embedding_dim": 16, "width": 8, "depth": 2}


def test_keys_of_another_encoder_are_ignored_for_this_one():
    r = resolve({"encoder": "linear", "width": 64})
    assert r.encoder_kwargs == {"embedding_dim": 16}
    assert "width" not in effective({"encoder": "linear", "width": 64})


def test_nested_grid_cells_flatten_and_conflicts_are_errors():
    assert flatten({"capacity": {"encoder": "mlp", "width": 8}, "seed": 1}) == {"encoder": "mlp", "width": 8, "seed": 1}
    with pytest.raises(ConfigError, match="set twice"):
        flatten({"capacity": {"encoder": "mlp"}, "encoder": "linear"})


def test_impossible_combinations_are_rejected_with_a_reason():
    with pytest.raises(ValueError, match="n_invariant"):
        ContrastiveRun({"scenario": "hypercube", "dim": 4, "n_invariant": 5})
    with pytest.raises(ConfigError, match="batch_size"):
        resolve({"batch_size": 1})


def test_known_keys_cover_the_contract():
    keys = set(known_keys())
    for key in ["scenario", "encoder", "width", "depth", "embedding_dim", "loss", "temperature", "aug_noise", "steps",
                "batch_size", "lr", "weight_decay", "eval_every", "seed", "dim", "n_invariant", "n_clusters",
                "separation", "nuisance_std", "latent_dim", "kappa", "mixing_layers"]:
        assert key in keys, key
