"""The built-in demo VLM: adapter invariants, processor, batching, generate, the packaged projector."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import LogitsProcessor, LogitsProcessorList

from evolens.data.shapes import render_scene, sample_scene
from evolens.models import LoadedModel
from evolens.models.demo.assets import PROJECTOR_FILE, asset_dir, read_manifest
from evolens.models.demo.decoder import load_decoder
from evolens.models.demo.lora import LORA_FILE, LoraSettings
from evolens.models.demo.vision import feature_dim, position_code
from evolens.verify import verify_model

HELD_OUT = 10_000_000


def scene_image(offset: int, n_objects: int = 1):
    return render_scene(sample_scene(HELD_OUT + offset, n_objects=n_objects))


def test_projector_file_matches_manifest() -> None:
    manifest = read_manifest()
    state = load_file(str(asset_dir() / PROJECTOR_FILE))
    vision = manifest["vision"]
    tokens_per_cell = vision.get("tokens_per_cell", 1)
    assert vision["n_tokens"] == vision["grid"] ** 2 * tokens_per_cell
    first, last = state["net.0.weight"], state["net.2.weight"]
    assert first.shape == (manifest["projector"]["hidden"], vision["feature_dim"])
    assert last.shape == (576 * tokens_per_cell, manifest["projector"]["hidden"])
    assert all(torch.isfinite(t).all() for t in state.values())


def test_assets_fit_the_size_budget() -> None:
    assert sum(f.stat().st_size for f in asset_dir().iterdir()) < 25 * 2**20


def _without_lora() -> bool:
    return "decoder_lora" not in read_manifest(asset_dir())


needs_lora = pytest.mark.skipif(
    _without_lora(), reason="the committed demo weights have no decoder LoRA (manifest 'decoder_lora')"
)


@needs_lora
def test_lora_file_matches_manifest() -> None:
    settings = LoraSettings.from_dict(read_manifest()["decoder_lora"])
    factors = load_file(str(asset_dir() / LORA_FILE))
    assert len(factors) == 30 * len(settings.targets) * 2  # A and B for every adapted layer
    assert all(t.shape[0] == settings.rank for k, t in factors.items() if k.endswith(".lora_A"))
    assert all(t.shape[1] == settings.rank for k, t in factors.items() if k.endswith(".lora_B"))


def test_loaded_demo_uses_the_packaged_projector(demo_vlm: LoadedModel) -> None:
    state = load_file(str(asset_dir() / PROJECTOR_FILE))
    for name, tensor in demo_vlm.model.projector.state_dict().items():
        assert torch.equal(tensor, state[name]), name
    assert not any(p.requires_grad for p in demo_vlm.model.decoder.parameters())


@needs_lora
def test_loaded_decoder_is_smollm2_plus_the_low_rank_updates(demo_vlm: LoadedModel) -> None:
    """Known answer: every adapted weight is SmolLM2's plus scale * B @ A (float64), the rest untouched."""
    settings = LoraSettings.from_dict(read_manifest()["decoder_lora"])
    factors = load_file(str(asset_dir() / LORA_FILE))
    base = dict(load_decoder()[0].named_parameters())
    for name, weight in demo_vlm.model.decoder.named_parameters():
        module = name.removesuffix(".weight")
        if module + ".lora_A" in factors:
            delta = factors[module + ".lora_B"].double() @ factors[module + ".lora_A"].double()
            expected = base[name].double() + settings.scale * delta
            torch.testing.assert_close(weight.double(), expected, atol=1e-6, rtol=0)
        else:
            assert torch.equal(weight, base[name]), name


def test_demo_passes_verify_on_a_shapes_image(demo_vlm: LoadedModel) -> None:
    report = verify_model(demo_vlm, scene_image(1, n_objects=2), steps=6)
    assert report.ok, report.results
    assert demo_vlm.n_layers == 30
    assert demo_vlm.adapter.family == "demo"


def test_text_only_forward(demo_vlm: LoadedModel) -> None:
    ids = demo_vlm.tokenizer("The sky is", return_tensors="pt")["input_ids"]
    logits = demo_vlm.model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], 49152)


def test_prompt_has_one_placeholder_per_image_token(demo_vlm: LoadedModel) -> None:
    processor = demo_vlm.processor
    inputs = demo_vlm.build_inputs(["Describe this image."], [scene_image(2)])
    n_tokens = read_manifest()["vision"]["n_tokens"]
    assert int((inputs["input_ids"] == processor.image_token_id).sum()) == n_tokens
    assert inputs["pixel_values"].shape == (1, 3, 224, 224)
    text = processor.tokenizer.decode(inputs["input_ids"][0])
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")


def test_batch_equals_one_by_one(demo_vlm: LoadedModel) -> None:
    prompts = ["Describe this image.", "What is the color of the shape in this image, please?"]
    images = [scene_image(3, n_objects=3), scene_image(4)]
    batch = demo_vlm.build_inputs(prompts, images)
    assert batch["attention_mask"][0, 0] == 0, "rows are left-padded"
    batch_out = demo_vlm.model.generate(
        **batch,
        **demo_vlm.generation_kwargs(max_new_tokens=5),
        output_scores=True,
        return_dict_in_generate=True,
    )
    for row, (prompt, image) in enumerate(zip(prompts, images, strict=True)):
        single = demo_vlm.build_inputs([prompt], [image])
        n = single["input_ids"].shape[1]
        assert torch.equal(batch["input_ids"][row, -n:], single["input_ids"][0])
        single_out = demo_vlm.model.generate(
            **single,
            **demo_vlm.generation_kwargs(max_new_tokens=5),
            output_scores=True,
            return_dict_in_generate=True,
        )
        assert torch.equal(single_out.sequences[0, n:], batch_out.sequences[row, -5:])
        torch.testing.assert_close(single_out.scores[0][0], batch_out.scores[0][row], atol=1e-3, rtol=1e-4)


class BanToken(LogitsProcessor):
    """Forbids one token id; proves that ``logits_processor`` reaches the decoder's generate."""

    def __init__(self, token_id: int) -> None:
        self.token_id = token_id

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores[:, self.token_id] = -float("inf")
        return scores


def test_generate_passes_logits_processor_and_returns_prompt_plus_new(demo_vlm: LoadedModel) -> None:
    inputs = demo_vlm.build_inputs(["What is the color of the shape?"], [scene_image(5)])
    plain = demo_vlm.model.generate(**inputs, **demo_vlm.generation_kwargs(max_new_tokens=3))
    n = inputs["input_ids"].shape[1]
    assert torch.equal(plain[0, :n], inputs["input_ids"][0])
    banned = int(plain[0, n])
    steered = demo_vlm.model.generate(
        **inputs,
        **demo_vlm.generation_kwargs(max_new_tokens=3),
        logits_processor=LogitsProcessorList([BanToken(banned)]),
    )
    assert int(steered[0, n]) != banned


def test_position_code_distinguishes_every_cell() -> None:
    code = position_code(3, 4)
    assert code.shape == (9, 16)
    assert torch.cdist(code, code).fill_diagonal_(1.0).min() > 0.1


def test_feature_dim_matches_the_encoder(demo_vlm: LoadedModel) -> None:
    pixels = demo_vlm.build_inputs(["Describe this image."], [scene_image(6)])["pixel_values"]
    features = demo_vlm.model.vision(pixels)
    vision = demo_vlm.model.vision.config
    assert features.shape == (1, vision.n_cells, feature_dim(vision))
    assert demo_vlm.model.project(features).shape == (1, vision.n_tokens, 576)


def _training_incomplete() -> bool:
    training = read_manifest(asset_dir())["training"]
    return training["steps_done"] < training["steps_planned"]


@pytest.mark.skipif(
    _training_incomplete(),
    reason="the committed projector is a checkpoint of an unfinished training run (manifest steps_done < "
    "steps_planned); quality is asserted on a fully trained projector only",
)
def test_reads_colour_and_shape_of_easy_held_out_shapes_from_the_image(demo_vlm: LoadedModel) -> None:
    """Known answers: one large shape per held-out scene, centred on white, every colour once, the shapes in
    turn. Chance is 1/8 for colour and 1/5 for shape; the floors below are well above chance and below what
    the committed projector measures (manifest ``quality``), so they catch a projector that stopped reading
    the image (or a broken vision path) without pinning the exact answers."""
    from evolens.data.shapes import COLORS, SHAPES, parse_color, parse_shape
    from evolens.data.shapes.world import Background, Scene, ShapeObject

    scenes = []
    for index, color in enumerate(COLORS):
        shape = SHAPES[index % len(SHAPES)]
        obj = ShapeObject(shape, color, "large", "center", (0.5, 0.5), 0.145, COLORS[color])
        scenes.append(Scene(HELD_OUT + 500 + index, Background("white", "plain"), (obj,)))
    images = [render_scene(scene) for scene in scenes]
    for prompt, parse, attribute, floor in (
        ("What is the color of the shape?", parse_color, "color", 6),
        ("What shape is in the image?", parse_shape, "shape", 3),
    ):
        inputs = demo_vlm.build_inputs([prompt] * len(scenes), images)
        answers = [demo_vlm.decode(row) for row in demo_vlm.generate(inputs, max_new_tokens=14)]
        truth = [getattr(scene.objects[0], attribute) for scene in scenes]
        right = sum(parse(answer) == true for answer, true in zip(answers, truth, strict=True))
        assert right >= floor, (attribute, right, answers)
        assert len({parse(answer) for answer in answers} - {None}) >= 3, answers  # not one fixed answer
