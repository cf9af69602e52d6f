"""The logit lens: the unembedding identity, the last layer equal to the model's logits during a real
generation, the raw mode, and fp32 lens numbers from a bf16 model."""

from __future__ import annotations

import copy

import pytest
import torch

from evolens.errors import UsageError
from evolens.lenses.logit import check_lens_mode, logit_lens
from evolens.models import LoadedModel
from evolens.models.capture import LayerCapture, TokenStreamer
from evolens.models.load import from_model
from evolens.models.readout import Unembed
from evolens.tracing.engine import StepMetricsEngine


def generate_with_states(
    loaded: LoadedModel, prompts: list[str], steps: int
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """Greedy generation: per step the captured (B, L+1, d) states, the model's logits (B, V), and
    the emitted tokens (B, steps)."""
    inputs = loaded.build_inputs(prompts)
    states: list[torch.Tensor] = []
    with LayerCapture(loaded) as capture, torch.inference_mode():
        streamer = TokenStreamer(lambda _tokens: states.append(capture.pop()))
        output = loaded.model.generate(
            **inputs,
            **loaded.generation_kwargs(max_new_tokens=steps),
            streamer=streamer,
            output_logits=True,
            return_dict_in_generate=True,
        )
    return states, list(output.logits), output.sequences[:, inputs["input_ids"].shape[1] :]


@pytest.mark.parametrize("model_name", ["tiny_llama", "demo_text"])
@pytest.mark.parametrize("mode", ["normed", "raw"])
def test_last_lens_layer_is_the_logits_at_every_step(
    request: pytest.FixtureRequest, model_name: str, mode: str
) -> None:
    loaded: LoadedModel = request.getfixturevalue(model_name)
    states, logits, emitted = generate_with_states(
        loaded, ["Name a colour.", "What is two plus two?"], steps=5
    )
    assert len(states) == len(logits) == emitted.shape[1]
    lens = loaded.unembed
    for step, (state, model_logits) in enumerate(zip(states, logits, strict=True)):
        assert state.shape == (2, loaded.n_layers + 1, loaded.model.config.hidden_size)
        last = logit_lens(lens, mode).layer_logits(state)[:, -1]
        assert (last - model_logits.float()).abs().max().item() <= 1e-4, f"step {step}"
        assert torch.equal(last.argmax(-1), emitted[:, step]), f"greedy top-1 at step {step}"


def test_unembed_is_unembedding_of_final_norm(tiny_llama: LoadedModel) -> None:
    torch.manual_seed(0)
    hidden = torch.randn(3, 5, tiny_llama.model.config.hidden_size)
    with torch.inference_mode():
        by_hand = tiny_llama.model.lm_head(tiny_llama.model.model.norm(hidden))
        raw_by_hand = hidden @ tiny_llama.model.lm_head.weight.T
        normed = logit_lens(tiny_llama.unembed, "normed").layer_logits(hidden)
        raw = logit_lens(tiny_llama.unembed, "raw").layer_logits(hidden)
    torch.testing.assert_close(normed, by_hand)
    torch.testing.assert_close(raw[:, :-1], raw_by_hand[:, :-1])
    torch.testing.assert_close(raw[:, -1], by_hand[:, -1])  # the paper's last layer is already normed
    assert not torch.allclose(raw[:, 0], normed[:, 0], atol=1e-3)


def test_bf16_model_gets_fp32_lens_numbers(tiny_llama: LoadedModel) -> None:
    half = from_model(
        copy.deepcopy(tiny_llama.model).to(torch.bfloat16), tiny_llama.tokenizer, name="tiny-bf16"
    )
    lens = half.unembed
    assert half.dtype == torch.bfloat16
    assert lens.weight.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in lens.final_norm.parameters())
    assert all(p.dtype == torch.bfloat16 for p in half.final_norm.parameters())  # the model is untouched
    states, logits, emitted = generate_with_states(half, ["Name a colour."], steps=3)
    metrics = StepMetricsEngine(logit_lens(lens))(states[0], emitted[:, 0])
    assert metrics.prob.dtype == metrics.entropy.dtype == metrics.jsd_next.dtype == torch.float32
    assert states[0].dtype == torch.bfloat16
    h = states[0].double()  # the lens written out in float64 with the bf16 model's own weights
    normed = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + half.model.config.rms_norm_eps)
    reference = (normed * half.final_norm.weight.double()) @ half.model.lm_head.weight.double().T
    torch.testing.assert_close(
        logit_lens(lens).layer_logits(states[0]).double(), reference, atol=1e-4, rtol=1e-5
    )
    assert (logit_lens(lens).layer_logits(states[0])[:, -1] - logits[0].float()).abs().max() < 0.1


def test_unknown_lens_mode_is_a_usage_error() -> None:
    assert check_lens_mode("raw") == "raw"
    with pytest.raises(UsageError, match="unknown lens mode 'tuned'"):
        check_lens_mode("tuned")


def test_unembed_shares_fp32_weights(tiny_llama: LoadedModel) -> None:
    lens = Unembed.from_model(tiny_llama)
    assert lens.weight.data_ptr() == tiny_llama.model.lm_head.weight.data_ptr()
    assert lens.final_norm is tiny_llama.final_norm
