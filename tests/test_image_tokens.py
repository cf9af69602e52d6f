"""The image-token lens (``--image-tokens``): the ``image_tokens/`` table against a direct computation, its
chunking, its probe words, the store's handling of its parts, and the command-line flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from evolens.cli import main
from evolens.io.image_tokens import read_image_tokens
from evolens.io.store import TraceWriter, read_trace
from evolens.models import LoadedModel
from evolens.models.image_tokens import image_token_id
from evolens.tracing import image_lens
from evolens.tracing.image_lens import content_words, probe_token
from evolens.tracing.tracer import trace
from tests.models.builders import tiny_families
from tests.models.builders.saved import TinyModels

(LLAVA,) = tiny_families("llava")
(QWEN2,) = tiny_families("qwen2_vl")
(MLLAMA,) = tiny_families("mllama")
CPU = ("cpu", torch.float32)


@pytest.fixture(scope="module")
def llava(tiny_models: TinyModels) -> LoadedModel:
    return tiny_models.get(LLAVA, CPU)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    for name, size in (("a.png", (40, 48)), ("b.png", (64, 30))):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / name)
    return folder


def reference(loaded: LoadedModel, image: Image.Image, prompt: str, ids: list[int]) -> tuple:
    """Top-1 ids (N, L+1) and probe probabilities (N, L+1, P) at the image tokens, from a plain forward
    pass with every hidden state returned (the last one already final-normed), softmax in float64."""
    inputs = loaded.build_inputs([prompt], [image])
    with torch.no_grad():
        output = loaded.model(**inputs, output_hidden_states=True)
        states = torch.stack(output.hidden_states, dim=2)[0]  # (T, L+1, d)
        where = inputs["input_ids"][0] == image_token_id(loaded)
        logits = torch.cat(
            [
                loaded.unembed.logits(states[where, :-1], normed=True),
                loaded.unembed.logits(states[where, -1:], normed=False),
            ],
            dim=1,
        ).double()
    return logits.argmax(-1).numpy(), torch.softmax(logits, -1)[..., ids].numpy(), where


def test_the_table_is_the_lens_at_every_image_token(llava: LoadedModel, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "t"
    trace(llava, images, "Describe.", out=out, max_new_tokens=3, image_tokens=True, probe_words="red,cat")
    table = pd.read_parquet(out / "image_tokens")
    samples = read_trace(out).samples.set_index("sample_id")
    n_layers = llava.n_layers
    for sample_id in ("a", "b"):
        rows = table[table["sample_id"] == sample_id]
        ids = [probe_token(llava, "red"), probe_token(llava, "cat")]
        image = Image.open(images / f"{sample_id}.png").convert("RGB")
        top1, probs, where = reference(llava, image, samples.loc[sample_id, "prompt"], ids)
        assert list(rows["token_index"]) == list(range(int(where.sum())))
        assert list(rows["position"]) == where.nonzero().flatten().tolist()  # one row, no padding
        assert all(list(words) == ["red", "cat"] for words in rows["probe_words"])
        assert all(list(p) == ids for p in rows["probe_ids"])
        got = np.stack([np.stack(p) for p in rows["probe_prob"]])
        assert got.shape == (len(rows), n_layers + 1, 2)
        np.testing.assert_allclose(got, probs, atol=1e-6)
        np.testing.assert_array_equal(np.stack(rows["top1_id"]), top1)
    assert json.loads((out / "meta.json").read_text())["image_tokens"] == {"probe_words": ["red", "cat"]}


def test_chunks_do_not_change_the_numbers(
    llava: LoadedModel, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace(llava, images, "Describe.", out=tmp_path / "whole", max_new_tokens=2, image_tokens=True)
    monkeypatch.setattr(image_lens, "MAX_BYTES", {"cpu": 1})  # one token per chunk
    trace(llava, images, "Describe.", out=tmp_path / "one", max_new_tokens=2, image_tokens=True)
    whole, one = (read_image_tokens(tmp_path / name) for name in ("whole", "one"))
    pd.testing.assert_frame_equal(whole, one)


def test_default_probe_words_are_the_generated_content_words(
    llava: LoadedModel, images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "t"
    trace(llava, images, "Describe.", out=out, max_new_tokens=4, image_tokens=True, batch_size=2)
    texts = read_trace(out).samples.set_index("sample_id")["text"]
    table = read_image_tokens(out)
    for sample_id, rows in table.groupby("sample_id"):
        assert list(rows["probe_words"].iloc[0]) == content_words(texts[sample_id])
    assert content_words("The red circle is on the left of a red-ish Star.") == [
        "red",
        "circle",
        "left",
        "red-ish",
        "star",
    ]


def test_batches_with_dynamic_token_counts_equal_one_by_one(tiny_models: TinyModels, tmp_path: Path) -> None:
    """Qwen2-VL's images of two sizes give two token counts: a padded batch keeps each row's own."""
    qwen = tiny_models.get(QWEN2, CPU)
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, size in (("a.png", (56, 84)), ("b.png", (112, 56))):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / name)
    for batch, name in ((2, "batch"), (1, "alone")):
        trace(qwen, folder, "Describe.", out=tmp_path / name, max_new_tokens=2, image_tokens=True,
              probe_words="red", batch_size=batch)  # fmt: skip
    batch_rows, alone_rows = (read_image_tokens(tmp_path / n) for n in ("batch", "alone"))
    assert len(batch_rows) == len(alone_rows) and batch_rows["sample_id"].nunique() == 2
    for column in ("position", "x0", "y1", "top1_id"):
        assert batch_rows[column].astype(str).tolist() == alone_rows[column].astype(str).tolist(), column
    np.testing.assert_allclose(
        np.stack([np.stack(p) for p in batch_rows["probe_prob"]]),
        np.stack([np.stack(p) for p in alone_rows["probe_prob"]]),
        atol=1e-5,
    )


def test_image_tokens_parts_follow_their_samples(llava: LoadedModel, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "t"
    trace(llava, images, "Describe.", out=out, max_new_tokens=2, image_tokens=True, batch_size=1)
    parts = sorted((out / "image_tokens").glob("part-*.parquet"))
    assert len(parts) == 2
    (out / "samples" / parts[0].name).unlink()  # as if the kill came before the commit
    with TraceWriter.open(out, json.loads((out / "meta.json").read_text())) as writer:
        assert not (out / "image_tokens" / parts[0].name).exists()
        (kept,) = writer.finished
        writer.remove({kept})
    assert read_image_tokens(out).empty


def test_a_rerun_with_another_image_token_setting_is_refused(
    llava: LoadedModel, images: Path, tmp_path: Path
) -> None:
    trace(llava, images, "Describe.", out=tmp_path / "t", max_new_tokens=2)
    with pytest.raises(Exception, match="image_tokens"):
        trace(llava, images, "Describe.", out=tmp_path / "t", max_new_tokens=2, image_tokens=True)


def test_cli_flags(
    tiny_models: TinyModels, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    model = str(tiny_models.folder(LLAVA))
    args = ["trace", "--model", model, "--images", str(images), "--prompt", "Describe.", "--max-new-tokens"]
    args.append("2")
    assert main([*args, "--out", str(tmp_path / "a"), "--image-tokens", "--probe-words", "red, blue"]) == 0
    words = pd.read_parquet(tmp_path / "a" / "image_tokens")["probe_words"]
    assert {tuple(w) for w in words} == {("red", "blue")}
    capsys.readouterr()
    score = ["score", "--from", str(tmp_path / "a"), "--out", str(tmp_path / "s"), "--image-tokens"]
    assert main(score) == 0
    scored, traced = read_image_tokens(tmp_path / "s"), read_image_tokens(tmp_path / "a")
    assert len(scored) == len(traced) and list(scored["position"]) == list(traced["position"])
    np.testing.assert_array_equal(np.stack(scored["top1_id"]), np.stack(traced["top1_id"]))
    capsys.readouterr()
    code = main([*args, "--out", str(tmp_path / "b"), "--probe-words", "red"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1 and "needs image_tokens" in error
    mllama = str(tiny_models.folder(MLLAMA))
    code = main([*args[:2], mllama, *args[3:], "--out", str(tmp_path / "c"), "--image-tokens"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "no image tokens in its sequence" in error.splitlines()[-1]
