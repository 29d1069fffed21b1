"""A pack: K contrastive trials trained at once as one vectorised model.

A phase diagram is hundreds of tiny trials; one at a time they leave a GPU idle and pay
Python's per-operation overhead K times over. ``ContrastivePack(configs)`` stacks K configs that
differ only in ``PER_CONFIG_KEYS`` (seed, lr, weight_decay, temperature, width, embedding_dim,
aug_noise) into one model whose every weight carries a leading config axis, and trains them
with batched matrix products: one forward, one backward and one optimiser update per step for
all K.

The contract is equivalence: config k inside a pack follows the same trajectory as
``trainables.training.train(config_k)`` alone, up to floating-point reassociation.

- Each config is first built as the lone ``ContrastiveRun`` builds it (so its scenario, its
  ``torch.manual_seed(seed)`` initialisation, its training generator and its held-out sample
  are the lone run's own), then its weights are copied into the stacked tensors.
- Widths and embedding dims are zero-padded to the pack's largest. A zero hidden unit has
  ReLU(0) = 0 and a zero gradient; a zero output dim adds nothing to norms or dot products, so
  ``info_nce`` and ``spectral`` see exactly the config's own embedding. The update also
  leaves every padded entry at exactly zero by construction (a mask on the parameter write).
- The optimiser is torch's single-tensor AdamW, written out on the stacked tensors with
  per-config lr and weight decay, in torch's order of operations and with its scalars rounded
  as torch rounds them (``_single_tensor_adam``), so that equal gradients give bitwise-equal
  updates. What differs from the lone run is only the summation order inside batched matmuls
  and reductions (padding, the two views in one product): float32 round-off, ~1e-8 relative
  per step. Training is chaotic at that scale (a ReLU pre-activation within round-off of zero
  switches, and the trajectories part at ~1e-5 per step): after hundreds of steps a config's
  metrics match its lone run's to ~1e-2, as a lone run matches itself with its two views
  encoded in one matmul instead of two. Short runs match to ~1e-6 (tests/trainables/test_packed.py).
- The pack's loss is the sum of the K configs' losses, so config k's gradient is its own
  loss's gradient. A config whose loss is NaN/inf stops updating at that step, exactly where a
  lone run would stop, while the others go on; nothing of one config reaches another (every
  operation is batched over the config axis, never reduced across it).

Held-out evaluation embeds every config's held-out sample in one batched forward and scores all K
embeddings in one batched call on the pack's device (``trainables.metrics.evaluate_many``: torch
L-BFGS probes and k-means, one row per config and labelling). A lone run's ``evaluate`` is the same
call with K = 1, so a packed config reports exactly the keys (and, within round-off, the values) of
a lone one.
"""

from __future__ import annotations

import functools
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from trainables.config import effective, resolve
from trainables.encoders import ENCODERS
from trainables.losses import batched_info_nce
from trainables.metrics import evaluate_many
from trainables.scenarios import SCENARIOS, Scenario
from trainables.training import ContrastiveRun, pick_device

__all__ = ["PER_CONFIG_KEYS", "PACKED_LOSSES", "ContrastivePack", "auto_pack_size", "pack_key",
           "pack_flops", "pack_memory_bytes", "plan_packs"]

_CPU_LOSS_BYTES = 1 << 20  # on CPU the loss runs over chunks of configs whose (B, B) logits fit in cache
# Config keys that may differ inside one pack; every other key of the effective config must agree.
PER_CONFIG_KEYS = frozenset({"seed", "lr", "weight_decay", "temperature", "width", "embedding_dim", "aug_noise"})
_PER_CONFIG_LOSS_KWARGS = ("temperature",)


def pack_key(config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """What configs must share to train in one pack: their effective config less ``PER_CONFIG_KEYS``.

    That is the scenario and its parameters (except ``aug_noise``: each config samples its own
    pairs), the encoder and its depth, the loss, ``steps``, ``eval_every``, ``batch_size``,
    ``n_eval`` and ``device``. Sorted ``(key, value)`` pairs, hashable: group a sweep with
    ``itertools.groupby(sorted(cells, key=pack_key), pack_key)`` or a dict.
    """
    return tuple(sorted((k, v) for k, v in effective(config).items() if k not in PER_CONFIG_KEYS))


def plan_packs(configs: Sequence[Mapping[str, Any]], size: int) -> list[list[int]]:
    """Split ``configs`` into packs of at most ``size``: lists of indices into ``configs``.

    Configs share a pack only under one ``pack_key``; within a key they are ordered by
    (width, embedding_dim) and cut into the fewest packs of at most ``size``, of sizes that differ
    by at most one, so that a pack holds configs of similar shape and pads little (a width-32
    config padded to 128 costs 16 times its own hidden layer) and no pack is a small remainder.
    Packs come most expensive first (``pack_flops``; ties in the order of their first config):
    trials start in that order, so the longest do not start last and leave the workers idle at the
    end. Indices within a pack are ascending.
    """
    if size < 1:
        raise ValueError(f"pack size must be >= 1, got {size}")
    groups: dict[tuple[tuple[str, Any], ...], list[int]] = {}
    shapes = []
    for i, config in enumerate(configs):
        flat = effective(config)
        shapes.append((flat.get("width", 0), flat["embedding_dim"]))
        groups.setdefault(pack_key(config), []).append(i)
    packs = []
    for members in groups.values():
        ordered = sorted(members, key=lambda i: (shapes[i], i))
        n_packs = -(-len(ordered) // size)
        bounds = [len(ordered) * j // n_packs for j in range(n_packs + 1)]
        packs += [sorted(ordered[lo:hi]) for lo, hi in zip(bounds, bounds[1:], strict=False)]
    cost = {tuple(pack): pack_flops([configs[i] for i in pack]) for pack in packs}
    return sorted(packs, key=lambda pack: (-cost[tuple(pack)], pack[0]))


def pack_flops(configs: Sequence[Mapping[str, Any]]) -> int:
    """Multiply-adds of one training step of a pack of ``configs``, padded to its widest shapes.

    Per config: both views (2B rows) through every layer, forward and backward (x3), plus the
    (B, B) similarity matrix over the widest embedding (x3). An estimate for ordering packs.
    """
    shapes = [_layer_shapes(c) for c in configs]
    b = shapes[0][0]
    depth = len(shapes[0][2])
    widest = [(max(s[2][l][0] for s in shapes), max(s[2][l][1] for s in shapes)) for l in range(depth)]
    per_config = 3 * 2 * b * sum(o * i for o, i in widest) + 3 * b * b * widest[-1][0]
    return len(configs) * per_config


def _check_packable(configs: Sequence[Mapping[str, Any]]) -> None:
    """Raise ValueError naming every key that keeps ``configs`` out of one pack."""
    keys = [dict(pack_key(c)) for c in configs]
    names = sorted({name for key in keys for name in key})
    differing = []
    for name in names:
        first_of: dict[str, int] = {}  # each distinct value, shown with the first config that has it
        for i, key in enumerate(keys):
            first_of.setdefault(repr(key[name]) if name in key else "(unused)", i)
        if len(first_of) > 1:
            shown = ", ".join(f"{v} (config {i})" for v, i in list(first_of.items())[:4])
            differing.append(f"{name!r} differs: {shown}{', ...' if len(first_of) > 4 else ''}")
    if differing:
        raise ValueError(f"configs cannot share a pack: {'; '.join(differing)}. Configs in one pack may differ "
                         f"only in {', '.join(sorted(PER_CONFIG_KEYS))}")


# ---------------------------------------------------------------------------------------------
# losses on stacked embeddings: (K, B, E) x (K, B, E) -> (K,), one value per config


def packed_spectral(z1: Tensor, z2: Tensor) -> Tensor:
    """``trainables.losses.spectral`` for K configs at once: row k equals ``spectral(z1[k], z2[k])``."""
    b = z1.shape[1]
    gram = torch.bmm(z1, z2.transpose(1, 2))  # (K, B, B)
    diagonal = gram.diagonal(dim1=1, dim2=2)  # (K, B)
    positive = diagonal.sum(1) * (-2.0 / b)
    off_diagonal = (gram.pow(2).sum((1, 2)) - diagonal.pow(2).sum(1)) / (b * (b - 1))
    return positive + off_diagonal


PACKED_LOSSES = {"info_nce": batched_info_nce, "spectral": packed_spectral}  # batched_info_nce: one exp pass


# ---------------------------------------------------------------------------------------------
# the stacked encoder


def _linear_layers(model: nn.Module) -> list[nn.Linear]:
    """The Linear layers of an encoder made of Linear layers with a ReLU between consecutive ones."""
    if isinstance(model, nn.Linear):
        return [model]
    children = list(model.children()) if isinstance(model, nn.Sequential) else []
    pattern_ok = bool(children) and all(
        isinstance(c, nn.Linear) if i % 2 == 0 else isinstance(c, nn.ReLU) for i, c in enumerate(children)
    ) and isinstance(children[-1], nn.Linear)
    if not pattern_ok:
        raise ValueError(f"a pack needs an encoder of Linear layers joined by ReLU (linear, mlp); got {model}")
    return [c for c in children if isinstance(c, nn.Linear)]


@dataclass(frozen=True)
class _Slot:
    """Where layer l's weight (out, in) and bias (out,) live in a config's flat parameter row."""

    out: int
    inp: int
    weight: int  # offset of the (out, in) weight, row-major
    bias: int  # offset of the (out,) bias

    @property
    def end(self) -> int:
        return self.bias + self.out


@dataclass
class _Stream:
    """Configs with the same seed and scenario parameters: one scenario, one generator, one draw per step."""

    scenario: Scenario
    generator: torch.Generator
    heldout: dict[str, Tensor]
    heldout_pairs: Tensor  # (2B, D): x then x_pos, as ContrastiveRun draws them


class ContrastivePack:
    """K configs trained as one vectorised model; the ``ContrastiveRun`` interface, one value per config.

    ``advance(n) -> list[float]`` trains up to n steps and returns each config's mean loss
    (NaN for a config that diverged); ``evaluate() -> list[dict]`` gives each config the
    metrics ``ContrastiveRun.evaluate()`` would; ``state_dict()`` / ``load_state_dict()`` resume
    exactly. ``done`` is true once every config has finished (``finished`` says which have);
    ``step`` counts the pack's steps, a diverged config's own step is in its metrics.

    Timing: ``train_s`` and ``eval_s`` of each config are the pack's training and evaluation
    times divided by K.
    """

    key = staticmethod(pack_key)

    def __init__(self, configs: Sequence[Mapping[str, Any]], device: str | torch.device | None = None):
        if not configs:
            raise ValueError("a pack needs at least one config")
        _check_packable(configs)
        self.configs = [dict(c) for c in configs]
        first = resolve(configs[0])
        t = first.training
        self.device = pick_device(t["device"]) if device is None else torch.device(device)
        self.steps, self.eval_every, self.batch_size = t["steps"], t["eval_every"], t["batch_size"]
        self.loss_name, self.encoder_name = first.loss, first.encoder
        if self.loss_name not in PACKED_LOSSES:
            raise ValueError(f"loss {self.loss_name!r} has no packed form; packed losses: {', '.join(PACKED_LOSSES)}")

        # Each config built exactly as alone: scenario, seeded initialisation, generators, held-out sample.
        runs = [ContrastiveRun(c, device=self.device) for c in configs]
        self._resolved = [r.resolved for r in runs]
        self.seeds = [r.seed for r in runs]
        self.n_params = [r.n_params for r in runs]
        self.embedding_dims = [r.resolved.training["embedding_dim"] for r in runs]
        k = len(runs)

        streams: dict[tuple[Any, ...], int] = {}
        self._streams: list[_Stream] = []
        group = []
        for r in runs:
            sid = (r.seed, tuple(sorted(r.resolved.scenario_kwargs.items())))
            if sid not in streams:
                streams[sid] = len(self._streams)
                self._streams.append(_Stream(r.scenario, r.generator, r.heldout, torch.cat(r.heldout_pairs)))
            group.append(streams[sid])
        self._group_host = group
        self._group = torch.tensor(group, device=self.device)  # (K,) config -> stream
        self._identity_groups = group == list(range(k))
        self._heldout_x = torch.stack([s.heldout["x"] for s in self._streams])  # (G, n_eval, D)
        self._heldout_pairs = torch.stack([s.heldout_pairs for s in self._streams])  # (G, 2B, D)

        self._build_parameters(runs)
        self._build_optimiser(runs)
        self._loss_fn = PACKED_LOSSES[self.loss_name]
        for r in runs:  # the lone loss's own argument checks (e.g. temperature > 0), once, at build time
            z = torch.ones(2, 1, device=self.device)
            r.loss_fn(z, z, **r.resolved.loss_kwargs)
        host = {name: torch.tensor([r.resolved.loss_kwargs[name] for r in runs], dtype=torch.float32)
                for name in _PER_CONFIG_LOSS_KWARGS if name in first.loss_kwargs}
        self._loss_kwargs = {name: v.to(self.device) for name, v in host.items()}
        if self.loss_name == "info_nce":  # the temperatures on the host too: no device sync per step
            self._loss_kwargs["t_host"] = host["temperature"]

        self.step = 0  # the pack's steps; a diverged config stopped at its own (see _steps_done)
        self._active = torch.ones(k, dtype=torch.bool, device=self.device)  # not diverged
        self._steps_done = torch.zeros(k, dtype=torch.long, device=self.device)
        self._active_host = [True] * k
        self.train_s = [0.0] * k
        self.eval_s = [0.0] * k
        self.last_loss = [math.nan] * k

    # -- parameters ----------------------------------------------------------------------------

    def _build_parameters(self, runs: list[ContrastiveRun]) -> None:
        """Stack every config's Linear layers, zero-padded, into one (K, P) row per config.

        Layer l is a weight (K, out_l, in_l) and a bias (K, 1, out_l), both views of ``params``,
        so that the optimiser updates all layers and all configs with a handful of operations.
        """
        layers = [_linear_layers(r.model) for r in runs]
        depths = {len(ls) for ls in layers}
        if len(depths) != 1:
            raise ValueError(f"configs of one pack need the same number of layers, got {sorted(depths)}")
        self._slots: list[_Slot] = []
        offset = 0
        for l in range(depths.pop()):
            out = max(ls[l].out_features for ls in layers)
            inp = max(ls[l].in_features for ls in layers)
            self._slots.append(_Slot(out, inp, offset, offset + out * inp))
            offset = self._slots[-1].end
        k = len(runs)
        self.params = torch.zeros(k, offset, device=self.device)  # (K, P)
        self._real = torch.zeros(k, offset, dtype=torch.bool, device=self.device)  # (K, P) not padding
        with torch.no_grad():
            for i, ls in enumerate(layers):
                for slot, layer in zip(self._slots, ls, strict=True):
                    o, n = layer.weight.shape
                    self._weight(self.params, slot)[i, :o, :n] = layer.weight
                    self._bias(self.params, slot)[i, 0, :o] = layer.bias
                    self._weight(self._real, slot)[i, :o, :n] = True
                    self._bias(self._real, slot)[i, 0, :o] = True
        self.grad = torch.zeros_like(self.params)
        # Autograd leaves that share storage with params (and whose .grad are views of grad), so that
        # backward accumulates straight into the flat gradient and the update writes straight into them.
        self._weights, self._biases = [], []
        for slot in self._slots:
            w = self._weight(self.params, slot).detach().requires_grad_()
            b = self._bias(self.params, slot).detach().requires_grad_()
            w.grad, b.grad = self._weight(self.grad, slot), self._bias(self.grad, slot)
            self._weights.append(w)
            self._biases.append(b)

    @property
    def layers(self) -> list[tuple[Tensor, Tensor]]:
        """The stacked, zero-padded layers: (weight (K, out, in), bias (K, 1, out)) each, views of ``params``."""
        return [(w.detach(), b.detach()) for w, b in zip(self._weights, self._biases, strict=True)]

    @staticmethod
    def _weight(flat: Tensor, slot: _Slot) -> Tensor:  # (K, P) -> (K, out, in) view
        return flat[:, slot.weight : slot.bias].view(len(flat), slot.out, slot.inp)

    @staticmethod
    def _bias(flat: Tensor, slot: _Slot) -> Tensor:  # (K, P) -> (K, 1, out) view
        return flat[:, slot.bias : slot.end].view(len(flat), 1, slot.out)

    def _encode(self, x: Tensor) -> Tensor:
        """(K, N, D) -> (K, N, E_max): every config's encoder on its own rows."""
        h = x
        for i, (w, b) in enumerate(zip(self._weights, self._biases, strict=True)):
            if i > 0:
                h = h.relu_()  # in place: baddbmm's backward does not need its output
            h = torch.baddbmm(b, h, w.transpose(1, 2))  # (K, N, out) = b + h W^T
        return h

    # -- optimiser: torch.optim.AdamW, stacked -------------------------------------------------

    def _build_optimiser(self, runs: list[ContrastiveRun]) -> None:
        groups = [r.optimizer.param_groups[0] for r in runs]  # the lone run's own AdamW settings
        g0 = groups[0]
        if g0["amsgrad"] or g0["maximize"] or any((g["betas"], g["eps"]) != (g0["betas"], g0["eps"]) for g in groups):
            raise ValueError("a pack reproduces AdamW without amsgrad/maximize and with one (betas, eps)")
        self._betas, self._eps = g0["betas"], g0["eps"]
        self.exp_avg = torch.zeros_like(self.params)
        self.exp_avg_sq = torch.zeros_like(self.params)
        # torch computes 1 - lr * wd and lr / (1 - beta1^t) in double and rounds them to float32 in the
        # kernel; so do we, per config (K, 1), for every step t = 1..steps: (steps, K, 1).
        lr = torch.tensor([g["lr"] for g in groups], dtype=torch.float64)
        decay = [1 - g["lr"] * g["weight_decay"] if g["weight_decay"] != 0 else 1.0 for g in groups]
        self._decay = torch.tensor(decay, dtype=torch.float64)[:, None].float().to(self.device)
        t = torch.arange(1, self.steps + 1, dtype=torch.float64)
        correction1 = torch.tensor([1 - self._betas[0] ** float(s) for s in t.tolist()], dtype=torch.float64)
        self._neg_step = (-(lr[None, :] / correction1[:, None]))[:, :, None].float().to(self.device)

    @torch.no_grad()
    def _adamw(self, updating: Tensor) -> None:
        """One AdamW step (torch's ``_single_tensor_adam`` order) for the configs in ``updating`` (K,) bool."""
        beta1, beta2 = self._betas
        t = self.step + 1
        g = self.grad
        self.exp_avg.lerp_(g, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        correction2_sqrt = (1 - beta2 ** float(t)) ** 0.5
        denom = (self.exp_avg_sq.sqrt() / correction2_sqrt).add_(self._eps)
        new = (self.params * self._decay).addcdiv_(self.exp_avg * self._neg_step[t - 1], denom)
        # a diverged config keeps its parameters, a padded entry stays exactly zero
        torch.where(self._real & updating[:, None], new, self.params, out=self.params)

    # -- training ------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.step >= self.steps or not any(self._active_host)

    @property
    def finished(self) -> list[bool]:
        """Per config: diverged, or trained all its steps (its last report is final)."""
        return [not a or self.step >= self.steps for a in self._active_host]

    @property
    def diverged(self) -> list[bool]:
        return [not a for a in self._active_host]

    def _pairs(self, live: list[bool]) -> Tensor:
        """(K, 2B, D): each config's batch, x then x_pos, drawn from its stream's generator."""
        b, d = self.batch_size, self._streams[0].scenario.input_dim
        draws = [
            torch.cat(s.scenario.pairs(b, s.generator)) if on else torch.zeros(2 * b, d, device=self.device)
            for s, on in zip(self._streams, live, strict=True)
        ]  # G x (2B, D)
        return self._per_config(torch.stack(draws))

    def _per_config(self, x: Tensor) -> Tensor:
        """(G, ...) per stream -> (K, ...) per config."""
        return x if self._identity_groups else x[self._group]

    def _loss(self, x: Tensor) -> Tensor:  # (K, 2B, D) -> (K,)
        z = self._encode(x)  # (K, 2B, E)
        b, k = x.shape[1] // 2, len(x)
        # On a GPU one call for all K; on a CPU the (K, B, B) logits would spill out of cache, and
        # chunks of configs whose logits fit run faster (same numbers: configs never mix).
        chunk = k if self.device.type != "cpu" else max(1, _CPU_LOSS_BYTES // (4 * b * b))
        losses = [
            self._loss_fn(z[i : i + chunk, :b], z[i : i + chunk, b:],
                          **{name: v[i : i + chunk] for name, v in self._loss_kwargs.items()})
            for i in range(0, k, chunk)
        ]
        return losses[0] if len(losses) == 1 else torch.cat(losses)

    def advance(self, n: int) -> list[float]:
        """Train up to ``n`` steps (never past ``steps``); each config's mean loss over them.

        A config whose loss becomes NaN/inf stops updating at that step (as ``ContrastiveRun``
        stops) and reports NaN; the others go on. One host sync per call, none per step.
        """
        n = min(n, self.steps - self.step)
        if n <= 0 or self.done:
            return list(self.last_loss)
        start = time.perf_counter()
        live = [False] * len(self._streams)
        for active, g in zip(self._active_host, self._group_host, strict=True):
            live[g] = live[g] or active
        total = torch.zeros(len(self.configs), device=self.device)
        steps_before = self._steps_done.clone()
        for _ in range(n):
            loss = self._loss(self._pairs(live))  # (K,)
            updating = self._active & torch.isfinite(loss)
            kept = torch.where(updating, loss, 0.0)
            self.grad.zero_()
            with warnings.catch_warnings():
                # the layers' gradients are strided views of one flat buffer, on purpose (see _build_parameters)
                warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")
                kept.sum().backward()  # config k's gradient is its own loss's
            self._adamw(updating)
            total += kept.detach()
            self._steps_done += updating
            self._active = updating
            self.step += 1
        self._active_host = self._active.tolist()
        done = (self._steps_done - steps_before).tolist()
        for i, (s, d, a) in enumerate(zip(total.tolist(), done, self._active_host, strict=True)):
            self.last_loss[i] = s / d if a and d else math.nan
        elapsed = (time.perf_counter() - start) / len(self.configs)
        self.train_s = [s + elapsed for s in self.train_s]
        return list(self.last_loss)

    # -- evaluation ----------------------------------------------------------------------------

    @torch.no_grad()
    def embeddings(self) -> list[Tensor]:
        """Each config's embedding of its held-out sample: (n_eval, embedding_dim_k), on the pack's device."""
        z = self._encode(self._per_config(self._heldout_x))  # (K, n_eval, E_max)
        return [z[i, :, :e] for i, e in enumerate(self.embedding_dims)]

    @torch.no_grad()
    def evaluate(self) -> list[dict[str, float]]:
        """Per config, what ``ContrastiveRun.evaluate()`` returns: held-out metrics and bookkeeping.

        All K configs are scored in one batched call (``trainables.metrics.evaluate_many``) on the
        pack's device; each config's ``eval_s`` grows by the call's time divided by K.
        """
        start = time.perf_counter()
        z = self._encode(self._per_config(self._heldout_x))  # (K, n_eval, E_max), zero past each embedding_dim
        eval_loss = self._loss(self._per_config(self._heldout_pairs)).tolist()
        streams = [self._streams[g] for g in self._group_host]
        reports = evaluate_many(z, [s.heldout for s in streams], [s.scenario.truth for s in streams], self.seeds,
                                dims=self.embedding_dims)
        steps_done = self._steps_done.tolist()
        share = (time.perf_counter() - start) / len(self.configs)
        for i, metrics in enumerate(reports):
            self.eval_s[i] += share
            metrics["eval_loss"] = eval_loss[i]
            metrics.update(
                step=steps_done[i],
                train_loss=self.last_loss[i],
                diverged=int(not self._active_host[i]),
                n_params=self.n_params[i],
                train_s=self.train_s[i],
                eval_s=self.eval_s[i],
            )
        return reports

    def encoder(self, i: int) -> nn.Module:
        """Config ``i``'s encoder as a lone ``nn.Module`` holding its current (unpadded) weights."""
        r = self._resolved[i]
        with torch.device("meta"):  # no initialisation: it would draw from the global generator
            module = ENCODERS[r.encoder](self._streams[0].scenario.input_dim, **r.encoder_kwargs)
        module = module.to_empty(device=self.device)
        with torch.no_grad():
            for slot, layer in zip(self._slots, _linear_layers(module), strict=True):
                o, n = layer.weight.shape
                layer.weight.copy_(self._weight(self.params, slot)[i, :o, :n])
                layer.bias.copy_(self._bias(self.params, slot)[i, 0, :o])
        return module

    # -- checkpoint ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed pack needs to continue exactly (copies, safe to keep while training goes on)."""
        return {
            "params": self.params.clone(),
            "exp_avg": self.exp_avg.clone(),
            "exp_avg_sq": self.exp_avg_sq.clone(),
            "generators": [s.generator.get_state() for s in self._streams],
            "step": self.step,
            "active": self._active.clone(),
            "steps_done": self._steps_done.clone(),
            "train_s": list(self.train_s),
            "eval_s": list(self.eval_s),
            "last_loss": list(self.last_loss),
            "seeds": list(self.seeds),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if tuple(state["params"].shape) != tuple(self.params.shape) or state["seeds"] != self.seeds:
            raise ValueError(f"state of another pack: params {tuple(state['params'].shape)} and seeds "
                             f"{state['seeds']}, this pack has {tuple(self.params.shape)} and {self.seeds}")
        with torch.no_grad():
            self.params.copy_(state["params"])
            self.exp_avg.copy_(state["exp_avg"])
            self.exp_avg_sq.copy_(state["exp_avg_sq"])
        for stream, gen_state in zip(self._streams, state["generators"], strict=True):
            stream.generator.set_state(gen_state.cpu() if self.device.type == "cpu" else gen_state)
        self.step = state["step"]
        self._active = state["active"].to(self.device).clone()
        self._steps_done = state["steps_done"].to(self.device).clone()
        self._active_host = self._active.tolist()
        self.train_s, self.eval_s = list(state["train_s"]), list(state["eval_s"])
        self.last_loss = list(state["last_loss"])


# ---------------------------------------------------------------------------------------------
# how many configs to pack


def _layer_shapes(config: Mapping[str, Any]) -> tuple[int, int, list[tuple[int, int]]]:
    """(batch_size, n_eval, [(out, in) per Linear layer]) of a config's encoder, without building it."""
    r = resolve(config)
    try:
        shapes = _encoder_shapes(r.scenario, tuple(sorted(r.scenario_kwargs.items())), r.encoder,
                                 tuple(sorted(r.encoder_kwargs.items())))
    except TypeError:  # an unhashable keyword value: no cache
        shapes = _encoder_shapes.__wrapped__(r.scenario, tuple(r.scenario_kwargs.items()), r.encoder,
                                             tuple(r.encoder_kwargs.items()))
    return r.training["batch_size"], r.training["n_eval"], list(shapes)


@functools.lru_cache(maxsize=1024)
def _encoder_shapes(scenario: str, scenario_kwargs: tuple, encoder: str, encoder_kwargs: tuple) -> tuple:
    """The (out, in) of each Linear layer; cached, since a sweep asks for the same few shapes per cell and
    knowing the input dimension means building the scenario (milliseconds each, for thousands of cells)."""
    input_dim = SCENARIOS[scenario](**dict(scenario_kwargs), device="cpu").input_dim
    with torch.device("meta"):
        module = ENCODERS[encoder](input_dim, **dict(encoder_kwargs))
    return tuple(tuple(layer.weight.shape) for layer in _linear_layers(module))


def pack_memory_bytes(config: Mapping[str, Any]) -> int:
    """Estimated device memory one config of a pack needs, in bytes (float32, with a 1.5x margin).

    - parameters, gradient, two AdamW moments and the update's temporaries: 8 x P floats;
    - a training step's activations: both views (2B rows) of every layer's input and output,
      kept for backward with their gradients: 3 x 2B x sum_l (in_l + out_l); the (B, B)
      similarity matrix, its softmaxes and their gradients: 8 x B^2; the batch: 2 x 2B x D;
    - held-out evaluation: the sample and the widest activation, twice: 2 x n_eval x (D + max out_l).
    """
    b, n_eval, shapes = _layer_shapes(config)
    p = sum(o * i + o for o, i in shapes)
    d = shapes[0][1]
    floats = (8 * p + 3 * 2 * b * sum(o + i for o, i in shapes) + 8 * b * b + 4 * b * d
              + 2 * n_eval * (d + max(o for o, _ in shapes)))
    return int(1.5 * 4 * floats)


def auto_pack_size(config: Mapping[str, Any], device: str | torch.device | None = None) -> int:
    """How many configs like ``config`` to train in one pack on ``device``.

    CUDA: as many as fit in 70% of the device's free memory (``torch.cuda.mem_get_info``) at
    ``pack_memory_bytes(config)`` each, at most 1024 (beyond that a step is long enough to hide
    every launch). CPU: packing saves Python and dispatch overhead, not arithmetic, which beyond a
    few configs it has already saved; so a
    modest 16 for small models (batch x weights <= 2^22 multiply-adds per view, e.g. a linear
    encoder or a width-32 MLP at batch 256) and 8 above that, never more than fit in a quarter
    of the machine's memory.
    """
    device = pick_device(str(resolve(config).training["device"])) if device is None else torch.device(device)
    per_config = pack_memory_bytes(config)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(1, min(1024, int(0.7 * free) // per_config))
    b, _, shapes = _layer_shapes(config)
    size = 16 if b * sum(o * i for o, i in shapes) <= 2**22 else 8
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return size
    return max(1, min(size, memory // 4 // per_config))
