"""Shared fixtures: the real demo decoder (SmolLM2-135M), tiny random models built from configs (each built
once per session, see tests/models/builders) and their model folders.

Under pytest-xdist (``make test``) each worker process runs torch on one thread: the workers already share
the machine's cores between them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from evolens.models import LoadedModel, load_model
from evolens.models.load import from_model
from tests.models.builders.causal_lm import tiny_causal_lm
from tests.models.builders.common import randomize_norms, save_model_folder
from tests.models.builders.saved import TinyModels

torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


WARM_UP = (
    "from evolens.models.demo.decoder import ensure_decoder_cache\n"
    "from evolens.tracing.sweep_numba import numba_sweeps\n"
    "ensure_decoder_cache()\n"
    "numba_sweeps()\n"
)
"""Expands the demo decoder from its GGUF file into the cache (~20 s) and compiles the metric kernels into
theirs (a few seconds): a fresh clone's first-use costs."""


def pytest_configure(config: pytest.Config) -> None:
    """On a fresh clone, pay the first-use costs (``WARM_UP``) before any test, once (under xdist: before the
    workers start), rather than inside whichever test comes first, once per worker. In a process of its own,
    so that this one imports nothing that the tests check the import of."""
    if hasattr(config, "workerinput") or config.option.collectonly:
        return
    from evolens.models.demo.decoder import decoder_cache_dir

    cache = decoder_cache_dir()
    if not ((cache / "model.safetensors").exists() and (cache / "tokenizer.json").exists()):
        subprocess.run([sys.executable, "-c", WARM_UP], check=False)


@pytest.fixture(scope="session")
def demo_text() -> LoadedModel:
    """SmolLM2-135M-Instruct, the real text-only decoder of the demo model (30 layers, vocab 49,152)."""
    return load_model("demo-text")


@pytest.fixture(scope="session")
def demo_vlm() -> LoadedModel:
    """The built-in demo VLM (EfficientNet-Lite0 + trained projector + SmolLM2-135M), fp32."""
    return load_model("demo")


@pytest.fixture(scope="session")
def smollm2_tokenizer(demo_text: LoadedModel) -> Any:
    """SmolLM2's tokenizer (chat template included), usable offline for tiny random models."""
    return demo_text.tokenizer


@pytest.fixture(scope="session")
def tiny_llama(smollm2_tokenizer: Any) -> LoadedModel:
    """A 4-layer random Llama with SmolLM2's vocabulary, fp32, deterministic weights, randomised norms."""
    model = tiny_causal_lm(
        "LlamaForCausalLM", smollm2_tokenizer, num_hidden_layers=4, max_position_embeddings=512
    )
    randomize_norms(model.eval())
    return from_model(model, smollm2_tokenizer, name="tiny-llama")


@pytest.fixture(scope="session")
def tiny_llama_dir(tiny_llama: LoadedModel) -> Iterator[Path]:
    """``tiny_llama`` saved as a model folder (loads by path, in this process, a subprocess or a Ray actor),
    in a folder every user can read."""
    folder = Path(tempfile.mkdtemp(prefix="evolens-tiny-llama-"))
    save_model_folder(tiny_llama.model, tiny_llama.tokenizer, folder)
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_models(smollm2_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """The session's tiny models of the builder table (tests/models/builders), each built and saved once
    (a few tens of MB each, mostly SmolLM2's 49k-row vocabulary)."""
    return TinyModels(smollm2_tokenizer, tmp_path_factory)
