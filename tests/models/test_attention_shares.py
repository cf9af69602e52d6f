"""The attention readout (``evolens.models.capture.AttentionShares``) against the model's own eager
attention weights, on every family's tiny model: the same probabilities of the current position, split into
image, prompt and generated keys, per head, to 1e-5; each head's shares sum to 1."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evolens.cli import main
from evolens.io.store import read_trace
from evolens.models import LoadedModel
from evolens.models.capture import AttentionShares, attention_module
from evolens.models.image_tokens import image_token_id
from evolens.tracing.tracer import trace
from tests.models.builders import TINY_FAMILIES, TinyFamily
from tests.models.builders.saved import TinyModels


def batch_inputs(loaded: LoadedModel, family: TinyFamily, image: Image.Image, second: Image.Image) -> dict:
    """Two left-padded rows of different lengths (with an image each for a vision model)."""
    images = [image, second] if family.vision else None
    return dict(loaded.build_inputs(list(family.batch_prompts), images))


def image_mask(loaded: LoadedModel, input_ids: torch.Tensor) -> torch.Tensor:
    token = image_token_id(loaded)
    return torch.zeros_like(input_ids, dtype=torch.bool) if token is None else input_ids == token


def eager_shares(loaded: LoadedModel, inputs: dict, image: torch.Tensor) -> list[np.ndarray | None]:
    """Per decoder layer, (B, H, 3) shares of the last position from the eager attention weights (None
    for a layer without self-attention)."""
    model = copy.deepcopy(loaded.model)
    model.set_attn_implementation("eager")
    weights: dict[int, torch.Tensor] = {}
    handles = []
    for index, layer in enumerate(loaded_layers(loaded, model)):
        try:
            module = attention_module(layer)
        except ValueError:
            continue
        handles.append(
            module.register_forward_hook(lambda _m, _a, out, index=index: weights.__setitem__(index, out[1]))
        )
    with torch.no_grad():
        model(**inputs, output_attentions=True, use_cache=False)
    for handle in handles:
        handle.remove()
    result: list[np.ndarray | None] = []
    for index in range(len(loaded.decoder_layers)):
        if index not in weights:
            result.append(None)
            continue
        probs = weights[index][:, :, -1, :].double()  # (B, H, S)
        parts = [image, ~image, torch.zeros_like(image)]
        result.append(torch.stack([(probs * p[:, None].double()).sum(-1) for p in parts], -1).numpy())
    return result


def loaded_layers(loaded: LoadedModel, model: torch.nn.Module) -> list[torch.nn.Module]:
    """The copy's decoder layers (the adapter's path resolved on ``model``)."""
    return list(loaded.adapter.resolve(model, "decoder_layers"))


@pytest.mark.parametrize("family", TINY_FAMILIES, ids=[row.id for row in TINY_FAMILIES])
def test_the_shares_are_the_eager_attention_weights(
    family: TinyFamily,
    tiny_models: TinyModels,
    test_image: Image.Image,
    second_image: Image.Image,
) -> None:
    loaded = tiny_models.get(family, ("cpu", torch.float32))
    inputs = batch_inputs(loaded, family, test_image, second_image)
    image = image_mask(loaded, inputs["input_ids"])
    with torch.no_grad(), AttentionShares(loaded, image) as attention:
        loaded.model(**inputs, use_cache=False)
        ours = attention.pop().numpy()  # (B, L, H, 3)
    expected = eager_shares(loaded, inputs, image)
    assert ours.shape[1] == len(expected)
    for layer, shares in enumerate(expected):
        if shares is None:
            assert np.isnan(ours[:, layer]).all(), f"layer {layer} has no self-attention"
            continue
        np.testing.assert_allclose(ours[:, layer], shares, atol=1e-5, err_msg=f"layer {layer}")
        np.testing.assert_allclose(ours[:, layer].sum(-1), 1.0, atol=1e-5)
    if family.vision and image.any():
        assert np.nanmax(ours[..., 0]) > 0, "some head reads the image"


TRACED = [
    row for row in TINY_FAMILIES if row.id in ("llava", "gemma3", "qwen2_vl", "mllama", "causal_lm/qwen3")
]


@pytest.mark.parametrize("family", TRACED, ids=[row.id for row in TRACED])
def test_traced_shares_sum_to_1_and_the_decode_path_equals_the_teacher_forced_one(
    family: TinyFamily, tiny_models: TinyModels, test_image: Image.Image, tmp_path: Path
) -> None:
    """Generating (one pass per token, with the KV cache) and scoring the same tokens (one pass, many
    positions) read the same attention; the prefill attends to no generated token, later steps may."""
    loaded = tiny_models.get(family, ("cpu", torch.float32))
    images = None
    if family.vision:
        test_image.save(tmp_path / "a.png")
        images = tmp_path / "a.png"
    trace(loaded, images, family.batch_prompts[0], out=tmp_path / "gen", max_new_tokens=4)
    assert main(["score", "--from", str(tmp_path / "gen"), "--out", str(tmp_path / "score")]) == 0
    generated, scored = (read_trace(tmp_path / name).steps for name in ("gen", "score"))
    for column in ("attn_image", "attn_prompt", "attn_generated"):
        np.testing.assert_allclose(
            np.stack(generated[column]), np.stack(scored[column]), atol=1e-5, err_msg=column
        )
    shares = np.stack([np.stack(generated[c]) for c in ("attn_image", "attn_prompt", "attn_generated")], -1)
    self_attention = ~np.isnan(shares).any(axis=(0, 2))
    np.testing.assert_allclose(shares[:, self_attention].sum(-1), 1.0, atol=1e-5)
    assert (shares[0, self_attention, 2] == 0).all(), "the prefill attends to no generated token"
    assert (shares[1:, self_attention, 2] > 0).all()
    heads = np.stack([np.stack(h) for h in generated["attn_image_heads"]])
    assert heads.dtype == np.uint8 and heads.shape[:2] == shares.shape[:2]
    np.testing.assert_allclose(
        heads.mean(-1)[:, self_attention] / 255, shares[:, self_attention, 0], atol=3e-3
    )


def test_the_analysis_draws_the_attention_curve(
    tiny_models: TinyModels, test_image: Image.Image, tmp_path: Path
) -> None:
    """A trace with the attention readout gets ``attn_image`` among summary.json's per-layer statistics
    (layers 1..L) and a panel of the layer-curves figure; one without it (an older trace) does not."""
    from evolens.analysis.options import AnalyzeOptions
    from evolens.analysis.results import analyze_trace
    from evolens.io.trace import load_trace
    from evolens.plots.draw import draw

    (llava,) = [row for row in TINY_FAMILIES if row.id == "llava"]
    loaded = tiny_models.get(llava, ("cpu", torch.float32))
    test_image.save(tmp_path / "a.png")
    trace(loaded, tmp_path / "a.png", "Describe.", out=tmp_path / "t", max_new_tokens=4)
    loaded_trace = load_trace(tmp_path / "t")
    results = analyze_trace(loaded_trace, AnalyzeOptions(n_boot=20))
    entry = results.summary["distribution"]["attn_image"]
    assert entry["layers"] == list(range(1, loaded.n_layers + 1)) and entry["label"].startswith("attention")
    np.testing.assert_allclose(
        entry["all"]["mean"], np.stack(loaded_trace.steps["attn_image"]).mean(0), rtol=1e-5
    )
    curves = next(f for f in results.figures if f.name == "layer_curves")
    assert len(draw(curves.view, results.stages).axes) >= 7
    older = load_trace(tmp_path / "t")
    older.steps = older.steps.drop(columns=["attn_image"])
    assert "attn_image" not in analyze_trace(older, AnalyzeOptions(n_boot=20)).summary["distribution"]
