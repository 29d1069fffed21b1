"""Analysis of clphase studies: load results, fit phase boundaries, compare with theory, plot, report.

A short script::

    from analysis import load_trials, PhaseDiagram, theory_boundaries, plot_phase_diagram

    trials = load_trials("runs/hypercube_capacity")          # or load_mlflow_trials("hypercube_capacity")
    diagram = PhaseDiagram(x="capacity", y="embedding_dim", metric="randlabel_acc",
                           threshold=0.9, slice="aug_noise", random_state=0).fit(trials)
    print(diagram.boundary_[["capacity", "aug_noise", "y_critical", "y_low", "y_high", "censored"]])
    plot_phase_diagram(diagram, theory_boundaries(diagram, trials)).savefig("phase.png")

``analyze("runs/<study>")`` (``clphase analyze``) does all of it and writes the report.
"""

from analysis.agreement import compare, summarise
from analysis.load import (
    add_capacity,
    load_analysis_defaults,
    load_history,
    load_mlflow_trials,
    load_trials,
)
from analysis.phase import PhaseDiagram, crossing
from analysis.planted import make_phase_trials, planted_metric
from analysis.plots import (
    plot_agreement,
    plot_loss_vs_accuracy,
    plot_metric_curves,
    plot_phase_diagram,
    save_png,
)
from analysis.report import analyze, find_parent_run, main
from analysis.theory import (
    PREDICTIONS,
    TheoryBoundary,
    expectations,
    gmm_between_var,
    gmm_pca_critical_nuisance,
    gmm_pca_overlap,
    hypercube_linear_ceiling,
    hypercube_linear_separable_fraction,
    hypercube_mlp_critical_dim,
    predict,
    theory_boundaries,
    threshold_functions,
)

__all__ = [
    "PREDICTIONS",
    "PhaseDiagram",
    "TheoryBoundary",
    "add_capacity",
    "analyze",
    "compare",
    "crossing",
    "expectations",
    "find_parent_run",
    "gmm_between_var",
    "gmm_pca_critical_nuisance",
    "gmm_pca_overlap",
    "hypercube_linear_ceiling",
    "hypercube_linear_separable_fraction",
    "hypercube_mlp_critical_dim",
    "load_analysis_defaults",
    "load_history",
    "load_mlflow_trials",
    "load_trials",
    "main",
    "make_phase_trials",
    "planted_metric",
    "plot_agreement",
    "plot_loss_vs_accuracy",
    "plot_metric_curves",
    "plot_phase_diagram",
    "predict",
    "save_png",
    "summarise",
    "theory_boundaries",
    "threshold_functions",
]
