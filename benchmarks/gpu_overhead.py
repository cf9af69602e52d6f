"""What tracing costs on a GPU at real model size: decoders with random weights built from configs.

No download: each model is its decoder built from the published config, random weights, bf16:

  llava-1.5-7b  the Llama-2-7B decoder of LLaVA-1.5-7B (32 layers, d 4096, vocab 32,064);
  qwen2-vl-7b   the Qwen2 decoder of Qwen2-VL-7B-Instruct (28 layers, d 3584, 4 KV heads, vocab 152,064).

Every prompt is 576 image positions + 24 text positions, fed as ``inputs_embeds``: the vision tower is not
built (it runs once per prompt, with or without tracing, so it only dilutes the ratios; Qwen2-VL's
M-RoPE positions become plain 1-D positions, which cost the same). Per batch size (default 1 and 32),
``--tokens`` new tokens (64), greedy, never stopping early, methods interleaved within each repeat:

  plain   ``generate()``;
  floor   plain + the capture hooks + per step one fp32 GEMM of every layer's last-position state with the
          fp32 unembedding (the least an exact full-vocabulary lens costs; the result is dropped);
  traced  plain + the hooks + per step what ``evolens trace`` runs: ``BatchRecorder`` and
          ``StepMetricsEngine`` (normed lens, every metric; its sweeps compiled on CUDA).

Reported: medians of wall time (CUDA synchronised), traced/plain and traced/floor per batch size (goals on
one H100: traced/floor <= 1.05, traced/plain <= 1.10 at batch 1 and <= 1.15 at batch 32), and the peak GPU
memory each method adds (torch.cuda.max_memory_allocated). The last line printed is one JSON object.

``--tiny`` runs the same code on 2-layer versions of the configs (any device, the CPU included), to check
that the benchmark works without a GPU.

    .venv/bin/python benchmarks/gpu_overhead.py [--models llava-1.5-7b,qwen2-vl-7b] [--batch-sizes 1,32]
        [--tokens 64] [--repeats 3] [--device cuda] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PretrainedConfig, Qwen2Config, Qwen2ForCausalLM

from evolens.lenses.logit import logit_lens
from evolens.models import LoadedModel
from evolens.models.capture import LayerCapture, TokenStreamer
from evolens.models.check import check_adapter
from evolens.models.load import from_model
from evolens.tracing.engine import StepMetricsEngine
from evolens.tracing.recorder import BatchRecorder

IMAGE_POSITIONS = 576
TEXT_POSITIONS = 24
GOALS = {"traced_over_floor": 1.05, "traced_over_plain_batch_1": 1.10, "traced_over_plain_batch_32": 1.15}

DECODERS: dict[str, tuple[type, type[PretrainedConfig], dict[str, Any]]] = {
    "llava-1.5-7b": (
        LlamaForCausalLM,
        LlamaConfig,
        {
            "vocab_size": 32064,
            "hidden_size": 4096,
            "intermediate_size": 11008,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-5,
            "tie_word_embeddings": False,
        },
    ),
    "qwen2-vl-7b": (
        Qwen2ForCausalLM,
        Qwen2Config,
        {
            "vocab_size": 152064,
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1_000_000.0,
            "tie_word_embeddings": False,
        },
    ),
}
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}


def build(name: str, device: torch.device, dtype: torch.dtype, tiny: bool) -> LoadedModel:
    """The named decoder with random weights on ``device``, wrapped as evolens loads models (lens checked)."""
    model_class, config_class, settings = DECODERS[name]
    if tiny:
        settings = {**settings, **TINY, "num_key_value_heads": 2}
    config = config_class(**settings, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    with torch.device(device):
        model = model_class._from_config(config, dtype=dtype)
    tokenizer = SimpleNamespace(pad_token_id=0, eos_token_id=2)
    loaded = from_model(model, tokenizer, name=name + ("-tiny" if tiny else ""), check=False)
    ids = torch.randint(3, config.vocab_size, (1, 16), device=device)
    loaded.info["adapter_check_max_abs_diff"] = check_adapter(
        loaded, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    )
    return loaded


def prompt_embeddings(loaded: LoadedModel, batch: int) -> dict[str, torch.Tensor]:
    """``inputs_embeds`` (B, 600, d) in the model's dtype, scaled like its token embeddings, and the mask."""
    generator = torch.Generator(device=loaded.device).manual_seed(batch)
    width = loaded.text_config.hidden_size
    scale = loaded.embed_tokens.weight.float().std().item()
    shape = (batch, IMAGE_POSITIONS + TEXT_POSITIONS, width)
    embeds = torch.randn(shape, generator=generator, device=loaded.device) * scale
    mask = torch.ones(shape[:2], dtype=torch.long, device=loaded.device)
    return {"inputs_embeds": embeds.to(loaded.dtype), "attention_mask": mask}


def generate(loaded: LoadedModel, inputs: dict[str, torch.Tensor], tokens: int, streamer: Any = None) -> Any:
    """Greedy generation of exactly ``tokens`` new tokens: (B, tokens) ids."""
    with torch.inference_mode():
        return loaded.model.generate(
            **inputs,
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
            pad_token_id=0,
            streamer=streamer,
        )


def run_plain(loaded: LoadedModel, inputs: dict[str, torch.Tensor], tokens: int) -> None:
    generate(loaded, inputs, tokens)


def run_floor(loaded: LoadedModel, inputs: dict[str, torch.Tensor], tokens: int) -> None:
    weight = loaded.unembed.weight  # fp32 (V, d), as the lens uses it

    def unembed_all_layers(_tokens: torch.Tensor) -> None:
        states = capture.pop()
        states.reshape(-1, states.shape[-1]).float() @ weight.T

    with LayerCapture(loaded) as capture:
        generate(loaded, inputs, tokens, TokenStreamer(unembed_all_layers))


def traced_runner(engine: StepMetricsEngine) -> Callable[[LoadedModel, dict[str, torch.Tensor], int], None]:
    def run_traced(loaded: LoadedModel, inputs: dict[str, torch.Tensor], tokens: int) -> None:
        rows = inputs["attention_mask"].shape[0]
        recorder = BatchRecorder(engine, [f"row{i}" for i in range(rows)], loaded.eos_token_ids)
        with LayerCapture(loaded) as capture:
            streamer = TokenStreamer(lambda t: recorder.on_step(capture.pop(), t))
            emitted = generate(loaded, inputs, tokens, streamer)
        recorder.check_matches(emitted[:, -tokens:].cpu())

    return run_traced


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_run(
    run: Callable[[LoadedModel, dict[str, torch.Tensor], int], None],
    loaded: LoadedModel,
    inputs: dict[str, torch.Tensor],
    tokens: int,
) -> tuple[float, float | None]:
    """(seconds, peak GPU MiB added over what was allocated before; None off CUDA) of one run."""
    device = loaded.device
    synchronize(device)
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    began = time.perf_counter()
    run(loaded, inputs, tokens)
    synchronize(device)
    seconds = time.perf_counter() - began
    peak = (torch.cuda.max_memory_allocated(device) - before) / 2**20 if device.type == "cuda" else None
    return seconds, peak


def measure_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every method at every batch size on one model: medians, ratios, peak memory, compile time."""
    device = torch.device(args.device)
    loaded = build(name, device, torch.bfloat16 if device.type == "cuda" else torch.float32, args.tiny)
    engine = StepMetricsEngine(logit_lens(loaded.unembed), compile=None if args.compile else False)
    runners = {"plain": run_plain, "floor": run_floor, "traced": traced_runner(engine)}
    result: dict[str, Any] = {
        "layers": loaded.n_layers,
        "vocab": loaded.unembed.vocab_size,
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "adapter_check_max_abs_diff": loaded.info["adapter_check_max_abs_diff"],
        "batches": {},
    }
    for batch in args.batch_sizes:
        inputs = prompt_embeddings(loaded, batch)
        warm_up = {m: timed_run(run, loaded, inputs, 2)[0] for m, run in runners.items()}  # compiles
        seconds: dict[str, list[float]] = {m: [] for m in runners}
        peaks: dict[str, float | None] = {}
        for repeat in range(args.repeats):
            for method in list(runners)[repeat % 3 :] + list(runners)[: repeat % 3]:
                elapsed, peak = timed_run(runners[method], loaded, inputs, args.tokens)
                seconds[method].append(elapsed)
                peaks[method] = peak
        median = {m: statistics.median(s) for m, s in seconds.items()}
        result["batches"][str(batch)] = {
            "seconds": median,
            "traced_over_plain": median["traced"] / median["plain"],
            "traced_over_floor": median["traced"] / median["floor"],
            "floor_over_plain": median["floor"] / median["plain"],
            "peak_mib_added": peaks,
            "warm_up_seconds": warm_up,
            "sweeps": engine.backend,
        }
        print(
            f"{name} batch {batch}: plain {median['plain']:.3f}s, floor {median['floor']:.3f}s, "
            f"traced {median['traced']:.3f}s; traced/plain {median['traced'] / median['plain']:.3f}, "
            f"traced/floor {median['traced'] / median['floor']:.3f}",
            flush=True,
        )
    del loaded, engine
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DECODERS))
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="2-layer configs: check the benchmark runs")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="eager metric sweeps")
    args = parser.parse_args()
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    load_before = os.getloadavg()
    models = {name: measure_model(name, args) for name in args.models.split(",")}
    device = torch.device(args.device)
    payload = {
        "benchmark": "gpu_overhead",
        "settings": vars(args) | {"prompt_positions": IMAGE_POSITIONS + TEXT_POSITIONS},
        "machine": {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else args.device,
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "torch": torch.__version__,
        },
        "goals": GOALS,
        "models": models,
    }
    print(json.dumps(payload, default=str))


if __name__ == "__main__":
    main()
