"""Optuna's suggestions as packs of one, resolved in the driver as the grid's cells are.

Every trial's config then has one shape, ``{"pack": [effective config, ...], "objective", "mode"}``,
whichever searcher chose it: the trainable trains what it is given, and Parquet, MLflow and the
trainable see the same effective config, resolved once (``trainables.config.effective``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from search_spaces import distribution
from trainables.config import effective

if TYPE_CHECKING:
    from study.spec import StudySpec

SAMPLERS = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "qmc": optuna.samplers.QMCSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
}


class PackedSuggestions(ConcurrencyLimiter):
    """At most ``max_concurrent`` suggestions in flight, each with the spec's fixed keys (``fixed``) as a
    pack of one effective config; the trainable reports the searcher's metric (and mode) as its objective."""

    def __init__(self, searcher: OptunaSearch, max_concurrent: int, fixed: dict[str, Any]):
        super().__init__(searcher, max_concurrent=max_concurrent)
        self.fixed = fixed

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        suggested = super().suggest(trial_id)
        if not isinstance(suggested, dict):  # None (at the limit) or Searcher.FINISHED
            return suggested
        return {"pack": [effective({**self.fixed, **suggested})], "objective": self.metric, "mode": self.mode}


def optuna_packs(spec: StudySpec) -> PackedSuggestions:
    """The spec's Optuna searcher (its sampler, seeded) over its ``search:`` distributions."""
    space = {}
    for key, dist in spec.search.items():
        (name, args), = dist.items()
        space[key] = distribution(name, args)
    search = OptunaSearch(space=space, metric=spec.objective.metric, mode=spec.objective.mode,
                          sampler=SAMPLERS[spec.searcher.sampler](seed=spec.searcher.seed))
    return PackedSuggestions(search, spec.max_concurrent or 2, {"seed": spec.seeds[0], **spec.trainable})
