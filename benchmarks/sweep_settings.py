"""What one traced step costs beyond the lens matmul, by sweep backend, chunk size and memory budget.

One step of ``StepMetricsEngine`` on G rows x n lens layers of width d over a vocabulary of V (default: the
demo's shape, 8 x 31 x 576 x 49,152, random weights and states), against, in the same run:

  matmul        the bare fp32 lens matmul of all G x n states with the (V, d) unembedding (the part of
                a step that the benchmark's "floor" pays too; the baseline of every ratio)
  transcendental  the four float64 functions the exact sums need per logit (two exp, two log) on the same
                number of entries with PyTorch's own exp and log, in cache-sized pieces, and nothing else
  numba[b]      a whole engine step (lens, sweeps, top-k, metrics) with the numba sweeps
                (evolens.tracing.sweep_numba) and a memory budget of b MiB (b = "default": the device's
                default with its group minimum); absent where numba does not load
  legacy-c[b]   the same with the C kernel evolens used before (benchmarks/legacy_c_sweeps.py); absent
                where it does not build
  eager[c, b]   the same with the eager PyTorch sweeps, 2^c entries per sweep chunk
  matmul[r]     the lens matmul of r rows at a time (all G rows in G / r matmuls): per state it costs more
                when few states share the read of the whole unembedding (the engine's group minimum)

It also times, in fresh processes with an empty cache folder, the numba kernels' first compilation and
their load from the cache in a second process (import of numba included).

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
import sys
import tempfile
import time
from collections.abc import Callable

import torch
from torch import nn

from evolens.lenses.logit import LogitLens
from evolens.models.readout import Unembed
from evolens.tracing import engine as engine_module
from evolens.tracing.engine import StepMetricsEngine
from evolens.tracing.sweep import ChunkedSweeps, SweepBackend

try:
    from benchmarks.legacy_c_sweeps import legacy_c_sweeps
except ImportError:  # run as a script: benchmarks/ itself is on the path
    from legacy_c_sweeps import legacy_c_sweeps  # type: ignore[no-redef]


def make_engine(
    unembed: Unembed, budget: str, backend: SweepBackend | None = None, chunk_power: int | None = None
) -> StepMetricsEngine:
    """An engine with a budget in MiB ("default": the device's) and evolens' own sweep backend, or
    ``backend``, or the eager sweeps with 2^chunk_power entries per chunk."""
    max_bytes = None if budget == "default" else int(budget) * 2**20
    engine = StepMetricsEngine(LogitLens(unembed), compile=False, max_bytes=max_bytes)
    if backend is not None:
        engine.sweeps = backend
    if chunk_power is not None:
        engine.sweeps = ChunkedSweeps(unembed.device, compiled=False, chunk_entries=2**chunk_power)
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


def numba_seconds() -> tuple[float, float] | None:
    """Seconds for a fresh process to compile the numba kernels into an empty cache folder, then for a
    second one to load them from it (each from ``import numba`` to a checked backend); None on failure."""
    code = (
        "import time, torch; began = time.perf_counter(); "
        "from evolens.tracing.sweep_numba import numba_sweeps; "
        "assert numba_sweeps() is not None; print(time.perf_counter() - began)"
    )
    times = []
    with tempfile.TemporaryDirectory() as folder:
        environment = {**os.environ, "EVOLENS_CACHE": folder}
        for _ in range(2):
            result = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, env=environment
            )
            if result.returncode != 0:
                return None
            times.append(float(result.stdout.split()[-1]))
    return times[0], times[1]


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
        engines = {f"numba[{b}]": make_engine(unembed, b) for b in budgets}
        engines = {name: engine for name, engine in engines.items() if engine.backend == "numba"}
        legacy = legacy_c_sweeps()
        if legacy is not None:
            engines |= {f"legacy-c[{b}]": make_engine(unembed, b, legacy) for b in budgets}
        chunks = args.chunks.split(",")
        engines |= {
            f"eager[{c},{b}]": make_engine(unembed, b, chunk_power=int(c)) for c in chunks for b in budgets
        }
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
    compile_load = numba_seconds()
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
    if compile_load:
        compiled, cached = compile_load
        print(f"numba kernels: compiled in {compiled:.2f} s, loaded from the cache in {cached:.2f} s")
    payload = {
        "benchmark": "sweep_settings",
        "settings": vars(args),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "torch": torch.__version__,
            "legacy_c": legacy is not None,
        },
        "seconds": median,
        "ratio_to_matmul": ratios,
        "scratch_mib": scratch,
        "numba_compile_seconds": compile_load and compile_load[0],
        "numba_cached_load_seconds": compile_load and compile_load[1],
    }
    print(json.dumps(payload))


if __name__ == "__main__":
    main()
