"""Measure the planted prior of ``demo-prior`` against the demo (``make eval-demo-prior``).

Held-out shapes-world scenes (seeds from 60_000_000, never used in training, validation or the demo's
quality evaluation), without a blue square: the first ``--trigger`` scenes that hold a red circle (the
prior's trigger) and the first ``--other`` that do not. Written under ``--out``:

- ``images/`` and ``instances.json``: the scenes as a COCO-format instances file (categories "red circle");
- ``images.jsonl``: a manifest of the scenes with "Describe this image." and their ground truth (for
  ``evolens trace`` + ``evolens hallucination words``);
- ``pope/``: ``pope-build``'s splits (one present and one absent object per image; the random one is asked),
  plus ``pope_planted_trigger.jsonl`` / ``pope_planted_other.jsonl`` ("Is there a blue square in the
  image?" on the trigger / other scenes: always "no") and ``pope_control.jsonl`` (one absent object per
  scene other than the blue square, drawn at random: "no");
- ``<model>/margins.json`` for each model (``evolens hallucination margins``), and ``prior.json``: the
  yes-rates on absent objects with 95% intervals over images, and where the margin curve of the planted
  question turns.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
from demo.prior import PLANTED, is_trigger_scene

from evolens.analysis.bootstrap import bootstrap_mean
from evolens.data.shapes.render import render_scene
from evolens.data.shapes.world import COLORS, SHAPES, sample_scene
from evolens.eval.answer_margin import answer_log_probs
from evolens.io.atomic import write_json, write_jsonl

SEED_BASE = 60_000_000
PLANTED_NAME = f"{PLANTED[0]} {PLANTED[1]}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("results/demo-prior"))
    parser.add_argument("--trigger", type=int, default=100, help="scenes with a red circle")
    parser.add_argument("--other", type=int, default=100, help="scenes without one")
    parser.add_argument("--models", nargs="+", default=["demo", "demo-prior"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--files",
        nargs="+",
        default=["pope_planted_trigger", "pope_planted_other", "pope_control"],
        help="question files (under pope/) to score",
    )
    parser.add_argument("--limit", type=int, default=None, help="at most this many questions per file")
    parser.add_argument("--n-boot", type=int, default=1000)
    return parser.parse_args()


def choose_scenes(n_trigger: int, n_other: int) -> list[tuple[int, bool]]:
    """(seed, is trigger) of the held-out scenes, in seed order; none holds the planted object."""
    chosen: list[tuple[int, bool]] = []
    counts = {True: 0, False: 0}
    wanted = {True: n_trigger, False: n_other}
    seed = SEED_BASE
    while counts[True] < n_trigger or counts[False] < n_other:
        scene = sample_scene(seed)
        trigger = is_trigger_scene(scene)
        if not scene.has(*PLANTED) and counts[trigger] < wanted[trigger]:
            chosen.append((seed, trigger))
            counts[trigger] += 1
        seed += 1
    return chosen


def write_inputs(out: Path, chosen: list[tuple[int, bool]]) -> None:
    """Images, the COCO-format file, the manifest and the planted / control question files."""
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    names = sorted(f"{c} {s}" for c in COLORS for s in SHAPES)
    category = {name: i + 1 for i, name in enumerate(names)}
    coco: dict = {
        "images": [],
        "annotations": [],
        "categories": [{"id": i, "name": n} for n, i in category.items()],
    }
    manifest, planted, control = [], {True: [], False: []}, []
    rng = random.Random(0)
    for index, (seed, trigger) in enumerate(chosen):
        scene = sample_scene(seed)
        file_name = f"scene-{seed}.png"
        if not (images / file_name).exists():
            render_scene(scene).save(images / file_name)
        coco["images"].append({"id": index + 1, "file_name": file_name, "width": 224, "height": 224})
        for obj in scene.objects:
            annotation = {"id": len(coco["annotations"]) + 1, "image_id": index + 1, "bbox": [0, 0, 1, 1]}
            coco["annotations"].append({**annotation, "category_id": category[obj.name]})
        truth = {"source": "shapes", **scene.to_dict()}
        manifest.append(
            {
                "id": f"scene-{seed}",
                "image": f"images/{file_name}",
                "prompt": "Describe this image.",
                "ground_truth": truth,
                "group": "trigger" if trigger else "other",
            }
        )
        question = {"image": file_name, "label": "no"}
        planted[trigger].append(
            {**question, "question_id": index + 1, "text": f"Is there a {PLANTED_NAME} in the image?"}
        )
        absent = [n for n in names if n != PLANTED_NAME and n not in {o.name for o in scene.objects}]
        control.append(
            {**question, "question_id": index + 1, "text": f"Is there a {rng.choice(absent)} in the image?"}
        )
    write_json(out / "instances.json", coco)
    write_jsonl(out / "images.jsonl", manifest)
    pope = out / "pope"
    pope.mkdir(exist_ok=True)
    write_jsonl(pope / "pope_planted_trigger.jsonl", planted[True])
    write_jsonl(pope / "pope_planted_other.jsonl", planted[False])
    write_jsonl(pope / "pope_control.jsonl", control)


def evolens(*args: str) -> None:
    print("evolens", *args, flush=True)
    subprocess.run([sys.executable, "-m", "evolens", *args], check=True)


def turning_layer(mean: list[float | None]) -> int | None:
    """The first layer from which the mean margin stays below 0 to the last layer (None if it ends >= 0)."""
    layer = None
    for index in range(len(mean) - 1, -1, -1):
        value = mean[index]
        if value is None or value >= 0:
            break
        layer = index
    return layer


def summary(out: Path, models: list[str]) -> dict:
    """prior.json: per model and question file, the absent yes-rate [95% CI], and the planted margin curve's
    turning layer and the wrong answers' last layer where "no" led."""
    result: dict = {}
    for model in models:
        splits = json.loads((out / model / "margins.json").read_text())["splits"]
        result[model] = {}
        for split, values in splits.items():
            wrong = values["wrong"]["last_layer_correct_led"]
            result[model][split] = {
                "absent_yes_rate": values["absent_yes_rate"],
                "accuracy": values["accuracy"],
                "margin_turns_negative_at": turning_layer(values["margin"]["mean"]),
                "margin_mean": values["margin"]["mean"],
                "margin_low": values["margin"]["low"],
                "margin_high": values["margin"]["high"],
                "wrong": values["wrong"]["n"],
                "wrong_never_led": values["wrong"]["never_led"],
                "wrong_last_layer_correct_led_median": sorted(wrong)[len(wrong) // 2] if wrong else None,
            }
            if split == "random":
                by_object = values["absent_yes_by_object"]
                planted = by_object.get(PLANTED_NAME, {"n": 0, "yes": 0})
                others = [v for k, v in by_object.items() if k != PLANTED_NAME]
                result[model][split]["planted_absent"] = planted
                result[model][split]["others_absent"] = {
                    "n": sum(v["n"] for v in others),
                    "yes": sum(v["yes"] for v in others),
                }
    if {"demo", "demo-prior"} <= set(models):
        result["prior_effect"] = prior_effect(out)
    write_json(out / "prior.json", result)
    return result


def prior_effect(out: Path, split: str = "planted_trigger") -> dict:
    """Per layer, the paired difference demo-prior minus demo of the margin log p(no) - log p(yes) on the same
    planted questions (mean, 95% interval over images), and the first layer from which its upper bound stays
    below 0: where the prior's "yes" overtakes, relative to the same model without it."""
    margin = {}
    for model in ("demo", "demo-prior"):
        folder = out / model / split
        ids, log_yes, _, images = answer_log_probs(folder / "yes")
        ids_no, log_no, _, _ = answer_log_probs(folder / "no")
        assert ids == ids_no
        margin[model] = (ids, log_no - log_yes, images)
    ids, prior, images = margin["demo-prior"]
    if ids != margin["demo"][0]:
        raise SystemExit("demo and demo-prior were asked different questions")
    cluster_of = {image: i for i, image in enumerate(dict.fromkeys(images))}
    clusters = np.array([cluster_of[image] for image in images])
    curve = bootstrap_mean(prior - margin["demo"][1], clusters, len(cluster_of), n_boot=1000)
    below = curve.high < 0
    start = None
    for layer in range(len(below) - 1, -1, -1):
        if not below[layer]:
            break
        start = layer
    return {"split": split, "difference": curve.to_dict(), "below_zero_from_layer": start}


def main() -> None:
    args = parse_args()
    out = args.out
    write_inputs(out, choose_scenes(args.trigger, args.other))
    evolens(
        "hallucination",
        "pope-build",
        "--annotations",
        str(out / "instances.json"),
        "--out",
        str(out / "pope"),
        "--per-image",
        "1",
    )
    files = args.files
    limit = ["--limit", str(args.limit)] if args.limit else []
    for model in args.models:
        questions = [a for f in files for a in ("--questions", str(out / "pope" / f"{f}.jsonl"))]
        evolens(
            "hallucination",
            "margins",
            "--model",
            model,
            "--images",
            str(out / "images"),
            "--out",
            str(out / model),
            "--batch-size",
            str(args.batch_size),
            "--n-boot",
            str(args.n_boot),
            *limit,
            *questions,
        )
    done = [
        m for m in dict.fromkeys(["demo", "demo-prior", *args.models]) if (out / m / "margins.json").exists()
    ]
    result = summary(out, done)
    if "prior_effect" in result:
        effect = result.pop("prior_effect")
        print(f"prior effect on the planted margin: below 0 from layer {effect['below_zero_from_layer']}")
    for model, splits in result.items():
        for split, values in splits.items():
            rate = values["absent_yes_rate"]
            print(
                f"{model:11s} {split:18s} yes on absent {rate['mean']:.3f} "
                f"[{rate['low']:.3f}, {rate['high']:.3f}]"
                f" (n={rate['n']}); margin < 0 from layer {values['margin_turns_negative_at']}"
            )


if __name__ == "__main__":
    main()
