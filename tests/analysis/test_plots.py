"""Figures: valid PNGs of the expected pixel size, legends that show what is drawn; ``ax`` is honoured."""

from __future__ import annotations

import math

import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.patches import Rectangle

from analysis.agreement import compare
from analysis.load import tidy
from analysis.phase import PhaseDiagram
from analysis.planted import make_phase_trials
from analysis.plots import (
    plot_agreement,
    plot_loss_vs_accuracy,
    plot_metric_curves,
    plot_phase_diagram,
    save_png,
)
from analysis.theory import theory_boundaries

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def sliced():
    critical = {(cap, noise): y * (1 + 3 * noise)
                for cap, y in {"linear": math.inf, "mlp-16x1": 6.0, "mlp-64x2": 10.0}.items() for noise in (0.0, 0.5)}
    trials = tidy(make_phase_trials(critical, slice="aug_noise", n_seeds=3, random_state=0))
    diagram = PhaseDiagram(x="capacity", y="embedding_dim", metric="randlabel_acc", threshold=0.9, slice="aug_noise",
                           n_boot=200, random_state=0).fit(trials)
    return diagram, trials


def assert_png(path, width: int, height: int) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert imread(path).shape[:2] == (height, width)


def test_phase_diagram_has_one_panel_per_slice_and_the_expected_size(sliced, tmp_path):
    diagram, trials = sliced
    fig = plot_phase_diagram(diagram, theory_boundaries(diagram, trials))
    heat_maps = [ax for ax in fig.axes if ax.images]
    assert len(heat_maps) == 2 and heat_maps[1].get_title().endswith("aug_noise = 0.5")
    assert_png(save_png(fig, tmp_path / "phase.png"), 1680, 630)  # (2 * 5 + 1.2) x 4.2 in at 150 dpi


def test_metric_curves_and_loss_vs_accuracy_and_agreement(sliced, tmp_path):
    diagram, trials = sliced
    assert_png(save_png(plot_metric_curves(diagram), tmp_path / "curves.png"), 1500, 630)
    fig = plot_loss_vs_accuracy(trials, metric="randlabel_acc")
    assert fig.axes[0].get_legend().get_title().get_text() == "capacity"
    assert fig.axes[0].get_ylabel() == "randlabel_acc"
    assert_png(save_png(fig, tmp_path / "loss.png"), 990, 630)
    table = compare(diagram, theory_boundaries(diagram, trials))
    fig = plot_agreement(table, diagram)
    assert "rows agree" in fig.axes[0].get_title()
    assert_png(save_png(fig, tmp_path / "agree.png", dpi=50), 280, 260)


def test_the_phase_diagram_legend_shows_the_interval_as_it_is_drawn(sliced):
    diagram, trials = sliced
    fig = plot_phase_diagram(diagram, theory_boundaries(diagram, trials))
    boxes = [p for ax in fig.axes for p in ax.patches if isinstance(p, Rectangle)]
    assert boxes  # one box per row with an interval
    legend = fig.legends[0]
    entry = next(h for h, t in zip(legend.legend_handles, legend.get_texts(), strict=True)
                 if t.get_text() == "95% interval")
    assert entry.get_facecolor() == boxes[0].get_facecolor() and entry.get_edgecolor() == boxes[0].get_edgecolor()
    assert min(t.get_fontsize() for t in legend.get_texts()) >= 10


def test_agreement_points_are_labelled_with_their_row(sliced):
    diagram, trials = sliced
    table = compare(diagram, theory_boundaries(diagram, trials))
    labels = " ".join(t.get_text() for t in plot_agreement(table, diagram).axes[0].texts)
    for capacity in ("linear", "mlp-16x1", "mlp-64x2"):
        assert capacity in labels
    assert "aug_noise 0.5" in labels


def test_plots_draw_into_given_axes_and_return_their_figure(sliced):
    diagram, trials = sliced
    for plot in (plot_metric_curves, plot_phase_diagram):
        fig = Figure(figsize=(8, 3))
        axes = fig.subplots(1, 2)
        assert plot(diagram, ax=list(axes)) is fig
    single = Figure().subplots()
    assert plot_loss_vs_accuracy(trials, ax=single) is single.get_figure()
    with pytest.raises(ValueError, match="2 panel"):
        plot_phase_diagram(diagram, ax=single)


def test_loss_vs_accuracy_names_missing_columns(sliced):
    _, trials = sliced
    with pytest.raises(ValueError, match=r"'contrastive_loss' is not in the trials table; its columns: .*train_loss"):
        plot_loss_vs_accuracy(trials, loss="contrastive_loss")


def test_a_predicted_boundary_beyond_the_range_is_drawn_censored_there_not_at_the_end_cell():
    trials = tidy(make_phase_trials({"mlp-16x1": 3.0, "mlp-64x2": 6.0, "mlp-128x2": 12.0}, y_values=(2, 4, 8, 16),
                                    n_seeds=2, random_state=0))
    diagram = PhaseDiagram(x="capacity", y="embedding_dim", metric="randlabel_acc", threshold=0.9, n_boot=50,
                           random_state=0).fit(trials)
    order = list(diagram.x_order_)
    theory = {"mlp-16x1": 64.0, "mlp-64x2": 1.0, "mlp-128x2": 8.0}  # beyond, before, inside the range 2..16
    import pandas as pd

    frame = pd.DataFrame({"capacity": order, "y_theory": [theory[c] for c in order], "censored_theory": None})
    panel = plot_phase_diagram(diagram, frame).axes[0]
    red = [line for line in panel.get_lines() if line.get_color() == "red" and line.get_linestyle() == "--"]
    (curve,) = red
    heights = dict(zip(order, curve.get_ydata(), strict=True))
    assert math.isnan(heights["mlp-16x1"]) and math.isnan(heights["mlp-64x2"])
    assert heights["mlp-128x2"] == pytest.approx(2.0)  # the cell of embedding_dim 8
    marked = {}
    for line in panel.get_lines():
        if line.get_markeredgecolor() == "red" and line.get_marker() in ("^", "v") and len(line.get_xdata()):
            for x in line.get_xdata():
                marked[order[int(x)]] = line.get_marker()
    assert marked == {"mlp-16x1": "^", "mlp-64x2": "v"}
    labels = [t.get_text() for legend in panel.figure.legends for t in legend.get_texts()]
    assert "theory: beyond the range" in labels  # the hollow red markers are explained
