"""Text-only decoders with the Llama layout (Llama, SmolLM2, Mistral, Qwen2, Qwen3)."""

from evolens.models.adapter import ModelAdapter

ADAPTER = ModelAdapter(
    family="causal_lm",
    hf_classes=(
        "LlamaForCausalLM",
        "MistralForCausalLM",
        "Qwen2ForCausalLM",
        "Qwen3ForCausalLM",
    ),
    auto_class="AutoModelForCausalLM",
    decoder_layers=("model.layers",),
    final_norm=("model.norm",),
    embed_tokens=("model.embed_tokens",),
    inputs="text_chat",
    text_config="",
    vision=False,
)
