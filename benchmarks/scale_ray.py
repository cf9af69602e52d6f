"""Samples per second of the local engine against the Ray engine with 1 and 2 actors, on the same work.

One run, one machine: N bundled photos, one prompt, greedy decoding, the same batches. Timed (wall clock):

  cluster_start_s  ray.init of a local cluster with --cpus logical CPUs (once, before the Ray runs)
  local            load_model (load_s), then evolens.trace on the images (trace_s), in a process of its
                   own, before the Ray runs and after each round of them
  ray-K            evolens.trace on the Ray engine with K actors into an empty directory (total_s), split into
                   startup_s: until the last actor has its model (the driver's probe load, starting the
                   actor processes, their model loads; read from the actors' own clock stamps), and
                   trace_s = total_s - startup_s: reading, decoding, tracing, committing, finalizing.
  samples/s = images / trace_s; overhead = ray-1 trace_s / local trace_s - 1 (goal: <= 15% on 16+ samples)
  With --repeats R, R rounds of ray-1, ray-2, local; every figure is the median over its runs.

Sessions: the local engine runs in a session of its own, as the Ray cluster's processes do. On Linux with
scheduler autogroups (this repository's shared machine), CPU time is shared out per session before nice
values apply, so a process in the busy session of a shell gets less of a loaded machine than a new session's:
measured here (with the previous metrics engine), 8 images took the local engine 16-18 s from the shell
and 10-13 s inside a Ray worker.

Threads: the local engine and the single actor get --threads torch threads (the actor as many logical
CPUs); two actors get --threads // 2 each, at least 1 (so with --threads 1 they use two cores in all).
The default is 1: on a shared machine, threads beyond the free cores make OpenMP wait for each other (on
this repository's 2-core machine under load average 12, 8 images took the previous local engine 131-153 s
with 2 threads and 18-20 s with 1). Two actors can only be faster than one where there are cores (or GPUs) for
both. The last line of output is the JSON of every number.

    .venv/bin/python benchmarks/scale_ray.py [--images 16] [--batch-size 4] [--max-new-tokens 16]
        [--repeats 1] [--threads 1] [--cpus 4] [--model demo] [--device cpu] [--gpus-per-actor G]
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch
from trace_overhead import PROMPT, write_images

from evolens.io.store import read_trace
from evolens.models import LoadedModel, load_model
from evolens.tracing import RayEngine, RayOptions, trace


def stamped_load(name: str, device: str, stamps: Path) -> LoadedModel:
    """``load_model``, then this process's clock written to ``stamps/<pid>`` (runs in the probe and in
    every actor)."""
    loaded = load_model(name, device=device)
    (stamps / str(os.getpid())).write_text(repr(time.time()))
    return loaded


def run_local(args: argparse.Namespace, photos: Path, out: Path) -> dict[str, float]:
    """The local engine in a process of its own, in a session of its own (see the module docstring):
    model load and trace seconds, and what the trace takes on disk."""
    command = [sys.executable, __file__, "--local-trace", str(out), "--photos", str(photos)]
    for flag in ("model", "batch_size", "max_new_tokens", "threads", "device"):
        command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    done = subprocess.run(command, capture_output=True, text=True, start_new_session=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the local engine failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def local_trace(args: argparse.Namespace) -> None:
    """--local-trace OUT: load the model, trace --photos into OUT, print the JSON of what it took."""
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    loaded = load_model(args.model, device=args.device)
    loaded_at = time.perf_counter()
    images = sorted(args.photos.iterdir())
    result = trace(
        loaded, images, PROMPT, out=args.local_trace, max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
    )  # fmt: skip
    finished = time.perf_counter()
    assert len(result.traced) == len(images), result.failures
    timing = {"load_s": loaded_at - started, "trace_s": finished - loaded_at}
    print(json.dumps({**timing, **disk_use(args.local_trace, loaded.n_layers)}))


def run_ray(args: argparse.Namespace, images: list[Path], out: Path, actors: int) -> dict[str, float]:
    stamps = Path(tempfile.mkdtemp(prefix="stamps-", dir=out.parent))
    loader = functools.partial(stamped_load, args.model, args.device, stamps)
    cpus = max(1, args.threads // actors)
    options = RayOptions(actors=actors, cpus_per_actor=cpus, gpus_per_actor=args.gpus_per_actor)
    started = time.time()
    result = trace(
        loader, images, PROMPT, out=out, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
        device=args.device, engine=RayEngine(options),
    )  # fmt: skip
    finished = time.time()
    assert len(result.traced) == len(images), result.failures
    ready = max(float(stamp.read_text()) for stamp in stamps.iterdir())
    return {
        "total_s": finished - started,
        "startup_s": ready - started,
        "trace_s": finished - ready,
        "cpus_per_actor": cpus,
    }


def median_run(runs: list[dict[str, float]], keys: tuple[str, ...]) -> dict[str, Any]:
    """The median of each of ``keys`` over ``runs``, and every run's trace seconds."""
    return {
        **{key: statistics.median(run[key] for run in runs) for key in keys},
        "trace_runs_s": [run["trace_s"] for run in runs],
    }


def disk_use(trace_dir: Path, n_layers: int) -> dict[str, float]:
    """Bytes on disk per steps row (one generated token, every layer's metrics) and per sample row."""
    steps = sum(p.stat().st_size for p in (trace_dir / "steps").glob("part-*.parquet"))
    samples = sum(p.stat().st_size for p in (trace_dir / "samples").glob("part-*.parquet"))
    tables = read_trace(trace_dir)
    return {
        "lens_layers": n_layers + 1,
        "steps_bytes_per_row": steps / len(tables.steps),
        "samples_bytes_per_row": samples / len(tables.samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="demo")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the local engine and ray-1")
    parser.add_argument("--cpus", type=int, default=4, help="logical CPUs of the local Ray cluster")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gpus-per-actor", type=float, default=None)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of ray-1, ray-2, local (medians)")
    parser.add_argument("--local-trace", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--photos", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.local_trace is not None:
        local_trace(args)
        return

    work = Path(tempfile.mkdtemp(prefix="scale-ray-"))
    try:
        photos = work / "images"
        photos.mkdir()
        images = write_images(photos, args.images)
        local_runs = [run_local(args, photos, work / "local-0")]
        started = time.perf_counter()
        ray.init(
            num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
        )
        results: dict[str, Any] = {"cluster_start_s": time.perf_counter() - started}
        ray_runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
        try:
            for repeat in range(args.repeats):  # local, ray-1, ray-2, local, ...: drift hits all alike
                for actors in (1, 2):
                    ray_runs[actors].append(run_ray(args, images, work / f"ray-{actors}-{repeat}", actors))
                local_runs.append(run_local(args, photos, work / f"local-{repeat + 1}"))
        finally:
            ray.shutdown()
        results["local"] = median_run(local_runs, ("load_s", "trace_s"))
        for actors, runs in ray_runs.items():
            results[f"ray_{actors}"] = median_run(runs, ("total_s", "startup_s", "trace_s"))
        results["disk"] = {
            key: local_runs[0][key] for key in ("lens_layers", "steps_bytes_per_row", "samples_bytes_per_row")
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"{len(images)} images, batches of {args.batch_size}, {args.max_new_tokens} new tokens, {args.model}"
    )
    local_load = results["local"]["load_s"]
    print(f"cluster start: {results['cluster_start_s']:.1f} s; local model load: {local_load:.1f} s")
    print(f"{'engine':>8} {'startup s':>10} {'trace s':>8} {'samples/s':>10}")
    for name in ("local", "ray_1", "ray_2"):
        row = results[name]
        row["samples_per_s"] = len(images) / row["trace_s"]
        startup = row.get("startup_s", row.get("load_s"))
        print(f"{name:>8} {startup:>10.1f} {row['trace_s']:>8.1f} {row['samples_per_s']:>10.3f}")
    disk = results["disk"]
    print(
        f"on disk: {disk['steps_bytes_per_row']:.0f} bytes per generated token ({disk['lens_layers']} lens "
        f"layers), {disk['samples_bytes_per_row']:.0f} per sample"
    )
    overhead = results["ray_1"]["trace_s"] / results["local"]["trace_s"] - 1
    print(f"Ray engine overhead with 1 actor: {overhead:+.1%} (goal <= +15%)")
    summary = {
        "images": len(images),
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "model": args.model,
        "device": args.device,
        "threads": args.threads,
        "ray_cpus": args.cpus,
        "ray_version": ray.__version__,
        "load_average": os.getloadavg(),
        **results,
        "ray_1_overhead": overhead,
        "goal_met": overhead <= 0.15,
    }
    print(json.dumps(summary, default=float))


if __name__ == "__main__":
    main()
