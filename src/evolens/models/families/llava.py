"""LLaVA-1.5 (``LlavaForConditionalGeneration``): CLIP tower, MLP projector, Llama/Vicuna decoder."""

from evolens.models.adapter import ModelAdapter

ADAPTER = ModelAdapter(
    family="llava",
    hf_classes=("LlavaForConditionalGeneration",),
    auto_class="AutoModelForImageTextToText",
    decoder_layers=("model.language_model.layers", "language_model.model.layers"),
    final_norm=("model.language_model.norm", "language_model.model.norm"),
    embed_tokens=("model.language_model.embed_tokens", "language_model.model.embed_tokens"),
    inputs="processor_chat",
    image_layout="grid",
)
