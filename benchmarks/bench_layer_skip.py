"""Speed of layer skipping: wall time per generated token with 0, 25%, 50% and 75% of the decoder layers
skipped, as ratios against the full model measured in the same run (SmolLM2-135M, greedy, KV cache on).

    .venv/bin/python benchmarks/bench_layer_skip.py [--tokens 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from evolens.interventions import LayerPlan, skip_layers
from evolens.models import load_model


def seconds_per_token(loaded, inputs, plan: LayerPlan, tokens: int, repeats: int) -> float:
    """Best-of-``repeats`` wall time of one greedy generation, divided by the tokens it produced."""
    best = float("inf")
    for _ in range(repeats):
        with skip_layers(loaded, plan):
            began = time.perf_counter()
            new = loaded.generate(inputs, max_new_tokens=tokens, min_new_tokens=tokens)
            elapsed = time.perf_counter() - began
        best = min(best, elapsed / new.shape[1])
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    loaded = load_model("demo-text")
    n = loaded.n_layers
    inputs = loaded.build_inputs(["Describe a sunny day at the beach."])
    loaded.generate(inputs, max_new_tokens=2)  # warm-up
    baseline = seconds_per_token(loaded, inputs, LayerPlan.none(n), args.tokens, args.repeats)
    print(f"{'skipped':>10} {'s/token':>9} {'speed-up':>9}")
    print(f"{0:>10} {baseline:>9.4f} {1.0:>8.2f}x")
    for fraction in (0.25, 0.5, 0.75):
        plan = LayerPlan.of(n, range(n - round(fraction * n), n))
        seconds = seconds_per_token(loaded, inputs, plan, args.tokens, args.repeats)
        print(f"{len(plan.skipped):>10} {seconds:>9.4f} {baseline / seconds:>8.2f}x")


if __name__ == "__main__":
    main()
