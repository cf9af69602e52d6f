"""InstructBLIP (``InstructBlipForConditionalGeneration``) with a decoder-only LM (Vicuna, OPT-style Llama).

The Q-Former's query outputs are prepended to the prompt as ``num_query_tokens`` image tokens. There is no
chat template: the prompt is the question itself. Flan-T5 variants are encoder-decoder models and have no
decoder layer list at these paths, so loading them fails with a clear adapter error.
"""

from evolens.models.adapter import ModelAdapter

ADAPTER = ModelAdapter(
    family="instructblip",
    hf_classes=("InstructBlipForConditionalGeneration",),
    auto_class="AutoModelForImageTextToText",
    decoder_layers=("language_model.model.layers",),
    final_norm=("language_model.model.norm",),
    unembedding=("language_model.lm_head",),
    embed_tokens=("language_model.model.embed_tokens",),
    inputs="processor_prompt",
    image_layout="queries",
    prompt_template="{prompt}",
)
