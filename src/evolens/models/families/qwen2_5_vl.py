"""Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``): windowed-attention ViT, patch merger, Qwen2 decoder.

Same decoder layout and M-RoPE position ids as Qwen2-VL; only the vision tower differs.
"""

from evolens.models.adapter import ModelAdapter

ADAPTER = ModelAdapter(
    family="qwen2_5_vl",
    hf_classes=("Qwen2_5_VLForConditionalGeneration",),
    auto_class="AutoModelForImageTextToText",
    decoder_layers=("model.language_model.layers",),
    final_norm=("model.language_model.norm",),
    embed_tokens=("model.language_model.embed_tokens",),
    inputs="processor_chat",
    image_layout="merged_patches",
)
