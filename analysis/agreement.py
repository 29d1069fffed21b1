"""Agreement between a fitted phase boundary and the theory's prediction, row by row.

A row agrees when both sides put the boundary beyond the same end of the sampled range, or when
both give a value and the predicted one lies inside the fitted interval [y_low, y_high] or within
one grid step of ``y_critical``. A predicted value outside the range counts as censored on that
side (within one grid step of the edge it also agrees with a fitted censoring there). ``delta``
is ``t(y_critical) - t(y_theory)`` with t = log2 on a log axis: the log2 ratio of fitted to
predicted.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.phase import PhaseDiagram


def _side(t_value: float, t_grid: np.ndarray) -> str | None:
    if t_value < t_grid[0]:
        return "below"
    if t_value > t_grid[-1]:
        return "above"
    return None


def compare(diagram: PhaseDiagram, predicted: pd.DataFrame) -> pd.DataFrame:
    """``diagram.boundary_`` joined with ``predicted`` (from ``theory_boundaries``), plus
    ``agree`` (True/False, None without a prediction), ``within_ci`` and ``delta``."""
    keys = [diagram.x] + ([diagram.slice] if diagram.slice else [])
    table = diagram.boundary_.merge(predicted, on=keys, how="left")
    t_grid = diagram.y_coord(diagram.y_grid_)
    step = float(np.median(np.diff(t_grid))) if len(t_grid) > 1 else math.inf
    agree, within, delta = [], [], []
    for row in table.to_dict("records"):
        fitted_side = row["censored"] if isinstance(row["censored"], str) else None
        theory_side = row["censored_theory"] if isinstance(row["censored_theory"], str) else None
        y_th = row["y_theory"]
        has_value = y_th is not None and not pd.isna(y_th) and y_th > (0 if diagram.log_y_ else -math.inf)
        t_th = float(diagram.y_coord(y_th)) if has_value else math.nan
        ok: bool | None = None
        inside, d = False, math.nan
        if theory_side is None and not has_value:
            pass  # no prediction
        elif theory_side is not None:
            ok = fitted_side == theory_side
        elif fitted_side is not None:
            edge = t_grid[0] if fitted_side == "below" else t_grid[-1]
            ok = _side(t_th, t_grid) == fitted_side or abs(t_th - edge) <= step
        elif _side(t_th, t_grid) is not None:
            ok = False
        elif pd.isna(row["y_critical"]):
            ok = False  # a row without a usable trial
        else:
            d = float(diagram.y_coord(row["y_critical"])) - t_th
            low = -math.inf if pd.isna(row["y_low"]) else float(diagram.y_coord(row["y_low"]))
            high = math.inf if pd.isna(row["y_high"]) else float(diagram.y_coord(row["y_high"]))
            inside = row["n_seeds"] >= 2 and low <= t_th <= high
            ok = bool(inside or abs(d) <= step)
        agree.append(ok)
        within.append(bool(inside))
        delta.append(d)
    table["agree"] = pd.Series(agree, dtype=object)
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
