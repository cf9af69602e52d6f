"""The tuned lens as a ``Lens``: zero translators are the logit lens, the last layer is the model's logits,
the translated readout matches a float64 oracle, files round-trip, and bad lens files are one-line errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from evolens.errors import InputError, UsageError
from evolens.lenses.logit import logit_lens
from evolens.lenses.spec import LensSpec, lens_record, make_lens
from evolens.lenses.tuned import PARAMS_FILE, TunedLens
from evolens.models import LoadedModel
from evolens.tracing.engine import StepMetricsEngine
from tests.lenses.test_logit_lens import generate_with_states


def random_lens(loaded: LoadedModel, scale: float = 0.05, seed: int = 0) -> TunedLens:
    """A tuned lens with random translators (A_l ~ scale * N(0, 1/d), b_l ~ scale * N(0, 1))."""
    lens = TunedLens.identity(loaded.unembed, loaded.n_layers, loaded.name)
    generator = torch.Generator().manual_seed(seed)
    d = lens.config.d_model
    with torch.no_grad():
        lens.weight.copy_(scale * torch.randn(lens.weight.shape, generator=generator) / d**0.5)
        assert lens.bias is not None
        lens.bias.copy_(scale * torch.randn(lens.bias.shape, generator=generator))
    return lens


def random_states(loaded: LoadedModel, batch: int = 3, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, loaded.n_layers + 1, loaded.unembed.weight.shape[1], generator=generator)


def test_zero_translators_are_the_normed_logit_lens(tiny_llama: LoadedModel) -> None:
    states = random_states(tiny_llama)
    tuned = TunedLens.identity(tiny_llama.unembed, tiny_llama.n_layers)
    expected = logit_lens(tiny_llama.unembed, "normed").layer_logits(states)
    assert torch.equal(tuned.layer_logits(states), expected)


def test_translated_readout_matches_a_float64_oracle(tiny_llama: LoadedModel) -> None:
    lens = random_lens(tiny_llama, scale=0.5)
    states = random_states(tiny_llama)
    norm = copy.deepcopy(tiny_llama.unembed.final_norm).double()
    weight = tiny_llama.unembed.weight.double()
    expected = []
    for layer in range(tiny_llama.n_layers + 1):
        h = states[:, layer].double()
        if layer < tiny_llama.n_layers:
            h = h + h @ lens.weight[layer].double().T + lens.bias[layer].double()  # type: ignore[index]
        expected.append(norm(h) @ weight.T)
    oracle = torch.stack(expected, dim=1)
    torch.testing.assert_close(lens.layer_logits(states).double(), oracle, atol=2e-5, rtol=1e-5)
    assert (lens.layer_logits(states) - logit_lens(tiny_llama.unembed).layer_logits(states)).abs().max() > 0.1


def test_last_layer_is_the_models_logits_during_generation(tiny_llama: LoadedModel) -> None:
    lens = random_lens(tiny_llama, scale=1.0)
    states, logits, _ = generate_with_states(tiny_llama, ["Name a colour.", "Count to three."], steps=4)
    for state, model_logits in zip(states, logits, strict=True):
        last = lens.layer_logits(state)[:, -1]
        torch.testing.assert_close(last, model_logits.float(), atol=1e-4, rtol=1e-4)


def test_step_engine_reads_metrics_through_the_tuned_lens(tiny_llama: LoadedModel) -> None:
    states = random_states(tiny_llama, batch=4)
    tokens = torch.tensor([1, 2, 3, 4])
    identity = TunedLens.identity(tiny_llama.unembed, tiny_llama.n_layers)
    normed = StepMetricsEngine(logit_lens(tiny_llama.unembed), paper_js=True)(states, tokens)
    tuned = StepMetricsEngine(identity, paper_js=True)(states, tokens)
    torch.testing.assert_close(tuned.kl_last, normed.kl_last)
    torch.testing.assert_close(tuned.paper_js, normed.paper_js)  # paper_js stays on the raw lens
    moved = StepMetricsEngine(random_lens(tiny_llama, scale=1.0), paper_js=True)(states, tokens)
    torch.testing.assert_close(moved.paper_js, normed.paper_js)
    assert not torch.allclose(moved.kl_last[:, :-1], normed.kl_last[:, :-1])
    assert torch.equal(moved.kl_last[:, -1], torch.zeros(4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_save_and_load_round_trip(tiny_llama: LoadedModel, tmp_path: Path, dtype: torch.dtype) -> None:
    lens = random_lens(tiny_llama)
    lens.save(tmp_path, dtype)
    loaded = TunedLens.load(tmp_path, tiny_llama.unembed, tiny_llama.n_layers)
    tolerance = 0 if dtype == torch.float32 else 2**-8
    torch.testing.assert_close(loaded.weight, lens.weight, atol=tolerance * 0.05, rtol=tolerance)
    assert loaded.sha256 is not None and len(loaded.sha256) == 64
    assert loaded.matches_unembedding() is True
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["num_hidden_layers"] == tiny_llama.n_layers and config["lens_type"] == "linear_tuned_lens"


def test_lens_files_that_do_not_fit_are_one_line_errors(tiny_llama: LoadedModel, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such folder"):
        TunedLens.load(tmp_path / "missing", tiny_llama.unembed, tiny_llama.n_layers)
    lens = random_lens(tiny_llama)
    lens.save(tmp_path)
    with pytest.raises(UsageError, match="is for 4 layers of width 64; this model has 5 layers"):
        TunedLens.load(tmp_path, tiny_llama.unembed, 5)
    state = lens.translator_state()
    state["3.weight"] = torch.zeros(64, 32)
    torch.save(state, tmp_path / PARAMS_FILE)
    with pytest.raises(UsageError, match=r"'3.weight' has shape \(64, 32\)"):
        TunedLens.load(tmp_path, tiny_llama.unembed, tiny_llama.n_layers)
    (tmp_path / PARAMS_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable tuned-lens checkpoint"):
        TunedLens.load(tmp_path, tiny_llama.unembed, tiny_llama.n_layers)


def test_lens_specs_and_what_meta_records(tiny_llama: LoadedModel, tmp_path: Path) -> None:
    assert LensSpec.parse("normed") == LensSpec("normed")
    assert LensSpec.parse("tuned:/a/b") == LensSpec("tuned", Path("/a/b"))
    for bad in ("tuned:", "logit", "raw:/x"):
        with pytest.raises(UsageError):
            LensSpec.parse(bad)
    with pytest.raises(UsageError, match="comes with no tuned lens"):
        make_lens(tiny_llama, "tuned")
    random_lens(tiny_llama).save(tmp_path)
    lens = make_lens(tiny_llama, f"tuned:{tmp_path}")
    record = lens_record(lens)
    assert record["lens"] == "tuned" and record["lens_path"] == str(tmp_path.resolve())
    import hashlib

    assert record["lens_sha256"] == hashlib.sha256((tmp_path / PARAMS_FILE).read_bytes()).hexdigest()
    assert lens_record(make_lens(tiny_llama, "raw")) == {
        "lens": "raw",
        "lens_path": None,
        "lens_sha256": None,
    }
