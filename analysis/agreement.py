"""Agreement between a fitted phase boundary and the theory's prediction, row by row: one rule for the
report, the claims and ``clphase verify``.

A row agrees when the theory's value lies inside the row's bootstrap interval, or when both put the
boundary beyond the same end of the sampled range (a predicted value outside the range counts as
censored on that side). A censored row bounds its boundary by its own end of the range (``y_bound``:
past the threshold already at y_bound means a boundary <= y_bound; not past it at y_bound, > y_bound),
and a predicted value on that side of it agrees. A row without an interval (one seed) or without a
usable trial does not agree; a row the theory says nothing about has ``agree`` None.

The interval of a boundary along y is half-open, ``(y_low, y_high]``: ``y_low`` is a grid point where
the metric has not yet crossed the threshold in the bootstrap replicates and ``y_high`` one where it
has, so a boundary at ``y_low`` itself is ruled out by the data. The critical z of a third axis runs
the other way, ``[z_low, z_high)``: ``z_low`` is a z where some y still reaches the phase, ``z_high``
one where none does. ``delta`` is ``t(fitted) - t(theory)``, with t = log2 on a log axis (the log2
ratio of fitted to predicted) and t = the value on a linear one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from analysis.phase import PhaseDiagram
from analysis.theory import constant_params, predict

Closed = str  # "right": (low, high]; "left": [low, high)


def _finite(value: Any) -> bool:
    return value is not None and not pd.isna(value) and math.isfinite(float(value))


def _side(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _fmt(value: Any) -> str:
    return "—" if not _finite(value) else f"{float(value):.3g}"


def interval_text(low: Any, high: Any, closed: Closed = "right") -> str:
    """``(a, b]`` or ``[a, b)``; ``—`` without an interval; an open end as ±∞."""
    if not (_finite(low) or _finite(high)):
        return "—"
    a = _fmt(low) if _finite(low) else "−∞"
    b = _fmt(high) if _finite(high) else "∞"
    return f"({a}, {b}]" if closed == "right" else f"[{a}, {b})"


def inside(value: float, low: Any, high: Any, closed: Closed = "right") -> bool:
    """Whether ``value`` lies in the interval (an end that is NaN is open: ∓∞)."""
    lo = float(low) if _finite(low) else -math.inf
    hi = float(high) if _finite(high) else math.inf
    return lo < value <= hi if closed == "right" else lo <= value < hi


def agrees(
    value: Any, low: Any, high: Any, censored: Any, theory: Any, censored_theory: Any, *,
    grid: Sequence[float] | None = None, closed: Closed = "right", sides: dict[str, str] | None = None,
    bound: Any = None,
) -> tuple[bool | None, str]:
    """The rule (module docstring) for one fitted boundary against one prediction; returns the verdict
    (None without a prediction) and why, in words. ``grid``: the sampled range (a predicted value
    beyond it is censored on that side); ``sides``: the words for a censored side; ``bound``: a censored
    row's own end of the range (``y_bound``/``z_bound``: a row with missing cells ends before the grid does),
    against which a predicted value is compared."""
    fitted, predicted = _side(censored), _side(censored_theory)
    if predicted is None and not _finite(theory):
        return None, "no prediction"
    sides = sides or {"above": "beyond the range", "below": "before the range"}
    theory_text = _fmt(theory) if _finite(theory) else sides[predicted]
    if predicted is None and grid is not None and len(grid):
        predicted = "below" if float(theory) < min(grid) else "above" if float(theory) > max(grid) else None
        theory_text += f" ({sides[predicted]})" if predicted else ""
    if fitted and _finite(theory) and _finite(bound):  # the data bound the boundary on one side of the row's end
        t, b = float(theory), float(bound)
        right = closed == "right"
        ok = (t <= b if right else t < b) if fitted == "below" else (t > b if right else t >= b)
        relation = ("≤" if right else "<") if fitted == "below" else (">" if right else "≥")
        return ok, f"theory {theory_text}, fitted {sides[fitted]} (boundary {relation} {_fmt(b)})"
    if fitted or predicted:
        return fitted == predicted, f"theory {theory_text}, fitted {sides.get(fitted or '', _fmt(value))}"
    if not _finite(value):
        return False, f"no usable trial: theory {theory_text}"
    if not (_finite(low) or _finite(high)):
        return False, f"no interval (one seed): fitted {_fmt(value)}, theory {theory_text}"
    ok = inside(float(theory), low, high, closed)
    return ok, (f"theory {theory_text} {'in' if ok else 'outside'} the fitted interval "
                f"{interval_text(low, high, closed)} (fitted {_fmt(value)})")


def _delta(fitted: Any, theory: Any, log: bool) -> float:
    if not (_finite(fitted) and _finite(theory)):
        return math.nan
    if log:
        return math.log2(float(fitted)) - math.log2(float(theory)) if float(theory) > 0 else math.nan
    return float(fitted) - float(theory)


def compare(diagram: PhaseDiagram, predicted: pd.DataFrame) -> pd.DataFrame:
    """``diagram.boundary_`` joined with ``predicted`` (from ``theory_boundaries``), plus ``agree``
    (True/False, None without a prediction), ``agree_reason``, ``within_ci`` (the predicted value lies
    in the fitted interval) and ``delta``."""
    keys = [diagram.x] + ([diagram.slice] if diagram.slice else [])
    table = diagram.boundary_.merge(predicted, on=keys, how="left")
    grid = [float(v) for v in diagram.y_grid_]
    agree, reasons, within, delta = [], [], [], []
    for row in table.to_dict("records"):
        ok, why = agrees(row["y_critical"], row["y_low"], row["y_high"], row["censored"], row["y_theory"],
                         row["censored_theory"], grid=grid, closed="right", bound=row.get("y_bound"))
        agree.append(ok)
        reasons.append(why)
        within.append(bool(ok) and _side(row["censored"]) is None)
        delta.append(_delta(row["y_critical"], row["y_theory"], diagram.log_y_))
    table["agree"] = pd.Series(agree, index=table.index, dtype=object)
    table["agree_reason"] = reasons
    table["within_ci"] = within
    table["delta"] = delta
    return table


def summarise(table: pd.DataFrame, *, log_y: bool = True) -> dict[str, Any]:
    """Counts and the fraction of rows that agree; mean (and mean absolute) log2 ratio of fitted to
    predicted boundary over the rows where both are values (``mean_delta`` on a linear axis)."""
    predicted = table[table["agree"].notna()]
    n_agree = int(predicted["agree"].astype(bool).sum())
    deltas = table["delta"].dropna()
    mean = float(deltas.mean()) if len(deltas) else None
    mean_abs = float(deltas.abs().mean()) if len(deltas) else None
    out: dict[str, Any] = {
        "n_rows": int(len(table)),
        "n_predicted": int(len(predicted)),
        "n_agree": n_agree,
        "fraction_agree": n_agree / len(predicted) if len(predicted) else None,
        "n_compared_values": int(len(deltas)),
        "n_within_ci": int(table["within_ci"].sum()),
    }
    if log_y:
        out.update(mean_log2_ratio=mean, mean_abs_log2_ratio=mean_abs)
    else:
        out.update(mean_delta=mean, mean_abs_delta=mean_abs)
    return out


# --- the third axis: the critical z of each x ----------------------------------------------------------
def _x_params(diagram: PhaseDiagram, trials: pd.DataFrame, x_value: Any) -> dict[str, Any]:
    mine = trials[(trials[diagram.x].astype(object) == x_value).to_numpy()]
    if "status" in mine.columns and (mine["status"] == "TERMINATED").any():
        mine = mine[mine["status"] == "TERMINATED"]
    params = constant_params(mine.drop(columns=[diagram.y, diagram.slice]))
    params[diagram.x] = x_value
    return params


def theory_critical_z(diagram: PhaseDiagram, trials: pd.DataFrame) -> pd.DataFrame:
    """The theory's critical z of each x: ``predict`` along z at the largest sampled y (the best the
    range offers), the metric leaving the phase as z grows. Columns: x, ``z_theory``,
    ``censored_theory`` (``"below"``: in the phase at no z; ``"above"``: at every z) and
    ``theory_note``."""
    if not diagram.z:
        raise ValueError("theory_critical_z needs a PhaseDiagram fitted with z=")
    rows = []
    for x_value in diagram.x_order_:
        params = {**_x_params(diagram, trials, x_value), diagram.y: float(diagram.y_grid_[-1])}
        found = predict(params, y=diagram.z, metric=diagram.metric, threshold=diagram.threshold,
                        increasing=not diagram.increasing_)
        rows.append({diagram.x: x_value, "z_theory": found.y_critical if found else math.nan,
                     "censored_theory": found.censored if found else None, "theory_note": found.note if found else ""})
    return pd.DataFrame(rows, columns=[diagram.x, "z_theory", "censored_theory", "theory_note"])


def theory_surface(diagram: PhaseDiagram, trials: pd.DataFrame, z_values: Sequence[float]) -> pd.DataFrame:
    """The theory's critical y of each x at each of ``z_values`` (a finer grid than the sampled one, for
    the theory's curve): x, z, ``y_theory``, ``censored_theory``."""
    if not diagram.z:
        raise ValueError("theory_surface needs a PhaseDiagram fitted with z=")
    rows = []
    for x_value in diagram.x_order_:
        params = _x_params(diagram, trials, x_value)
        for z_value in z_values:
            found = predict({**params, diagram.z: float(z_value)}, y=diagram.y, metric=diagram.metric,
                            threshold=diagram.threshold, increasing=diagram.increasing_)
            rows.append({diagram.x: x_value, diagram.z: float(z_value),
                         "y_theory": found.y_critical if found else math.nan,
                         "censored_theory": found.censored if found else None})
    return pd.DataFrame(rows, columns=[diagram.x, diagram.z, "y_theory", "censored_theory"])


def compare_critical_z(diagram: PhaseDiagram, predicted: pd.DataFrame) -> pd.DataFrame:
    """``diagram.critical_z_`` joined with ``predicted`` (from ``theory_critical_z``), plus ``agree``,
    ``agree_reason``, ``within_ci`` and ``delta`` (fitted - predicted z), by the rule above with the
    critical z's interval [z_low, z_high)."""
    table = diagram.critical_z_.merge(predicted, on=diagram.x, how="left")
    grid = [float(v) for v in diagram.slice_order_]
    sides = {"below": f"in the phase at no {diagram.z}", "above": f"in the phase up to the largest {diagram.z}"}
    agree, reasons, within, delta = [], [], [], []
    for row in table.to_dict("records"):
        ok, why = agrees(row["z_critical"], row["z_low"], row["z_high"], row["censored"], row["z_theory"],
                         row["censored_theory"], grid=grid, closed="left", sides=sides, bound=row.get("z_bound"))
        agree.append(ok)
        reasons.append(why)
        within.append(bool(ok) and _side(row["censored"]) is None)
        delta.append(_delta(row["z_critical"], row["z_theory"], log=False))
    table["agree"] = pd.Series(agree, index=table.index, dtype=object)
    table["agree_reason"] = reasons
    table["within_ci"] = within
    table["delta"] = delta
    return table
