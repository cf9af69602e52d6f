"""A tiny random LLaVA saved to a folder (loads through ``load_model(path)`` like any local model), and
a small run config on the shapes world, for fast end-to-end runs of ``evolens run``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from tests.conftest import randomize_norms
from tests.models.builders.common import tiny_decoder_kwargs, tokenizer_with_tokens
from tests.models.builders.llava import LLAVA_CHAT_TEMPLATE

IMAGE_SIDE, PATCH = 30, 6
TINY_LAYERS = 6


@pytest.fixture(scope="session")
def tiny_vlm_dir(smollm2_tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-layer random LLaVA (CLIP tower 30 px, 25 image tokens) with SmolLM2's tokenizer, saved."""
    tokenizer = tokenizer_with_tokens(smollm2_tokenizer, ["<image>"])
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=IMAGE_SIDE,
            patch_size=PATCH,
            projection_dim=32,
        ),
        text_config=LlamaConfig(**tiny_decoder_kwargs(tokenizer, num_hidden_layers=TINY_LAYERS)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(IMAGE_SIDE // PATCH) ** 2,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    randomize_norms(model)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(
            size={"shortest_edge": IMAGE_SIDE}, crop_size={"height": IMAGE_SIDE, "width": IMAGE_SIDE}
        ),
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    folder = tmp_path_factory.mktemp("tiny-vlm")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


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
