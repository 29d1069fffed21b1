"""Does the one-exponential InfoNCE kernel pay? Forward and backward of both forms, at pack shapes.

    .venv/bin/python benchmarks/info_nce_kernel.py [--batch 256] [--repeats 30] [--json FILE]

``trainables.losses.info_nce`` computes the loss and its gradient with ``_ExpOnceInfoNCE`` (one (K, B, B)
exponential pass, a hand-written backward) and keeps the plain ``log_softmax`` form for temperatures
where that pass would leave float range; the plain form is also the tests' reference. This times both,
forward plus backward, on the same inputs: K configs (a pack) x B rows x E embedding columns, on the CPU
with one thread (as a trial runs) and on CUDA when there is one. It prints the median time of each, the
ratio plain / kernel (above 1: the kernel pays) and the largest difference of loss and gradients between them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from trainables.losses import _LOG2E, _ExpOnceInfoNCE, _log_softmax_info_nce

SHAPES = [(1, 2), (1, 16), (8, 4), (16, 16), (64, 16), (256, 16)]  # (K configs, E dims)


def _inputs(k: int, b: int, e: int, temperature: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator(device="cpu").manual_seed(k * 1000 + e)
    z1, z2 = (torch.randn(k, b, e, generator=gen).to(device) for _ in range(2))
    u1 = torch.nn.functional.normalize(z1, dim=2) * (_LOG2E / temperature)
    return u1.requires_grad_(), torch.nn.functional.normalize(z2, dim=2).requires_grad_()


def _time(form: Any, u1: torch.Tensor, u2: torch.Tensor, repeats: int, sync: Any) -> tuple[float, list[torch.Tensor]]:
    def once() -> list[torch.Tensor]:
        u1.grad = u2.grad = None
        loss = form(u1, u2)
        loss.sum().backward()
        return [loss.detach(), u1.grad, u2.grad]

    for _ in range(3):
        once()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = once()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def run(batch: int, repeats: int, temperature: float = 0.1) -> list[dict[str, Any]]:
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        for k, e in SHAPES:
            u1, u2 = _inputs(k, batch, e, temperature, device)
            plain_s, plain = _time(_log_softmax_info_nce, u1, u2, repeats, sync)
            kernel_s, kernel = _time(_ExpOnceInfoNCE.apply, u1, u2, repeats, sync)
            diff = max(float((a - b).abs().max()) for a, b in zip(plain, kernel, strict=True))
            rows.append({"device": device.type, "k": k, "batch": batch, "dims": e, "plain_ms": round(plain_s * 1e3, 3),
                         "kernel_ms": round(kernel_s * 1e3, 3), "plain_over_kernel": round(plain_s / kernel_s, 2),
                         "max_abs_diff": diff})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (a trial uses its CPU share: 1)")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = run(args.batch, args.repeats)
    print(f"{'device':6s} {'K':>4s} {'B':>4s} {'E':>3s} {'plain ms':>9s} {'kernel ms':>9s} {'plain/kernel':>12s} "
          f"{'max |diff|':>10s}")
    for r in rows:
        print(f"{r['device']:6s} {r['k']:4d} {r['batch']:4d} {r['dims']:3d} {r['plain_ms']:9.3f} {r['kernel_ms']:9.3f} "
              f"{r['plain_over_kernel']:12.2f} {r['max_abs_diff']:10.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
