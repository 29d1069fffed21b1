"""Figures of a phase diagram. Each function takes ``ax=None`` (or one Axes per panel) and returns
the figure; ``save_png`` writes it at a fixed size (no tight bbox, so the pixel size is known).

New figures are ``matplotlib.figure.Figure`` objects, not pyplot figures: no global state, no
backend needed to save them, and notebooks still display them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib import patheffects as pe
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from analysis.phase import OK_STATUS, PhaseDiagram

PANEL_SIZE = (5.0, 4.2)  # inches per panel
DPI = 150  # a panel is 750 x 630 px: shown at about its own size in the report (920 px wide)
FONT = {"label": 11, "title": 11, "tick": 10, "legend": 10}
# Drawn on the heat map and in its legend alike: white with a black edge shows on dark cells and on white.
INTERVAL = {"facecolor": (1.0, 1.0, 1.0, 0.45), "edgecolor": "black", "linewidth": 1.0}
BOUNDARY = {"color": "white", "markeredgecolor": "black", "linewidth": 2.0, "markersize": 7,
            "path_effects": [pe.Stroke(linewidth=3.5, foreground="black"), pe.Normal()]}


def save_png(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write ``fig`` as PNG of exactly ``fig.get_size_inches() * dpi`` pixels."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _style(ax: Axes, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel, fontsize=FONT["label"])
    ax.set_ylabel(ylabel, fontsize=FONT["label"])
    ax.set_title(title, fontsize=FONT["title"])
    ax.tick_params(labelsize=FONT["tick"])


def _panels(n: int, ax: Axes | Sequence[Axes] | None, extra_width: float = 0.0) -> tuple[Figure, list[Axes]]:
    if ax is None:
        fig = _figure(PANEL_SIZE[0] * n + extra_width, PANEL_SIZE[1])
        return fig, list(fig.subplots(1, n, squeeze=False)[0])
    axes = [ax] if isinstance(ax, Axes) else list(ax)
    if len(axes) != n:
        raise ValueError(f"this figure has {n} panel(s) (one per slice); got {len(axes)} Axes")
    return axes[0].get_figure(), axes


def _slice_rows(frame: pd.DataFrame, diagram: PhaseDiagram, value: Any) -> pd.DataFrame:
    return frame if not diagram.slice else frame[frame[diagram.slice] == value]


def _aligned(frame: pd.DataFrame, diagram: PhaseDiagram, column: str) -> np.ndarray:
    """``frame[column]`` in ``diagram.x_order_`` (NaN where an x has no row)."""
    by_x = dict(zip(frame[diagram.x], frame[column], strict=True))
    return np.array([by_x.get(v, np.nan) for v in diagram.x_order_], dtype=object)


def _title(diagram: PhaseDiagram, value: Any) -> str:
    side = "≥" if diagram.increasing_ else "≤"
    head = f"{diagram.metric} {side} {diagram.threshold:g}"
    return head if not diagram.slice else f"{head}  |  {diagram.slice} = {value}"


def plot_phase_diagram(
    diagram: PhaseDiagram, theory: pd.DataFrame | None = None, *, ax: Axes | Sequence[Axes] | None = None,
    cmap: str = "viridis", references: pd.DataFrame | None = None,
) -> Figure:
    """Heat map of the seed-averaged metric over (x, y), one panel per slice, with the fitted
    boundary (white), its bootstrap interval (a translucent box per x), censored rows (triangles at
    the edge they lie beyond) and the theory's boundary (red dashes; ``theory`` from
    ``analysis.theory.theory_boundaries``). ``references`` (``analysis.baselines.cell_references``): the
    study's baselines as lines on the colour bar, whose scale then spans them too."""
    fig, axes = _panels(len(diagram.slice_order_), ax, extra_width=1.2)
    grid, t_grid = diagram.y_grid_, diagram.y_coord(diagram.y_grid_)
    n_x, n_y = len(diagram.x_order_), len(grid)
    xs = np.arange(n_x, dtype=float)
    means = diagram.cells_["mean"]
    vmin, vmax = float(np.nanmin(means)), float(np.nanmax(means))
    if references is not None and references["value"].notna().any():  # the colour scale reaches the baselines
        vmin, vmax = min(vmin, float(references["value"].min())), max(vmax, float(references["value"].max()))
    colormap = colormaps[cmap].with_extremes(bad="0.85")  # missing cells in grey

    def coord(values: np.ndarray) -> np.ndarray:  # y values on the interpolation axis, NaN where there is none
        v = np.asarray(values, dtype=float)
        out = np.full(v.shape, np.nan)
        ok = np.isfinite(v) & ((v > 0) | (not diagram.log_y_))
        out[ok] = diagram.y_coord(v[ok])
        return out

    def pos(values: np.ndarray) -> np.ndarray:  # y values as rows of the image (clamped to its end cells)
        t = coord(values)
        return np.where(np.isnan(t), np.nan, np.interp(np.nan_to_num(t), t_grid, np.arange(n_y)))

    image = None
    beyond_drawn = False  # a theory marker beyond the range is drawn: the legend explains it
    for panel, value in zip(axes, diagram.slice_order_, strict=True):
        cells = _slice_rows(diagram.cells_, diagram, value)
        matrix = cells.pivot_table(index=diagram.y, columns=diagram.x, values="mean", observed=False)
        matrix = matrix.reindex(index=grid, columns=diagram.x_order_)
        image = panel.imshow(np.ma.masked_invalid(matrix.to_numpy(dtype=float)), origin="lower", aspect="auto",
                             cmap=colormap, vmin=vmin, vmax=vmax, interpolation="nearest")
        rows = _slice_rows(diagram.boundary_, diagram, value)
        crit = pos(_aligned(rows, diagram, "y_critical"))
        low, high = pos(_aligned(rows, diagram, "y_low")), pos(_aligned(rows, diagram, "y_high"))
        low = np.where(np.isnan(low) & ~np.isnan(high), -0.5, low)
        high = np.where(np.isnan(high) & ~np.isnan(low), n_y - 0.5, high)
        for x, lo, hi in zip(xs, low, high, strict=True):
            if not (np.isnan(lo) or np.isnan(hi)):
                panel.add_patch(Rectangle((x - 0.2, lo), 0.4, hi - lo, zorder=2, **INTERVAL))
        panel.plot(xs, crit, "o-", zorder=3, **BOUNDARY)
        censored = _aligned(rows, diagram, "censored")
        for side, y_edge, marker in (("above", n_y - 0.75, "^"), ("below", -0.25, "v")):
            hit = np.array([c == side for c in censored])
            panel.plot(xs[hit], np.full(hit.sum(), y_edge), marker, color="white", markeredgecolor="black",
                       markersize=10, linestyle="none", zorder=3)
        if theory is not None and len(theory):
            mine = _slice_rows(theory, diagram, value)
            values = _aligned(mine, diagram, "y_theory")
            t = coord(values)  # a predicted value beyond the sampled range is drawn censored there, not at its end cell
            beyond = np.where(t > t_grid[-1], "above", np.where(t < t_grid[0], "below", ""))
            predicted = np.where(beyond == "", pos(values), np.nan)
            panel.plot(xs, predicted, "x--", color="red", linewidth=1.5, markersize=9, zorder=4)
            cens = [c if isinstance(c, str) else (b or None)
                    for c, b in zip(_aligned(mine, diagram, "censored_theory"), beyond, strict=True)]
            beyond_drawn = beyond_drawn or any(isinstance(c, str) for c in cens)
            for side, y_edge, marker in (("above", n_y - 0.75, "^"), ("below", -0.25, "v")):
                hit = np.array([c == side for c in cens])
                panel.plot(xs[hit], np.full(hit.sum(), y_edge), marker, markerfacecolor="none",
                           markeredgecolor="red", markersize=14, markeredgewidth=1.5, linestyle="none", zorder=4)
        long_labels = max(len(str(v)) for v in diagram.x_order_) > 4
        panel.set_xticks(xs, [str(v) for v in diagram.x_order_], rotation=30 if long_labels else 0,
                         ha="right" if long_labels else "center")
        panel.set_yticks(np.arange(n_y), [f"{v:g}" for v in grid])
        panel.set_xlim(-0.5, n_x - 0.5)
        panel.set_ylim(-0.5, n_y - 0.5)
        _style(panel, diagram.x, diagram.y, _title(diagram, value))
    # The legend sits on white: the interval's box has the same black edge there as on the heat map.
    handles = [Line2D([], [], marker="o", label="fitted boundary", **BOUNDARY),
               Patch(label=f"{diagram.ci:.0%} interval", **INTERVAL),
               Line2D([], [], marker="^", color="white", markeredgecolor="black", linestyle="none", markersize=10,
                      label="censored: beyond the range")]
    if theory is not None and len(theory):
        handles.append(Line2D([], [], marker="x", color="red", linestyle="--", markersize=9, label="theory"))
        if beyond_drawn:
            handles.append(Line2D([], [], marker="^", markerfacecolor="none", markeredgecolor="red", markersize=12,
                                  markeredgewidth=1.5, linestyle="none", label="theory: beyond the range"))
    styles = _reference_styles(references)
    handles += [Line2D([], [], marker=">", label=_reference_label(name, references), **style)
                for name, style in styles.items()]
    fits = max(2, int(fig.get_size_inches()[0] / 3.4))  # legend columns of about 3.4 inches each
    fig.legend(handles=handles, loc="outside lower center", ncol=2 if len(axes) == 1 else min(len(handles), 5, fits),
               fontsize=FONT["legend"], frameon=False)
    if image is not None:
        bar = fig.colorbar(image, ax=axes, shrink=0.9)
        bar.set_label(f"{diagram.metric} (seed mean)", fontsize=FONT["label"])
        bar.ax.tick_params(labelsize=FONT["tick"])
        for name, style in styles.items():  # a line and a pointer per value the baseline takes in the figure
            for value in references.loc[references["baseline"] == name, "value"].dropna().round(4).unique():
                bar.ax.axhline(value, **{**style, "linewidth": 2.5})
                bar.ax.plot([-0.35], [value], marker=">", color=style["color"], markersize=8, clip_on=False,
                            transform=bar.ax.get_yaxis_transform(), markeredgecolor="white", markeredgewidth=0.5)
    return fig


# --- baselines as references (analysis.baselines) --------------------------------------------------------
_ORACLE_COLORS = ("black", "tab:orange", "tab:purple", "tab:brown")


def _reference_styles(references: pd.DataFrame | None) -> dict[str, dict[str, Any]]:
    """A line style per baseline: the input grey and dashed, each oracle its own colour, dotted."""
    if references is None or not len(references) or not references["value"].notna().any():
        return {}
    styles: dict[str, dict[str, Any]] = {}
    oracles = 0
    for name, kind in references[["baseline", "kind"]].drop_duplicates().itertuples(index=False):
        if kind == "input":
            styles[name] = {"color": "0.45", "linestyle": "--", "linewidth": 1.4}
        else:
            styles[name] = {"color": _ORACLE_COLORS[oracles % len(_ORACLE_COLORS)], "linestyle": ":",
                            "linewidth": 1.8}
            oracles += 1
    return styles


def _reference_label(name: str, references: pd.DataFrame) -> str:
    """``oracle: invariant_coords 0.765`` (or its range where it varies over the figure)."""
    values = references.loc[references["baseline"] == name, "value"].dropna()
    kind = references.loc[references["baseline"] == name, "kind"].iloc[0]
    if not len(values):
        return f"{kind} {name}"
    low, high = float(values.min()), float(values.max())
    text = f"{low:.3f}" if high - low < 5e-4 else f"{low:.3f}–{high:.3f}"
    return f"{kind}: {name} {text}" if kind == "oracle" else f"{name} (x itself) {text}"


def plot_metric_curves(diagram: PhaseDiagram, *, ax: Axes | Sequence[Axes] | None = None,
                       references: pd.DataFrame | None = None) -> Figure:
    """Seed-mean metric against y, one line per x, with the seeds' ±1 std band; one panel per slice.
    ``references`` (``analysis.baselines.cell_references``): each baseline as a line along y (one per x
    where it depends on x, in that x's colour), and, where the input and the best oracle are constant in
    a panel, a right-hand axis of the normalised metric (0: the input, 1: the best oracle)."""
    fig, axes = _panels(len(diagram.slice_order_), ax)
    colors = colormaps["viridis"](np.linspace(0, 0.9, max(2, len(diagram.x_order_))))
    styles = _reference_styles(references)
    if styles and ax is None:  # room for the legend below the panels
        fig.set_size_inches(fig.get_size_inches() + np.array([0.0, 0.3 * math.ceil((len(diagram.x_order_)
                                                                                    + len(styles) + 1) / 2)]))
    for panel, value in zip(axes, diagram.slice_order_, strict=True):
        if styles:
            _draw_references(panel, diagram, _slice_rows(references, diagram, value), styles, colors, references)
        cells = _slice_rows(diagram.cells_, diagram, value)
        for color, x_value in zip(colors, diagram.x_order_, strict=False):
            line = cells[cells[diagram.x] == x_value].sort_values(diagram.y)
            if not len(line):
                continue
            y, mean, std = (line[c].to_numpy(dtype=float) for c in (diagram.y, "mean", "std"))
            panel.plot(y, mean, "o-", color=color, markersize=3, label=str(x_value))
            panel.fill_between(y, mean - std, mean + std, where=~np.isnan(std), color=color, alpha=0.2, linewidth=0)
        panel.axhline(diagram.threshold, color="red", linestyle=":", linewidth=1.2,
                      label=f"threshold {diagram.threshold:g}")
        if diagram.log_y_:
            panel.set_xscale("log", base=2)
            panel.set_xticks(diagram.y_grid_, [f"{v:g}" for v in diagram.y_grid_])
        _style(panel, diagram.y, f"{diagram.metric} (mean ± std over seeds)", _title(diagram, value))
    if styles:  # with the baselines the legend is long: below the panels, clear of the curves
        fig.legend(*axes[0].get_legend_handles_labels(), title=diagram.x, fontsize=FONT["legend"],
                   title_fontsize=FONT["legend"], loc="outside lower center", ncol=2, frameon=False)
    else:
        axes[0].legend(title=diagram.x, fontsize=FONT["legend"], title_fontsize=FONT["legend"], loc="best")
    return fig


def _draw_references(panel: Axes, diagram: PhaseDiagram, rows: pd.DataFrame, styles: dict[str, dict[str, Any]],
                     colors: np.ndarray, references: pd.DataFrame) -> None:
    """The baselines of one panel of ``plot_metric_curves`` (see there)."""
    flat: dict[str, float] = {}
    for name, style in styles.items():
        mine = rows[rows["baseline"] == name].dropna(subset=["value"])
        if not len(mine):
            continue
        series = {x: line.sort_values(diagram.y) for x, line in mine.groupby(diagram.x, observed=True, sort=False)}
        shapes = {tuple(np.round(line["value"].to_numpy(dtype=float), 4)) for line in series.values()}
        label = _reference_label(name, references)  # the figure's legend: the values over every panel
        if len(shapes) == 1:  # the same for every x: one line
            line = next(iter(series.values()))
            panel.plot(line[diagram.y], line["value"], label=label, zorder=1, **style)
            if len(set(next(iter(shapes)))) == 1:
                flat[name] = float(line["value"].iloc[0])
        else:
            for color, x_value in zip(colors, diagram.x_order_, strict=False):
                if x_value in series:
                    panel.plot(series[x_value][diagram.y], series[x_value]["value"], zorder=1,
                               **{**style, "color": color})
            panel.plot([], [], label=f"{label} (per {diagram.x})", **{**style, "color": "0.3"})
    kinds = references.drop_duplicates("baseline").set_index("baseline")["kind"]
    oracles = {n: v for n, v in flat.items() if kinds.get(n) == "oracle"}
    if "input" in flat and oracles:
        best = max(oracles.values(), key=lambda v: abs(v - flat["input"]))
        base, gap = flat["input"], best - flat["input"]
        if abs(gap) >= 1e-3:
            axis = panel.secondary_yaxis("right", functions=(lambda m: (m - base) / gap, lambda f: base + f * gap))
            axis.set_ylabel("normalised: 0 input, 1 best oracle", fontsize=FONT["tick"])
            axis.tick_params(labelsize=FONT["tick"])


def _check_columns(trials: pd.DataFrame, *names: str) -> None:
    for name in names:
        if name not in trials.columns:
            columns = ", ".join(map(str, trials.columns))
            raise ValueError(f"column {name!r} is not in the trials table; its columns: {columns}")


def plot_loss_vs_accuracy(
    trials: pd.DataFrame, *, loss: str = "train_loss", metric: str = "probe_acc", by: str = "capacity",
    ax: Axes | None = None,
) -> Figure:
    """Final contrastive loss against downstream accuracy, one colour per ``by`` (e.g. encoder
    capacity): lower loss need not mean better transfer across function classes (Saunshi et al. 2022)."""
    _check_columns(trials, loss, metric)
    by = by if by in trials.columns else ("encoder" if "encoder" in trials.columns else None)
    ok = trials
    if "status" in ok.columns:
        ok = ok[ok["status"] == OK_STATUS]
    if "diverged" in ok.columns:
        ok = ok[ok["diverged"].fillna(0).astype(float) == 0]
    ok = ok[np.isfinite(ok[loss].astype(float)) & np.isfinite(ok[metric].astype(float))]
    if ax is None:
        fig = _figure(PANEL_SIZE[0] + 1.6, PANEL_SIZE[1])
        ax = fig.subplots()
    else:
        fig = ax.get_figure()
    groups = [(None, ok)] if by is None else list(ok.groupby(by, observed=True, sort=True))
    colors = colormaps["viridis"](np.linspace(0, 0.9, max(2, len(groups))))
    for color, (name, group) in zip(colors, groups, strict=False):
        ax.scatter(group[loss], group[metric], s=30, color=color, alpha=0.8, label=None if name is None else str(name))
    rho = ok[loss].rank().corr(ok[metric].rank()) if len(ok) > 2 else math.nan
    _style(ax, f"{loss} (final contrastive loss)", metric,
           f"loss vs {metric} across {by or 'trials'} (Spearman ρ = {rho:.2f})")
    if by is not None:
        ax.legend(title=by, fontsize=FONT["legend"], title_fontsize=FONT["legend"], loc="center left",
                  bbox_to_anchor=(1.0, 0.5))
    return fig


def _row_label(row: dict[str, Any], diagram: PhaseDiagram) -> str:
    if not diagram.slice:
        return str(row[diagram.x])
    value = row[diagram.slice]
    value = f"{value:g}" if isinstance(value, numbers.Real) and not isinstance(value, bool) else str(value)
    return f"{row[diagram.x]}, {diagram.slice} {value}"


def plot_agreement(table: pd.DataFrame, diagram: PhaseDiagram, *, ax: Axes | None = None) -> Figure:
    """Fitted against predicted boundary (``table``: ``analysis.agreement.compare``'s columns, ``agree``
    as the report decides it), on the y axis's scale: one point per row, labelled with its x (and
    slice), its fitted interval as a vertical bar through it, and the diagonal. A row agrees when its
    bar crosses the diagonal; censored values sit beyond the range's edges (triangles); green
    agrees, red does not."""
    if ax is None:
        fig = _figure(PANEL_SIZE[0] + 0.6, PANEL_SIZE[1] + 1.0)
        ax = fig.subplots()
    else:
        fig = ax.get_figure()
    t_grid = diagram.y_coord(diagram.y_grid_)
    step = float(np.median(np.diff(t_grid))) if len(t_grid) > 1 else 1.0
    lo, hi = t_grid[0] - step, t_grid[-1] + step
    rows = table[table["agree"].notna()]

    def coord(value: Any, side: Any) -> float:
        if side == "below":
            return lo
        if side == "above":
            return hi
        if value is None or pd.isna(value) or (diagram.log_y_ and value <= 0):
            return math.nan
        return float(np.clip(diagram.y_coord(value), lo, hi))

    labels: dict[tuple[float, float], list[str]] = {}
    for row in rows.to_dict("records"):
        tx = coord(row["y_theory"], row["censored_theory"])
        ty = coord(row["y_critical"], row["censored"])
        color = "tab:green" if row["agree"] else "tab:red"
        marker = "^" if isinstance(row["censored"], str) or isinstance(row["censored_theory"], str) else "o"
        if not isinstance(row["censored"], str) and not (pd.isna(row["y_low"]) and pd.isna(row["y_high"])):
            low = lo if pd.isna(row["y_low"]) else float(diagram.y_coord(row["y_low"]))
            high = hi if pd.isna(row["y_high"]) else float(diagram.y_coord(row["y_high"]))
            ax.plot([tx, tx], [low, high], color=color, alpha=0.45, linewidth=5, solid_capstyle="butt")
        ax.plot(tx, ty, marker, color=color, markersize=9, markeredgecolor="black", markeredgewidth=0.6)
        if not (math.isnan(tx) or math.isnan(ty)):
            labels.setdefault((round(tx, 6), round(ty, 6)), []).append(_row_label(row, diagram))
    for (tx, ty), names in labels.items():  # rows on the same point share one label
        ax.annotate("\n".join(names), (tx, ty), xytext=(8, 0), textcoords="offset points", va="center",
                    fontsize=FONT["tick"] - 1, clip_on=False)
    diagonal = np.array([lo, hi])
    ax.plot(diagonal, diagonal, color="black", linewidth=1)
    for edge in (t_grid[0], t_grid[-1]):
        ax.axhline(edge, color="0.7", linestyle=":", linewidth=0.8)
        ax.axvline(edge, color="0.7", linestyle=":", linewidth=0.8)
    ticks = t_grid if len(t_grid) <= 10 else t_grid[:: int(math.ceil(len(t_grid) / 10))]
    tick_labels = [f"{2**t:g}" if diagram.log_y_ else f"{t:g}" for t in ticks]
    edges = [lo, *ticks, hi]
    edge_labels = [f"< {tick_labels[0]}", *tick_labels, f"> {tick_labels[-1]}"]
    ax.set_xticks(edges, edge_labels)
    ax.set_yticks(edges, edge_labels)
    ax.set_xlim(lo - step / 2, hi + step * 1.5)  # room for the labels right of the points
    ax.set_ylim(lo - step / 2, hi + step / 2)
    n, k = len(rows), int(rows["agree"].astype(bool).sum()) if len(rows) else 0
    title = f"fitted vs theory: {k} of {n} rows agree" if n else "no theory prediction for this diagram"
    _style(ax, f"predicted critical {diagram.y}", f"fitted critical {diagram.y}", title)
    handles = [Line2D([], [], marker="o", color="tab:green", linestyle="none", label="agrees"),
               Line2D([], [], marker="o", color="tab:red", linestyle="none", label="does not agree"),
               Line2D([], [], color="0.5", alpha=0.45, linewidth=5, label=f"fitted {diagram.ci:.0%} interval"),
               Line2D([], [], color="black", linewidth=1, label="fitted = theory"),
               Line2D([], [], marker="^", color="0.4", linestyle="none", label="censored: beyond the range")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=FONT["legend"] - 1, frameon=False)
    return fig


# --- three axes -------------------------------------------------------------------------------------------
SMALL_PANEL = (4.2, 3.6)  # inches per panel of a small-multiples grid


def _grid_axes(n: int, ncols: int, panel: tuple[float, float], extra: tuple[float, float] = (0.0, 0.0),
               **kwargs: Any) -> tuple[Figure, list[Axes]]:
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = _figure(panel[0] * ncols + extra[0], panel[1] * nrows + extra[1])
    axes = list(fig.subplots(nrows, ncols, squeeze=False, **kwargs).ravel())
    for spare in axes[n:]:
        fig.delaxes(spare)
    return fig, axes[:n]


def plot_small_multiples(diagram: PhaseDiagram, theory: pd.DataFrame | None = None, *, ncols: int = 3,
                         **kwargs: Any) -> Figure:
    """``plot_phase_diagram`` as a grid of small panels, one heat map per value of the third axis
    (``diagram.z``, or the slice), all on one colour scale, each with its fitted boundary, interval,
    censored rows and the theory's boundary. ``kwargs`` go to ``plot_phase_diagram``."""
    _, axes = _grid_axes(len(diagram.slice_order_), ncols, SMALL_PANEL, extra=(1.2, 0.9))
    return plot_phase_diagram(diagram, theory, ax=axes, **kwargs)


def plot_critical_dim(
    diagram: PhaseDiagram, theory: pd.DataFrame | None = None, critical_z: pd.DataFrame | None = None, *,
    ncols: int | None = None, ax: Axes | Sequence[Axes] | None = None,
) -> Figure:
    """The critical surface cut per x: critical y (e.g. embedding_dim) against z (e.g. aug_noise), one
    panel per x, with its bootstrap band (shaded; open ends reach the panel's edge), rows censored above
    or below the y range (triangles at that edge), the x's critical z (black line, its interval grey) and
    the theory: its critical y along z (``theory``: ``analysis.agreement.theory_surface``, red dashes; red
    dotted at the top edge where it never crosses) and its critical z (``critical_z``:
    ``analysis.agreement.compare_critical_z``, red dash-dot)."""
    if not diagram.slice:
        raise ValueError("plot_critical_dim needs a PhaseDiagram with a third axis (z=)")
    x_values = list(diagram.x_order_)
    if ax is None:
        ncols = ncols or math.ceil(math.sqrt(len(x_values)))
        fig, axes = _grid_axes(len(x_values), ncols, SMALL_PANEL, extra=(0.0, 0.9), sharey=True)
    else:
        fig, axes = _panels(len(x_values), ax)
    grid = np.asarray(diagram.y_grid_, dtype=float)
    log = diagram.log_y_
    top = grid[-1] * (1.6 if log else 1.0) + (0 if log else 0.1 * np.ptp(grid))
    bottom = grid[0] / (1.6 if log else 1.0) - (0 if log else 0.1 * np.ptp(grid))
    z_all = np.asarray(diagram.slice_order_, dtype=float)
    by_x = {} if critical_z is None else {r[diagram.x]: r for r in critical_z.to_dict("records")}
    for panel, x_value in zip(axes, x_values, strict=True):
        rows = diagram.boundary_[diagram.boundary_[diagram.x] == x_value]
        z = rows[diagram.slice].to_numpy(dtype=float)
        crit = rows["y_critical"].to_numpy(dtype=float)
        has_band = ~(rows["y_low"].isna() & rows["y_high"].isna()).to_numpy() & np.isfinite(crit)
        low = np.where(rows["y_low"].isna(), bottom, rows["y_low"]).astype(float)
        high = np.where(rows["y_high"].isna(), top, rows["y_high"]).astype(float)
        panel.fill_between(z, np.where(has_band, low, np.nan), np.where(has_band, high, np.nan), color="tab:blue",
                           alpha=0.25, linewidth=0, step=None)
        panel.plot(z, crit, "o-", color="tab:blue", markersize=5, zorder=3)
        for side, edge, marker in (("above", top, "^"), ("below", bottom, "v")):
            hit = (rows["censored"] == side).to_numpy()
            panel.plot(z[hit], np.full(hit.sum(), edge), marker, color="tab:blue", markersize=8, linestyle="none",
                       zorder=3)
        if theory is not None and len(theory):
            mine = theory[theory[diagram.x] == x_value].sort_values(diagram.slice)
            tz = mine[diagram.slice].to_numpy(dtype=float)
            ty = mine["y_theory"].to_numpy(dtype=float)
            panel.plot(tz, ty, "--", color="red", linewidth=1.6, zorder=4)
            never = (mine["censored_theory"] == "above").to_numpy()
            panel.plot(tz, np.where(never, top, np.nan), ":", color="red", linewidth=2.5, zorder=4)
        row = by_x.get(x_value)
        label = ""
        if row is not None:
            if _finite_value(row.get("z_critical")):
                panel.axvline(row["z_critical"], color="black", linewidth=1.2)
                if _finite_value(row.get("z_low")) or _finite_value(row.get("z_high")):
                    lo = row["z_low"] if _finite_value(row.get("z_low")) else z_all[0]
                    hi = row["z_high"] if _finite_value(row.get("z_high")) else z_all[-1]
                    panel.axvspan(lo, hi, color="0.5", alpha=0.15, linewidth=0)
                label = f"critical {diagram.slice} {row['z_critical']:.2f}"
            elif isinstance(row.get("censored"), str):
                label = "recovers at no " + diagram.slice if row["censored"] == "below" else \
                    f"recovers up to {diagram.slice} {row['z_bound']:g}+"
            if _finite_value(row.get("z_theory")):
                panel.axvline(row["z_theory"], color="red", linestyle="-.", linewidth=1.2)
                label += f" (theory {row['z_theory']:.2f})"
            elif isinstance(row.get("censored_theory"), str):
                label += " (theory: never)" if row["censored_theory"] == "below" else " (theory: always)"
        if log:
            panel.set_yscale("log", base=2)
        panel.set_yticks(grid, [f"{v:g}" for v in grid])
        panel.set_ylim(bottom / (1.15 if log else 1.0), top * (1.15 if log else 1.0))
        span = z_all[-1] - z_all[0] if len(z_all) > 1 else 1.0
        panel.set_xlim(z_all[0] - 0.04 * span, z_all[-1] + 0.04 * span)
        panel.set_xticks(z_all, [f"{v:g}" for v in z_all])
        _style(panel, diagram.slice, f"critical {diagram.y}", f"{x_value}\n{label}".strip())
    handles = [Line2D([], [], marker="o", color="tab:blue", label=f"fitted critical {diagram.y}"),
               Patch(color="tab:blue", alpha=0.25, label=f"{diagram.ci:.0%} interval"),
               Line2D([], [], marker="^", color="tab:blue", linestyle="none", label="censored: beyond the range"),
               Line2D([], [], color="black", label=f"critical {diagram.slice} (grey: interval)")]
    if theory is not None and len(theory):
        handles += [Line2D([], [], color="red", linestyle="--", label=f"theory: critical {diagram.y}"),
                    Line2D([], [], color="red", linestyle=":", linewidth=2.5, label="theory: never crosses")]
    if critical_z is not None and critical_z["z_theory"].notna().any():
        handles.append(Line2D([], [], color="red", linestyle="-.", label=f"theory: critical {diagram.slice}"))
    ncol = max(2, min(4, len(handles), int(fig.get_size_inches()[0] / 2.8)))  # about 2.8 inches per entry
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=FONT["legend"] - 1, frameon=False)
    return fig


def _finite_value(value: Any) -> bool:
    return value is not None and not pd.isna(value) and math.isfinite(float(value))
