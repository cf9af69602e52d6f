"""PaliGemma 1 and 2 (``PaliGemmaForConditionalGeneration``): SigLIP tower, linear projector, Gemma decoder.

No chat template: the processor lays out ``<image>`` x n, BOS, the prompt and "\\n" itself, and returns
``token_type_ids`` (prefix = 0, attended bidirectionally); a scored response is the causal suffix (1), as
generated tokens are. PaliGemma 2's Gemma-2 decoder soft-caps its logits.
"""

from evolens.models.adapter import ModelAdapter

ADAPTER = ModelAdapter(
    family="paligemma",
    hf_classes=("PaliGemmaForConditionalGeneration",),
    auto_class="AutoModelForImageTextToText",
    decoder_layers=("model.language_model.layers",),
    final_norm=("model.language_model.norm",),
    embed_tokens=("model.language_model.embed_tokens",),
    inputs="processor_prompt",
    image_layout="grid",
    prompt_template="<image>{prompt}",
    logit_softcap="final_logit_softcapping",
    response_inputs={"token_type_ids": 1},
)
