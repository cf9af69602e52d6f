"""The built-in demo VLM (``evolens.models.demo.model.DemoVLM``): its decoder is a Hugging Face Llama."""

from evolens.models.adapter import ModelAdapter

ADAPTER = ModelAdapter(
    family="demo",
    hf_classes=("DemoVLM",),
    auto_class="",
    decoder_layers=("decoder.model.layers",),
    final_norm=("decoder.model.norm",),
    unembedding=("decoder.lm_head",),
    embed_tokens=("decoder.model.embed_tokens",),
    inputs="processor_chat",
    image_layout="cells",
    text_config="",
    vision=True,
    image_first=True,
    notes="EfficientNet-Lite0 features -> MLP projector -> SmolLM2-135M-Instruct; built in, no hub needed",
)
