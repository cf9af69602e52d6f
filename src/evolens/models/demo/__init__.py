"""The built-in demo VLM: EfficientNet-Lite0 features -> MLP projector -> SmolLM2-135M-Instruct + LoRA."""

from __future__ import annotations

from typing import Any

import torch

from evolens.models.loaded import BUNDLED_LENS, SCOPE, LoadedModel

DEMO_SCOPE = (
    "the demo model was trained only on its synthetic shapes world (1-3 coloured shapes on a plain "
    "background); shown any other picture it still describes shapes"
)


def load_demo_text(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LoadedModel:
    """The demo's decoder alone, as a text-only model (for text-only comparison runs)."""
    from evolens.models.demo.decoder import load_decoder
    from evolens.models.registry import adapter_for_family

    model, tokenizer = load_decoder(dtype)
    decoder: Any = model
    return LoadedModel("demo-text", decoder.to(device), tokenizer, None, adapter_for_family("causal_lm"))


def load_demo(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LoadedModel:
    """The demo VLM with its trained projector (``evolens/assets/demo``) as a ``LoadedModel`` "demo"."""
    from evolens.models.demo.assets import TUNED_LENS_DIR, asset_dir, load_demo_vlm
    from evolens.models.registry import adapter_for_family

    model, processor, manifest = load_demo_vlm(dtype=dtype)
    loaded = LoadedModel("demo", model.to(device), processor.tokenizer, processor, adapter_for_family("demo"))
    loaded.info["demo_manifest"] = manifest
    loaded.info[SCOPE] = DEMO_SCOPE
    lens = asset_dir() / TUNED_LENS_DIR
    if lens.is_dir():
        loaded.info[BUNDLED_LENS] = lens
    return loaded


def load_demo_prior(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LoadedModel:
    """``demo-prior``: the demo with the LoRA factors of ``assets/demo/prior`` (trained with a planted
    co-occurrence prior: a blue square "seen" whenever a red circle is there; docs/demo-model.md) in place
    of its own. The demo's tuned lens was trained for the demo, so none is bundled with this variant."""
    from evolens.models.demo.assets import PRIOR_DIR, asset_dir, load_demo_vlm
    from evolens.models.registry import adapter_for_family

    model, processor, manifest = load_demo_vlm(dtype=dtype, lora_directory=asset_dir() / PRIOR_DIR)
    loaded = LoadedModel(
        "demo-prior", model.to(device), processor.tokenizer, processor, adapter_for_family("demo")
    )
    loaded.info["demo_manifest"] = manifest
    loaded.info[SCOPE] = DEMO_SCOPE
    return loaded
