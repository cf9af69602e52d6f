"""``train-lens`` end to end on a tiny random model: it lowers the held-out KL, an interrupted run resumes to
the very lens an uninterrupted one makes, and the command line traces with the lens and reports bad lenses in
one line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from evolens.cli import main
from evolens.data.resolve import resolve_samples
from evolens.errors import UsageError
from evolens.lenses.states import SHARDS
from evolens.lenses.training import LensTrainingSettings, train_lens
from evolens.lenses.tuned import TunedLens
from evolens.models import LoadedModel

PROMPTS = [f"Tell me one fact about the number {i}." for i in range(16)]
SETTINGS = LensTrainingSettings(
    steps=6,
    batch_size=16,
    max_new_tokens=6,
    held_out=0.25,
    checkpoint_every=2,
    eval_every=3,
    eval_rows=8,
    generation_batch_size=8,
)


def one_error_line(stderr: str) -> str:
    """The error line of a failed command (progress bars of model loading may precede it); no traceback."""
    errors = [line for line in stderr.splitlines() if line.startswith("evolens: error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


class SimulatedKillError(Exception):
    """Stands for a kill in the middle of training."""


def test_training_lowers_held_out_kl_and_resumes_to_the_same_lens(
    tiny_llama: LoadedModel, tmp_path: Path
) -> None:
    samples = resolve_samples(None, PROMPTS)
    whole = train_lens(tiny_llama, samples, tmp_path / "whole", SETTINGS)
    kl = whole["held_out_kl"]
    assert kl["tuned_mean"] < kl["logit_mean"] and kl["lower_at_every_layer"]
    assert whole["data"]["generated_steps"]["held_out"] > 0 and whole["training"]["steps"] == 6
    assert len(kl["tuned"]) == tiny_llama.n_layers + 1 and kl["tuned"][-1] == 0.0

    def interrupt(message: str) -> None:
        if message.startswith("step 3/"):  # after the checkpoint of step 2, before that of step 4
            raise SimulatedKillError

    resumed_dir = tmp_path / "resumed"
    with pytest.raises(SimulatedKillError):
        train_lens(tiny_llama, samples, resumed_dir, SETTINGS, report=interrupt)
    shards = sorted((resumed_dir / SHARDS).iterdir())
    messages: list[str] = []
    resumed = train_lens(tiny_llama, samples, resumed_dir, SETTINGS, report=messages.append)
    assert "resuming from step 2" in " ".join(messages)
    assert sorted((resumed_dir / SHARDS).iterdir()) == shards  # generation was not redone
    first = TunedLens.load(tmp_path / "whole", tiny_llama.unembed, tiny_llama.n_layers)
    second = TunedLens.load(resumed_dir, tiny_llama.unembed, tiny_llama.n_layers)
    torch.testing.assert_close(second.weight, first.weight, atol=1e-6, rtol=1e-5)
    assert first.weight.abs().max() > 0  # the translators moved away from the identity
    assert (
        resumed["held_out_kl"] == whole["held_out_kl"]
        or abs(resumed["held_out_kl"]["tuned_mean"] - kl["tuned_mean"]) < 1e-5
    )
    assert not (resumed_dir / "checkpoint.pt").exists()

    again: list[str] = []
    train_lens(tiny_llama, samples, resumed_dir, SETTINGS, report=again.append)
    assert again == [f"already trained: {resumed_dir}"]
    with pytest.raises(UsageError, match="other settings"):
        train_lens(tiny_llama, samples, resumed_dir, LensTrainingSettings(steps=7))


def test_bad_training_settings_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="held_out"):
        LensTrainingSettings(held_out=1.5)
    with pytest.raises(UsageError, match="optimizer"):
        LensTrainingSettings(optimizer="lbfgs")  # type: ignore[arg-type]


def test_command_line_trains_traces_and_refuses_a_changed_lens(
    tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lens_dir = tmp_path / "lens"
    args = ["train-lens", "--model", str(tiny_llama_dir), "--out", str(lens_dir), "--steps", "2"]
    prompts = [part for p in PROMPTS[:8] for part in ("-p", p)]
    assert main([*args, *prompts, "--max-new-tokens", "4", "--batch-size", "8", "--held-out", "0.3"]) == 0
    assert "held-out KL(final || layer)" in capsys.readouterr().out
    manifest = json.loads((lens_dir / "manifest.json").read_text())
    assert manifest["complete"] and manifest["data"]["samples"] == 8

    trace_dir = tmp_path / "trace"
    trace = ["trace", "--model", str(tiny_llama_dir), "-p", "Hello.", "--max-new-tokens", "3"]
    assert main([*trace, "--lens", f"tuned:{lens_dir}", "--out", str(trace_dir)]) == 0
    meta = json.loads((trace_dir / "meta.json").read_text())
    assert meta["lens"] == "tuned" and meta["lens_sha256"] == manifest["params_sha256"]
    capsys.readouterr()
    assert main([*trace, "--lens", "normed", "--out", str(trace_dir)]) == 2
    assert "lens: 'tuned' there, 'normed' now" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("lens", "message"),
    [
        ("tuned:{missing}", "no such folder"),
        ("tuned:{wrong}", "is for 5 layers of width 64; this model has 4 layers of width 64"),
        ("tuned", "comes with no tuned lens"),
        ("logit", "unknown lens 'logit'"),
    ],
)
def test_command_line_lens_errors_are_one_line(
    tiny_llama: LoadedModel,
    tiny_llama_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    lens: str,
    message: str,
) -> None:
    wrong = tmp_path / "wrong"
    TunedLens.identity(tiny_llama.unembed, tiny_llama.n_layers).save(wrong)
    config = json.loads((wrong / "config.json").read_text())
    (wrong / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 5}))
    spec = lens.format(missing=tmp_path / "missing", wrong=wrong)
    code = main(
        [
            "trace",
            "--model",
            str(tiny_llama_dir),
            "-p",
            "Hi.",
            "--lens",
            spec,
            "--out",
            str(tmp_path / "t"),
        ]
    )
    assert code == 2
    assert message in one_error_line(capsys.readouterr().err)


def test_training_settings_may_change_before_training_starts(tiny_llama: LoadedModel, tmp_path: Path) -> None:
    samples = resolve_samples(None, PROMPTS)

    def stop_after_generation(message: str) -> None:
        if message.startswith("data:"):
            raise SimulatedKillError

    with pytest.raises(SimulatedKillError):
        train_lens(tiny_llama, samples, tmp_path, SETTINGS, report=stop_after_generation)
    shards = sorted((tmp_path / SHARDS).iterdir())
    fewer_steps = dataclasses.replace(SETTINGS, steps=3, optimizer="adam")
    manifest = train_lens(tiny_llama, samples, tmp_path, fewer_steps)
    assert manifest["training"]["steps"] == 3 and sorted((tmp_path / SHARDS).iterdir()) == shards
    with pytest.raises(UsageError, match=r"other settings \(max_new_tokens\)"):
        train_lens(tiny_llama, samples, tmp_path, dataclasses.replace(fewer_steps, max_new_tokens=5))
