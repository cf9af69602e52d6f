"""What ``--image-tokens`` costs: the same trace with and without the image-token lens, in the same run.

On a model (default the demo: 27 image tokens, 31 lens layers, 49,152-token vocabulary; any model evolens
loads, e.g. a cached LLaVA-1.5 for 576 x 33 x 32k) and N held-out shapes-world scenes:

  plain         ``Tracer.trace_samples`` of a batch (generation, every layer's metrics, attention shares)
  image_tokens  the same with ``TraceSpec(image_tokens=True, probe_words=...)``: the lens at every image
                token of the prompt at every layer, chunked to the memory budget

Medians of --repeats, interleaved (plain, image_tokens, plain, ...). Prints the load average first (run it
on an otherwise idle machine; the ratio is only meaningful then) and, last, one JSON object with the
settings, the seconds and the ratio image_tokens / plain.

    .venv/bin/python benchmarks/image_tokens_cost.py [--scenes 8] [--tokens 16] [--repeats 3] [--threads 2]
    .venv/bin/python benchmarks/image_tokens_cost.py --device cuda --dtype bfloat16
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
from evolens.models import load_model
from evolens.tracing.image_lens import DEVICE_MAX_BYTES, MAX_BYTES
from evolens.tracing.spec import TraceSpec
from evolens.tracing.tracer import Tracer

COLOURS = "red,orange,yellow,green,blue,purple,pink,brown"


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ratio_of(seconds: dict[str, float]) -> float:
    """image_tokens / plain."""
    return seconds["image_tokens"] / seconds["plain"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--scenes", type=int, default=8, help="shapes-world scenes in the batch")
    parser.add_argument("--tokens", type=int, default=16, help="tokens generated per scene")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--probe-words", default=COLOURS, help="'generated' for each scene's own words")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    config = data_config(
        source="shapes", limit=args.scenes, seed=10_000_000, prompts=["Describe this image."]
    )
    samples = resolve_samples(config, workdir=Path(tempfile.mkdtemp(prefix="evolens-image-tokens-bench-")))
    words = None if args.probe_words == "generated" else args.probe_words
    base = {"max_new_tokens": args.tokens, "batch_size": args.scenes}
    tracers = {
        "plain": Tracer(loaded, TraceSpec.of(**base), samples=samples),
        "image_tokens": Tracer(
            loaded, TraceSpec.of(**base, image_tokens=True, probe_words=words), samples=samples
        ),
    }
    for tracer in tracers.values():  # warm up: kernels compiled, buffers allocated
        tracer.trace_samples(samples)
    seconds: dict[str, list[float]] = {name: [] for name in tracers}
    for _ in range(args.repeats):
        for name, tracer in tracers.items():
            seconds[name].append(median_seconds(lambda t=tracer: t.trace_samples(samples), 1))  # type: ignore[misc]
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    device = loaded.unembed.device.type
    report = {
        "benchmark": "image_tokens_cost",
        "settings": {
            "model": args.model,
            "scenes": args.scenes,
            "tokens": args.tokens,
            "repeats": args.repeats,
            "threads": args.threads,
            "device": args.device,
            "dtype": str(loaded.dtype),
            "probe_words": args.probe_words,
            "chunk_budget_bytes": MAX_BYTES.get(device, DEVICE_MAX_BYTES),
            "n_layers": loaded.n_layers,
            "vocab": loaded.unembed.vocab_size,
            "machine": platform.machine(),
            "load_average": os.getloadavg(),
        },
        "seconds": medians,
        "ratio_image_tokens_over_plain": ratio_of(medians),
    }
    print(f"plain {medians['plain']:.3f} s, image_tokens {medians['image_tokens']:.3f} s: "
          f"ratio {report['ratio_image_tokens_over_plain']:.3f}")  # fmt: skip
    print(json.dumps(report))


if __name__ == "__main__":
    main()
