"""Teacher-forced scoring and the input conditions: ``evolens score --from TRACE`` reproduces a generated
trace under the image condition and gives its nulls under the others; ``--responses`` scores given text;
changed responses are scored again, mixed inputs and impossible derangements are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evolens.cli import main
from evolens.data.resolve import Sample
from evolens.errors import UsageError
from evolens.io.store import read_trace
from evolens.models import LoadedModel
from evolens.tracing.conditions import ConditionedImages, derangement
from evolens.tracing.tracer import trace


def steps_of(directory: Path):
    return read_trace(directory).steps.sort_values(["sample_id", "step"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def shapes_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from evolens.data.shapes.render import render_scene
    from evolens.data.shapes.world import sample_scene

    folder = tmp_path_factory.mktemp("shapes")
    paths = []
    for seed in range(3):
        path = folder / f"scene-{seed}.png"
        render_scene(sample_scene(30_000_000 + seed, n_objects=1)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def generated(
    demo_vlm: LoadedModel, shapes_images: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("generated") / "trace"
    trace(demo_vlm, shapes_images, "What is the color of the shape?", out=out, max_new_tokens=6, batch_size=3)
    return out


def test_scoring_the_image_condition_reproduces_the_trace(generated: Path, tmp_path: Path) -> None:
    """Same tokens, every layer's probability within 1e-4 (the issue's tolerance), the settings kept."""
    out = tmp_path / "image"
    assert main(["score", "--from", str(generated), "--out", str(out), "--batch-size", "2"]) == 0
    traced, scored = steps_of(generated), steps_of(out)
    assert list(traced["token_id"]) == list(scored["token_id"]) and len(scored) > 0
    for column in ("prob", "entropy", "jsd_next", "jsd_last"):
        assert np.abs(np.stack(traced[column]) - np.stack(scored[column])).max() < 1e-4, column
    meta, original = read_trace(out).meta, read_trace(generated).meta
    assert meta["mode"] == "score" and meta["condition"] == "image" and original["mode"] == "generate"
    assert meta["lens"] == original["lens"] and meta["top_k"] == original["top_k"]


@pytest.mark.parametrize("condition", ["no-image", "blank", "shuffled"])
def test_a_null_condition_scores_the_same_tokens_on_other_inputs(
    generated: Path, tmp_path: Path, condition: str
) -> None:
    out = tmp_path / condition
    assert main(["score", "--from", str(generated), "--condition", condition, "--out", str(out)]) == 0
    traced, scored = steps_of(generated), steps_of(out)
    assert list(traced["token_id"]) == list(scored["token_id"])
    last = np.stack(traced["prob"])[:, -1], np.stack(scored["prob"])[:, -1]
    assert not np.allclose(*last, atol=1e-3), "what the model sees changes its readout"
    samples = read_trace(out).samples.set_index("sample_id")
    used = samples["image_used"].tolist()
    if condition == "no-image":
        assert samples["image_used"].isna().all()
    elif condition == "blank":
        assert all(value.startswith("blank rgb(") and value.endswith(" 224x224") for value in used)
    else:
        assert all(u != own for u, own in zip(used, samples["image"], strict=True))
        assert sorted(used) == sorted(samples["image"])
    assert main(["score", "--from", str(generated), "--out", str(out)]) == 2  # other condition, same folder


def test_the_blank_image_has_the_size_and_mean_colour_of_the_real_one(shapes_images: list[Path]) -> None:
    sample = Sample("a", shapes_images[0], "Hi")
    own, seen, used = ConditionedImages("blank", [sample]).load(sample)
    assert own is not None and seen is not None and seen.size == own.size
    pixels = np.asarray(seen)
    assert (pixels == pixels[0, 0]).all()
    assert np.abs(pixels[0, 0] - np.asarray(own.convert("RGB")).reshape(-1, 3).mean(0)).max() <= 0.5
    assert used == f"blank rgb{tuple(int(v) for v in pixels[0, 0])} {own.width}x{own.height}"


def test_the_derangement_moves_every_image_and_is_fixed_by_the_seed(tmp_path: Path) -> None:
    paths = [tmp_path / f"{index}.png" for index in range(7)]
    samples = [Sample(f"{p.stem}-{prompt}", p, prompt) for p in paths for prompt in ("a", "b")]
    donors = derangement(samples, seed=3)
    assert set(donors) == set(donors.values()) == set(paths)
    assert all(donor != image for image, donor in donors.items())
    assert donors == derangement(list(reversed(samples)), seed=3) != derangement(samples, seed=4)
    with pytest.raises(UsageError, match="at least two different images"):
        derangement(samples[:2], seed=0)


def test_given_text_responses_are_scored_and_a_changed_one_again(
    tiny_llama: LoadedModel, tmp_path: Path
) -> None:
    manifest = tmp_path / "answers.jsonl"
    lines = [
        {"id": "a", "prompt": "Name a fruit.", "response": "An apple."},
        {"id": "b", "prompt": "Hi", "response": "Hello there"},
    ]
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "scored"
    first = trace(tiny_llama, manifest, None, out=out)
    tables = read_trace(out)
    expected = tiny_llama.tokenizer("An apple.", add_special_tokens=False)["input_ids"]
    assert sorted(first.traced) == ["a", "b"]
    assert list(tables.samples.set_index("sample_id").loc["a", "token_ids"]) == expected
    lines[1]["response"] = "Good morning"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    again = trace(tiny_llama, manifest, None, out=out)
    assert again.skipped == ["a"] and again.retraced == ["b"] and again.traced == ["b"]


def test_inputs_with_and_without_responses_are_refused_together(
    tiny_llama: LoadedModel, tmp_path: Path
) -> None:
    samples = [Sample("a", None, "Hi", response="Hello"), Sample("b", None, "Hi")]
    with pytest.raises(UsageError, match="some inputs come with a response and some without"):
        trace(tiny_llama, samples, None, out=tmp_path / "t")


def test_score_needs_exactly_one_source(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["score", "--out", str(tmp_path / "t")]) == 2
    assert "give exactly one of --from TRACE or --responses" in capsys.readouterr().err
