"""A trial's config: a flat dict whose keys are the keyword names of the functions they feed.

``resolve(config)`` splits it into the scenario's, the encoder's and the loss's keyword arguments and the training
loop's settings, and checks every name, type and range, saying which key is wrong, its value and what is valid
(``study.spec`` validates specs with the same check). A key of another scenario, encoder or loss than the chosen
one is ignored for this trial but still type-checked, so one sweep can mix, e.g., ``linear`` and ``mlp`` encoders
under a shared ``width``; a key that feeds nothing at all is an error. Each key's type and range are stated once:
``TRAINING`` for the loop's settings, the functions' annotated signatures plus ``KWARG_BOUNDS`` for the rest.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import inspect
import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trainables import encoders
from trainables.encoders import ENCODERS
from trainables.losses import LOSSES
from trainables.scenarios import SCENARIOS

_SEED_MAX = 2**31 - 1  # seeds feed torch and NumPy generators (with offsets); keep them in int32


class ConfigError(ValueError):
    """A config key or value that cannot feed any function; ``key`` names it (None: the whole config)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Bounds:
    """The valid values of one key: ``low``/``high`` (closed, or open where said) or ``choices``."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    choices: tuple[str, ...] | None = None
    pattern: str | None = None  # a full-match regex for strings, described by ``text``
    text: str = ""  # what is valid, in words, where the fields above do not say it
    why: str = ""  # said when a value is out of range

    def describe(self, kind: type) -> str:
        if self.text:
            return self.text
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        noun = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string"}.get(
            kind, kind.__name__)
        low, high = (None if x is None else str(int(x)) if float(x).is_integer() else f"{x:.6g}"
                     for x in (self.low, self.high))
        if low is None:
            return noun if high is None else f"{noun} <= {high}"
        if high is None:
            return f"{noun} {'>' if self.open_low else '>='} {low}"
        return f"{noun} in {'(' if self.open_low else '['}{low}, {high}]"

    def contains(self, value: Any) -> bool:
        if self.pattern is not None:
            return re.fullmatch(self.pattern, value) is not None
        if self.choices is not None:
            return value in self.choices
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        return self.high is None or value <= self.high


@dataclass(frozen=True)
class Param:
    """One config key: its type (int, float, str or bool), default and bounds."""

    type: type
    default: Any
    bounds: Bounds = field(default_factory=Bounds)

    def cast(self, value: Any) -> Any:
        """``value`` as the key's type (an integral float for an int, an int for a float), or None where it is
        not one (bools are not numbers; NaN and inf are not finite numbers)."""
        if self.type in (bool, str):
            return value if isinstance(value, self.type) else None
        if ((type(value) not in (int, float) and (isinstance(value, bool) or not isinstance(value, numbers.Real)))
                or not math.isfinite(value)):
            return None
        if self.type is int:
            return int(value) if float(value).is_integer() else None
        return float(value)

    def check(self, key: str, value: Any) -> Any:
        """``value`` cast to the key's type; raises ConfigError naming the key, the value and what is valid."""
        v = self.cast(value)
        if v is not None and self.bounds.contains(v):
            return v
        why = f" ({self.bounds.why})" if self.bounds.why and v is not None else ""
        hint = ""
        if self.type is str and isinstance(value, bool):
            hint = " (YAML reads yes/no/on/off/true/false as booleans: quote it)"
        elif self.type in (int, float) and isinstance(value, str):
            with contextlib.suppress(ValueError):  # a number written as a string: say so
                float(value)
                hint = " (a string, not a number: write it without quotes, e.g. 0.001 or 1.0e-3)"
        raise ConfigError(f"{key} must be {self.bounds.describe(self.type)}{why}, got {value!r}{hint}", key)


# Settings of the training loop itself: type, default and range.
TRAINING: dict[str, Param] = {
    "scenario": Param(str, "hypercube"), "encoder": Param(str, "mlp"), "loss": Param(str, "info_nce"),  # registry names
    "embedding_dim": Param(int, 16, Bounds(low=1)),
    "steps": Param(int, 1000, Bounds(low=1)),
    "batch_size": Param(int, 256, Bounds(low=2, why="a contrastive batch needs negatives")),
    "lr": Param(float, 1e-3, Bounds(low=0, open_low=True)),
    "weight_decay": Param(float, 0.0, Bounds(low=0)),
    "eval_every": Param(int, 250, Bounds(low=1)),
    "seed": Param(int, 0, Bounds(low=0, high=_SEED_MAX)),
    "n_eval": Param(int, 2048, Bounds(low=2, why="probes fit on one half of the held-out sample, test on the other")),
    "device": Param(str, "auto", Bounds(pattern=r"auto|cpu|cuda(:\d+)?", text="'auto', 'cpu', 'cuda' or 'cuda:N'")),
}
TRAINING_DEFAULTS: dict[str, Any] = {k: p.default for k, p in TRAINING.items()}

# Ranges of the scenarios', encoders' and losses' keyword arguments (their types and defaults are the
# functions' annotated signatures). ``name`` applies to every function taking it; ``function.name``
# overrides it for one function. Cross-key limits (n_invariant <= dim, ...) are the scenario's own.
KWARG_BOUNDS: dict[str, Bounds] = {
    # scenarios: hypercube's (dim, aug_noise and data_seed also bound the other scenarios taking them)
    "dim": Bounds(low=1),
    "n_invariant": Bounds(low=1, high=62, why="cluster ids 2^n_invariant fit int64"),
    "aug_noise": Bounds(low=0),
    "gmm.aug_noise": Bounds(low=0, high=1, why="the probability that the positive comes from a random component"),
    "nested_clusters.aug_noise": Bounds(low=0, high=1, why="the probability of a random sub-cluster"),
    "spurious": Bounds(choices=("redraw", "scale")),
    "data_seed": Bounds(low=0, high=_SEED_MAX),
    # gmm
    "n_clusters": Bounds(low=2), "separation": Bounds(low=0, open_low=True),
    "nuisance_std": Bounds(low=0, open_low=True), "cov_tilt": Bounds(low=0, high=math.pi / 2),
    # sphere_mixing (mixing_layers: content_style's too)
    "latent_dim": Bounds(low=2), "kappa": Bounds(low=0, open_low=True), "mixing_layers": Bounds(low=0),
    # content_style
    "content_dim": Bounds(low=1), "style_dim": Bounds(low=1), "style_change_prob": Bounds(low=0, high=1),
    # nested_clusters
    "n_groups": Bounds(low=2), "n_sub": Bounds(low=1), "group_separation": Bounds(low=0, open_low=True),
    "sub_separation": Bounds(low=0), "cluster_std": Bounds(low=0),
    # encoders
    "width": Bounds(low=1), "depth": Bounds(low=1),
    "hidden": Bounds(pattern=r"([1-9][0-9]*(,[1-9][0-9]*)*)?",
                     text="comma-separated hidden sizes >= 1 such as '50,250,50', or '' for depth x width"),
    "activation": Bounds(choices=tuple(encoders.ACTIVATIONS)),
    "normalize": Bounds(choices=tuple(encoders.NORMALIZATIONS)),
    # losses
    "temperature": Bounds(low=0, open_low=True),
}
_NOT_KWARGS = {"device"}  # filled by the trainer, not by the config
_REGISTRIES: dict[str, Mapping[str, Callable[..., Any]]] = {"scenario": SCENARIOS, "encoder": ENCODERS, "loss": LOSSES}


@functools.cache
def params_of(fn: Callable[..., Any]) -> dict[str, Param]:
    """The config keys ``fn`` takes: its keyword arguments with a default (those without one, such as
    ``input_dim`` or a loss's embeddings, are filled by the trainer), typed by their annotations."""
    out = {}
    for name, p in inspect.signature(fn, eval_str=True).parameters.items():
        if name in _NOT_KWARGS or p.default is p.empty or p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            continue
        kind = p.annotation if p.annotation in (int, float, str, bool) else type(p.default)
        bounds = KWARG_BOUNDS.get(f"{fn.__name__}.{name}") or KWARG_BOUNDS.get(name) or Bounds()
        out[name] = Param(kind, p.default, bounds)
    return out


@functools.cache
def _training_keys_of(fn: Callable[..., Any]) -> list[str]:  # training settings fn takes, e.g. embedding_dim
    return [name for name in inspect.signature(fn).parameters if name in TRAINING and name not in _NOT_KWARGS]


def param(key: str, function: str | None = None) -> Param:
    """The Param of ``key``: a training setting, or the keyword argument of the named scenario, encoder or loss
    (default: the first function taking it)."""
    if key in TRAINING:
        return TRAINING[key]
    for registry in _REGISTRIES.values():
        for name, fn in registry.items():
            if (function is None or name == function) and key in params_of(fn):
                return params_of(fn)[key]
    raise ConfigError(_unknown_message([key]), key)


def known_keys() -> list[str]:
    """Every config key that feeds some function, sorted."""
    return sorted(set(TRAINING).union(*(params_of(fn) for reg in _REGISTRIES.values() for fn in reg.values())))


def keys_of(kind: str, name: str) -> list[str]:
    """The config keys the named scenario, encoder or loss takes (its keyword arguments)."""
    fn = _lookup(kind, name)
    return list(params_of(fn)) + [k for k in _training_keys_of(fn) if k not in params_of(fn)]


def _unknown_message(unknown: list[str]) -> str:
    known = known_keys()
    hints = [f"{k!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, known, 1)) else repr(k)
             for k in unknown]
    return f"unknown config key {', '.join(hints)}; valid keys: {', '.join(known)}"


def _lookup(kind: str, name: Any) -> Callable[..., Any]:
    registry = _REGISTRIES[kind]
    if not isinstance(name, str) or name not in registry:
        raise ConfigError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(registry))}", kind)
    return registry[name]


def flatten(config: Mapping[str, Any]) -> dict[str, Any]:
    """Merge nested dicts (a grid axis whose cells set several keys at once) into one flat config."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        for k, v in flatten(value).items() if isinstance(value, Mapping) else [(key, value)]:
            if k in flat and flat[k] != v:
                raise ConfigError(f"key {k!r} is set twice with different values: {flat[k]!r} and {v!r}", k)
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
    if unknown := sorted(set(config).difference(known_keys())):
        raise ConfigError(_unknown_message(unknown), unknown[0])
    training = {k: p.check(k, config[k]) if k in config else p.default for k, p in TRAINING.items()}
    kwargs = {}
    for kind in _REGISTRIES:
        fn = _lookup(kind, training[kind])
        kwargs[kind] = {k: p.check(k, config[k]) if k in config else p.default for k, p in params_of(fn).items()}
        kwargs[kind].update({k: training[k] for k in _training_keys_of(fn)})
    for key in set(config) - set(TRAINING).union(*kwargs.values()):  # another function's: ignored, but well-typed
        if param(key).cast(config[key]) is None:
            param(key).check(key, config[key])
    return ResolvedConfig(training["scenario"], training["encoder"], training["loss"], kwargs["scenario"],
                          kwargs["encoder"], kwargs["loss"], training)


def effective(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flat config a trial really runs: the keys it uses, defaults filled in, ignored keys dropped."""
    r = resolve(config)
    return {**r.training, **r.scenario_kwargs, **r.encoder_kwargs, **r.loss_kwargs}
