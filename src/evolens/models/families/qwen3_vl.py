"""Qwen3-VL (``Qwen3VLForConditionalGeneration``): ViT with DeepStack, interleaved M-RoPE, Qwen3 decoder.

DeepStack adds vision features from intermediate ViT layers to the *image positions* of the first k decoder
layers' outputs (k = len(vision_config.deepstack_visual_indexes)), outside the layer modules. A layer's
output hook therefore sees, at image positions of layers 0..k-1, the stream before that addition; at text
positions (every generated token, every position the lens reads during generation) it is the true residual
stream. tests/models/test_family_qwen3_vl.py checks both facts.
"""

from evolens.models.adapter import ModelAdapter

ADAPTER = ModelAdapter(
    family="qwen3_vl",
    hf_classes=("Qwen3VLForConditionalGeneration",),
    auto_class="AutoModelForImageTextToText",
    decoder_layers=("model.language_model.layers",),
    final_norm=("model.language_model.norm",),
    embed_tokens=("model.language_model.embed_tokens",),
    inputs="processor_chat",
    image_layout="merged_patches",
    notes="DeepStack adds vision features to image positions after each of the first k layers",
)
