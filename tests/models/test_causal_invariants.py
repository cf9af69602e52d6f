"""The causal interventions' invariants, on the demo and every family's tiny model whose image occupies
sequence positions: an intervention that changes nothing changes nothing, patching a run into itself is the
run, cutting every position off the image makes the image irrelevant, and the last layer patched at every
position is the source run's readout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from evolens.data.resolve import Sample
from evolens.interventions.causal import CausalPlan, CausalRunner, Target, ablation, patching
from evolens.models import LoadedModel
from evolens.models.capture import LayerCapture, StateEdit
from evolens.models.image_tokens import image_positions, image_token_id
from evolens.tracing.conditions import ConditionedImages
from evolens.tracing.scoring import forward
from tests.models.builders import over, tiny_families

TOLERANCE = 1e-5


def targets_for(loaded: LoadedModel, images: list[Path], prompt: str) -> list[Target]:
    """Two samples whose target is the second token of a fixed response (any tokens will do)."""
    ids = loaded.tokenizer("It is red", add_special_tokens=False)["input_ids"][:2]
    return [
        Target(Sample(f"s{i}", path, prompt), list(ids), ids[-1], [ids[0]]) for i, path in enumerate(images)
    ]


@pytest.fixture
def two_images(tmp_path: Path, test_image: Image.Image, second_image: Image.Image) -> list[Path]:
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    test_image.save(paths[0])
    second_image.resize(test_image.size).save(paths[1])
    return paths


def check_invariants(loaded: LoadedModel, images: list[Path], prompt: str) -> None:
    if image_token_id(loaded) is None:
        pytest.skip(
            f"{loaded.adapter.family}: the image enters through cross-attention, not sequence positions"
        )
    targets = targets_for(loaded, images, prompt)
    samples = [t.sample for t in targets]
    runner = CausalRunner(loaded, CausalPlan("knockout"), samples)
    n = loaded.n_layers
    batch = runner.layout(targets, runner.real_images)
    clean, states = runner.run(targets, batch, lens_layers=range(n + 1))
    ids = batch.inputs["input_ids"]
    keys = image_positions(loaded, ids)
    nobody = torch.zeros_like(keys)
    # a knockout that blocks nothing, in every layer, is the clean run
    same, _ = runner.run(targets, batch, knockout=(range(1, n + 1), nobody, keys))
    torch.testing.assert_close(same.logprob, clean.logprob, atol=TOLERANCE, rtol=0)
    # patching the clean run's own states into it, every layer, is the clean run
    patch = patching(runner.target_positions(batch), states, None)(range(n + 1))
    itself, _ = runner.run(targets, batch, edit=(range(n + 1), patch))
    torch.testing.assert_close(itself.logprob, clean.logprob, atol=TOLERANCE, rtol=0)
    # no position may read the image in any layer: what the image shows no longer matters
    everyone = torch.ones_like(keys)
    blank = runner.layout(targets, ConditionedImages("blank", samples))
    assert torch.equal(image_positions(loaded, blank.inputs["input_ids"]), keys), "same layout"
    cut, _ = runner.run(targets, batch, knockout=(range(1, n + 1), everyone, keys))
    cut_blank, _ = runner.run(targets, blank, knockout=(range(1, n + 1), everyone, keys))
    torch.testing.assert_close(cut.logprob, cut_blank.logprob, atol=TOLERANCE, rtol=0)
    shown_blank = runner.run(targets, blank, lens_layers=range(n + 1))[1]
    assert not torch.equal(states, shown_blank), "the image matters (else the test above proves nothing)"
    # the image tokens ablated from the embeddings on: the image's content no longer matters either
    ablated, _ = runner.run(targets, batch, edit=(range(n), ablation(keys, None)))
    ablated_blank, _ = runner.run(targets, blank, edit=(range(n), ablation(keys, None)))
    torch.testing.assert_close(ablated.logprob, ablated_blank.logprob, atol=TOLERANCE, rtol=0)
    # the last layer patched at every position from the clean run: the blank run reads as the clean one
    every = torch.arange(ids.shape[1])[None].expand(ids.shape[0], -1)
    with torch.inference_mode(), LayerCapture(loaded, [n], every) as capture:
        forward(loaded, batch.inputs)
        source = capture.pop()[:, 0]  # (B, T, d)

    def whole(layer: int, hidden: torch.Tensor) -> torch.Tensor:
        return source.to(hidden.device, hidden.dtype)

    with torch.inference_mode(), StateEdit(loaded, [n], whole):
        patched, _ = runner.run(targets, blank)
    torch.testing.assert_close(patched.logprob, clean.logprob, atol=TOLERANCE, rtol=0)


@over(tiny_families(vision=True))
def test_causal_invariants_on_every_family(tiny_model: LoadedModel, two_images: list[Path]) -> None:
    check_invariants(tiny_model, two_images, "Describe it.")


def test_causal_invariants_on_the_demo(demo_vlm: LoadedModel, two_images: list[Path]) -> None:
    check_invariants(demo_vlm, two_images, "What is the color of the shape?")
