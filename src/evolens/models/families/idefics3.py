"""Idefics3 and SmolVLM: SigLIP tower on image tiles, pixel-shuffle connector, Llama/SmolLM2 decoder.

SmolVLM-256M/500M/2.2B checkpoints declare ``Idefics3ForConditionalGeneration``; SmolVLM2 declares
``SmolVLMForConditionalGeneration``. Both keep the decoder at ``model.text_model``.
"""

from evolens.models.adapter import ModelAdapter

ADAPTER = ModelAdapter(
    family="idefics3",
    hf_classes=("Idefics3ForConditionalGeneration", "SmolVLMForConditionalGeneration"),
    auto_class="AutoModelForImageTextToText",
    decoder_layers=("model.text_model.layers",),
    final_norm=("model.text_model.norm",),
    embed_tokens=("model.text_model.embed_tokens",),
    inputs="processor_chat",
    image_layout="tiles",
    images_per_prompt=True,
)
