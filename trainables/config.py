"""A trial's config: flat dict whose keys are the keyword names of the functions they feed.

``resolve(config)`` splits it into the scenario's, the encoder's and the loss's keyword
arguments and the training loop's settings, checks names and types, and says which key is
wrong and which are valid. A key that belongs to another scenario, encoder or loss than the
chosen one is ignored for this trial, so that one sweep can mix, e.g., ``linear`` and ``mlp``
encoders under a shared ``width``; a key that feeds nothing at all is an error.
"""

from __future__ import annotations

import difflib
import inspect
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trainables.encoders import ENCODERS
from trainables.losses import LOSSES
from trainables.scenarios import SCENARIOS

# Settings of the training loop itself (and their defaults).
TRAINING_DEFAULTS: dict[str, Any] = {
    "scenario": "hypercube",
    "encoder": "mlp",
    "loss": "info_nce",
    "embedding_dim": 16,
    "steps": 1000,
    "batch_size": 256,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "eval_every": 250,
    "seed": 0,
    "n_eval": 2048,
    "device": "auto",
}
_NOT_KWARGS = {"input_dim", "device"}  # filled by the trainer, not by the config


class ConfigError(ValueError):
    """A config key or value that cannot feed any function."""


def _kwargs_of(fn: Callable[..., Any]) -> dict[str, Any]:
    """Keyword names of ``fn`` and their defaults (``inspect.Parameter.empty`` if required)."""
    return {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if name not in _NOT_KWARGS and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def _registry_keys(registry: Mapping[str, Callable[..., Any]]) -> set[str]:
    return {k for fn in registry.values() for k in _kwargs_of(fn)}


def known_keys() -> list[str]:
    """Every config key that feeds some function, sorted."""
    keys = set(TRAINING_DEFAULTS) | _registry_keys(SCENARIOS) | _registry_keys(ENCODERS)
    return sorted(keys | _registry_keys(LOSSES))


def _lookup(kind: str, name: Any, registry: Mapping[str, Callable[..., Any]]) -> Callable[..., Any]:
    if name not in registry:
        raise ConfigError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(registry))}")
    return registry[name]


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the type of ``default`` (int, float, str, bool) and normalise it."""
    if default is inspect.Parameter.empty or default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(default, float):
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(f"{key} must be {type(default).__name__}, got {value!r} ({type(value).__name__})")


def flatten(config: Mapping[str, Any]) -> dict[str, Any]:
    """Merge nested dicts (a grid axis whose cells set several keys at once) into one flat config."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        items = flatten(value).items() if isinstance(value, Mapping) else [(key, value)]
        for k, v in items:
            if k in flat and flat[k] != v:
                raise ConfigError(f"key {k!r} is set twice with different values: {flat[k]!r} and {v!r}")
            flat[k] = v
    return flat


@dataclass
class ResolvedConfig:
    scenario: str
    encoder: str
    loss: str
    scenario_kwargs: dict[str, Any] = field(default_factory=dict)
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)


def resolve(config: Mapping[str, Any]) -> ResolvedConfig:
    """Split and check a (possibly nested) config; raises ConfigError naming the bad key."""
    config = flatten(config)
    unknown = sorted(set(config) - set(known_keys()))
    if unknown:
        hints = [f"{k!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, known_keys(), 1))
                 else repr(k) for k in unknown]
        raise ConfigError(f"unknown config key {', '.join(hints)}; valid keys: {', '.join(known_keys())}")
    training = {k: _coerce(k, config.get(k, d), d) for k, d in TRAINING_DEFAULTS.items()}
    out = ResolvedConfig(training["scenario"], training["encoder"], training["loss"], training=training)
    for kind, registry, target in (
        ("scenario", SCENARIOS, out.scenario_kwargs),
        ("encoder", ENCODERS, out.encoder_kwargs),
        ("loss", LOSSES, out.loss_kwargs),
    ):
        fn = _lookup(kind, training[kind], registry)
        for key, default in _kwargs_of(fn).items():
            if key in config:
                target[key] = _coerce(key, config[key], default)
            elif key in training:
                target[key] = training[key]
            elif default is not inspect.Parameter.empty:
                target[key] = default
    for key in ("steps", "batch_size", "eval_every", "n_eval", "embedding_dim"):
        if training[key] < 1:
            raise ConfigError(f"{key} must be >= 1, got {training[key]}")
    if training["batch_size"] < 2:
        raise ConfigError("batch_size must be >= 2: a contrastive batch needs negatives")
    if training["lr"] <= 0:
        raise ConfigError(f"lr must be > 0, got {training['lr']}")
    if training["device"] not in ("auto", "cpu", "cuda") and not str(training["device"]).startswith("cuda:"):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {training['device']!r}")
    return out


def effective(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flat config a trial really runs: the keys it uses, defaults filled in, ignored keys dropped."""
    r = resolve(config)
    return {**r.training, **r.scenario_kwargs, **r.encoder_kwargs, **r.loss_kwargs}
