"""Study specs: one YAML file per study, loaded and validated completely before Ray starts.

A spec names the study, fixes part of the trainable's config (``trainable:``), sweeps the
rest (``grid:`` axes, ``search:`` distributions for Optuna, ``seeds:``), and says how to
schedule (searcher, scheduler, resources, concurrency). ``smoke:`` holds overrides,
deep-merged by ``--smoke``, that make a study small enough for CI.

Validation is whole and early: every grid cell is resolved once, here, into the effective config
its trial runs (``StudySpec.cells()``), so a bad type, range or name, a key that no cell uses, two
cells that are the same trial, an objective or analysis metric the scenarios do not produce, or a
grid too large to enumerate is refused with the key, the value and what is valid, before Ray or
MLflow is touched.
"""

from __future__ import annotations

import copy
import difflib
import io
import itertools
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from search_spaces import capacity, distribution, log2_range
from study.baselines import check_threshold
from trainables.config import TRAINING, ConfigError, effective, flatten, keys_of, param
from trainables.scenarios import SCENARIOS

MAX_CELLS = 100_000  # grid cells enumerated at most, unless the spec (max_cells) or --max-cells says more
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"  # so never '.', '..', a path or a hidden folder


class SpecError(ValueError):
    """A study spec that cannot run; the message names the file, the key and what is valid."""


class _Strict(BaseModel):
    # strict: no bool for an int, no "3" for a number; allow_inf_nan: numbers are finite
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Searcher(_Strict):
    """How trials are chosen: every grid cell (grid), Optuna over ``search:`` distributions (optuna), or the
    cells where the phase boundary is uncertain (boundary, see ``study.boundary``; its axes, metric and
    threshold default to the ``analysis:`` block, its candidate cells are the grid's)."""

    type: Literal["grid", "optuna", "boundary"] = "grid"
    sampler: Literal["tpe", "random", "qmc", "cmaes"] = "tpe"
    seed: int = 0
    # boundary
    x: str | None = None
    y: str | None = None
    slice: str | None = Field(None, description="the optional third axis (z)")
    metric: str | None = None
    threshold: float | None = None
    increasing: bool | None = None
    precision: int = Field(1, ge=1, description="boundary: a row is done when bracketed within this many grid steps")
    budget: int | None = Field(None, ge=1, description="boundary: at most this many configs (default: until done)")
    noise: float = Field(0.005, ge=0, description="boundary: the least seed std assumed for a cell, metric units")
    z: float = Field(1.0, gt=0, description="boundary: a cell is trusted beyond z standard errors of the threshold")


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


class Analysis(_Strict):
    """The ``analysis:`` block: defaults of ``clphase analyze`` (its keys are ``analysis.load.ANALYSIS_KEYS``)."""

    x: str | None = None
    y: str | None = None
    metric: str | None = None
    threshold: float | None = None
    slice: str | None = None
    increasing: bool | None = None
    n_boot: int | None = Field(None, ge=1)


class StudySpec(_Strict):
    name: str
    description: str = ""
    trainable: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, dict[str, list[Any]]] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    searcher: Searcher = Field(default_factory=Searcher)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    num_samples: int = Field(1, ge=1,
                             description="optuna: number of trials (a grid runs each cell once: seeds replicate)")
    objective: Objective = Field(default_factory=Objective)
    resources: Resources = Field(default_factory=Resources)
    max_concurrent: int | None = Field(None, ge=1)
    max_failures: int = Field(1, ge=0, description="retries of a failing trial, from its last checkpoint")
    pack_size: int | Literal["auto"] | None = Field(
        None, description="configs trained as one vectorised model per trial (grid searcher only); auto: "
        "as many as fit the trial's device")
    max_cells: int = Field(MAX_CELLS, ge=1, description="the largest grid this spec may enumerate")
    analysis: dict[str, Any] = Field(default_factory=dict)
    smoke: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _folder_name(cls, v: str) -> str:
        if not re.fullmatch(_NAME, v):
            raise ValueError("a study name is one folder name inside --out: 1 to 128 letters, digits, '_', '.' "
                             "or '-', not starting with '.' or '-'")
        return v

    _axes: dict[str, list[Any]] | None = PrivateAttr(None)
    _cells: list[dict[str, Any]] | None = PrivateAttr(None)
    _cell_limit: int | None = PrivateAttr(None)  # --max-cells, which outranks max_cells

    # --- derived views -------------------------------------------------------------------
    def grid_axes(self) -> dict[str, list[Any]]:
        """Every grid axis as an explicit list of cells (``seed`` last), shorthands expanded."""
        if self._axes is None:
            axes = {key: expand_axis(key, value) for key, value in self.grid.items()}
            if "seed" not in axes and "seed" not in self.search:
                axes["seed"] = list(self.seeds)
            self._axes = axes
        return dict(self._axes)

    def n_cells(self) -> int:
        """The number of grid cells, from the axes' lengths (nothing is enumerated)."""
        return math.prod(len(cells) for cells in self.grid_axes().values())

    def cells(self) -> list[dict[str, Any]]:
        """The effective config of every grid cell (``trainables.config.effective``: the keys its trial
        uses, defaults filled in, ignored keys dropped), in Tune's grid order. Resolved once and kept:
        the trials run these configs as they are."""
        if self._cells is None:
            self._cells = self._resolve_cells()
        return self._cells

    def _resolve_cells(self) -> list[dict[str, Any]]:
        axes = self.grid_axes()
        limit = self._cell_limit or self.max_cells
        n = self.n_cells()
        if n > limit:
            sizes = " x ".join(f"{len(v)} {k}" for k, v in axes.items())
            raise SpecError(f"grid: {n:,} cells ({sizes}) is more than max_cells = {limit:,}; shrink the grid, "
                            f"or raise the limit (max_cells: N in the spec, or --max-cells N)")
        out: list[dict[str, Any]] = []
        for values in itertools.product(*axes.values()):
            try:
                out.append(effective({**self.trainable, **dict(zip(axes, values, strict=True))}))
            except ConfigError as err:
                raise SpecError(f"{self._where(err.key)}: {err}") from None
        return out

    def cell_of(self, index: int) -> dict[str, Any]:
        """The grid values of cell ``index`` of ``cells()`` (axis -> value), without enumerating the grid."""
        cell = {}
        for axis, values in reversed(self.grid_axes().items()):  # the last axis varies fastest
            index, i = divmod(index, len(values))
            cell[axis] = values[i]
        return dict(reversed(cell.items()))

    def _where(self, key: str | None) -> str:
        """Where in the spec a config key is set: ``grid.<axis>``, ``seeds`` or ``trainable.<key>``."""
        for axis, values in self.grid_axes().items():
            if key == axis or any(isinstance(v, Mapping) and key in flatten(v) for v in values):
                return "seeds" if axis == "seed" and "seed" not in self.grid else f"grid.{axis}"
        return f"trainable.{key}" if key in flatten(self.trainable) else "trainable"

    def n_trials(self) -> int:
        if self.searcher.type == "optuna":
            return self.num_samples
        return self.n_cells() * self.num_samples


_AXIS_SHORTHANDS = "a list of values, {log2: [low, high]}, or for capacity {linear, widths, depths}"


def expand_axis(key: str, value: Any) -> list[Any]:
    """A grid axis as its list of cells; shorthands: ``{log2: [lo, hi]}``, ``capacity: {...}``."""
    if isinstance(value, list):
        cells = value
    elif isinstance(value, Mapping) and set(value) == {"log2"}:
        bounds = value["log2"]
        if not (isinstance(bounds, list) and len(bounds) == 2
                and all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
                and 1 <= bounds[0] <= bounds[1] <= 2**40):
            raise SpecError(f"grid.{key}.log2 must be [low, high], integers with 1 <= low <= high <= 2^40, "
                            f"got {bounds!r}")
        cells = log2_range(*bounds)
    elif key == "capacity" and isinstance(value, Mapping):
        cells = capacity(**_capacity_args(value))
    else:
        raise SpecError(f"grid.{key}: expected {_AXIS_SHORTHANDS}, got {value!r}")
    if not cells:
        raise SpecError(f"grid.{key} is empty: a grid axis needs at least one value")
    return list(cells)


def _capacity_args(value: Mapping[str, Any]) -> dict[str, Any]:
    """The capacity shorthand's arguments, each checked as the encoder's own key (no ``widths: [true]``)."""
    unknown = set(value) - {"linear", "widths", "depths"}
    if unknown:
        raise SpecError(f"grid.capacity: unknown key {sorted(unknown)}; valid: linear, widths, depths")
    linear = value.get("linear", True)
    if not isinstance(linear, bool):
        raise SpecError(f"grid.capacity.linear must be true or false, got {linear!r}")
    args: dict[str, Any] = {"linear": linear}
    for plural, key in (("widths", "width"), ("depths", "depth")):
        if plural in value:
            items = value[plural]
            if not isinstance(items, list):
                raise SpecError(f"grid.capacity.{plural} must be a list of integers >= 1, got {items!r}")
            try:
                args[plural] = [param(key, "mlp").check(key, v) for v in items]
            except ConfigError as err:
                raise SpecError(f"grid.capacity.{plural}: {err}") from None
    if not linear and not args.get("widths"):
        raise SpecError("grid.capacity is empty: set linear: true or give widths")
    return args


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` wins; nested mappings merge, lists and scalars replace."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _format_validation(err: ValidationError, source: str, model: type[BaseModel] | None = None,
                       prefix: tuple[str, ...] = ()) -> str:
    lines = []
    for e in err.errors():
        loc = [*prefix, *(str(p) for p in e["loc"])]
        where = ".".join(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            valid = list(_model_at(model or StudySpec, loc[len(prefix):-1]).model_fields)
            close = difflib.get_close_matches(loc[-1], valid, 1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            lines.append(f"unknown key {where!r}{hint}; valid keys here: {', '.join(valid)}")
        else:
            lines.append(f"{where}: {e['msg']} (got {e.get('input')!r})")
    return f"{source}: " + "; ".join(lines)


def _model_at(model: type[BaseModel], path: list[str]) -> type[BaseModel]:
    for part in path:
        model = model.model_fields[part].annotation  # type: ignore[assignment]
    return model


def parse_spec(data: Any, source: str = "spec", smoke: bool = False, max_cells: int | None = None) -> StudySpec:
    """Validate a spec mapping (``smoke`` applies its smoke block) and every config it implies;
    ``max_cells`` (``--max-cells``) replaces the spec's own limit on the grid's size."""
    if data is None:
        raise SpecError(f"{source}: the spec is empty; a study spec is a YAML mapping with at least name:")
    if not isinstance(data, Mapping):
        raise SpecError(f"{source}: a study spec is a YAML mapping, got {type(data).__name__}")
    if smoke:
        if not data.get("smoke"):
            raise SpecError(f"{source}: --smoke asked for, but the spec has no smoke: block")
        if not isinstance(data["smoke"], Mapping):
            raise SpecError(f"{source}: smoke: must be a mapping of overrides, got {data['smoke']!r}")
        data = deep_merge({k: v for k, v in data.items() if k != "smoke"}, data["smoke"])
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(_format_validation(err, source)) from None
    try:
        Analysis.model_validate(spec.analysis)
    except ValidationError as err:
        raise SpecError(_format_validation(err, source, Analysis, ("analysis",))) from None
    if max_cells is not None:
        if isinstance(max_cells, bool) or not isinstance(max_cells, int) or max_cells < 1:
            raise SpecError(f"--max-cells must be an integer >= 1, got {max_cells!r}")
        spec._cell_limit = max_cells
    try:
        _check_configs(spec)
    except (ConfigError, ValueError, TypeError) as err:
        raise SpecError(f"{source}: {err}") from None
    if not smoke and data.get("smoke"):  # what CI runs (--smoke) is checked with the rest
        parse_spec(data, f"{source} (with its smoke: block)", smoke=True)
    return spec


def _check_configs(spec: StudySpec) -> None:
    """Resolve every cell's config, check that every key set is used and that the objective and the
    analysis name what the cells produce, and build each distinct scenario once (its cross-key
    limits, e.g. ``n_invariant <= dim``): all before Ray starts."""
    overlap = set(spec.grid) & set(spec.search)
    if overlap:
        raise SpecError(f"keys both in grid and search: {sorted(overlap)}")
    if "seed" in spec.grid and "seeds" in spec.model_fields_set:
        raise SpecError("seeds: and grid.seed both set the seeds; keep one")
    if spec.searcher.type == "grid" and spec.search:
        raise SpecError("search: distributions need searcher.type: optuna (the grid searcher takes grid: axes)")
    if spec.searcher.type == "optuna" and not spec.search:
        raise SpecError("searcher.type optuna needs a search: block of distributions")
    if spec.searcher.type == "boundary":  # its module imports Ray Tune (~1 s): only for its specs
        from study.boundary import check_spec as check_boundary_search

        check_boundary_search(spec)
    if spec.searcher.type == "grid" and spec.num_samples > 1:
        raise SpecError(f"num_samples: {spec.num_samples} would run each grid cell {spec.num_samples} times with the "
                        "same seed, so with the same result (training is seeded); for replicates list more seeds "
                        "(seeds: [0, 1, 2]); num_samples counts the trials of searcher.type optuna")
    if spec.pack_size is not None:
        if spec.searcher.type not in ("grid", "boundary") or spec.scheduler.type != "fifo":
            raise SpecError("pack_size packs grid cells: it needs searcher.type grid (or boundary) and "
                            "scheduler.type fifo")
        if isinstance(spec.pack_size, int) and spec.pack_size < 1:
            raise SpecError(f"pack_size must be >= 1 or auto, got {spec.pack_size}")
    cells = spec.cells()
    if spec.resources.gpu == 0 and any(str(c.get("device", "auto")).startswith("cuda") for c in cells):
        raise SpecError("trainable.device: 'cuda' needs a GPU share per trial (resources.gpu, e.g. 1 or 0.25): Ray "
                        "hides the GPUs from a trial that asks for none; or leave device: auto")
    probes = _search_probes(spec)
    for probe in probes:
        _resolve_probe(cells[0], probe)
    kinds = {(c["scenario"], c["encoder"], c["loss"]) for c in cells}
    used = set(TRAINING).union(*(keys_of("scenario", s) + keys_of("encoder", e) + keys_of("loss", lo)
                                 for s, e, lo in kinds))
    _check_used(spec, used, kinds)
    _check_distinct(spec, cells)
    metrics = _build_scenarios(cells + [effective({**cells[0], **p}) for p in probes])
    _check_metric("objective.metric", spec.objective.metric, metrics)
    _check_analysis(spec.analysis, used, metrics)
    check_threshold(spec)  # an analysis threshold above every oracle of its metric (study.baselines)


def _search_probes(spec: StudySpec) -> list[dict[str, Any]]:
    """Values at the ends of each search distribution (each of a choice), to check like grid values."""
    lows: dict[str, Any] = {}
    ends: list[tuple[str, Any]] = []
    for key, dist in spec.search.items():
        if len(dist) != 1:
            raise SpecError(f"search.{key}: one distribution per key, e.g. {{loguniform: [1e-4, 1e-2]}}")
        (name, args), = dist.items()
        try:
            kind = param(key).type
        except ConfigError as err:
            raise SpecError(f"search.{key}: {err}") from None
        floats = {"uniform", "loguniform", "quniform"}
        if (name in floats and kind is not float) or (kind in (str, bool) and name != "choice"):
            valid = "choice" if kind in (str, bool) else "randint, lograndint, qrandint or choice"
            raise SpecError(f"search.{key}: {key} takes {kind.__name__} values, which a {name} distribution "
                            f"does not give; use {valid}")
        try:
            distribution(name, args)
        except (TypeError, ValueError) as err:
            raise SpecError(f"search.{key}: {name}{args}: {err}") from None
        if name == "choice":
            values = list(args)
        else:
            high = args[1] - 1 if name in ("randint", "lograndint") else args[1]
            values = [args[0], high]
        lows[key] = values[0]
        ends += [(key, v) for v in values]
    return [{**lows, key: v} for key, v in ends] if ends else []


def _resolve_probe(cell: Mapping[str, Any], probe: Mapping[str, Any]) -> None:
    try:
        effective({**cell, **probe})
    except ConfigError as err:
        raise SpecError(f"search.{err.key}: {err}") from None


def _check_used(spec: StudySpec, used: set[str], kinds: set[tuple[str, str, str]]) -> None:
    """Every key the spec sets feeds some cell: a grid over a key no cell takes makes identical trials."""
    places = [(f"trainable.{k}", k) for k in flatten(spec.trainable)]
    for axis, values in spec.grid_axes().items():
        keys = sorted({k for v in values if isinstance(v, Mapping) for k in flatten(v)}) or [axis]
        places += [(f"grid.{axis}", k) for k in keys]
    places += [(f"search.{k}", k) for k in spec.search]
    for where, key in places:
        if key not in used:
            scenarios = ", ".join(f"{s!r} (keys: {', '.join(keys_of('scenario', s))})"
                                  for s in sorted({s for s, _, _ in kinds}))
            raise SpecError(f"{where}: no cell uses {key!r} (a key of {_owners(key)}); this study's cells run "
                            f"scenario {scenarios}, encoder {', '.join(sorted({e for _, e, _ in kinds}))} and loss "
                            f"{', '.join(sorted({lo for _, _, lo in kinds}))}")


def _check_distinct(spec: StudySpec, cells: list[dict[str, Any]]) -> None:
    """No two cells train the same config (a swept key that some cells ignore, or a repeated value)."""
    first_of: dict[tuple[Any, ...], int] = {}
    for i, config in enumerate(cells):
        j = first_of.setdefault(tuple(config.items()), i)
        if j != i:
            cell = spec.cell_of(i)
            ignored = sorted(k for k in flatten({**spec.trainable, **cell}) if k not in config)
            why = (f"{', '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} not used by "
                   f"scenario {config['scenario']!r}, encoder {config['encoder']!r} or loss {config['loss']!r}"
                   if ignored else "a value is repeated")
            values = ", ".join(f"{k}={v!r}" for k, v in cell.items())
            earlier = ", ".join(f"{k}={v!r}" for k, v in spec.cell_of(j).items())
            raise SpecError(f"grid: the cells {earlier} and {values} train the same config ({why}); every cell must "
                            "be a different trial: remove the repeated value, or sweep capacity with capacity:")


def _owners(key: str) -> str:
    from trainables.encoders import ENCODERS
    from trainables.losses import LOSSES

    found = [f"{kind} {name!r}" for kind, registry in (("scenario", SCENARIOS), ("encoder", ENCODERS),
                                                       ("loss", LOSSES))
             for name in registry if key in keys_of(kind, name)]
    return " and ".join(found) or "no function"


# What each part of a scenario's ground truth lets ``trainables.metrics.evaluate`` measure (its table);
# every trial also reports effective_rank, train_loss and eval_loss.
METRICS_OF_TRUTH: dict[str, tuple[str, ...]] = {
    "label": ("probe_acc",),
    "cluster": ("cluster_acc", "randlabel_acc", "ari", "nmi"),
    "subcluster": ("sub_randlabel_acc",),
    "fisher_basis": ("subspace_overlap",),
    "latent": ("r2_linear", "mcc"),
    "content": ("content_r2", "content_r2_linear"),
    "style": ("style_r2", "style_r2_linear"),
}
ALWAYS_METRICS = ("effective_rank", "train_loss", "eval_loss")


def scenario_metrics(scenario: Any) -> set[str]:
    """The metrics a trial of this built scenario reports."""
    import torch

    truth = set(scenario.heldout(4, torch.Generator().manual_seed(0))) | set(scenario.truth)
    names = set(ALWAYS_METRICS) | {m for part in truth for m in METRICS_OF_TRUTH.get(part, ())}
    if {"fisher_basis", "pca_basis"} <= truth:
        names.add("pca_overlap")
    return names


def _build_scenarios(configs: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Build each distinct scenario once (its own cross-key checks); the metrics of each scenario name."""
    seen: set[tuple[Any, ...]] = set()
    metrics: dict[str, set[str]] = {}
    for config in configs:
        name = config["scenario"]
        kwargs = {k: config[k] for k in keys_of("scenario", name)}
        signature = (name, *kwargs.items())
        if signature in seen:
            continue
        seen.add(signature)
        try:
            built = SCENARIOS[name](**kwargs, device="cpu")
        except ValueError as err:
            raise SpecError(f"scenario {name!r} with {kwargs}: {err}") from None
        if name not in metrics:
            metrics[name] = scenario_metrics(built)
    return metrics


def _check_metric(where: str, metric: Any, metrics: dict[str, set[str]]) -> None:
    if metric in {"step", "n_params", "diverged", "train_s", "eval_s"}:
        raise SpecError(f"{where} {metric!r} is bookkeeping, not a metric")
    for scenario, names in sorted(metrics.items()):
        if metric not in names:
            close = difflib.get_close_matches(str(metric), sorted(names), 1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpecError(f"{where}: {metric!r} is not a metric of scenario {scenario!r}{hint}; its metrics: "
                            f"{', '.join(sorted(names))}")


def _check_analysis(block: Mapping[str, Any], used: set[str], metrics: dict[str, set[str]]) -> None:
    analysis = Analysis.model_validate(block)
    if analysis.metric is not None:
        _check_metric("analysis.metric", analysis.metric, metrics)
    columns = sorted(used | {"capacity"})
    for key in ("x", "y", "slice"):
        value = getattr(analysis, key)
        if value is None or (key == "slice" and value in ("", "none", "None")):
            continue
        if value not in columns:
            close = difflib.get_close_matches(value, columns, 1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpecError(f"analysis.{key}: {value!r} is not a config key of this study's cells{hint}; valid: "
                            f"{', '.join(columns)}")


class _SpecLoader(yaml.SafeLoader):
    """YAML as a spec means it: a key given twice is an error (not "the last wins"), and ``1e-3`` is the
    number it looks like (YAML 1.2), not the string YAML 1.1 reads."""


def _mapping_without_duplicates(loader: _SpecLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: construct_mapping says so
            break
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first given on line {first + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_SpecLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)
_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_spec_yaml(path: str | Path) -> Any:
    """The YAML of a spec file; raises SpecError (not a traceback) for a folder, binary or invalid YAML."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: no such spec file")
    if path.is_dir():
        raise SpecError(f"{path} is a folder; give a study YAML file (or a bundled spec's name)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); "
                        "a spec is a YAML text file") from None
    except OSError as err:
        raise SpecError(f"{path}: cannot read it: {err.strerror}") from None
    stream = io.StringIO(text)
    stream.name = str(path)  # YAML's error marks name the file
    try:
        return yaml.load(stream, Loader=_SpecLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: invalid YAML: {err}") from None


def load_spec(path: str | Path, smoke: bool = False, max_cells: int | None = None) -> StudySpec:
    """Read and validate ``path``; raises SpecError with the file name on any problem."""
    return parse_spec(read_spec_yaml(path), str(path), smoke=smoke, max_cells=max_cells)


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
