"""Study specs: one YAML file per study, loaded and validated completely before Ray starts.

A spec names the study, fixes part of the trainable's config (``trainable:``), sweeps the
rest (``grid:`` axes, ``search:`` distributions for Optuna, ``seeds:``), and says how to
schedule (searcher, scheduler, resources, concurrency). ``smoke:`` holds overrides,
deep-merged by ``--smoke``, that make a study small enough for CI.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from search_spaces import capacity, distribution, log2_range
from trainables.config import ConfigError, flatten, resolve
from trainables.scenarios import SCENARIOS


class SpecError(ValueError):
    """A study spec that cannot run; the message names the file, the key and what is valid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Searcher(_Strict):
    type: Literal["grid", "optuna"] = "grid"
    sampler: Literal["tpe", "random", "qmc", "cmaes"] = "tpe"
    seed: int = 0


class Scheduler(_Strict):
    type: Literal["fifo", "asha"] = "fifo"
    grace_period: int = Field(1, ge=1, description="reports a trial makes before ASHA may stop it")
    reduction_factor: float = Field(2.0, gt=1)


class Objective(_Strict):
    metric: str = "randlabel_acc"
    mode: Literal["max", "min"] = "max"


class Resources(_Strict):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)

    @field_validator("gpu")
    @classmethod
    def _whole_or_fraction(cls, v: float) -> float:
        if v > 1 and not float(v).is_integer():
            raise ValueError("a trial asks for a fraction of one GPU (<= 1) or a whole number of GPUs")
        return v


class StudySpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    trainable: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, dict[str, list[Any]]] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0])
    searcher: Searcher = Field(default_factory=Searcher)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    num_samples: int = Field(1, ge=1, description="grid: repeats of the grid; optuna: number of trials")
    objective: Objective = Field(default_factory=Objective)
    resources: Resources = Field(default_factory=Resources)
    max_concurrent: int | None = Field(None, ge=1)
    max_failures: int = Field(1, ge=0, description="retries of a failing trial, from its last checkpoint")
    pack_size: int | Literal["auto"] | None = Field(
        None, description="configs trained as one vectorised model per trial (grid searcher only); auto: "
        "as many as fit the trial's device")
    analysis: dict[str, Any] = Field(default_factory=dict)
    smoke: dict[str, Any] = Field(default_factory=dict)

    # --- derived views -------------------------------------------------------------------
    def grid_axes(self) -> dict[str, list[Any]]:
        """Every grid axis as an explicit list of cells (``seed`` last), shorthands expanded."""
        axes = {key: expand_axis(key, value) for key, value in self.grid.items()}
        if "seed" not in axes and "seed" not in self.search:
            axes["seed"] = list(self.seeds)
        return axes

    def cells(self) -> list[dict[str, Any]]:
        """The flat config of every grid cell (fixed keys included), in Tune's order."""
        axes = self.grid_axes()
        out = []
        for values in itertools.product(*axes.values()):
            out.append(flatten({**self.trainable, **dict(zip(axes, values, strict=True))}))
        return out

    def n_trials(self) -> int:
        if self.searcher.type == "optuna":
            return self.num_samples
        return len(self.cells()) * self.num_samples


_AXIS_SHORTHANDS = "a list of values, {log2: [low, high]}, or for capacity {linear, widths, depths}"


def expand_axis(key: str, value: Any) -> list[Any]:
    """A grid axis as its list of cells; shorthands: ``{log2: [lo, hi]}``, ``capacity: {...}``."""
    if isinstance(value, list):
        cells = value
    elif isinstance(value, Mapping) and set(value) == {"log2"}:
        cells = log2_range(*value["log2"])
    elif key == "capacity" and isinstance(value, Mapping):
        unknown = set(value) - {"linear", "widths", "depths"}
        if unknown:
            raise SpecError(f"grid.capacity: unknown key {sorted(unknown)}; valid: linear, widths, depths")
        cells = capacity(**value)
    else:
        raise SpecError(f"grid.{key}: expected {_AXIS_SHORTHANDS}, got {value!r}")
    if not cells:
        raise SpecError(f"grid.{key} is empty: a grid axis needs at least one value")
    return list(cells)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` wins; nested mappings merge, lists and scalars replace."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _format_validation(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            parent = e["loc"][:-1]
            model: Any = StudySpec
            for part in parent:
                model = model.model_fields[str(part)].annotation if hasattr(model, "model_fields") else None
            valid = ", ".join(model.model_fields) if hasattr(model, "model_fields") else "?"
            lines.append(f"unknown key {where!r}; valid keys here: {valid}")
        else:
            lines.append(f"{where}: {e['msg']} (got {e.get('input')!r})")
    return f"{source}: " + "; ".join(lines)


def parse_spec(data: Any, source: str = "spec", smoke: bool = False) -> StudySpec:
    """Validate a spec mapping (``smoke`` applies its smoke block) and every config it implies."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{source}: a study spec is a YAML mapping, got {type(data).__name__}")
    if smoke:
        if not data.get("smoke"):
            raise SpecError(f"{source}: --smoke asked for, but the spec has no smoke: block")
        data = deep_merge({k: v for k, v in data.items() if k != "smoke"}, data["smoke"])
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(_format_validation(err, source)) from None
    try:
        _check_configs(spec)
    except (ConfigError, ValueError) as err:
        raise SpecError(f"{source}: {err}") from None
    return spec


def _check_configs(spec: StudySpec) -> None:
    """Resolve every cell's config and build each distinct scenario once: bad keys, types and
    impossible combinations surface here, before Ray starts."""
    overlap = set(spec.grid) & set(spec.search)
    if overlap:
        raise SpecError(f"keys both in grid and search: {sorted(overlap)}")
    if spec.searcher.type == "grid" and spec.search:
        raise SpecError("search: distributions need searcher.type: optuna (the grid searcher takes grid: axes)")
    if spec.searcher.type == "optuna" and not spec.search:
        raise SpecError("searcher.type optuna needs a search: block of distributions")
    if spec.pack_size is not None:
        if spec.searcher.type != "grid" or spec.scheduler.type != "fifo":
            raise SpecError("pack_size packs grid cells: it needs searcher.type grid and scheduler.type fifo")
        if isinstance(spec.pack_size, int) and spec.pack_size < 1:
            raise SpecError(f"pack_size must be >= 1 or auto, got {spec.pack_size}")
    probe = {}
    for key, dist in spec.search.items():
        if len(dist) != 1:
            raise SpecError(f"search.{key}: one distribution per key, e.g. {{loguniform: [1e-4, 1e-2]}}")
        (name, args), = dist.items()
        space = distribution(name, args)
        probe[key] = args[0] if name == "choice" else space.lower  # a representative value
    cells = spec.cells()
    seen_scenarios: set[str] = set()
    for cell in cells:
        resolved = resolve({**cell, **probe})
        signature = repr((resolved.scenario, sorted(resolved.scenario_kwargs.items())))
        if signature not in seen_scenarios:
            seen_scenarios.add(signature)
            SCENARIOS[resolved.scenario](**resolved.scenario_kwargs, device="cpu")
    if spec.objective.metric in {"step", "n_params"}:
        raise SpecError(f"objective.metric {spec.objective.metric!r} is bookkeeping, not a metric")


def load_spec(path: str | Path, smoke: bool = False) -> StudySpec:
    """Read and validate ``path``; raises SpecError with the file name on any problem."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: no such spec file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: invalid YAML: {err}") from None
    return parse_spec(data, str(path), smoke=smoke)


def bundled_specs() -> dict[str, Path]:
    """The specs shipped with clphase, by name (``clphase run quickstart`` finds them)."""
    return {p.stem: p for p in sorted((Path(__file__).parent / "specs").glob("*.yaml"))}


def find_spec(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.exists():
        return path
    bundled = bundled_specs()
    if name_or_path in bundled:
        return bundled[name_or_path]
    raise SpecError(f"{name_or_path}: no such file, nor a bundled spec; bundled: {', '.join(bundled)}")
