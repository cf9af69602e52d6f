"""A tiny random LLaVA saved to a folder (loads through ``load_model(path)`` like any local model), a small
run config on the shapes world, for fast end-to-end runs of ``evolens run``, and one such run, made once per
session, that the tests comparing runs compare theirs with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from evolens.cli import main
from tests.models.builders.common import randomize_norms, save_model_folder
from tests.models.builders.llava import build_tiny_llava
from tests.ray_support import torch_threads

TINY_LAYERS = 6


@pytest.fixture(scope="session")
def tiny_vlm_dir(smollm2_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-layer random LLaVA (CLIP tower 30 px, 25 image tokens; the builder table's LLaVA with more
    layers) with SmolLM2's tokenizer, saved."""
    model, processor = build_tiny_llava(smollm2_tokenizer, num_hidden_layers=TINY_LAYERS)
    randomize_norms(model)
    return save_model_folder(model, processor, tmp_path_factory.mktemp("tiny-vlm"))


def tiny_run_config(model_dir: Path, out: Path, images: Path | None = None) -> str:
    """YAML of a small run: 4 shapes scenes, one prompt, 6 new tokens each, one sample per batch, no hidden
    states (the feature maps' t-SNE is the slowest analysis and is tested on its own)."""
    data = f"  path: {images}\n" if images else ""
    text = (
        f"model: {model_dir}\nout: {out}\n"
        f"data:\n  source: shapes\n{data}  limit: 4\n  prompts: [Describe this image.]\n"
        "trace: {max_new_tokens: 6, batch_size: 1, top_k: 3, keep_hidden: false}\n"
        "analyze: {n_boot: 50}\n"
        "report: {max_samples: 10}\n"
    )
    return text


@pytest.fixture(scope="session")
def shapes_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One shapes-world folder for the runs whose results are compared, so that their manifests and image
    paths are the same."""
    return tmp_path_factory.mktemp("shapes")


@pytest.fixture(scope="session")
def reference_run(tiny_vlm_dir: Path, shapes_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of an uninterrupted run of ``tiny_run_config`` on ``shapes_images`` (read only: tests that
    change a run copy it), on the local engine with one torch thread: as each Ray actor with one CPU, and as
    ``evolens run`` in a subprocess with ``OMP_NUM_THREADS=1``, so the same floating-point sums."""
    root = tmp_path_factory.mktemp("reference")
    config = root / "run.yaml"
    config.write_text(tiny_run_config(tiny_vlm_dir, root / "out", shapes_images))
    with torch_threads(1):
        assert main(["run", "--config", str(config), "--quiet"]) == 0
    return root / "out"
