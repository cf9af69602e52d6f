"""The trace engine's invariant, checked on every model family by ``evolens.models.verify``.

Trace a short greedy generation, then generate again returning the model's own logits: the recorded
last-layer lens must give the emitted tokens rank 0, their probabilities and the top-k must match the
logits' softmax, and the streamed tokens must be the generated ones.
"""

from __future__ import annotations

import torch
from PIL import Image

from evolens.models.loaded import LoadedModel

TOLERANCE = {torch.float32: 1e-4}
"""Max abs difference of probabilities in fp32; half precision gets ``HALF_TOLERANCE``."""
HALF_TOLERANCE = 2e-2


def trace_matches_logits(
    loaded: LoadedModel, image: Image.Image | None, prompt: str, steps: int
) -> float | bool:
    """Max abs difference between the traced last-layer probabilities and softmax(logits), or False when
    it exceeds the tolerance or the last layer's top-1 is not the emitted token."""
    from evolens.trace import Tracer, TraceSettings

    inputs = loaded.build_inputs([prompt], [image] if loaded.adapter.vision else None)
    tracer = Tracer(loaded, TraceSettings(max_new_tokens=steps, top_k=3))
    recorder = tracer.generate(inputs, ["check"])
    metrics = recorder.metrics(0)
    with torch.inference_mode():
        output = loaded.model.generate(
            **inputs,
            **loaded.generation_kwargs(max_new_tokens=steps),
            output_logits=True,
            return_dict_in_generate=True,
        )
    emitted = output.sequences[0, inputs["input_ids"].shape[1] :].tolist()
    tokens = recorder.token_ids(0)
    if emitted[: len(tokens)] != tokens or not (metrics["rank"][:, -1] == 0).all():
        return False
    probs = torch.softmax(torch.stack(output.logits)[: len(tokens), 0].float(), dim=-1).cpu()
    expected_prob = probs[torch.arange(len(tokens)), torch.tensor(tokens)]
    expected_top = probs.topk(metrics["topk_probs"].shape[-1], dim=-1).values
    diff = max(
        (torch.from_numpy(metrics["prob"][:, -1]) - expected_prob).abs().max().item(),
        (torch.from_numpy(metrics["topk_probs"][:, -1]) - expected_top).abs().max().item(),
    )
    return diff if diff <= TOLERANCE.get(loaded.dtype, HALF_TOLERANCE) else False


TRACE_CHECKS = {"trace_last_layer_is_logits": trace_matches_logits}
