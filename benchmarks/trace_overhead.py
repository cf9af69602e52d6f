"""What tracing costs: evolens.trace against plain generate(), the cheapest exact lens, and the paper's way.

On the demo VLM (or --model), N images, greedy decoding, all in one run and as medians over --repeats
(methods interleaved within each repeat so machine load hits them alike):

  plain   build inputs + generate()
  floor   plain + hooks + per step ONE bare fp32 matmul of all layers' last-position states with the
          unembedding (the least any exact full-vocabulary lens can cost; its result is thrown away;
          rows past their end of sequence are skipped, as ours does)
  ours    evolens.trace(): normed lens, every metric (prob, rank, entropy, JSD next/last, KL, top-k),
          written to a trace directory, with the sweep backend evolens chooses (numba on the CPU)
  ours-eager  the same with the eager PyTorch sweeps (the reference and fallback backend)
  ours-legacy-c  the same with the C kernel evolens used before numba (benchmarks/legacy_c_sweeps.py:
          built with cc, MKL's exp/log from libtorch_cpu; for comparison only)
  ours-score  the tokens "ours" generates scored again by teacher forcing (``evolens score``: one forward
          pass per batch instead of generate(), the same metrics); (d) ours-score / ours, goal <= 0.6
  ours-kept-buffers  "ours" without what a trace does between batches to give memory back (the engine
          keeps its buffers, no malloc_trim): what that saves, in the peak memory column
  ours+paper_js  the same plus the paper's JS on the raw lens (a second unembedding of every layer)
  paper   the released heatmap script's approach: one image at a time, generate(output_hidden_states=True,
          return_dict_in_generate=True), then per step lm_head on every kept state (at the prefill every
          prompt position) and a Python loop over layer pairs with float64 softmaxes and its "JS"
  paper-batched  the same loops on our batches with lm_head on the last position only (kinder to it)

Ratios of medians of wall time: (a) ours / plain, (b) ours / floor (goal <= 1.15), (c) paper / ours
(goal >= 10). The same ratios of process CPU time (all threads) are reported too: with --threads 1 they
are what an idle machine would show even when other processes load it. (d) peak memory: each method once
in a fresh subprocess, peak RSS (VmHWM after resetting it) minus the RSS before the method, i.e. after
loading the model, median of --memory-repeats such processes (goal: ours <= 2 x plain); on CUDA
torch.cuda.max_memory_allocated instead. Loading a sweep backend once per process (numba and its
compiled kernels) is measured apart, before that baseline ("backend MiB", 0 for the other methods), and
the ratio is printed both without and with it.

The last line printed is one JSON object: settings, machine (CPUs, threads, load average before and
after, how the sweeps ran), seconds, CPU seconds, ratios, peak memory and the goals. On the CPU "ours"
runs the numba sweeps where they load (evolens.tracing.sweep_numba); EVOLENS_NATIVE=0 measures the eager
PyTorch sweeps instead, EVOLENS_COMPILE=1 the torch.compile ones (see evolens.tracing.engine).

    .venv/bin/python benchmarks/trace_overhead.py [--images 16] [--batch-size 8] [--max-new-tokens 32]
        [--repeats 3] [--threads N] [--model demo] [--methods plain,floor,ours,paper]
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
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

try:
    from benchmarks.legacy_c_sweeps import legacy_c_sweeps
except ImportError:  # run as a script: benchmarks/ itself is on the path
    from legacy_c_sweeps import legacy_c_sweeps  # type: ignore[no-redef]
from evolens.data.images import load_image
from evolens.lenses.spec import make_lens
from evolens.models import LoadedModel, load_model
from evolens.models.capture import LayerCapture, TokenStreamer
from evolens.tracing import engine as engine_module
from evolens.tracing import tracer as tracer_module
from evolens.tracing.engine import StepMetricsEngine
from evolens.tracing.scoring import samples_from_trace
from evolens.tracing.sweep import ChunkedSweeps, SweepBackend
from evolens.tracing.tracer import trace

PROMPT = "Describe this image."
PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
    "colorwheel", "camera", "coins", "moon", "page", "text", "horse", "clock", "grass",
)  # fmt: skip
METHODS = (
    "plain", "floor", "ours", "ours-eager", "ours-legacy-c", "ours-kept-buffers", "ours+paper_js",
    "ours-score", "paper", "paper-batched",
)  # fmt: skip


def write_images(folder: Path, count: int) -> list[Path]:
    """``count`` bundled scikit-image photos as PNG files (cycled when more are asked for)."""
    import skimage.data

    paths = []
    for index in range(count):
        name = PHOTOS[index % len(PHOTOS)]
        path = folder / f"{index:02d}-{name}.png"
        Image.fromarray(np.asarray(getattr(skimage.data, name)())).save(path)
        paths.append(path)
    return paths


def batches_of(paths: list[Path], size: int) -> list[list[Path]]:
    return [paths[i : i + size] for i in range(0, len(paths), size)]


def build(loaded: LoadedModel, paths: list[Path]):
    images = [load_image(p) for p in paths] if loaded.adapter.vision else None
    return loaded.build_inputs([PROMPT] * len(paths), images)


def run_plain(loaded: LoadedModel, paths: list[Path], args: argparse.Namespace) -> None:
    for batch in batches_of(paths, args.batch_size):
        loaded.generate(build(loaded, batch), max_new_tokens=args.max_new_tokens)


def run_floor(loaded: LoadedModel, paths: list[Path], args: argparse.Namespace) -> None:
    weight = loaded.unembedding.weight.detach().float()
    for batch in batches_of(paths, args.batch_size):
        _floor_batch(loaded, build(loaded, batch), weight, args.max_new_tokens)


def _floor_batch(loaded: LoadedModel, inputs: Any, weight: torch.Tensor, max_new_tokens: int) -> None:
    eos = torch.tensor(loaded.eos_token_ids)
    active = torch.ones(inputs["input_ids"].shape[0], dtype=torch.bool)  # rows past EOS skipped, as ours

    def unembed_all_layers(tokens: torch.Tensor) -> None:
        states = capture.pop()[active]
        states.reshape(-1, states.shape[-1]).float() @ weight.T
        active[active.clone()] &= ~torch.isin(tokens[active], eos)

    with LayerCapture(loaded) as capture, torch.inference_mode():
        loaded.generate(inputs, max_new_tokens=max_new_tokens, streamer=TokenStreamer(unembed_all_layers))


def run_ours(
    loaded: LoadedModel, paths: list[Path], args: argparse.Namespace, paper_js: bool = False
) -> None:
    with tempfile.TemporaryDirectory() as out:
        items = paths if loaded.adapter.vision else None
        prompt = PROMPT if loaded.adapter.vision else [f"{PROMPT} ({p.stem})" for p in paths]
        result = trace(
            loaded, items, prompt, out=out, max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size, paper_js=paper_js,
        )  # fmt: skip
        assert result.ok and len(result.traced) == len(paths), result.failures


GENERATED: dict[tuple[int, int, int], Path] = {}
"""A trace of the benchmark's images made once per process (not timed): what "ours-score" scores."""


def run_score(loaded: LoadedModel, paths: list[Path], args: argparse.Namespace) -> None:
    """Score the tokens "ours" generates for the same images (teacher forcing, one forward pass per batch),
    from a trace of them made once beforehand."""
    key = (len(paths), args.batch_size, args.max_new_tokens)
    if key not in GENERATED:
        GENERATED[key] = Path(tempfile.mkdtemp(prefix="evolens-bench-generated-")) / "trace"
        items = paths if loaded.adapter.vision else None
        prompt = PROMPT if loaded.adapter.vision else [f"{PROMPT} ({p.stem})" for p in paths]
        trace(loaded, items, prompt, out=GENERATED[key], max_new_tokens=args.max_new_tokens,
              batch_size=args.batch_size)  # fmt: skip
    samples, _ = samples_from_trace(GENERATED[key])
    with tempfile.TemporaryDirectory() as out:
        result = trace(loaded, samples, None, out=out, batch_size=args.batch_size)
        assert result.ok and len(result.traced) == len(paths), result.failures


def run_ours_keeping_buffers(loaded: LoadedModel, paths: list[Path], args: argparse.Namespace) -> None:
    release, give_back = StepMetricsEngine.release, tracer_module.return_freed_memory
    StepMetricsEngine.release = lambda self: None  # type: ignore[method-assign]
    tracer_module.return_freed_memory = lambda: None
    try:
        run_ours(loaded, paths, args)
    finally:
        StepMetricsEngine.release = release  # type: ignore[method-assign]
        tracer_module.return_freed_memory = give_back


BACKENDS: dict[str, SweepBackend] = {}
"""The sweep backend of each method, made once per process (as evolens makes its own once)."""


def backend_of(method: str, device: torch.device) -> SweepBackend:
    """The sweep backend ``method`` runs with: the one evolens chooses, or the one the method forces."""
    if method not in BACKENDS:
        chunk_entries = engine_module.CHUNK_ENTRIES["cpu"]
        if method == "ours-eager":
            BACKENDS[method] = ChunkedSweeps(device, compiled=False, chunk_entries=chunk_entries)
        elif method == "ours-legacy-c":
            legacy = legacy_c_sweeps()
            if legacy is None:
                raise SystemExit("ours-legacy-c: the old C kernel does not build here (no cc or AVX2)")
            BACKENDS[method] = legacy
        else:
            BACKENDS[method] = engine_module.choose_sweeps(device, None, None, chunk_entries)
    return BACKENDS[method]


def run_with_backend(method: str) -> Callable[[LoadedModel, list[Path], argparse.Namespace], None]:
    """``run_ours`` with the sweep backend of ``method``."""

    def run(loaded: LoadedModel, paths: list[Path], args: argparse.Namespace) -> None:
        backend = backend_of(method, loaded.device)
        choose = engine_module.choose_sweeps
        engine_module.choose_sweeps = lambda *_: backend  # type: ignore[assignment]
        try:
            run_ours(loaded, paths, args)
        finally:
            engine_module.choose_sweeps = choose

    return run


def run_paper(loaded: LoadedModel, paths: list[Path], args: argparse.Namespace) -> None:
    """The released heatmap script's approach: one image at a time, generate keeping every hidden state,
    then per step: lm_head on every position of every layer (at the prefill all prompt positions, of
    which it keeps the last), and per pair of consecutive layers float64 softmaxes and the DoLa "JS"."""
    lm_head = loaded.unembedding
    for path in paths:
        output = _generate_keeping_states(loaded, build(loaded, [path]), args.max_new_tokens)
        with torch.inference_mode():
            for step, layers in enumerate(output.hidden_states):
                distribution = torch.cat([lm_head(h) for h in layers], dim=0)  # (L+1, positions, V)
                _paper_js_loop(distribution[:, -1, :] if step == 0 else distribution)


def run_paper_batched(loaded: LoadedModel, paths: list[Path], args: argparse.Namespace) -> None:
    """The same computation made kinder: our batches, and lm_head on the last position only."""
    lm_head = loaded.unembedding
    for batch in batches_of(paths, args.batch_size):
        output = _generate_keeping_states(loaded, build(loaded, batch), args.max_new_tokens)
        with torch.inference_mode():
            for layers in output.hidden_states:
                _paper_js_loop(torch.stack([lm_head(h[:, -1, :]) for h in layers]))  # (L+1, B, V)


def _generate_keeping_states(loaded: LoadedModel, inputs: Any, max_new_tokens: int) -> Any:
    with torch.inference_mode():
        return loaded.model.generate(
            **inputs,
            **loaded.generation_kwargs(max_new_tokens=max_new_tokens),
            output_hidden_states=True,
            return_dict_in_generate=True,
        )


def _paper_js_loop(logits: torch.Tensor) -> list[float]:
    """The script's ``compute_js_divergence_between_layers``: logits (L+1, ..., V), a loop over layers."""
    values = []
    for layer in range(len(logits) - 1):
        current, following = logits[layer].double(), logits[layer + 1].double()
        mixture = 0.5 * (F.softmax(current, dim=-1) + F.softmax(following, dim=-1))
        first = F.kl_div(F.log_softmax(current, dim=-1), mixture, reduction="none").mean(-1)
        second = F.kl_div(F.log_softmax(following, dim=-1), mixture, reduction="none").mean(-1)
        values.append((0.5 * (first + second)).mean().item())
    return values


RUNNERS: dict[str, Callable[[LoadedModel, list[Path], argparse.Namespace], None]] = {
    "plain": run_plain,
    "floor": run_floor,
    "ours": run_ours,
    "ours-eager": run_with_backend("ours-eager"),
    "ours-legacy-c": run_with_backend("ours-legacy-c"),
    "ours-kept-buffers": run_ours_keeping_buffers,
    "ours-score": run_score,
    "ours+paper_js": lambda loaded, paths, args: run_ours(loaded, paths, args, paper_js=True),
    "paper": run_paper,
    "paper-batched": run_paper_batched,
}


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure_memory(
    loaded: LoadedModel, paths: list[Path], args: argparse.Namespace, method: str
) -> tuple[float, float]:
    """Peak memory (MiB) the method adds to a process that has just loaded the model and its sweep
    backend, and what loading that backend added first."""
    if loaded.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        RUNNERS[method](loaded, paths, args)
        return (torch.cuda.max_memory_allocated() - before) / 2**20, 0.0
    bare = rss_kib("VmRSS")
    if method.startswith("ours"):
        backend_of(method, loaded.device)
    before = rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    RUNNERS[method](loaded, paths, args)
    return (rss_kib("VmHWM") - before) / 1024, (before - bare) / 1024


def memory_in_subprocess(method: str, argv: list[str]) -> tuple[float, float]:
    command = [sys.executable, __file__, *argv, "--memory-of", method]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    added, backend = result.stdout.strip().splitlines()[-1].split()
    return float(added), float(backend)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--memory-repeats", type=int, default=3, help="fresh processes per method")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    loaded = load_model(args.model, device=args.device)
    with tempfile.TemporaryDirectory() as folder:
        paths = write_images(Path(folder), args.images)
        if args.memory_of:
            print(*measure_memory(loaded, paths, args, args.memory_of))
            return
        methods = args.methods.split(",")
        run_plain(loaded, paths[: args.batch_size], argparse.Namespace(**{**vars(args), "max_new_tokens": 2}))
        seconds: dict[str, list[float]] = {m: [] for m in methods}
        cpu_seconds: dict[str, list[float]] = {m: [] for m in methods}
        for repeat in range(args.repeats):
            for method in methods:
                began, cpu_began = time.perf_counter(), time.process_time()
                RUNNERS[method](loaded, paths, args)
                seconds[method].append(time.perf_counter() - began)
                cpu_seconds[method].append(time.process_time() - cpu_began)
            print(
                f"repeat {repeat + 1}: " + ", ".join(f"{m} {s[-1]:.1f}s" for m, s in seconds.items()),
                flush=True,
            )
    argv = [f"--model={args.model}", f"--images={args.images}", f"--batch-size={args.batch_size}"]
    argv += [f"--max-new-tokens={args.max_new_tokens}", f"--device={args.device}"]
    argv += [f"--threads={args.threads}"] if args.threads else []
    runs: dict[str, list[tuple[float, float]]] = {m: [] for m in methods}
    for _ in range(args.memory_repeats):  # one fresh process per run: peak RSS varies from run to run
        for method in methods:
            runs[method].append(memory_in_subprocess(method, argv))
    memory = {m: statistics.median(added for added, _ in values) for m, values in runs.items()}
    backend = {m: statistics.median(load for _, load in values) for m, values in runs.items()}
    wall = {m: statistics.median(s) for m, s in seconds.items()}
    cpu = {m: statistics.median(s) for m, s in cpu_seconds.items()}
    report(args, loaded, wall, cpu, memory, backend, load_before)


def ratios_of(median: dict[str, float]) -> dict[str, float]:
    """The benchmark's ratios (see the module docstring) among the methods that ran."""
    pairs = {
        "a_ours_over_plain": ("ours", "plain"),
        "b_ours_over_floor": ("ours", "floor"),
        "b_ours_eager_over_floor": ("ours-eager", "floor"),
        "b_ours_legacy_c_over_floor": ("ours-legacy-c", "floor"),
        "d_score_over_ours": ("ours-score", "ours"),
        "b_ours_paper_js_over_floor": ("ours+paper_js", "floor"),
        "c_paper_over_ours": ("paper", "ours"),
        "c_paper_over_ours_paper_js": ("paper", "ours+paper_js"),
        "c_paper_batched_over_ours_paper_js": ("paper-batched", "ours+paper_js"),
    }
    return {name: median[a] / median[b] for name, (a, b) in pairs.items() if {a, b} <= median.keys()}


def report(
    args: argparse.Namespace,
    loaded: LoadedModel,
    median: dict[str, float],
    cpu: dict[str, float],
    memory: dict[str, float],
    backend: dict[str, float],
    load_before: tuple[float, float, float],
) -> None:
    load_after = os.getloadavg()
    print(
        f"\n{loaded.name}: {loaded.n_layers} layers, vocab {loaded.unembed.vocab_size}; "
        f"{args.images} images, "
        f"batch {args.batch_size}, {args.max_new_tokens} new tokens, {torch.get_num_threads()} threads, "
        f"device {args.device}, load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
        f"medians of {args.repeats}"
    )
    print(f"{'method':>14} {'seconds':>9} {'CPU s':>9} {'peak MiB':>9} {'backend MiB':>12}")
    for method, value in median.items():
        print(
            f"{method:>14} {value:>9.2f} {cpu[method]:>9.2f} {memory.get(method, float('nan')):>9.0f}"
            f" {backend.get(method, float('nan')):>12.0f}"
        )
    ratios, cpu_ratios = ratios_of(median), ratios_of(cpu)
    print(f"{'ratio':>36} {'wall':>6} {'CPU':>6}")
    for name, value in ratios.items():
        print(f"{name:>36} {value:6.2f} {cpu_ratios[name]:6.2f}")
    memory_ratios = {
        f"{method}_over_plain{suffix}": (memory[method] + (backend[method] if suffix else 0))
        / memory["plain"]
        for method in memory
        if method.startswith("ours") and "plain" in memory
        for suffix in ("", "_with_backend")
    }
    for name, value in memory_ratios.items():
        print(f"{'peak memory added, ' + name:>48} {value:6.2f}")
    memory_ratio = memory_ratios.get("ours_over_plain")
    payload = {
        "benchmark": "trace_overhead",
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "memory_of")},
        "model": {"name": loaded.name, "layers": loaded.n_layers, "vocab": loaded.unembed.vocab_size},
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "evolens_compile": os.environ.get("EVOLENS_COMPILE"),
            "sweeps": StepMetricsEngine(make_lens(loaded, "normed")).backend,
            "torch": torch.__version__,
        },
        "seconds": median,
        "cpu_seconds": cpu,
        "ratios": ratios,
        "cpu_ratios": cpu_ratios,
        "peak_mib": memory,
        "backend_load_mib": backend,
        "peak_memory_ratios": memory_ratios,
        "peak_memory_ours_over_plain": memory_ratio,
        "goals": {
            "b_ours_over_floor": "<= 1.15",
            "c_paper_over_ours": ">= 10",
            "d_score_over_ours": "<= 0.6",
            "peak_memory": "<= 2",
        },
    }
    line = json.dumps(payload, default=str)
    if args.json:
        args.json.write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
