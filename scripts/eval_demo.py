"""Measure the demo VLM on held-out shapes-world scenes (``make eval-demo``).

Scenes come from seeds 10_000_000 and up, disjoint from the training seeds (0..N) and the validation seeds
(5_000_000..). Prints a table, writes the numbers into the manifest's ``quality`` entry and the answers to
``--records`` (JSONL). See ``scripts/demo/quality.py`` for the definitions.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from demo.quality import EVAL_SEED_BASE, measure
from rich.console import Console
from rich.table import Table

from evolens.models import load_model
from evolens.models.demo.assets import ASSETS_ENV, asset_dir, read_manifest, write_manifest

BARS = {
    "color_accuracy": 0.90,
    "shape_accuracy": 0.90,
    "description_object_precision": 0.80,
    "yes_no_accuracy": 0.85,
    "yes_no_accuracy_on_present": 0.75,
    "yes_no_accuracy_on_absent": 0.75,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--single", type=int, default=150, help="single-object scenes (colour, shape)")
    parser.add_argument("--multi", type=int, default=150, help="2-3-object scenes (descriptions)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--assets", type=Path, default=None, help="asset folder to evaluate (default: package)"
    )
    parser.add_argument("--records", type=Path, default=Path("results/demo-eval.jsonl"))
    parser.add_argument("--no-write", action="store_true", help="do not update the manifest")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    console = Console()
    if args.assets is not None:
        os.environ[ASSETS_ENV] = str(args.assets)  # evaluate a checkpoint folder
    loaded = load_model("demo")
    quality = measure(
        loaded,
        n_single=args.single,
        n_multi=args.multi,
        batch_size=args.batch_size,
        log=lambda m: console.print(f"[{time.time() - started:6.0f}s] {m}"),
    )
    table = Table(title=f"demo VLM on held-out shapes-world scenes (seeds {EVAL_SEED_BASE:_}+)")
    for column in ("measure", "value", "bar", "n"):
        table.add_column(column)
    n_for = {
        "color": quality.counts["single_object_scenes"],
        "shape": quality.counts["single_object_scenes"],
        "description": quality.counts["described_objects"],
        "yes_no": quality.counts["yes_no_questions"],
    }
    for name, value in quality.numbers.items():
        bar = BARS.get(name)
        mark = "" if bar is None else (f">= {bar:.0%} ok" if value >= bar else f">= {bar:.0%} MISSED")
        n = next((str(v) for k, v in n_for.items() if name.startswith(k)), "")
        table.add_row(name, f"{value:.1%}", mark, n)
    console.print(table)

    args.records.parent.mkdir(parents=True, exist_ok=True)
    args.records.write_text("".join(json.dumps(r) + "\n" for r in quality.records))
    console.print(f"answers: {args.records}")
    if not args.no_write:
        manifest = read_manifest(args.assets)
        manifest["quality"] = {
            "numbers": {k: round(v, 4) for k, v in quality.numbers.items()},
            "counts": quality.counts,
            "bars": BARS,
            "eval_seeds_from": EVAL_SEED_BASE,
            "decoding": "greedy",
            "command": "make eval-demo",
            "wall_time_s": round(time.time() - started),
        }
        path = write_manifest(manifest, args.assets or asset_dir())
        console.print(f"manifest updated: {path}")


if __name__ == "__main__":
    main()
