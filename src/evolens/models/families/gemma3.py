"""Gemma 3 multimodal (``Gemma3ForConditionalGeneration``): SigLIP tower, pooled projector, Gemma 3 decoder.

Gemma's embedding module scales by sqrt(d), so the input of decoder layer 0 already includes it; its final
norm is x * (1 + w). No logit soft-cap: Gemma 3 checkpoints set none, and this class ignores
``final_logit_softcapping`` even when a config sets it (transformers 5.23; ``Gemma3ForCausalLM`` applies it),
so the lens must not cap either. tests/models/test_family_gemma3.py pins that down.
"""

from evolens.models.adapter import ModelAdapter

ADAPTER = ModelAdapter(
    family="gemma3",
    hf_classes=("Gemma3ForConditionalGeneration",),
    auto_class="AutoModelForImageTextToText",
    decoder_layers=("model.language_model.layers",),
    final_norm=("model.language_model.norm",),
    embed_tokens=("model.language_model.embed_tokens",),
    inputs="processor_chat",
    image_layout="grid",
    images_per_prompt=True,  # a flat list of 2 images reads as 2 images for the first prompt
)
