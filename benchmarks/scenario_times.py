"""Per-trial train and eval times of every scenario on its defaults, through the plain trainable.

    .venv/bin/python benchmarks/scenario_times.py [--steps 600] [--eval-every 300]

One trial per scenario: an MLP (width 64, depth 2, embedding_dim 8), batch 256, torch's default threads.
Prints train_s (all steps), eval_s (all evaluations) and eval_s per evaluation.
"""

from __future__ import annotations

import argparse

from trainables.engine import train
from trainables.scenarios import SCENARIOS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--eval-every", type=int, default=300)
    args = parser.parse_args()
    n_evals = -(-args.steps // args.eval_every)
    print(f"{'scenario':16s} {'train_s':>8s} {'eval_s':>8s} {'eval_s/eval':>12s} {'ms/step':>8s}")
    for name in SCENARIOS:
        m = train({"scenario": name, "encoder": "mlp", "width": 64, "depth": 2, "embedding_dim": 8,
                   "steps": args.steps, "eval_every": args.eval_every})
        print(f"{name:16s} {m['train_s']:8.2f} {m['eval_s']:8.2f} {m['eval_s'] / n_evals:12.3f} "
              f"{1000 * m['train_s'] / args.steps:8.2f}")


if __name__ == "__main__":
    main()
