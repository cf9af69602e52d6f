"""Shared fixtures: the real demo decoder (SmolLM2-135M) and tiny random models built from configs."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from evolens.models import LoadedModel, load_model
from evolens.models.load import from_model

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def demo_text() -> LoadedModel:
    """SmolLM2-135M-Instruct, the real text-only decoder of the demo model (30 layers, vocab 49,152)."""
    return load_model("demo-text")


@pytest.fixture(scope="session")
def demo_vlm() -> LoadedModel:
    """The built-in demo VLM (EfficientNet-Lite0 + trained projector + SmolLM2-135M), fp32."""
    return load_model("demo")


@pytest.fixture(scope="session")
def smollm2_tokenizer(demo_text: LoadedModel):
    """SmolLM2's tokenizer (chat template included), usable offline for tiny random models."""
    return demo_text.tokenizer


@pytest.fixture(scope="session")
def tiny_llama(smollm2_tokenizer) -> LoadedModel:
    """A 4-layer random Llama with SmolLM2's vocabulary, fp32, deterministic weights."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(smollm2_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=smollm2_tokenizer.bos_token_id,
        eos_token_id=smollm2_tokenizer.eos_token_id,
        pad_token_id=smollm2_tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    randomize_norms(model)
    return from_model(model, smollm2_tokenizer, name="tiny-llama")


def randomize_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every norm weight a random value in [0.5, 1.5] (random init leaves them all at 1, which
    would hide a wrong final-norm path)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name and parameter.ndim == 1:
                parameter.copy_(0.5 + torch.rand(parameter.shape, generator=generator))
