"""LLaVA-OneVision (``LlavaOnevisionForConditionalGeneration``): SigLIP, any-res tiles, Qwen2 decoder."""

from evolens.models.adapter import ModelAdapter

ADAPTER = ModelAdapter(
    family="llava_onevision",
    hf_classes=("LlavaOnevisionForConditionalGeneration",),
    auto_class="AutoModelForImageTextToText",
    decoder_layers=("model.language_model.layers",),
    final_norm=("model.language_model.norm",),
    embed_tokens=("model.language_model.embed_tokens",),
    inputs="processor_chat",
    image_layout="anyres",
)
