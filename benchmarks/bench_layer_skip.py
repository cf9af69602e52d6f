"""Speed of layer skipping, next to the most that skipping could give.

On SmolLM2-135M (``--model demo-text``, 30 layers), greedy with the KV cache, exactly ``--tokens`` new
tokens per run, plans skip the last k of the L decoder layers: k = 0 and k = round(f x L) for each f in
``--fractions``. Within each repeat every plan runs once, back to back, in an order rotated from repeat to
repeat, so machine load hits them alike. A plan's time per token is the median over repeats; its speed-up
is the median over repeats of (full model / plan) within the same repeat.

Ceilings: skipping k of L layers removes at most k/L of the decoder layers' work, so the speed-up is at
most L/(L-k) even if nothing else ran; with the head (final norm + unembedding) costing h layers' worth
of time it is at most (L+h)/(L-k+h); with everything else in a step (embedding, sampling, generate's own
overhead: o layers' worth) at most (L+h+o)/(L-k+h+o). h and o are measured here, in one unskipped
generation with timing hooks on every decoder layer and on the head.

The last line printed is one JSON object: settings, machine load, h, o and per plan the measured speed-up
with its ceilings.

    .venv/bin/python benchmarks/bench_layer_skip.py [--tokens 32] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from evolens.interventions import LayerPlan, skip_layers
from evolens.models import LoadedModel, load_model

PROMPT = "Describe a sunny day at the beach."


def seconds_per_token(loaded: LoadedModel, inputs: Any, plan: LayerPlan, tokens: int) -> float:
    """Wall time of one greedy generation of exactly ``tokens`` tokens under ``plan``, per token."""
    with skip_layers(loaded, plan):
        began = time.perf_counter()
        new = loaded.generate(inputs, max_new_tokens=tokens, min_new_tokens=tokens)
        elapsed = time.perf_counter() - began
    return elapsed / new.shape[1]


@contextmanager
def timed(modules: dict[str, nn.Module]) -> Iterator[dict[str, float]]:
    """Seconds spent inside each module's forward (pre- and post-forward hooks) while the block runs."""
    spent = dict.fromkeys(modules, 0.0)
    started: dict[str, float] = {}
    handles = []
    for name, module in modules.items():

        def before(_module: nn.Module, _args: Any, name: str = name) -> None:
            started[name] = time.perf_counter()

        def after(_module: nn.Module, _args: Any, _output: Any, name: str = name) -> None:
            spent[name] += time.perf_counter() - started[name]

        handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    try:
        yield spent
    finally:
        for handle in handles:
            handle.remove()


def cost_in_layers(loaded: LoadedModel, inputs: Any, tokens: int) -> tuple[float, float]:
    """(h, o): the head's and everything else's time in one unskipped generation, in mean-layer units."""
    modules = {f"layer{i}": layer for i, layer in enumerate(loaded.decoder_layers)}
    modules.update(norm=loaded.final_norm, unembedding=loaded.unembedding)
    with timed(modules) as spent:
        began = time.perf_counter()
        loaded.generate(inputs, max_new_tokens=tokens, min_new_tokens=tokens)
        total = time.perf_counter() - began
    layers = [spent[f"layer{i}"] for i in range(loaded.n_layers)]
    layer = statistics.mean(layers)
    head = spent["norm"] + spent["unembedding"]
    return head / layer, (total - sum(layers) - head) / layer


def ceiling(layers: int, skipped: int, extra: float) -> float:
    """The largest speed-up skipping ``skipped`` of ``layers`` layers can give when ``extra`` layers' worth
    of work always runs."""
    return (layers + extra) / (layers - skipped + extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo-text")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fractions", default="0.25,0.5,0.75")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    loaded = load_model(args.model)
    n = loaded.n_layers
    inputs = loaded.build_inputs([PROMPT])
    loaded.generate(inputs, max_new_tokens=2)  # warm-up
    plans = [LayerPlan.none(n)] + [
        LayerPlan.of(n, range(n - round(float(f) * n), n)) for f in args.fractions.split(",")
    ]
    times: list[list[float]] = [[] for _ in plans]
    for repeat in range(args.repeats):
        for index in [(repeat + i) % len(plans) for i in range(len(plans))]:
            times[index].append(seconds_per_token(loaded, inputs, plans[index], args.tokens))
        print(f"repeat {repeat + 1}: " + ", ".join(f"{t[-1] * 1000:.1f}" for t in times) + " ms/token")
    head, other = cost_in_layers(loaded, inputs, args.tokens)
    rows = []
    for plan, seconds in zip(plans, times, strict=True):
        k = len(plan.skipped)
        rows.append(
            {
                "skipped": k,
                "seconds_per_token": statistics.median(seconds),
                "speedup": statistics.median(base / t for base, t in zip(times[0], seconds, strict=True)),
                "ceiling_layers_only": ceiling(n, k, 0.0),
                "ceiling_with_head": ceiling(n, k, head),
                "ceiling_all_costs": ceiling(n, k, head + other),
            }
        )
    load_after = os.getloadavg()
    print(
        f"\n{loaded.name}: {n} layers; head h = {head:.2f} layers, rest o = {other:.2f} layers; "
        f"{args.tokens} tokens, {args.threads} threads, medians of {args.repeats}; "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print(f"{'skipped':>8} {'ms/token':>9} {'speed-up':>9} {'L/(L-k)':>8} {'with head':>10} {'all':>10}")
    for row in rows:
        ceilings = (row["ceiling_layers_only"], row["ceiling_with_head"], row["ceiling_all_costs"])
        print(
            f"{row['skipped']:>8} {row['seconds_per_token'] * 1000:>9.2f} {row['speedup']:>8.2f}x "
            + " ".join(f"{value:>{width}.2f}x" for value, width in zip(ceilings, (7, 9, 9), strict=True))
        )
    payload = {
        "benchmark": "layer_skip",
        "settings": vars(args),
        "model": {"name": loaded.name, "layers": n},
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
        "head_layer_equivalents": head,
        "other_layer_equivalents": other,
        "plans": rows,
    }
    print(json.dumps(payload))


if __name__ == "__main__":
    main()
