"""What one layer window of a causal test costs, against one plain teacher-forced forward pass of the same
batch, in the same run.

On the demo model and B shapes-world scenes asked the colour question (targets found once, not timed):

  forward       one teacher-forced forward pass of the batch up to the targets, capturing the last layer
                at the target positions (``CausalRunner.run`` without an intervention): the baseline
  knockout      one window with attention from the target positions to the image tokens blocked
  ablate        one window with the image tokens' states set to zero from a layer on
  patch         one window of clean states patched into the blank-image run
  batch[m]      ``window_effects`` on the batch for method m: all windows and the reference runs, per
                window (what ``evolens causal`` pays per window)

Medians of --repeats, interleaved. Prints the load average first (run it on an otherwise idle machine) and,
last, one JSON object with the settings and the ratios to ``forward``.

    .venv/bin/python benchmarks/causal_cost.py [--batch 8] [--window 3] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from evolens.data.config import data_config
from evolens.data.resolve import resolve_samples
from evolens.interventions.causal import CausalPlan, CausalRunner, ablation, window_effects
from evolens.interventions.causal_run import find_targets
from evolens.models import load_model
from evolens.models.image_tokens import image_positions

COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--window", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    loaded = load_model("demo")
    config = data_config(
        source="shapes", limit=args.batch, seed=30_000_000, prompts=["What is the color of the shape?"]
    )
    samples = resolve_samples(config, workdir=Path(tempfile.mkdtemp(prefix="evolens-causal-bench-")))
    targets, missing = find_targets(loaded, samples, COLOURS, 12, args.batch)
    print(f"{len(targets)} targets ({len(missing)} answers without a colour)")
    n = loaded.n_layers
    span = tuple(range(n // 2, n // 2 + args.window))
    runners = {
        m: CausalRunner(loaded, CausalPlan(m, args.window, corrupt="blank"), samples)
        for m in ("knockout", "ablate", "patch")
    }
    knock = runners["knockout"]
    batch = knock.layout(targets, knock.real_images)
    keys = image_positions(loaded, batch.inputs["input_ids"])
    queries = torch.zeros_like(keys)
    queries.scatter_(1, knock.target_positions(batch), True)
    mask = keys
    blank = runners["patch"].layout(targets, runners["patch"].corrupted_images)  # type: ignore[arg-type]
    clean_states = knock.run(targets, batch, lens_layers=range(n + 1))[1]
    positions = runners["patch"].target_positions(blank)

    def patched(layer: int, hidden: torch.Tensor) -> torch.Tensor:
        hidden = hidden.clone()
        rows = torch.arange(hidden.shape[0])
        hidden[rows, positions[:, 0]] = clean_states[:, layer].to(hidden.dtype)
        return hidden

    timings = {
        "forward": lambda: knock.run(targets, batch),
        "knockout": lambda: knock.run(targets, batch, knockout=(span, queries, keys)),
        "ablate": lambda: knock.run(targets, batch, edit=(span, ablation(mask, None))),
        "patch": lambda: knock.run(targets, blank, edit=(span, patched)),
    }
    for function in timings.values():  # warm up
        function()
    samples_s: dict[str, list[float]] = {name: [] for name in timings}
    for _ in range(args.repeats):  # interleaved: each round times every variant once
        for name, function in timings.items():
            start = time.perf_counter()
            function()
            samples_s[name].append(time.perf_counter() - start)
    seconds = {name: statistics.median(values) for name, values in samples_s.items()}
    for method, runner in runners.items():
        if method == "ablate":
            runner.baseline = None
        n_windows = len(runner.plan.windows(n))
        total = median_seconds(
            lambda runner=runner: window_effects(runner, targets), max(1, args.repeats // 2)
        )
        seconds[f"batch[{method}]"] = total / n_windows
    base = seconds["forward"]
    for name, value in seconds.items():
        print(f"{name:16s} {value * 1000:9.1f} ms  {value / base:5.2f} x forward")
    print(
        json.dumps(
            {
                "settings": vars(args),
                "machine": {
                    "cpu": platform.processor() or platform.machine(),
                    "threads": args.threads,
                    "load_average": os.getloadavg(),
                },
                "seconds": seconds,
                "ratio_to_forward": {k: round(v / base, 3) for k, v in seconds.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
