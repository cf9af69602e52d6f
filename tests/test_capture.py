"""Capturing lens-layer states during generation: which state each lens layer is, one pass per step,
and the streamed tokens being the generated ones."""

from __future__ import annotations

import torch

from evolens.models import LoadedModel
from evolens.models.capture import LayerCapture, TokenStreamer


def test_lens_layers_are_the_models_hidden_states(tiny_llama: LoadedModel) -> None:
    inputs = tiny_llama.build_inputs(["Name a colour.", "What is the capital of France?"])
    with LayerCapture(tiny_llama) as capture, torch.inference_mode():
        output = tiny_llama.model(**inputs, output_hidden_states=True)
        states = capture.pop()
    hidden = output.hidden_states  # L+1 entries; the last one is already final-normed
    assert states.shape == (2, tiny_llama.n_layers + 1, 64)
    for layer in range(tiny_llama.n_layers):
        torch.testing.assert_close(states[:, layer], hidden[layer][:, -1])
    torch.testing.assert_close(tiny_llama.final_norm(states[:, -1]), hidden[-1][:, -1])


def test_layer_zero_is_the_embedding_of_the_token_fed_in(tiny_llama: LoadedModel) -> None:
    inputs = tiny_llama.build_inputs(["Name a colour."])
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    with LayerCapture(tiny_llama) as capture, torch.inference_mode():
        streamer = TokenStreamer(lambda tokens: seen.append((capture.pop(), tokens)))
        emitted = tiny_llama.generate(inputs, max_new_tokens=4, streamer=streamer)
        embed = tiny_llama.embed_tokens
        fed = [inputs["input_ids"][0, -1], *emitted[0, :-1]]
        for step, (states, _tokens) in enumerate(seen):
            torch.testing.assert_close(states[0, 0], embed(fed[step].view(1))[0], msg=f"step {step}")


def test_one_pass_per_streamed_step_and_hooks_removed(tiny_llama: LoadedModel) -> None:
    inputs = tiny_llama.build_inputs(["Hi", "Name three colours, please."])
    layers = tiny_llama.decoder_layers
    hooks_before = [(len(layer._forward_pre_hooks), len(layer._forward_hooks)) for layer in layers]
    streamed: list[torch.Tensor] = []
    with LayerCapture(tiny_llama) as capture:
        streamer = TokenStreamer(lambda tokens: (capture.pop(), streamed.append(tokens)))
        emitted = tiny_llama.generate(inputs, max_new_tokens=5, streamer=streamer)
        assert not capture._done  # every pass was consumed by its token
    assert torch.equal(torch.stack(streamed, dim=1), emitted)
    assert [(len(layer._forward_pre_hooks), len(layer._forward_hooks)) for layer in layers] == hooks_before
