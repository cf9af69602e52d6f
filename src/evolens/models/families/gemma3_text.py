"""Gemma 3 text-only decoders (``Gemma3ForCausalLM``: gemma-3-270m, gemma-3-1b).

Embeddings scaled by sqrt(d) inside the embedding module, final norm x * (1 + w), optional logit soft-cap.
"""

from evolens.models.adapter import ModelAdapter

ADAPTER = ModelAdapter(
    family="gemma3_text",
    hf_classes=("Gemma3ForCausalLM",),
    auto_class="AutoModelForCausalLM",
    decoder_layers=("model.layers",),
    final_norm=("model.norm",),
    embed_tokens=("model.embed_tokens",),
    inputs="text_chat",
    text_config="",
    logit_softcap="final_logit_softcapping",
    vision=False,
)
