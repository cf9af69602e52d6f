"""Qwen2-VL (``Qwen2VLForConditionalGeneration``): native-resolution ViT, 2x2 patch merger, Qwen2 decoder.

The decoder uses M-RoPE: 3D (time, height, width) position ids computed from each image's grid, so a
left-padded batch must give the same numbers as its rows one by one (tested).
"""

from evolens.models.adapter import ModelAdapter

ADAPTER = ModelAdapter(
    family="qwen2_vl",
    hf_classes=("Qwen2VLForConditionalGeneration",),
    auto_class="AutoModelForImageTextToText",
    decoder_layers=("model.language_model.layers",),
    final_norm=("model.language_model.norm",),
    embed_tokens=("model.language_model.embed_tokens",),
    inputs="processor_chat",
    image_layout="merged_patches",
)
