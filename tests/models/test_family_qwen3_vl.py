"""Qwen3-VL's DeepStack: what it does to the layer outputs that evolens hooks (see the adapter's docstring).

The model's forward adds vision features to the image positions of the first k decoder layers' outputs
after each layer returns, so a forward hook on such a layer sees the stream before the addition at image
positions, and the true residual stream at text positions.
"""

from __future__ import annotations

import torch
from PIL import Image

from evolens.models import LoadedModel
from evolens.models.capture import layer_output as last_layer_output
from tests.models.builders import over, tiny_families
from tests.models.builders.qwen_vl import DEEPSTACK_LEVELS


@over(tiny_families("qwen3_vl"))
def test_deepstack_changes_image_positions_only_after_the_layer_hook(
    tiny_model: LoadedModel, test_image: Image.Image
) -> None:
    """Layer l's output hook vs. the stream that really enters layer l+1 (or the final norm)."""
    loaded = tiny_model
    inputs = loaded.build_inputs(["Describe this image."], [test_image])
    is_image = (inputs["input_ids"][0] == loaded.model.config.image_token_id).to(loaded.device)
    outputs: list[torch.Tensor] = []
    entering: list[torch.Tensor] = []
    next_modules = [*list(loaded.decoder_layers)[1:], loaded.final_norm]
    handles = [
        layer.register_forward_hook(lambda _m, _a, out: outputs.append(last_layer_output(out)[0]))
        for layer in loaded.decoder_layers
    ]
    handles += [
        module.register_forward_pre_hook(lambda _m, args: entering.append(args[0][0]))
        for module in next_modules
    ]
    try:
        with torch.inference_mode():
            loaded.model(**inputs, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    assert len(outputs) == len(entering) == loaded.n_layers
    for layer, (hooked, true_stream) in enumerate(zip(outputs, entering, strict=True)):
        # text positions (what the lens reads at every generated token): the hook sees the true stream
        assert torch.equal(hooked[~is_image], true_stream[~is_image]), layer
        image_part_equal = torch.equal(hooked[is_image], true_stream[is_image])
        assert image_part_equal == (layer >= DEEPSTACK_LEVELS), layer
