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

import importlib
from typing import Any

# Each name is imported from its module on first use, so that importing one module of the package (the
# runner reads analysis.baselines) does not import them all (scikit-learn and matplotlib take seconds).
_EXPORTS = {name: module for module, names in {
    "agreement": ["compare", "summarise"],
    "load": ["add_capacity", "load_analysis_defaults", "load_history", "load_mlflow_trials", "load_trials"],
    "phase": ["PhaseDiagram", "crossing"],
    "planted": ["make_phase_trials", "planted_metric"],
    "plots": ["plot_agreement", "plot_loss_vs_accuracy", "plot_metric_curves", "plot_phase_diagram", "save_png"],
    "report": ["analyze", "find_parent_run", "main"],
    "theory": ["PREDICTIONS", "TheoryBoundary", "expectations", "gmm_between_var", "gmm_pca_critical_nuisance",
               "gmm_pca_overlap", "hypercube_linear_ceiling", "hypercube_linear_separable_fraction",
               "hypercube_mlp_critical_dim", "predict", "theory_boundaries", "threshold_functions"],
}.items() for name in names}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"analysis.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
