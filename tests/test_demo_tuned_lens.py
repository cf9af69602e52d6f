"""The demo's bundled tuned lens: it loads as ``--lens tuned``, and on scenes it never saw it reads the middle
layers far closer to the final distribution than the logit lens does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from evolens.data.sources.shapes import shapes_rows
from evolens.lenses.logit import logit_lens
from evolens.lenses.spec import make_lens
from evolens.lenses.states import collect_states, load_states
from evolens.lenses.training import kl_to_final
from evolens.lenses.tuned import TunedLens
from evolens.models import LoadedModel
from evolens.models.demo.assets import TUNED_LENS_DIR, asset_dir

UNSEEN = 50_000_000  # scenes of no training run (lens: 40,000,000 on; projector: 0..2499)

pytestmark = pytest.mark.skipif(
    not (asset_dir() / TUNED_LENS_DIR / "params.pt").is_file(), reason="the demo's tuned lens is not built"
)


def test_bundled_lens_loads_as_lens_tuned(demo_vlm: LoadedModel) -> None:
    lens = make_lens(demo_vlm, "tuned")
    assert isinstance(lens, TunedLens)
    assert lens.n_layers == demo_vlm.n_layers == 30 and lens.config.d_model == 576
    assert lens.matches_unembedding() is True and lens.sha256 is not None


def test_bundled_lens_halves_kl_to_final_on_unseen_scenes(demo_vlm: LoadedModel, tmp_path: Path) -> None:
    samples = shapes_rows(tmp_path / "shapes", ["Describe this image."], limit=2, seed=UNSEEN)
    collect_states(demo_vlm, samples, tmp_path, max_new_tokens=12, batch_size=2)
    states = load_states(tmp_path).states
    tuned = kl_to_final(make_lens(demo_vlm, "tuned"), states)[:, 1:-1].double().mean(0)
    logit = kl_to_final(logit_lens(demo_vlm.unembed), states)[:, 1:-1].double().mean(0)
    assert float(tuned.mean()) <= 0.5 * float(logit.mean())
    assert bool((tuned < logit).all()), (tuned, logit)
    assert torch.isfinite(tuned).all()
