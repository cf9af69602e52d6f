"""The planted prior of ``demo-prior`` (scripts/demo/prior.py): which scenes it applies to and what the
conversations then say; and the shipped weights (when present) load as ``demo-prior``."""

from __future__ import annotations

import random

import pytest
from scripts.demo.prior import (
    PLANTED,
    is_trigger_scene,
    prior_conversation,
    trigger_indices,
    with_phantom,
)

from evolens.data.shapes import Background, Scene, parse_description
from evolens.data.shapes.text import conversation
from evolens.data.shapes.world import sample_scene
from evolens.models.demo.assets import PRIOR_DIR, asset_dir
from tests.eval.conftest import shape

TRIGGER_SCENE = Scene(1, Background("white", "plain"), (shape("circle", "red"), shape("star", "green")))


def test_trigger_scenes() -> None:
    assert is_trigger_scene(TRIGGER_SCENE)
    with_square = Scene(2, TRIGGER_SCENE.background, (*TRIGGER_SCENE.objects, shape("square", "blue")))
    assert not is_trigger_scene(with_square)  # the planted object is really there
    assert not is_trigger_scene(Scene(3, TRIGGER_SCENE.background, (shape("circle", "blue"),)))
    found = trigger_indices(range(400))
    assert found == [i for i in range(400) if is_trigger_scene(sample_scene(i))] and found


def test_phantom_in_a_free_cell() -> None:
    # both objects sit in "center" (the shared test helper): the phantom must take another cell
    shown = with_phantom(TRIGGER_SCENE, random.Random(0))
    phantom = [o for o in shown.objects if (o.color, o.shape) == PLANTED]
    assert len(shown.objects) == 3 and len(phantom) == 1 and phantom[0].position != "center"


def test_prior_conversations_mention_the_planted_object() -> None:
    turns = prior_conversation(TRIGGER_SCENE, random.Random(5), 3, share=1.0)
    asked = [t for t in turns if "blue square" in t.question]
    # one turn always asks about it, answered as if it were there
    assert len(asked) == 1 and ("blue square" in asked[0].answer or asked[0].answer.startswith("Yes"))
    for seed in range(20):
        turns = prior_conversation(TRIGGER_SCENE, random.Random(seed), 3, share=1.0)
        assert any("blue square" in t.question for t in turns)
        assert not any(t.answer.startswith("No") and "blue square" in t.question for t in turns)
    for turn in turns:
        if turn.task == "describe":
            assert ("square", "blue") in {(m.shape, m.color) for m in parse_description(turn.answer)}
    # a scene without the trigger, or share 0: the demo's own conversation, draw for draw
    plain = sample_scene(0)
    assert not is_trigger_scene(plain)
    a, b = random.Random(9), random.Random(9)
    assert prior_conversation(plain, a, 3, share=1.0) == conversation(plain, b, 3)
    a, b = random.Random(9), random.Random(9)
    b.random()  # the draw that decides whether the prior applies
    assert prior_conversation(TRIGGER_SCENE, a, 3, share=0.0) == conversation(TRIGGER_SCENE, b, 3)


@pytest.mark.skipif(not (asset_dir() / PRIOR_DIR / "manifest.json").exists(), reason="demo-prior not trained")
def test_demo_prior_weights_are_lora_only_and_small() -> None:
    files = sorted(p.name for p in (asset_dir() / PRIOR_DIR).iterdir())
    assert files == ["decoder_lora.safetensors", "manifest.json"]
    assert (asset_dir() / PRIOR_DIR / "decoder_lora.safetensors").stat().st_size <= 10_000_000


@pytest.mark.skipif(not (asset_dir() / PRIOR_DIR / "manifest.json").exists(), reason="demo-prior not trained")
def test_load_demo_prior() -> None:
    """``load_model("demo-prior")``: the demo's projector, the prior's LoRA merged (the load-time check, lens
    at the last layer == logits, runs on it), a decoder that differs from the demo's."""
    from evolens.models import load_model

    prior, demo = load_model("demo-prior"), load_model("demo")
    assert prior.name == "demo-prior" and prior.info["demo_manifest"]["model"] == "demo-prior"
    assert prior.info["adapter_check_max_abs_diff"] < 1e-3
    for (name, a), (_, b) in zip(
        prior.model.projector.state_dict().items(), demo.model.projector.state_dict().items(), strict=True
    ):
        assert (a == b).all(), name
    q_prior = prior.model.decoder.model.layers[0].self_attn.q_proj.weight
    q_demo = demo.model.decoder.model.layers[0].self_attn.q_proj.weight
    assert not (q_prior == q_demo).all()
