"""The training engine: K configs (K >= 1) trained as one stacked, zero-padded model.

A phase diagram is hundreds of tiny trials; one at a time they leave a device idle and pay Python's
per-operation overhead K times over. ``Pack(configs)`` stacks K configs that differ only in
``PER_CONFIG_KEYS`` into one model whose every weight carries a leading config axis: one forward, backward
and optimiser step per training step for all K. ``train(config)`` is a pack of one: there is no other loop.

Equivalence by construction: nothing of one config reaches another.
- Config k is initialised as its encoder alone would be (``torch.manual_seed(seed)``, then the
  registry's module), draws its batches from its own generator (configs with the same seed and
  scenario parameters share one stream: the same draws either way), and holds out its own sample.
- Every operation is batched over the config axis and never reduced across it; the pack's loss is the
  sum of the K losses, so config k's gradient is its own loss's.
- Widths and embedding dims are zero-padded to the pack's largest. A zero hidden unit outputs 0 and
  gets a zero gradient; a zero output column adds nothing to norms or dot products, so each loss sees
  exactly its config's embedding, and every padded entry stays exactly zero under AdamW.
- The optimiser is ``torch.optim.adamw.adamw`` (what ``torch.optim.AdamW.step`` runs) over one group per run
  of consecutive configs with the same (lr, weight_decay), on those configs' slices of the stacks. The engine
  holds the moments and step counts itself (``torch.optim.Optimizer`` imports ``torch._dynamo`` on its first
  call: 1.5 to 2 s per trial process); the update is the same, bit for bit.
- A config whose loss turns NaN/inf stops there: its parameters are put back after each later step
  (no host sync per step), while the others go on.
Only float round-off can differ from the config alone, where padding changes a matmul's inner size;
configs of one shape match their lone run bitwise on CPU (tests/trainables/test_engine.py).
"""

from __future__ import annotations

import ctypes
import functools
import heapq
import inspect
import itertools
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.adamw import adamw

from trainables.encoders import ENCODERS, SphereNorm, n_params
from trainables.losses import LOSSES
from trainables.metrics import evaluate_many
from trainables.scenarios import SCENARIOS

__all__ = ["PER_CONFIG_KEYS", "Pack", "auto_pack_size", "pack_cost", "pack_flops", "pack_key", "pack_memory_bytes",
           "pick_device", "plan_packs", "smallest_pack_size", "train"]

# Config keys that may differ inside one pack; every other key of the effective config must agree.
PER_CONFIG_KEYS = frozenset({"seed", "lr", "weight_decay", "temperature", "width", "embedding_dim", "aug_noise"})
_ADAMW_STATE = ("exp_avg", "exp_avg_sq", "step")
_EVAL_STREAM = 0x5EED  # offsets the held-out sample's seed from the training stream's
_CPU_LOSS_BYTES = 1 << 20  # on CPU the loss runs over chunks of configs whose (B, B) logits fit in cache
_ACTIVATIONS: dict[type, Callable[[nn.Module], Callable[[Tensor], Tensor]]] = {
    nn.ReLU: lambda m: torch.relu,
    nn.LeakyReLU: lambda m: functools.partial(torch.nn.functional.leaky_relu, negative_slope=m.negative_slope),
}


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def _kwargs(fn: Callable[..., Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of an effective config that are keyword arguments of ``fn``."""
    return {k: config[k] for k in inspect.signature(fn).parameters if k in config and k != "device"}


def pack_key(config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """What configs must share to train in one pack: the effective config less ``PER_CONFIG_KEYS``, as sorted
    ``(key, value)`` pairs (hashable: group a sweep with a dict keyed by it)."""
    return tuple(sorted((k, v) for k, v in config.items() if k not in PER_CONFIG_KEYS))


def _check_packable(configs: Sequence[Mapping[str, Any]]) -> None:
    """Raise ValueError naming every key that keeps ``configs`` out of one pack."""
    keys = [dict(pack_key(c)) for c in configs]
    values = {name: sorted({repr(key.get(name, "(unused)")) for key in keys}) for name in sorted(set().union(*keys))}
    differing = [f"{name!r} takes {', '.join(v[:4])}" for name, v in values.items() if len(v) > 1]
    if differing:
        raise ValueError(f"configs cannot share a pack: {'; '.join(differing)}. Configs in one pack may differ "
                         f"only in {', '.join(sorted(PER_CONFIG_KEYS))}")


# --- the stacked encoder ---
def _layers(model: nn.Module) -> tuple[list[nn.Linear], Callable[[Tensor], Tensor] | None, bool]:
    """An encoder ``Linear (act Linear)* [SphereNorm]``: its Linear layers, its activation (None for one
    layer) and whether its output is normalised to the sphere."""
    children = [model] if isinstance(model, nn.Linear) else list(model.children())
    sphere = bool(children) and isinstance(children[-1], SphereNorm)
    children = children[:-1] if sphere else children
    acts = children[1::2]
    ok = (isinstance(model, nn.Linear | nn.Sequential) and len(children) % 2 == 1
          and all(isinstance(c, nn.Linear) for c in children[::2])
          and all(type(a) in _ACTIVATIONS and repr(a) == repr(acts[0]) for a in acts))
    if not ok:
        raise ValueError(f"the engine stacks encoders of Linear layers joined by one activation "
                         f"({', '.join(t.__name__ for t in _ACTIVATIONS)}), optionally normalised; got {model}")
    return children[::2], _ACTIVATIONS[type(acts[0])](acts[0]) if acts else None, sphere


@functools.lru_cache(maxsize=1024)
def _input_dim(scenario: str, scenario_kwargs: tuple) -> int:
    return SCENARIOS[scenario](**dict(scenario_kwargs), device="cpu").input_dim


def _layer_shapes(config: Mapping[str, Any]) -> list[tuple[int, int]]:
    """(out, in) of each Linear layer of a config's encoder, built on the meta device (no weights)."""
    input_dim = _input_dim(config["scenario"], tuple(sorted(_kwargs(SCENARIOS[config["scenario"]], config).items())))
    with torch.device("meta"):
        module = ENCODERS[config["encoder"]](input_dim, **_kwargs(ENCODERS[config["encoder"]], config))
    return [tuple(layer.weight.shape) for layer in _layers(module)[0]]


@functools.cache
def _keep_freed_memory() -> None:
    """On glibc, keep freed blocks of up to 32 MB in the heap for the whole process: a CPU pack frees MB-sized
    activations every step, and fresh pages cost a fault each (packs of 16 at MLP width 128: 16% faster)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: its allocator as it is
        return
    libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: blocks below it come from the heap
    libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: free memory kept at the heap's top before it is returned


class Pack:
    """K configs in training: ``advance(n)`` trains n steps, ``evaluate()`` scores each held-out set.

    ``configs`` are effective configs (``trainables.config.effective``, resolved once, in the driver). ``done``:
    every config has trained all its steps or diverged. ``state_dict()`` / ``load_state_dict()`` continue exactly.
    """

    def __init__(self, configs: Sequence[Mapping[str, Any]], device: str | torch.device | None = None):
        if not configs:
            raise ValueError("a pack needs at least one config")
        _check_packable(configs)
        self.configs = [dict(c) for c in configs]
        c0 = self.configs[0]
        self.device = pick_device(str(c0.get("device", "auto"))) if device is None else torch.device(device)
        if self.device.type == "cpu":
            _keep_freed_memory()
        self.steps, self.eval_every, self.batch_size = c0["steps"], c0["eval_every"], c0["batch_size"]
        self.seeds = [c["seed"] for c in self.configs]
        self.embedding_dims = [c["embedding_dim"] for c in self.configs]
        self.loss_fn = LOSSES[c0["loss"]]
        self.loss_kwargs = [_kwargs(self.loss_fn, c) for c in self.configs]
        for kw in self.loss_kwargs:  # the loss's own argument checks, once, at build time
            self.loss_fn(torch.ones(2, 1), torch.ones(2, 1), **kw)

        # One data stream per (seed, scenario parameters): its scenario, generator and held-out sample.
        self.streams: list[dict[str, Any]] = []
        self.stream_of, index = [], {}
        for c in self.configs:
            kw = _kwargs(SCENARIOS[c["scenario"]], c)
            sid = (c["seed"], tuple(sorted(kw.items())))
            if sid not in index:
                index[sid] = len(self.streams)
                scenario = SCENARIOS[c["scenario"]](**kw, device=self.device)
                eval_gen = torch.Generator(device=self.device).manual_seed(c["seed"] + _EVAL_STREAM)
                self.streams.append({
                    "scenario": scenario, "heldout": scenario.heldout(c["n_eval"], eval_gen),
                    "generator": torch.Generator(device=self.device).manual_seed(c["seed"]),
                    "pairs": torch.cat(scenario.pairs(self.batch_size, eval_gen)),  # (2B, D) held-out pairs
                })
            self.stream_of.append(index[sid])
        self._gather = None if self.stream_of == list(range(len(self.streams))) else \
            torch.tensor(self.stream_of, device=self.device)
        self.input_dim = self.streams[0]["scenario"].input_dim

        modules = []
        for c in self.configs:  # each config initialised exactly as alone
            torch.manual_seed(c["seed"])
            modules.append(ENCODERS[c["encoder"]](self.input_dim, **_kwargs(ENCODERS[c["encoder"]], c)))
        self.n_params = [n_params(m) for m in modules]
        self._stack(modules)
        self._chunks = self._loss_chunks(self.batch_size)
        self.step = 0
        self.active = torch.ones(len(self.configs), dtype=torch.bool, device=self.device)  # not diverged
        self.steps_done = torch.zeros(len(self.configs), dtype=torch.long, device=self.device)
        self._active_host = [True] * len(self.configs)
        self.pack_train_s = self.pack_eval_s = 0.0
        self.last_loss = [math.nan] * len(self.configs)

    def _stack(self, modules: list[nn.Module]) -> None:
        """Stacked leaves: weight (K, out, in) and bias (K, 1, out) per layer, zero-padded; the optimiser."""
        layers = [_layers(m)[0] for m in modules]
        if len({len(ls) for ls in layers}) != 1:
            raise ValueError("configs of one pack need the same number of layers")
        _, self.activation, self.sphere = _layers(modules[0])
        self.weights, self.biases = [], []
        for l in range(len(layers[0])):
            out = max(ls[l].out_features for ls in layers)
            w = torch.zeros(len(modules), out, max(ls[l].in_features for ls in layers), device=self.device)
            b = torch.zeros(len(modules), 1, out, device=self.device)
            with torch.no_grad():
                for k, ls in enumerate(layers):
                    o, i = ls[l].weight.shape
                    w[k, :o, :i], b[k, 0, :o] = ls[l].weight, ls[l].bias
            for p in (w, b):
                p.requires_grad_()
                p.grad = torch.zeros_like(p)  # backward accumulates into it in place: the slices below see it
            self.weights.append(w)
            self.biases.append(b)
        # One group per run of configs with equal (lr, weight_decay): leaves sharing storage with the stacks,
        # and AdamW's state as torch.optim.AdamW creates it at its first step.
        self.groups, start = [], 0
        for (lr, weight_decay), run in itertools.groupby(self.configs, lambda c: (c["lr"], c["weight_decay"])):
            end, params = start + len(list(run)), []
            for p in (*self.weights, *self.biases):
                view = p.detach()[start:end].requires_grad_()
                view.grad = p.grad[start:end]
                params.append(view)
            self.groups.append({"params": params, "lr": lr, "weight_decay": weight_decay,
                                "exp_avg": [torch.zeros_like(p) for p in params],
                                "exp_avg_sq": [torch.zeros_like(p) for p in params],
                                "step": [torch.tensor(0.0) for _ in params]})
            start = end

    @torch.no_grad()
    def _optimizer_step(self) -> None:
        """``torch.optim.AdamW(groups).step()`` with its defaults (betas 0.9, 0.999, eps 1e-8)."""
        for g in self.groups:
            adamw(g["params"], [p.grad for p in g["params"]], g["exp_avg"], g["exp_avg_sq"], [], g["step"],
                  amsgrad=False, beta1=0.9, beta2=0.999, lr=g["lr"], weight_decay=g["weight_decay"], eps=1e-8,
                  maximize=False)

    def encode(self, x: Tensor) -> Tensor:
        """(K, N, D) -> (K, N, E_max): every config's encoder on its own rows."""
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if i:
                h = self.activation(h)
            h = torch.baddbmm(b, h, w.transpose(1, 2))  # (K, N, out) = b + h W^T
        return torch.nn.functional.normalize(h, dim=2) if self.sphere else h  # padded zeros leave norms alone

    def _per_config(self, x: Tensor) -> Tensor:  # (G, ...) per stream -> (K, ...) per config
        return x if self._gather is None else x[self._gather]

    def _loss(self, x: Tensor) -> Tensor:  # (K, 2B, D) -> (K,)
        z = self.encode(x)  # (K, 2B, E)
        b = x.shape[1] // 2
        parts = [self.loss_fn(z[lo:hi, :b, :e], z[lo:hi, b:, :e], **kw) for lo, hi, e, kw in self._chunks]
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def _loss_chunks(self, b: int) -> list[tuple[int, int, int, dict[str, Tensor]]]:
        """(first, end, dims, loss kwargs) of each loss call: one for all K on a GPU; on a CPU, whose cache the
        (K, B, B) logits would spill, runs of one embedding_dim (a pack is ordered by it) cut to chunks whose
        logits fit, each on its own columns (same numbers: configs never mix, padded columns are zero)."""
        k, dims, cpu = len(self.configs), self.embedding_dims, self.device.type == "cpu"
        size, bounds, lo = max(1, _CPU_LOSS_BYTES // (4 * b * b)) if cpu else k, [], 0
        for i in range(1, k + 1):
            if i == k or i - lo == size or (cpu and dims[i] != dims[lo]):
                bounds.append((lo, i, max(dims[lo:i])))
                lo = i
        temperature = "temperature" in self.loss_kwargs[0]
        return [(lo, hi, e, {"temperature": torch.tensor([kw["temperature"] for kw in self.loss_kwargs[lo:hi]])}
                 if temperature else {}) for lo, hi, e in bounds]

    @property
    def done(self) -> bool:
        return self.step >= self.steps or not any(self._active_host)

    @property
    def finished(self) -> list[bool]:
        return [not a or self.step >= self.steps for a in self._active_host]

    def advance(self, n: int) -> list[float]:
        """Train up to ``n`` steps (never past ``steps``); each config's mean loss over them (NaN if diverged)."""
        n = min(n, self.steps - self.step)
        if n <= 0 or self.done:
            return list(self.last_loss)
        start = time.perf_counter()
        live = {g for active, g in zip(self._active_host, self.stream_of, strict=True) if active}
        total = torch.zeros(len(self.configs), device=self.device)
        before = self.steps_done.clone()
        params = (*self.weights, *self.biases)
        for _ in range(n):
            draws = [torch.cat(s["scenario"].pairs(self.batch_size, s["generator"])) if g in live
                     else torch.zeros(2 * self.batch_size, self.input_dim, device=self.device)
                     for g, s in enumerate(self.streams)]  # G x (2B, D)
            loss = self._loss(self._per_config(torch.stack(draws)))  # (K,)
            updating = self.active & torch.isfinite(loss)
            kept = torch.where(updating, loss, 0.0)
            for p in params:
                p.grad.zero_()
            kept.sum().backward()
            frozen = [p.detach().clone() for p in params]
            self._optimizer_step()
            with torch.no_grad():  # a diverged config keeps its parameters
                for p, old in zip(params, frozen, strict=True):
                    torch.where(updating[:, None, None], p, old, out=p.data)
            total += kept.detach()
            self.steps_done += updating
            self.active = updating
            self.step += 1
        self._active_host = self.active.tolist()
        self.last_loss = [s / d if a and d else math.nan for s, d, a in
                          zip(total.tolist(), (self.steps_done - before).tolist(), self._active_host, strict=True)]
        self.pack_train_s += time.perf_counter() - start
        return list(self.last_loss)

    @torch.no_grad()
    def evaluate(self) -> list[dict[str, float]]:
        """Per config: every held-out metric its scenario allows (``trainables.metrics.evaluate``) and the
        bookkeeping of a report. ``train_s``/``eval_s`` are the config's share (the pack's time / K);
        ``pack_train_s``/``pack_eval_s`` the pack's whole time."""
        start = time.perf_counter()
        z = self.encode(self._per_config(torch.stack([s["heldout"]["x"] for s in self.streams])))
        eval_loss = self._loss(self._per_config(torch.stack([s["pairs"] for s in self.streams]))).tolist()
        streams = [self.streams[g] for g in self.stream_of]
        reports = evaluate_many(z, [s["heldout"] for s in streams], [s["scenario"].truth for s in streams],
                                self.seeds, dims=self.embedding_dims)
        self.pack_eval_s += time.perf_counter() - start
        k = len(self.configs)
        for i, (metrics, steps) in enumerate(zip(reports, self.steps_done.tolist(), strict=True)):
            metrics.update(eval_loss=eval_loss[i], step=steps, train_loss=self.last_loss[i],
                           diverged=int(not self._active_host[i]), n_params=self.n_params[i],
                           train_s=self.pack_train_s / k, eval_s=self.pack_eval_s / k, pack_size=k,
                           pack_train_s=self.pack_train_s, pack_eval_s=self.pack_eval_s)
        return reports

    def encoder(self, i: int) -> nn.Module:
        """Config ``i``'s encoder as a lone ``nn.Module`` holding its current (unpadded) weights."""
        c = self.configs[i]
        with torch.device("meta"):  # no initialisation: it would draw from the global generator
            module = ENCODERS[c["encoder"]](self.input_dim, **_kwargs(ENCODERS[c["encoder"]], c))
        module = module.to_empty(device=self.device)
        with torch.no_grad():
            for layer, w, b in zip(_layers(module)[0], self.weights, self.biases, strict=True):
                o, n = layer.weight.shape
                layer.weight.copy_(w[i, :o, :n])
                layer.bias.copy_(b[i, 0, :o])
        return module

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed pack needs to continue exactly (copies)."""
        return {
            "weights": [w.detach().clone() for w in self.weights],
            "biases": [b.detach().clone() for b in self.biases],
            "optimizer": {key: [[t.clone() for t in g[key]] for g in self.groups] for key in _ADAMW_STATE},
            "generators": [s["generator"].get_state() for s in self.streams],
            "step": self.step, "active": self.active.clone(), "steps_done": self.steps_done.clone(),
            "pack_train_s": self.pack_train_s, "pack_eval_s": self.pack_eval_s,
            "last_loss": list(self.last_loss), "seeds": list(self.seeds),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        shapes = [tuple(w.shape) for w in state["weights"]]
        if shapes != [tuple(w.shape) for w in self.weights] or state["seeds"] != self.seeds:
            raise ValueError(f"state of another pack: weights {shapes} and seeds {state['seeds']}")
        with torch.no_grad():
            for p, value in zip((*self.weights, *self.biases), (*state["weights"], *state["biases"]), strict=True):
                p.copy_(value)
        saved = state["optimizer"]
        if "param_groups" in saved:  # torch.optim.AdamW's state_dict (an earlier clphase's checkpoint)
            entries = iter(saved["state"].get(i) for i in range(sum(len(g["params"]) for g in self.groups)))
            rows = [[next(entries) for _ in g["params"]] for g in self.groups]  # None: no step taken yet
            saved = {key: [[e[key] if e else t for e, t in zip(row, g[key], strict=True)]
                           for row, g in zip(rows, self.groups, strict=True)] for key in _ADAMW_STATE}
        with torch.no_grad():
            for key in _ADAMW_STATE:
                for g, tensors in zip(self.groups, saved[key], strict=True):
                    for t, value in zip(g[key], tensors, strict=True):
                        t.copy_(value)
        for stream, gen_state in zip(self.streams, state["generators"], strict=True):
            stream["generator"].set_state(gen_state.cpu() if self.device.type == "cpu" else gen_state)
        self.step = state["step"]
        self.active = state["active"].to(self.device).clone()
        self.steps_done = state["steps_done"].to(self.device).clone()
        self._active_host = self.active.tolist()
        self.pack_train_s, self.pack_eval_s = state["pack_train_s"], state["pack_eval_s"]
        self.last_loss = list(state["last_loss"])


def train(config: Mapping[str, Any], history: list[dict[str, float]] | None = None) -> dict[str, float]:
    """Train one config to its end, without Ray; returns its final metrics.

    ``config`` may be partial (resolved here, ``trainables.config.effective``); it trains as a pack of one,
    evaluated every ``eval_every`` steps as the Tune trainable does (into ``history`` too, if a list). The
    result holds every held-out metric the scenario allows, ``train_loss``, ``eval_loss``, ``n_params``,
    ``train_s``, ``eval_s`` and ``diverged`` (1 when the loss became NaN/inf: the run then stops there).
    """
    from trainables.config import effective

    pack = Pack([effective(config)])
    metrics: dict[str, float] = {}
    while not pack.done:
        pack.advance(pack.eval_every)
        metrics = pack.evaluate()[0]
        if history is not None:
            history.append(metrics)
    return metrics


# --- planning packs (in the driver) ---
def plan_packs(configs: Sequence[Mapping[str, Any]], size: int, slots: int = 1) -> list[list[int]]:
    """Split effective ``configs`` into packs of at most ``size``: lists of indices into ``configs``.

    Configs share a pack only under one ``pack_key``. Within a key, widths go to packs of their own, except
    neighbouring widths whose padding to the widest adds at most 25% to their steps' arithmetic; each such run
    of widths is ordered by (lr, weight_decay, width, embedding_dim) and cut into the fewest packs of at most
    ``size``, of sizes that differ by at most one, so a pack pads little, holds few optimiser groups and is no
    small remainder. With ``slots`` > 1 packs run side by side, and the costliest ones are halved where that
    ends the study sooner (``_balance``, on each trial's cost: its steps at ``pack_cost`` each, plus the fixed
    cost of a trial, which every cut pays once more). Packs come most expensive first, so the longest trials
    do not start last; indices within a pack keep that order.
    """
    if size < 1:
        raise ValueError(f"pack size must be >= 1, got {size}")
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault(pack_key(c), []).append(i)
    shapes = [_layer_shapes(c) for c in configs]

    def flops(members: list[int]) -> int:  # a step's multiply-adds, padded to the members' widest shapes
        return _step_cost([shapes[i] for i in members], configs[members[0]]["batch_size"], overhead=False)

    def width(i: int) -> int:
        return configs[i].get("width", 0)

    packs = []
    for key_members in groups.values():
        # widths apart, except where padding them to one costs little: neighbouring widths share packs
        runs: list[list[int]] = []
        for _, same_width in itertools.groupby(sorted(key_members, key=width), width):
            members = list(same_width)
            joined = [*runs[-1], *members] if runs else []
            if joined and flops(joined) <= _PADDING_KEPT * sum(flops([i]) for i in joined):
                runs[-1] = joined
            else:
                runs.append(members)
        for members in runs:
            ordered = sorted(members, key=lambda i: (configs[i]["lr"], configs[i]["weight_decay"], width(i),
                                                     configs[i]["embedding_dim"], i))
            n_packs = -(-len(ordered) // size)
            bounds = [len(ordered) * j // n_packs for j in range(n_packs + 1)]
            packs += [ordered[lo:hi] for lo, hi in zip(bounds, bounds[1:], strict=False)]

    @functools.cache
    def cost(pack: tuple[int, ...]) -> int:  # the whole trial: its steps, and what a trial costs beyond them
        c0 = configs[pack[0]]
        return c0["steps"] * _step_cost([shapes[i] for i in pack], c0["batch_size"]) + _TRIAL_OVERHEAD

    if slots > 1:
        packs = _balance(packs, slots, lambda p: cost(tuple(p)))
    return sorted(packs, key=lambda p: (-cost(tuple(p)), p[0]))


def _balance(packs: list[list[int]], slots: int, cost: Callable[[list[int]], int]) -> list[list[int]]:
    """``packs`` with every pack above a cost cap halved (again, while it is): of the caps C / 2^(j/2),
    C the costliest pack's cost, the one whose packs end soonest on ``slots`` trials started costliest
    first (list scheduling, as Tune starts them); the fewest packs among equals."""
    def cut(pack: list[int], cap: float) -> list[list[int]]:
        if len(pack) < 2 or cost(pack) <= cap:
            return [pack]
        return cut(pack[:len(pack) // 2], cap) + cut(pack[len(pack) // 2:], cap)

    def makespan(plan: list[list[int]]) -> int:
        ends = [0] * slots
        for c in sorted(map(cost, plan), reverse=True):
            heapq.heapreplace(ends, ends[0] + c)
        return max(ends)

    top = max(map(cost, packs))
    plans = [[q for p in packs for q in cut(p, top / 2 ** (j / 2))] for j in range(21)]
    return min(plans, key=lambda plan: (makespan(plan), len(plan)))


# What a CPU training step costs beyond its arithmetic, in multiply-adds of the same time (measured on a
# 2-core x86 machine, one thread: an MLP pack's step is ~1 ms + ~0.3 ms per config + 1 ms per 3.5e7), and
# what a trial costs beyond its steps (its start, evaluation and report: 0.9 to 1.3 s there).
_PACK_OVERHEAD, _CONFIG_OVERHEAD = 35_000_000, 10_000_000
_TRIAL_OVERHEAD = 30_000_000_000
_PADDING_KEPT = 1.25  # configs of different widths share packs while padding adds at most 25% to their steps


def pack_cost(configs: Sequence[Mapping[str, Any]]) -> int:
    """A training step's estimated cost, in multiply-adds: ``pack_flops`` plus the step's fixed cost and
    each config's (its own operations over small tensors), for ordering and balancing packs."""
    return _step_cost([_layer_shapes(c) for c in configs], configs[0]["batch_size"])


def pack_flops(configs: Sequence[Mapping[str, Any]]) -> int:
    """Multiply-adds of one training step of a pack, padded to its widest shapes: per config, both views (2B rows)
    through every layer forward and backward (x3), plus the (B, B) similarities over the widest embedding (x3)."""
    return _step_cost([_layer_shapes(c) for c in configs], configs[0]["batch_size"], overhead=False)


def _step_cost(shapes: list[list[tuple[int, int]]], b: int, overhead: bool = True) -> int:
    widest = [(max(s[l][0] for s in shapes), max(s[l][1] for s in shapes)) for l in range(len(shapes[0]))]
    flops = len(shapes) * (3 * 2 * b * sum(o * i for o, i in widest) + 3 * b * b * widest[-1][0])
    return flops + (_PACK_OVERHEAD + len(shapes) * _CONFIG_OVERHEAD if overhead else 0)


def pack_memory_bytes(config: Mapping[str, Any]) -> int:
    """Estimated device memory of one config of a pack, in bytes (float32, with a 1.5x margin): parameters,
    gradient, AdamW's moments and temporaries (8 P); a step's activations kept for backward with their
    gradients (3 x 2B x sum_l (in_l + out_l)); the (B, B) similarities and their gradients (8 B^2); the
    batch (4 B D); held-out evaluation (2 n_eval (D + max out_l))."""
    b, n_eval, shapes = config["batch_size"], config["n_eval"], _layer_shapes(config)
    p, d = sum(o * i + o for o, i in shapes), shapes[0][1]
    floats = (8 * p + 3 * 2 * b * sum(o + i for o, i in shapes) + 8 * b * b + 4 * b * d
              + 2 * n_eval * (d + max(o for o, _ in shapes)))
    return int(1.5 * 4 * floats)


def smallest_pack_size(configs: Sequence[Mapping[str, Any]], device: str | torch.device | None = None) -> int:
    """``auto_pack_size`` for the most demanding of ``configs``: the smallest over their model shapes (configs
    that differ only in keys that change no shape are asked once), so the cells' order does not matter."""
    shapeless = PER_CONFIG_KEYS - {"width", "embedding_dim"}
    shapes = {tuple(sorted((k, v) for k, v in c.items() if k not in shapeless)): c for c in configs}
    return min(auto_pack_size(c, device) for c in shapes.values())


def auto_pack_size(config: Mapping[str, Any], device: str | torch.device | None = None) -> int:
    """How many configs like ``config`` to train in one pack on ``device``: on CUDA as many as fit in 70% of the
    free memory at ``pack_memory_bytes`` each, at most 1024 (beyond that a step hides every launch); on CPU,
    where packing saves Python and dispatch overhead, not arithmetic, 16 for small models (batch x weights <=
    2^22 multiply-adds per view, e.g. a width-32 MLP at batch 256), 8 above, at most what fits in a quarter of
    the machine's memory."""
    device = pick_device(str(config.get("device", "auto"))) if device is None else torch.device(device)
    per_config = pack_memory_bytes(config)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(1, min(1024, int(0.7 * free) // per_config))
    size = 16 if config["batch_size"] * sum(o * i for o, i in _layer_shapes(config)) <= 2**22 else 8
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return size
    return max(1, min(size, memory // 4 // per_config))
