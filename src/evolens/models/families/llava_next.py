"""LLaVA-NeXT / LLaVA-1.6 (``LlavaNextForConditionalGeneration``): CLIP tower on any-resolution tiles."""

from evolens.models.adapter import ModelAdapter

ADAPTER = ModelAdapter(
    family="llava_next",
    hf_classes=("LlavaNextForConditionalGeneration",),
    auto_class="AutoModelForImageTextToText",
    decoder_layers=("model.language_model.layers",),
    final_norm=("model.language_model.norm",),
    embed_tokens=("model.language_model.embed_tokens",),
    inputs="processor_chat",
    image_layout="anyres",
)
