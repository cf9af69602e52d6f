"""What one traced step costs beyond the lens matmul, by sweep chunk size and memory budget.

One step of ``StepMetricsEngine`` on G rows x n lens layers of width d over a vocabulary of V (default: the
demo's shape, 8 x 31 x 576 x 49,152, random weights and states), against, in the same run:

  matmul        the bare fp32 lens matmul of all G x n states with the (V, d) unembedding (the part of
                a step that the benchmark's "floor" pays too; the baseline of every ratio)
  transcendental  the four float64 functions the exact sums need per logit (two exp, two log) on the same
                number of entries, in cache-sized pieces, and nothing else: what the float64 definitions
                cost before any memory pass or bookkeeping
  native[b]     a whole engine step (lens, sweeps, top-k, metrics) with the fused C sweeps
                (evolens.tracing.native) and a memory budget of b MiB (b = "default": the device's default
                with its group minimum); absent where they do not build
  eager[c, b]   the same with the eager PyTorch sweeps, 2^c entries per sweep chunk
  matmul[r]     the lens matmul of r rows at a time (all G rows in G / r matmuls): per state it costs more
                when few states share the read of the whole unembedding (the engine's group minimum)

It also times one build of the native library from scratch (into a temporary folder).

All are timed interleaved, medians of --repeats. Each engine setting also reports its scratch memory
(logits buffer + sweep buffers). The last line printed is one JSON object with the settings, the machine
and the ratios to the matmul.

    .venv/bin/python benchmarks/sweep_settings.py [--rows 8] [--repeats 15] [--threads 2]
        [--chunks 15,16,17,18,19,20] [--budgets default,512]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from evolens.models.readout import Unembed
from evolens.tracing import engine as engine_module
from evolens.tracing import native
from evolens.tracing.engine import StepMetricsEngine
from evolens.tracing.lens import LogitLens


def make_engine(unembed: Unembed, chunk_power: int | None, budget: str) -> StepMetricsEngine:
    """The native engine (chunk_power None) or the eager one with 2^chunk_power entries per chunk, with a
    budget in MiB ("default": the device's)."""
    max_bytes = None if budget == "default" else int(budget) * 2**20
    native = chunk_power is None
    engine = StepMetricsEngine(LogitLens(unembed), compile=False, max_bytes=max_bytes, native=native)
    if chunk_power is not None:
        engine.chunk_entries = 2**chunk_power
    return engine


def transcendental_work(entries: int, piece: int = engine_module.CHUNK_ENTRIES["cpu"]) -> Callable[[], None]:
    """Two float64 exp and two float64 log per entry, over ``entries`` entries in pieces of ``piece``."""
    values = torch.rand(min(entries, piece), dtype=torch.float64) + 0.5
    out = torch.empty_like(values)
    pieces = -(-entries // piece)

    def run() -> None:
        for _ in range(pieces):
            torch.exp(values, out=out)
            torch.exp(values, out=out)
            torch.log(values, out=out)
            torch.log(values, out=out)

    return run


def rows_at_a_time(flat: torch.Tensor, weight: torch.Tensor, states: int) -> Callable[[], None]:
    """The lens matmul of all ``flat`` states (S, d), ``states`` at a time."""
    out = torch.empty(states, weight.shape[0])

    def run() -> None:
        for start in range(0, flat.shape[0], states):
            part = flat[start : start + states]
            torch.matmul(part, weight.T, out=out[: part.shape[0]])

    return run


def build_seconds() -> float | None:
    """Seconds to build the native library from scratch; None where it does not build."""
    capability = native.cpu_capability()
    if capability not in native.FLAGS:
        return None
    with tempfile.TemporaryDirectory() as folder:
        began = time.perf_counter()
        try:
            native.build(capability, Path(folder))
        except (OSError, subprocess.CalledProcessError):
            return None
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--layers", type=int, default=31, help="lens layers n = L+1")
    parser.add_argument("--width", type=int, default=576)
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--chunks", default="15,16,17,18,19,20", help="powers of two, entries per chunk")
    parser.add_argument("--budgets", default="default,512", help="MiB, or 'default'")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    torch.manual_seed(0)
    weight = torch.randn(args.vocab, args.width) / args.width**0.5 * 4
    unembed = Unembed(nn.RMSNorm(args.width), weight, None, None)
    states = torch.randn(args.rows, args.layers, args.width)
    tokens = torch.randint(0, args.vocab, (args.rows,))
    product = torch.empty(args.rows * args.layers, args.vocab)

    with torch.inference_mode():
        budgets = args.budgets.split(",")
        engines = {f"native[{b}]": make_engine(unembed, None, b) for b in budgets}
        engines = {name: engine for name, engine in engines.items() if engine.backend == "native"}
        chunks = args.chunks.split(",")
        engines |= {f"eager[{c},{b}]": make_engine(unembed, int(c), b) for c in chunks for b in budgets}
        flat = states.reshape(-1, args.width)
        group_sizes = sorted({1, 2, 4, args.rows} & set(range(1, args.rows + 1)))
        runs: dict[str, Callable[[], object]] = {
            "matmul": lambda: torch.matmul(flat, weight.T, out=product),
            **{f"matmul[{rows}]": rows_at_a_time(flat, weight, args.layers * rows) for rows in group_sizes},
            "transcendental": transcendental_work(product.numel()),
            **{name: (lambda e=engine: e(states, tokens)) for name, engine in engines.items()},
        }
        for run in runs.values():  # warm-up: buffers allocated, caches filled
            run()
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, run in runs.items():
                began = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - began)

    median = {name: statistics.median(values) for name, values in seconds.items()}
    build = build_seconds()
    ratios = {name: median[name] / median["matmul"] for name in runs if name != "matmul"}
    scratch = {name: engine.scratch_bytes / 2**20 for name, engine in engines.items()}
    load_after = os.getloadavg()
    print(
        f"G={args.rows} rows x n={args.layers} layers, d={args.width}, V={args.vocab}; "
        f"{torch.get_num_threads()} threads, load average {load_before[0]:.1f} before, {load_after[0]:.1f} "
        f"after; medians of {args.repeats}"
    )
    print(f"{'':>20} {'ms':>8} {'/ matmul':>9} {'scratch MiB':>12}")
    for name, value in median.items():
        print(
            f"{name:>20} {value * 1e3:8.1f} {ratios.get(name, 1.0):9.2f} "
            f"{scratch.get(name, float('nan')):12.1f}"
        )
    print(f"native library built from scratch in {build:.2f} s" if build else "native library: no build")
    payload = {
        "benchmark": "sweep_settings",
        "settings": vars(args),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "torch": torch.__version__,
        },
        "seconds": median,
        "ratio_to_matmul": ratios,
        "scratch_mib": scratch,
        "native_build_seconds": build,
    }
    print(json.dumps(payload))


if __name__ == "__main__":
    main()
