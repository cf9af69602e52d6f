"""Round trip with the ``tuned-lens`` package (0.2.0): its lenses load here, ours load there, and both give
the same translator output (and logits) on the same hidden states.

``tuned-lens`` is installed without its dependencies (``make setup``: its pins would pull wandb, datasets and
torchdata, none of which its lens classes need); the test is skipped where it is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from evolens.lenses.tuned import TunedLens
from evolens.models import LoadedModel
from tests.lenses.test_tuned_lens import random_lens, random_states

tuned_lens = pytest.importorskip("tuned_lens", reason="tuned-lens 0.2.0 is not installed (make setup)")
from tuned_lens.nn.lenses import TunedLens as TheirTunedLens  # noqa: E402
from tuned_lens.nn.unembed import Unembed as TheirUnembed  # noqa: E402


def their_translated(lens: TheirTunedLens, states: torch.Tensor) -> torch.Tensor:
    """``tuned-lens``'s transform_hidden of every lens layer but the last: (B, L+1, d) -> (B, L, d)."""
    with torch.no_grad():
        return torch.stack([lens.transform_hidden(states[:, i], i) for i in range(len(lens))], dim=1)


def our_translated(lens: TunedLens, states: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return lens.translate(states)[:, :-1]


def test_our_lens_loads_in_tuned_lens(tiny_llama: LoadedModel, tmp_path: Path) -> None:
    ours = random_lens(tiny_llama, scale=1.0)
    ours.save(tmp_path)
    theirs = TheirTunedLens.from_unembed_and_pretrained(TheirUnembed(tiny_llama.model), str(tmp_path))
    states = random_states(tiny_llama, batch=5)
    torch.testing.assert_close(
        their_translated(theirs, states), our_translated(ours, states), atol=1e-5, rtol=0
    )
    with torch.no_grad():
        their_logits = theirs(states[:, 2], idx=2)
    torch.testing.assert_close(their_logits, ours.layer_logits(states)[:, 2], atol=1e-4, rtol=1e-5)


def test_their_lens_loads_here(tiny_llama: LoadedModel, tmp_path: Path) -> None:
    theirs = TheirTunedLens.from_model(tiny_llama.model)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in theirs.layer_translators.parameters():
            parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))
    theirs.save(tmp_path)
    ours = TunedLens.load(tmp_path, tiny_llama.unembed, tiny_llama.n_layers)
    assert ours.matches_unembedding() is True  # their unembedding hash is ours
    states = random_states(tiny_llama, batch=5)
    torch.testing.assert_close(
        our_translated(ours, states), their_translated(theirs, states), atol=1e-5, rtol=0
    )
    assert their_translated(theirs, states).sub(states[:, :-1]).abs().max() > 0.1  # the translators act


def test_bfloat16_params_load_in_tuned_lens(tiny_llama: LoadedModel, tmp_path: Path) -> None:
    ours = random_lens(tiny_llama, scale=1.0)
    ours.save(tmp_path, torch.bfloat16)
    theirs = TheirTunedLens.from_unembed_and_pretrained(TheirUnembed(tiny_llama.model), str(tmp_path))
    reloaded = TunedLens.load(tmp_path, tiny_llama.unembed, tiny_llama.n_layers)
    states = random_states(tiny_llama)
    torch.testing.assert_close(
        their_translated(theirs, states), our_translated(reloaded, states), atol=1e-5, rtol=0
    )
