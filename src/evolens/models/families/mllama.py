"""Mllama / Llama 3.2 Vision (``MllamaForConditionalGeneration``): the image enters through cross-attention.

There are no image tokens in the sequence: a ``<|image|>`` marker sets the cross-attention mask, and every
few decoder layers is a cross-attention layer reading the vision tower's output (11B: 40 layers, cross
attention at 3, 8, ..., 38). The lens covers every layer, self- and cross-attention alike.
"""

from evolens.models.adapter import ModelAdapter

ADAPTER = ModelAdapter(
    family="mllama",
    hf_classes=("MllamaForConditionalGeneration",),
    auto_class="AutoModelForImageTextToText",
    decoder_layers=("model.language_model.layers",),
    final_norm=("model.language_model.norm",),
    embed_tokens=("model.language_model.embed_tokens",),
    inputs="processor_chat",
    images_per_prompt=True,
)
