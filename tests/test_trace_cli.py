"""``evolens trace`` on images with a tiny random LLaVA (saved and loaded like a hub model), and the CLI."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from evolens.cli import main
from evolens.data.images import file_sha256
from evolens.io.lock import TraceLock
from evolens.io.store import read_trace
from evolens.models import LoadedModel
from evolens.tracing.tracer import Tracer, trace
from tests.models.builders import tiny_families
from tests.models.builders.saved import TinyModels

(LLAVA,) = tiny_families("llava")


@pytest.fixture(scope="module")
def tiny_llava_dir(tiny_models: TinyModels) -> Path:
    """The builder table's tiny LLaVA, saved (built once per session, with the model-family tests)."""
    return tiny_models.folder(LLAVA)


@pytest.fixture(scope="module")
def tiny_llava(tiny_models: TinyModels) -> LoadedModel:
    """That LLaVA loaded from its folder on the CPU in fp32."""
    return tiny_models.get(LLAVA, ("cpu", torch.float32))


@pytest.fixture
def images_with_a_bad_one(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return folder


def test_a_bad_image_fails_alone(
    tiny_llava: LoadedModel, images_with_a_bad_one: Path, tmp_path: Path
) -> None:
    result = trace(
        tiny_llava, images_with_a_bad_one, "Describe the image.", out=tmp_path / "t", max_new_tokens=3
    )
    assert sorted(result.traced) == ["a", "b"]
    assert [f["sample_id"] for f in result.failures] == ["broken"]
    assert "broken.png" in result.failures[0]["error"]
    samples = read_trace(tmp_path / "t").samples
    assert samples.set_index("sample_id").loc["a", "image_sha256"] == file_sha256(
        images_with_a_bad_one / "a.png"
    )


def test_image_batch_equals_one_by_one(
    tiny_llava: LoadedModel, images_with_a_bad_one: Path, tmp_path: Path
) -> None:
    images = [images_with_a_bad_one / "a.png", images_with_a_bad_one / "b.png"]
    prompts = ["Describe the image.", "What is in this picture, in a few words?"]
    for batch_size, out in ((2, "batch"), (1, "alone")):
        trace(tiny_llava, images, prompts, out=tmp_path / out, max_new_tokens=3, batch_size=batch_size)
    batch, alone = (
        read_trace(tmp_path / d).steps.sort_values(["sample_id", "step"]) for d in ("batch", "alone")
    )
    assert list(batch["token_id"]) == list(alone["token_id"])
    for column in ("prob", "entropy", "jsd_next", "jsd_last", "kl_last"):
        np.testing.assert_allclose(
            np.stack(batch[column]), np.stack(alone[column]), atol=1e-4, err_msg=column
        )


def test_cli_traces_and_exits_1_listing_failures(
    tiny_llava_dir: Path, images_with_a_bad_one: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "cli"
    args = ["trace", "--model", str(tiny_llava_dir), "--images", str(images_with_a_bad_one)]
    code = main([*args, "--prompt", "Describe.", "--out", str(out), "--max-new-tokens", "2", "--keep-hidden"])
    error = capsys.readouterr().err
    assert code == 1
    assert "broken" in error and "traced 2 samples" in error
    assert pq.read_table(out / "steps").num_rows == 4
    assert {p.name for p in (out / "hidden").iterdir()} == {"a.safetensors", "b.safetensors"}
    code = main([*args, "--prompt", "Describe.", "--out", str(out), "--max-new-tokens", "2", "--keep-hidden"])
    assert code == 1 and "2 already done" in capsys.readouterr().err


def test_cli_text_only_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(
        [
            "trace",
            "--model",
            "demo-text",
            "--prompt",
            "Name a fruit.",
            "--out",
            str(tmp_path),
            "--max-new-tokens",
            "3",
        ]
    )
    assert code == 0, capsys.readouterr().err
    steps = pq.read_table(tmp_path / "steps").to_pandas()
    assert len(steps) == 3 and len(steps["prob"][0]) == 31


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lens", "logit"], "unknown lens 'logit'"),
        (["--lens", "tuned"], "model 'demo-text' comes with no tuned lens"),
        (["--max-new-tokens", "-3"], "max_new_tokens: input should be greater than 0 (got -3)"),
    ],
)
def test_cli_usage_errors_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str], message: str
) -> None:
    code = main(["trace", "--model", "demo-text", "--prompt", "Hi", "--out", str(tmp_path), *flags])
    error = capsys.readouterr().err.strip()
    assert code == 2
    assert message in error and len(error.splitlines()) == 1


def test_an_image_changed_after_it_was_read_records_the_hash_of_the_traced_bytes(
    tiny_llava: LoadedModel, images_with_a_bad_one: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hash identifies what was traced: an image deleted or replaced while its batch generates neither
    loses the batch nor records the hash of other bytes."""
    a, b = images_with_a_bad_one / "a.png", images_with_a_bad_one / "b.png"
    traced_bytes = {
        "a": hashlib.sha256(a.read_bytes()).hexdigest(),
        "b": hashlib.sha256(b.read_bytes()).hexdigest(),
    }
    real_generate = Tracer.generate

    def change_the_files_meanwhile(self: Tracer, inputs: object, sample_ids: list[str]) -> object:
        a.unlink()
        Image.new("RGB", (8, 8), "red").save(b)
        return real_generate(self, inputs, sample_ids)

    monkeypatch.setattr(Tracer, "generate", change_the_files_meanwhile)
    result = trace(
        tiny_llava, [a, b], "Describe the image.", out=tmp_path / "t", max_new_tokens=2, batch_size=2
    )
    assert sorted(result.traced) == ["a", "b"] and result.ok
    samples = read_trace(tmp_path / "t").samples.set_index("sample_id")
    assert samples["image_sha256"].to_dict() == traced_bytes


def test_cli_refuses_a_second_writer_of_one_folder_naming_it(
    tiny_llava_dir: Path, images_with_a_bad_one: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "t"
    out.mkdir()
    holder = TraceLock.acquire(out)  # another evolens trace, mid-run
    try:
        args = ["trace", "--model", str(tiny_llava_dir), "--images", str(images_with_a_bad_one)]
        code = main([*args, "--prompt", "Describe.", "--out", str(out), "--max-new-tokens", "2"])
    finally:
        holder.release()
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1
    assert f"{out} is being written by another process (pid {os.getpid()}" in error
    assert not (out / "meta.json").exists() and not (out / "samples").exists()


def test_the_trace_flags_are_the_trace_spec_and_a_run_config_sets_them_all() -> None:
    """One definition of every trace setting: ``evolens trace`` has a flag per ``TraceSpec`` field (same
    default) and one per ``RayOptions`` field, and a run config's ``trace:`` and ``ray:`` sections are those
    specs, so ``evolens run`` can set every setting the trace command can."""
    import inspect

    from evolens.cli.trace import RAY_FLAGS, trace_command
    from evolens.pipeline.config import RunConfig
    from evolens.tracing.spec import RayOptions, TraceSpec

    parameters = inspect.signature(trace_command).parameters
    not_settings = {"images", "prompt", "out", "model", "limit", "device", "dtype", "engine"}
    assert set(parameters) - not_settings == set(TraceSpec.model_fields) | set(RAY_FLAGS.values())
    for name, field in TraceSpec.model_fields.items():
        assert parameters[name].default == field.default, name
    assert set(RAY_FLAGS) == set(RayOptions.model_fields)
    assert RunConfig.model_fields["trace"].annotation is TraceSpec
    assert RunConfig.model_fields["ray"].annotation is RayOptions
