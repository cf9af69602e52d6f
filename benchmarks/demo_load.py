"""How long `load_model("demo")` takes, and what merging the LoRA factors costs in it.

Each repeat runs in a fresh interpreter: the imports load_model needs (torch, transformers) are timed
apart from the call itself. Then, in this process, merging the factors into freshly loaded (memory-mapped)
decoder weights is timed two ways, interleaved: ``merge_lora`` (fresh tensors) against the in-place
``addmm_`` it replaced (the baseline, same run). Prints medians and, last, one JSON line.

    python benchmarks/demo_load.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

PROBE = """
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[1]))
t0 = time.perf_counter()
from evolens.models import load_model
import transformers, evolens.models.demo.assets  # noqa: F401  (the imports load_model needs)
t1 = time.perf_counter()
load_model("demo")
print(json.dumps({"imports": t1 - t0, "load_model": time.perf_counter() - t1}))
"""


def merge_seconds(in_place: bool) -> float:
    """Seconds to merge the demo's LoRA factors into a freshly loaded SmolLM2."""
    from safetensors.torch import load_file

    from evolens.models.demo.assets import asset_dir, read_manifest
    from evolens.models.demo.decoder import load_decoder
    from evolens.models.demo.lora import LORA_FILE, LoraSettings, merge_lora

    factors = load_file(str(asset_dir() / LORA_FILE))
    scale = LoraSettings.from_dict(read_manifest()["decoder_lora"]).scale
    decoder, _ = load_decoder()
    started = time.perf_counter()
    (merge_in_place if in_place else merge_lora)(decoder, factors, scale)
    return time.perf_counter() - started


@torch.no_grad()
def merge_in_place(decoder: torch.nn.Module, factors: dict[str, torch.Tensor], scale: float) -> None:
    """The baseline: ``merge_lora``'s update written into the existing weights (``addmm_``)."""
    modules = dict(decoder.named_modules())
    for name in sorted({key.rsplit(".", 1)[0] for key in factors}):
        modules[name].weight.addmm_(factors[name + ".lora_B"], factors[name + ".lora_A"], alpha=scale)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    subprocess.run([sys.executable, "-c", PROBE, str(args.threads)], check=True, capture_output=True)  # warm
    runs = []
    for _ in range(args.repeats):
        out = subprocess.run(
            [sys.executable, "-c", PROBE, str(args.threads)], check=True, capture_output=True, text=True
        ).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    fresh, in_place = [], []
    for _ in range(args.repeats):
        fresh.append(merge_seconds(in_place=False))
        in_place.append(merge_seconds(in_place=True))
    result = {
        "imports_s": statistics.median(r["imports"] for r in runs),
        "load_model_s": statistics.median(r["load_model"] for r in runs),
        "process_s": statistics.median(r["imports"] + r["load_model"] for r in runs),
        "merge_fresh_tensors_s": statistics.median(fresh),
        "merge_in_place_s": statistics.median(in_place),
    }
    result["merge_in_place_over_fresh"] = result["merge_in_place_s"] / result["merge_fresh_tensors_s"]
    for key, value in result.items():
        print(f"{key:>28} {value:8.2f}")
    settings = {"repeats": args.repeats, "threads": args.threads}
    machine = {
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    goals = {"load_model_s": "< 3"}
    print(
        json.dumps(
            {"benchmark": "demo_load", "settings": settings, "machine": machine, **result, "goals": goals}
        )
    )


if __name__ == "__main__":
    main()
