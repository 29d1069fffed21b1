"""The platform's sweep axes as Tune search spaces. Plain functions that do no work.

Grid axes (``tune.grid_search``) make phase diagrams: every cell exactly once. A grid
cell may be a dict that sets several config keys at once (e.g. one encoder capacity =
``{"encoder": "mlp", "width": 64, "depth": 2}``); the trainable flattens it.
Distributions (``tune.loguniform`` ...) feed Optuna.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def log2_range(low: int, high: int) -> list[int]:
    """Powers of two from ``low`` to ``high`` inclusive: ``log2_range(2, 16) == [2, 4, 8, 16]``."""
    if low < 1 or high < low:
        raise ValueError(f"log2_range needs 1 <= low <= high, got low={low}, high={high}")
    values, v = [], 1
    while v <= high:
        if v >= low:
            values.append(v)
        v *= 2
    if not values:
        raise ValueError(f"no power of two between {low} and {high}")
    return values


def capacity(
    linear: bool = True, widths: Sequence[int] = (), depths: Sequence[int] = (1,)
) -> list[dict[str, Any]]:
    """Encoder capacities, smallest class first: the linear encoder, then every ReLU MLP width × depth."""
    cells: list[dict[str, Any]] = [{"encoder": "linear"}] if linear else []
    cells += [{"encoder": "mlp", "width": int(w), "depth": int(d)} for d in depths for w in widths]
    if not cells:
        raise ValueError("capacity axis is empty: set linear: true or give widths")
    return cells


def grid(axes: dict[str, Sequence[Any]]) -> dict[str, Any]:
    """A Tune param space crossing every axis: one trial per cell."""
    for key, values in axes.items():
        if len(values) == 0:
            raise ValueError(f"grid axis {key!r} is empty")
    from ray import tune

    return {key: tune.grid_search(list(values)) for key, values in axes.items()}


# Tune's constructors by name (``tune.<name>``, imported when one is built: Ray Tune takes ~1 s to import).
DISTRIBUTIONS = ("uniform", "loguniform", "quniform", "randint", "lograndint", "qrandint", "choice")


def distribution(name: str, args: Sequence[Any]) -> Any:
    """One Tune distribution, e.g. ``distribution("loguniform", [1e-4, 1e-2])``.

    ``choice`` takes the list of categories; the others take their bounds (and ``q``).
    """
    from ray import tune

    if name not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {name!r}; valid: {', '.join(DISTRIBUTIONS)}")
    if name == "choice":
        if not isinstance(args, Sequence) or isinstance(args, str) or not len(args):
            raise ValueError("choice takes a non-empty list of values, e.g. [0.1, 0.3]")
        return tune.choice(list(args))
    q = name.startswith("q")
    if not isinstance(args, Sequence) or isinstance(args, str) or len(args) != 2 + q:
        raise ValueError(f"{name} takes [low, high{', q' if q else ''}]")
    if not all(isinstance(a, int | float) and not isinstance(a, bool) and math.isfinite(a) for a in args):
        raise ValueError(f"{name} takes finite numbers, got {list(args)}")
    low, high = args[0], args[1]
    if not low < high:
        raise ValueError(f"low must be < high, got low {low} and high {high}")
    if name.startswith("log") and low <= 0:
        raise ValueError(f"a log-scale range needs low > 0, got {low}")
    if q and args[2] <= 0:
        raise ValueError(f"q (the step) must be > 0, got {args[2]}")
    return getattr(tune, name)(*args)
