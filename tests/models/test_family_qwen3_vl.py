"""Qwen3-VL (``Qwen3VLForConditionalGeneration``): tiny ViT with DeepStack + interleaved M-RoPE Qwen3 decoder.

Beyond the common checks: what DeepStack does to the layer outputs that evolens hooks (see the adapter's
docstring). The model's forward adds vision features to the image positions of the first k decoder layers'
outputs after each layer returns, so a forward hook on such a layer sees the stream before the addition at
image positions, and the true residual stream at text positions.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor

from evolens.models import LoadedModel
from evolens.models.capture import layer_output as last_layer_output
from tests.models import qwen_vl_parts as parts
from tests.models.conftest import save_and_load

# sides rounded to multiples of 32 (Python rounds 2.5 to 2): 96x80 -> 96x64 -> 6x4 patches -> 3x2 tokens;
# 120x64 -> 128x64 -> 8x4 patches -> 4x2 tokens.
FAMILY = "qwen3_vl"
EXPECTED_IMAGE_TOKENS = {"test_image": 6, "second_image": 8}  # read by the shared tests
PATCH = 16
DEEPSTACK_LEVELS = 2  # vision layers 0 and 1 feed decoder layers 0 and 1; decoder layer 2 gets nothing


@pytest.fixture(scope="module")
def qwen_vl(smollm2_tokenizer, tmp_path_factory: pytest.TempPathFactory, device_dtype) -> LoadedModel:
    tokenizer = parts.qwen_tokenizer(smollm2_tokenizer)
    rope = {
        "rope_type": "default",
        "rope_theta": 10000.0,
        "mrope_section": [2, 3, 3],
        "mrope_interleaved": True,
    }
    config = Qwen3VLConfig(
        text_config=parts.text_config_kwargs(tokenizer, head_dim=16, rope_parameters=rope),
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": PATCH,
            "num_position_embeddings": 16,
            "deepstack_visual_indexes": list(range(DEEPSTACK_LEVELS)),
        },
        **parts.vision_token_ids(tokenizer),
    )
    torch.manual_seed(0)
    model = Qwen3VLForConditionalGeneration(config)
    processor = parts.qwen_processor(Qwen3VLProcessor, tokenizer, PATCH)
    device, dtype = device_dtype
    return save_and_load(model, processor, tmp_path_factory.mktemp("qwen3_vl"), device, dtype)


def test_hooks_the_qwen3_vl_decoder_layers(qwen_vl: LoadedModel) -> None:
    assert type(qwen_vl.decoder_layers[0]).__name__ == "Qwen3VLTextDecoderLayer"


def test_deepstack_changes_image_positions_only_after_the_layer_hook(
    qwen_vl: LoadedModel, test_image: Image.Image
) -> None:
    """Layer l's output hook vs. the stream that really enters layer l+1 (or the final norm)."""
    loaded = qwen_vl
    inputs = loaded.build_inputs(["Describe this image."], [test_image])
    is_image = (inputs["input_ids"][0] == loaded.model.config.image_token_id).to(loaded.device)
    outputs: list[torch.Tensor] = []
    entering: list[torch.Tensor] = []
    next_modules = [*list(loaded.decoder_layers)[1:], loaded.final_norm]
    handles = [
        layer.register_forward_hook(lambda _m, _a, out: outputs.append(last_layer_output(out)[0]))
        for layer in loaded.decoder_layers
    ]
    handles += [
        module.register_forward_pre_hook(lambda _m, args: entering.append(args[0][0]))
        for module in next_modules
    ]
    try:
        with torch.inference_mode():
            loaded.model(**inputs, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    assert len(outputs) == len(entering) == loaded.n_layers
    for layer, (hooked, true_stream) in enumerate(zip(outputs, entering, strict=True)):
        # text positions (what the lens reads at every generated token): the hook sees the true stream
        assert torch.equal(hooked[~is_image], true_stream[~is_image]), layer
        image_part_equal = torch.equal(hooked[is_image], true_stream[is_image])
        assert image_part_equal == (layer >= DEEPSTACK_LEVELS), layer


class TestShared(parts.SharedQwenVLTests):
    """Adapter, verify, image tokens, image reaching the decoder, left-padded batches (qwen_vl_parts)."""
