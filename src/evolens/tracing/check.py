"""The trace engine's invariants, checked on every model family by ``evolens.verify``.

``trace_last_layer_is_logits``: trace a short greedy generation, then generate again returning the model's
own logits: the recorded last-layer lens must give the emitted tokens rank 0, their probabilities and the
top-k must match the logits' softmax, and the streamed tokens must be the generated ones.

``scoring_reproduces_the_trace``: score the traced generation again by teacher forcing (one forward pass,
``evolens.tracing.scoring``): same tokens, and every layer's probability of each within the tolerance of
the trace's (the cached decode and the single pass round differently, nothing more).
"""

from __future__ import annotations

import torch
from PIL import Image

from evolens.models.check import CheckResult
from evolens.models.loaded import LoadedModel
from evolens.tracing.spec import TraceSpec
from evolens.tracing.tracer import Tracer

TOLERANCE = {torch.float32: 1e-4}
"""Max abs difference of probabilities in fp32; half precision gets ``HALF_TOLERANCE``."""
HALF_TOLERANCE = 2e-2


def trace_matches_logits(
    loaded: LoadedModel, image: Image.Image | None, prompt: str, steps: int
) -> CheckResult:
    """The max abs difference between the traced last-layer probabilities and softmax(logits); fails when
    it exceeds the tolerance, the last layer's top-1 is not the emitted token, or the tokens differ."""
    inputs = loaded.build_inputs([prompt], [image] if loaded.adapter.vision else None)
    tracer = Tracer(loaded, TraceSpec(max_new_tokens=steps, top_k=3))
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
    if emitted[: len(tokens)] != tokens:
        return CheckResult.of(False, f"traced tokens {tokens} != generated {emitted[: len(tokens)]}")
    ranks, token_probs, top_probs = metrics["rank"], metrics["prob"], metrics["topk_probs"]
    assert ranks is not None and token_probs is not None and top_probs is not None
    if not (ranks[:, -1] == 0).all():
        return CheckResult.of(False, f"last-layer ranks of the emitted tokens: {ranks[:, -1].tolist()}")
    probs = torch.softmax(torch.stack(output.logits)[: len(tokens), 0].float(), dim=-1).cpu()
    expected_prob = probs[torch.arange(len(tokens)), torch.tensor(tokens)]
    expected_top = probs.topk(top_probs.shape[-1], dim=-1).values
    diff = max(
        (torch.from_numpy(token_probs[:, -1]) - expected_prob).abs().max().item(),
        (torch.from_numpy(top_probs[:, -1]) - expected_top).abs().max().item(),
    )
    return CheckResult.within(diff, TOLERANCE.get(loaded.dtype, HALF_TOLERANCE))


def scoring_matches_trace(
    loaded: LoadedModel, image: Image.Image | None, prompt: str, steps: int
) -> CheckResult:
    """The max abs difference, over steps and layers, between the probabilities of the emitted tokens as
    traced during generation and as scored by teacher forcing; fails beyond the tolerance or when the
    scored tokens differ."""
    inputs = loaded.build_inputs([prompt], [image] if loaded.adapter.vision else None)
    tracer = Tracer(loaded, TraceSpec(max_new_tokens=steps, top_k=3))
    generated = tracer.generate(inputs, ["check"])
    tokens = generated.token_ids(0)
    scored = tracer.score(inputs, ["check"], [tokens])
    if scored.token_ids(0) != tokens:
        return CheckResult.of(False, f"scored tokens {scored.token_ids(0)} != generated {tokens}")
    traced_prob, scored_prob = generated.metrics(0)["prob"], scored.metrics(0)["prob"]
    assert traced_prob is not None and scored_prob is not None
    diff = float(abs(traced_prob - scored_prob).max())
    return CheckResult.within(diff, TOLERANCE.get(loaded.dtype, HALF_TOLERANCE))


TRACE_CHECKS = {
    "trace_last_layer_is_logits": trace_matches_logits,
    "scoring_reproduces_the_trace": scoring_matches_trace,
}
