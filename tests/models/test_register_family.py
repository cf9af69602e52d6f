"""A family registered from outside the package (``evolens.register_family``) loads, is checked when it
loads like the built-in ones, and traces: a tiny GPT-2, whose architecture evolens ships no adapter for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import evolens
from evolens.errors import AdapterCheckError, UnsupportedArchitectureError, UsageError
from evolens.io.store import read_trace
from evolens.models import registry

GPT2 = evolens.ModelAdapter(
    family="gpt2-from-user-code",
    hf_classes=("GPT2LMHeadModel",),
    auto_class="AutoModelForCausalLM",
    decoder_layers=("transformer.h",),
    final_norm=("transformer.ln_f",),
    embed_tokens=("transformer.wte",),
    inputs="text_chat",
    text_config="",
    vision=False,
)


@pytest.fixture
def gpt2_dir(smollm2_tokenizer, tmp_path: Path) -> Path:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(smollm2_tokenizer), n_embd=32, n_layer=3, n_head=2, n_positions=256)
    config.bos_token_id = config.eos_token_id = smollm2_tokenizer.eos_token_id
    model = GPT2LMHeadModel(config)
    with torch.no_grad():  # a wrong final norm must change the logits: GPT-2 calls its norms ln_*
        for name, parameter in model.named_parameters():
            if ".ln_" in name and parameter.ndim == 1:
                parameter.copy_(0.5 + torch.rand(parameter.shape))
    model.save_pretrained(tmp_path)
    smollm2_tokenizer.save_pretrained(tmp_path)
    return tmp_path


@pytest.fixture
def registered() -> Iterator[list[evolens.ModelAdapter]]:
    """The registered families, emptied again after the test."""
    yield registry._REGISTERED
    registry._REGISTERED.clear()


def test_a_registered_family_loads_passes_the_check_and_traces(
    gpt2_dir: Path, tmp_path: Path, registered: list
) -> None:
    with pytest.raises(UnsupportedArchitectureError, match="GPT2LMHeadModel"):
        evolens.load_model(str(gpt2_dir))
    evolens.register_family(GPT2)
    loaded = evolens.load_model(str(gpt2_dir))
    assert loaded.adapter is GPT2 and loaded.n_layers == 3
    assert loaded.info["adapter_check_max_abs_diff"] < 1e-4
    result = evolens.trace(loaded, None, ["Name a colour."], out=tmp_path / "t", max_new_tokens=3)
    steps = read_trace(tmp_path / "t").steps
    assert result.traced and len(steps) == 3 and len(steps["prob"][0]) == 4
    last_top1 = [ids[-1][0] for ids in steps["topk_ids"]]
    assert last_top1 == list(steps["token_id"]), "greedy: the last layer's top-1 is the emitted token"


def test_a_wrong_registered_adapter_fails_the_load_time_check(gpt2_dir: Path, registered: list) -> None:
    wrong = evolens.ModelAdapter(**{**GPT2.__dict__, "final_norm": ("transformer.h.0.ln_1",)})
    evolens.register_family(wrong)
    with pytest.raises(AdapterCheckError):
        evolens.load_model(str(gpt2_dir))


def test_a_clash_with_a_known_family_is_refused_unless_replacing(registered: list) -> None:
    llava = registry.adapter_for_family("llava")
    mine = evolens.ModelAdapter(**{**llava.__dict__, "family": "my-llava"})
    with pytest.raises(UsageError, match="clashes with 'llava'"):
        evolens.register_family(mine)
    evolens.register_family(mine, replace=True)
    assert registry.adapter_for_architecture("LlavaForConditionalGeneration") is mine
