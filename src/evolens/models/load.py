"""``load_model``: the built-in demo model, or any supported Hugging Face model from the local cache."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn

from evolens.errors import ModelLoadError
from evolens.models.check import check_adapter
from evolens.models.loaded import BUNDLED_LENS, LoadedModel
from evolens.models.processors import load_processor
from evolens.models.registry import adapter_for_architecture

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}

BUILTIN = {"demo": "load_demo", "demo-prior": "load_demo_prior", "demo-text": "load_demo_text"}
BUNDLED_LENS_FOLDER = "tuned-lens"
"""A local model folder's own tuned lens lives in this subfolder (``--lens tuned`` finds it)."""


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """ "bf16" / "float32" / torch.dtype / None (the checkpoint's own dtype) -> torch.dtype or None."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype '{dtype}'; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load_model(
    name: str,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    check: bool = True,
    verbose: bool = False,
) -> LoadedModel:
    """Load ``name``: "demo", "demo-prior" (the demo with a planted prior), "demo-text" (its decoder
    alone), a cached hub id, or a local directory.

    The adapter is chosen from ``config.architectures``; with ``check`` the lens at the last layer is
    compared with the model's logits before the model is returned. transformers' own progress bars and
    warnings are silenced while loading unless ``verbose`` (or ``EVOLENS_VERBOSE=1``, set by ``--verbose``).
    """
    with quiet_transformers(verbose or os.environ.get("EVOLENS_VERBOSE") == "1"):
        if name in BUILTIN:
            import evolens.models.demo as demo

            loaded = getattr(demo, BUILTIN[name])(device=device, dtype=parse_dtype(dtype) or torch.float32)
        else:
            loaded = _load_hf(name, device, parse_dtype(dtype))
    if check:
        loaded.info["adapter_check_max_abs_diff"] = check_adapter(loaded)
    return loaded


@contextlib.contextmanager
def quiet_transformers(verbose: bool = False) -> Iterator[None]:
    """Within the block, transformers and huggingface_hub show no progress bars and only errors (unless
    ``verbose``); their previous settings come back afterwards. evolens' own progress and errors stay."""
    if verbose:
        yield
        return
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as hf_logging

    level, bars_on = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hub_bars_off = are_progress_bars_disabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    disable_progress_bars()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars_on:
            hf_logging.enable_progress_bar()
        if not hub_bars_off:
            enable_progress_bars()


def from_model(
    model: nn.Module,
    tokenizer: Any,
    processor: Any | None = None,
    name: str | None = None,
    check: bool = True,
) -> LoadedModel:
    """Wrap an already built model (e.g. a tiny random one) with the adapter of its class."""
    adapter = adapter_for_architecture(type(model).__name__)
    loaded = LoadedModel(name or type(model).__name__, model.eval(), tokenizer, processor, adapter)
    if check:
        loaded.info["adapter_check_max_abs_diff"] = check_adapter(loaded)
    return loaded


def _load_hf(name: str, device: str | torch.device, dtype: torch.dtype | None) -> LoadedModel:
    try:
        config = transformers.AutoConfig.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"unknown model '{name}': not built in, not a local directory, not in the local HF cache"
        ) from exc
    architecture = (getattr(config, "architectures", None) or [type(config).__name__])[0]
    adapter = adapter_for_architecture(architecture)
    model_class = getattr(transformers, adapter.auto_class)
    try:
        model = model_class.from_pretrained(name, dtype=dtype or "auto", local_files_only=True)
        processor = load_processor(name, config) if adapter.vision else None
        tokenizer = getattr(processor, "tokenizer", None) or transformers.AutoTokenizer.from_pretrained(
            name, local_files_only=True
        )
    except (OSError, ValueError, ImportError) as exc:
        raise ModelLoadError(f"cannot load '{name}': {str(exc).strip().splitlines()[0]}") from exc
    revision = getattr(config, "_commit_hash", None)
    loaded = LoadedModel(name, model.to(device).eval(), tokenizer, processor, adapter, revision=revision)
    lens = Path(name) / BUNDLED_LENS_FOLDER
    if (lens / "config.json").is_file():
        loaded.info[BUNDLED_LENS] = lens
    return loaded
