"""The trained weights shipped in the package (``evolens/assets/demo``) and assembling the demo VLM.

``projector.safetensors`` holds the projector weights; ``decoder_lora.safetensors`` (when the manifest has a
``decoder_lora`` entry) the low-rank updates of the decoder, merged into SmolLM2's weights on load;
``manifest.json`` the vision configuration they were trained with, the training record (seed, steps, wall
time, losses) and the measured quality.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from evolens.errors import ModelLoadError
from evolens.io.atomic import write_json
from evolens.models.demo.decoder import load_decoder
from evolens.models.demo.lora import LORA_FILE, LoraSettings, merge_lora
from evolens.models.demo.model import DemoVLM, Projector
from evolens.models.demo.processor import DemoProcessor
from evolens.models.demo.vision import VisionConfig, VisionEncoder, feature_dim

PROJECTOR_FILE = "projector.safetensors"
MANIFEST_FILE = "manifest.json"
PRIOR_DIR = "prior"
"""``demo-prior``'s LoRA factors and manifest (the demo's projector is shared): ``docs/demo-model.md``."""
TUNED_LENS_DIR = "tuned-lens"
"""The demo's bundled tuned lens (``tuned-lens`` format: config.json + params.pt, plus its manifest.json)."""


ASSETS_ENV = "EVOLENS_DEMO_ASSETS"


def asset_dir() -> Path:
    """The demo asset folder: ``$EVOLENS_DEMO_ASSETS`` (e.g. a training checkpoint), else the package's."""
    override = os.environ.get(ASSETS_ENV)
    return Path(override) if override else Path(str(resources.files("evolens") / "assets" / "demo"))


def read_manifest(directory: Path | None = None) -> dict[str, Any]:
    """The demo manifest (vision config, projector shape, training record, measured quality)."""
    path = (directory or asset_dir()) / MANIFEST_FILE
    if not path.exists():
        raise ModelLoadError(f"the demo projector is not trained yet ({path} missing); run `make train-demo`")
    return json.loads(path.read_text())


def write_manifest(manifest: dict[str, Any], directory: Path | None = None) -> Path:
    """Write ``manifest`` as indented JSON; returns its path."""
    directory = directory or asset_dir()
    return write_json(directory / MANIFEST_FILE, manifest)


def vision_config_from(manifest: dict[str, Any]) -> VisionConfig:
    """The ``VisionConfig`` recorded in a manifest."""
    vision = manifest["vision"]
    return VisionConfig(
        taps=tuple(vision["taps"]),
        grid=int(vision["grid"]),
        pos_freqs=int(vision["pos_freqs"]),
        tokens_per_cell=int(vision.get("tokens_per_cell", 1)),
    )


def vision_record(config: VisionConfig) -> dict[str, Any]:
    """The manifest's ``vision`` entry for ``config``."""
    return {**asdict(config), "n_tokens": config.n_tokens, "feature_dim": feature_dim(config)}


def build_demo_vlm(
    config: VisionConfig, hidden: int, dtype: torch.dtype = torch.float32
) -> tuple[DemoVLM, DemoProcessor]:
    """A demo VLM with a freshly initialised projector (for training) and its processor."""
    decoder, tokenizer = load_decoder(dtype)
    decoder.requires_grad_(False)
    processor = DemoProcessor(tokenizer, config.n_tokens)
    projector = Projector(feature_dim(config), decoder.config.hidden_size, hidden, config.tokens_per_cell)
    model = DemoVLM(VisionEncoder(config), projector, decoder, processor.image_token_id)
    return model.eval(), processor


def save_projector(model: DemoVLM, directory: Path | None = None) -> Path:
    """Write the projector weights (fp32 safetensors); returns the path."""
    directory = directory or asset_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PROJECTOR_FILE
    state = {k: v.detach().float().contiguous() for k, v in model.projector.state_dict().items()}
    save_file(state, str(path))
    return path


def save_lora(factors: dict[str, torch.Tensor], directory: Path | None = None) -> Path:
    """Write the decoder's LoRA factors (fp32 safetensors, ``evolens.models.demo.lora``); returns the path."""
    directory = directory or asset_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LORA_FILE
    save_file({k: v.detach().float().contiguous() for k, v in factors.items()}, str(path))
    return path


def load_demo_vlm(
    dtype: torch.dtype = torch.float32, directory: Path | None = None, lora_directory: Path | None = None
) -> tuple[DemoVLM, DemoProcessor, dict[str, Any]]:
    """The trained demo VLM, its processor and manifest, from the packaged (or given) asset folder.

    ``lora_directory`` (``demo-prior``: ``asset_dir() / PRIOR_DIR``) holds other LoRA factors and their
    manifest, used with the projector of ``directory``; the manifest returned is then that folder's.
    """
    manifest = read_manifest(directory)
    path = (directory or asset_dir()) / PROJECTOR_FILE
    if not path.exists():
        raise ModelLoadError(f"the demo projector weights are missing ({path}); run `make train-demo`")
    model, processor = build_demo_vlm(
        vision_config_from(manifest), int(manifest["projector"]["hidden"]), dtype
    )
    model.projector.load_state_dict(load_file(str(path)))
    if lora_directory is not None:
        manifest = read_manifest(lora_directory)
    if "decoder_lora" in manifest:
        lora_path = (lora_directory or directory or asset_dir()) / LORA_FILE
        if not lora_path.exists():
            raise ModelLoadError(f"the demo decoder's LoRA weights are missing ({lora_path})")
        settings = LoraSettings.from_dict(manifest["decoder_lora"])
        merge_lora(model.decoder, load_file(str(lora_path)), settings.scale)
    return model, processor, manifest
