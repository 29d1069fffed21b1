"""One contrastive trial without Ray: build the scenario, encoder and loss, train, evaluate.

``ContrastiveRun`` holds a trial's whole state (model, optimiser, random generators, step),
so a run restored from ``state_dict()`` continues exactly as if it had never stopped.
``train(config)`` is the plain loop used by tests, benchmarks and scripts; the Tune
trainable in ``trainables.contrastive`` drives the same object.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import torch

from trainables.config import resolve
from trainables.encoders import ENCODERS, n_params
from trainables.losses import LOSSES
from trainables.metrics import evaluate
from trainables.scenarios import SCENARIOS

_EVAL_STREAM = 0x5EED  # offsets the held-out sample's seed from the training stream's


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


class ContrastiveRun:
    """A trial in progress: ``advance(n)`` trains n steps, ``evaluate()`` scores the held-out set."""

    def __init__(self, config: Mapping[str, Any], device: str | torch.device | None = None):
        self.resolved = resolve(config)
        t = self.resolved.training
        self.device = pick_device(t["device"]) if device is None else torch.device(device)
        self.steps, self.eval_every, self.seed = t["steps"], t["eval_every"], t["seed"]
        self.scenario = SCENARIOS[self.resolved.scenario](**self.resolved.scenario_kwargs, device=self.device)
        torch.manual_seed(self.seed)  # encoder initialisation
        self.model = ENCODERS[self.resolved.encoder](self.scenario.input_dim, **self.resolved.encoder_kwargs)
        self.model.to(self.device)
        self.loss_fn = LOSSES[self.resolved.loss]
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
        self.batch_size = t["batch_size"]
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed)
        eval_gen = torch.Generator(device=self.device).manual_seed(self.seed + _EVAL_STREAM)
        self.heldout = self.scenario.heldout(t["n_eval"], eval_gen)
        self.heldout_pairs = self.scenario.pairs(self.batch_size, eval_gen)
        self.step = 0
        self.diverged = False
        self.train_s = 0.0
        self.eval_s = 0.0
        self.last_loss = math.nan

    @property
    def n_params(self) -> int:
        return n_params(self.model)

    @property
    def done(self) -> bool:
        return self.diverged or self.step >= self.steps

    def _loss(self, x: torch.Tensor, x_pos: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self.model(x), self.model(x_pos), **self.resolved.loss_kwargs)

    def advance(self, n: int) -> float:
        """Train up to ``n`` steps (never past ``steps``); returns their mean loss. Stops at a NaN/inf loss."""
        n = min(n, self.steps - self.step)
        start = time.perf_counter()
        self.model.train()
        total = torch.zeros((), device=self.device)
        done = 0
        for _ in range(n):
            x, x_pos = self.scenario.pairs(self.batch_size, self.generator)  # (B, D), (B, D)
            loss = self._loss(x, x_pos)
            if not torch.isfinite(loss):
                self.diverged = True
                break
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach()
            done += 1
        self.step += done
        # One host sync per call, not per step: the mean is read once.
        self.last_loss = float(total) / done if done else math.nan
        if self.diverged:
            self.last_loss = math.nan
        self.train_s += time.perf_counter() - start
        return self.last_loss

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out metrics at the current step, plus the bookkeeping every report carries."""
        start = time.perf_counter()
        self.model.eval()
        z = self.model(self.heldout["x"])  # (n_eval, E)
        metrics = evaluate(z, self.heldout, self.scenario.truth, seed=self.seed)
        metrics["eval_loss"] = float(self._loss(*self.heldout_pairs))
        self.eval_s += time.perf_counter() - start
        metrics.update(
            step=self.step,
            train_loss=self.last_loss,
            diverged=int(self.diverged),
            n_params=self.n_params,
            train_s=self.train_s,
            eval_s=self.eval_s,
        )
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "step": self.step,
            "diverged": self.diverged,
            "train_s": self.train_s,
            "eval_s": self.eval_s,
            "last_loss": self.last_loss,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"].cpu() if self.device.type == "cpu" else state["generator"])
        self.step, self.diverged = state["step"], state["diverged"]
        self.train_s, self.eval_s, self.last_loss = state["train_s"], state["eval_s"], state["last_loss"]


def train(config: Mapping[str, Any], history: list[dict[str, float]] | None = None) -> dict[str, float]:
    """Train one config to its end, without Ray; returns its final metrics.

    It evaluates every ``eval_every`` steps, as the Tune trainable does (same work, same
    numbers); pass a list as ``history`` to collect every evaluation.

    The result holds every held-out metric the scenario allows, ``train_loss``, ``eval_loss``,
    ``n_params``, ``train_s``, ``eval_s`` and ``diverged`` (1 when the loss became NaN/inf; the
    run then stops and is evaluated as it is).
    """
    run = ContrastiveRun(config)
    metrics: dict[str, float] = {}
    while not run.done:
        run.advance(run.eval_every)
        metrics = run.evaluate()
        if history is not None:
            history.append(metrics)
    return metrics
