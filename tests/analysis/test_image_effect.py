"""The image effect: paired differences real - null per layer, the two-stage image bootstrap, simultaneous
bands, and the refusal of a null that does not score the trace's own tokens."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evolens.analysis.image_clusters import image_bootstrap, image_ids, simultaneous_band, two_stage_weights
from evolens.analysis.image_effect import image_effect, nulls_by_condition
from evolens.cli import main
from evolens.errors import UsageError
from evolens.io.trace import load_trace
from evolens.vocabulary import IMAGE_EFFECT, METRICS
from tests.analysis.findings_traces import N_LAYERS, null_of, shapes_samples, write_null
from tests.analysis.synthetic import write_trace

LN2 = float(np.log(2.0))


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real trace of 8 images x 2 prompts, a 'blank' null with p(emitted) halved everywhere (its samples
    written in the reverse order) and a 'shuffled' null where only images 0-3 lose probability (by e^-1)."""
    root = tmp_path_factory.mktemp("effect")
    samples = shapes_samples(n_images=8, prompts=("color", "describe"))
    images = sorted({s.image or "" for s in samples})
    halved = {image: 0.5 for image in images}
    some = {image: (np.exp(-1.0) if int(Path(image).stem[3:]) < 4 else 1.0) for image in images}
    return {
        "real": write_trace(root / "real", samples),
        "blank": write_null(root / "blank", null_of(samples, halved)[::-1], "blank"),  # other row order
        "shuffled": write_null(root / "shuffled", null_of(samples, some, entropy_shift=0.0), "shuffled"),
    }


def test_known_differences_are_recovered_with_their_bands(pair: dict[str, Path]) -> None:
    trace = load_trace(pair["real"])
    nulls = nulls_by_condition([load_trace(pair["shuffled"]), load_trace(pair["blank"])])
    effect = image_effect(trace, nulls, n_boot=200)
    assert list(effect["conditions"]) == ["blank", "shuffled"], "in name order, as summary.json keeps them"
    assert effect["metrics"] == list(IMAGE_EFFECT)
    blank = effect["conditions"]["blank"]
    assert (blank["n_images"], blank["n_samples"], blank["n_tokens"]) == (8, 16, trace.n_tokens)
    log_prob = blank["metrics"]["log_prob"]
    assert log_prob["label"] == METRICS["log_prob"].label and log_prob["layers"] == list(range(N_LAYERS + 1))
    # log(p) - log(p/2) = ln 2 for every token: every replicate agrees, so the band is the point itself
    assert log_prob["mean"] == pytest.approx([LN2] * (N_LAYERS + 1), abs=1e-5)
    assert log_prob["low"] == log_prob["mean"] == log_prob["high"]
    assert log_prob["layers_apart_from_0"] == list(range(N_LAYERS + 1))
    entropy = blank["metrics"]["entropy"]
    assert entropy["mean"] == pytest.approx([-0.25] * (N_LAYERS + 1), abs=1e-5)
    jsd = blank["metrics"]["jsd_next"]
    assert jsd["layers"] == list(range(1, N_LAYERS + 1)) and jsd["mean"] == [0.0] * N_LAYERS
    assert jsd["layers_apart_from_0"] == []
    # half of the images lose 1 nat: the mean is the token-weighted share of their tokens, the band wide
    shuffled = effect["conditions"]["shuffled"]["metrics"]["log_prob"]
    steps = trace.steps.assign(image=trace.steps["sample_id"].str.extract(r"img(\d+)")[0].astype(int))
    share = float((steps["image"] < 4).mean())
    assert shuffled["mean"] == pytest.approx([share] * (N_LAYERS + 1), abs=1e-5)
    assert all(
        low < share - 0.1 and high > share + 0.1
        for low, high in zip(shuffled["low"], shuffled["high"], strict=True)
    )


def test_the_bootstrap_resamples_images_then_their_prompts() -> None:
    """Each image's samples are drawn together: their weights sum to (times the image was drawn) x (its
    number of samples); a bootstrap over samples would break that."""
    images = np.array(["a", "a", "b", "b", "b", "c"])
    weights = two_stage_weights(images, n_boot=500, seed=1)
    assert weights.shape == (500, 6)
    draws = np.zeros(500)
    for image, size in (("a", 2), ("b", 3), ("c", 1)):
        per_image = weights[:, images == image].sum(1)
        assert (per_image % size == 0).all()
        assert (per_image == 0).any() and (per_image > size).any(), "images are resampled"
        draws += per_image / size
    assert (draws == 3).all(), "each replicate draws as many images as there are"
    assert (weights[:, 0] != weights[:, 1]).any(), "prompts within a drawn image are resampled too"


def test_images_are_identified_by_hash_then_path_then_sample() -> None:
    samples = pd.DataFrame(
        {
            "sample_id": ["s1", "s2", "s3", "s4"],
            "image": ["/a.png", "/a.png", "/b.png", None],
            "image_sha256": [None, None, "ff", None],
        }
    )
    assert image_ids(samples).tolist() == ["image:/a.png", "image:/a.png", "image_sha256:ff", "s4"]


def test_the_simultaneous_band_covers_whole_curves_at_its_level() -> None:
    """With independent layers, a pointwise 95% band covers a whole 20-layer curve in ~36% of replicates;
    the max-t band in 95%."""
    rng = np.random.default_rng(0)
    replicates = rng.normal(size=(4000, 20)) * np.linspace(1, 3, 20)
    low, high, critical = simultaneous_band(np.zeros(20), replicates)
    inside = ((replicates >= low) & (replicates <= high)).all(1).mean()
    assert inside == pytest.approx(0.95, abs=0.01) and critical > 2.5
    assert high[-1] == pytest.approx(3 * critical, rel=0.05), "each layer's width follows its own spread"


def test_one_image_dominating_widens_the_band_beyond_a_token_bootstrap() -> None:
    """Image clusters: one image with many tokens and a large effect makes the mean uncertain even though
    the tokens are many."""
    values = np.concatenate([np.full((50, 1), 1.0), np.zeros((10, 1))])
    samples = np.concatenate([np.zeros(50, dtype=int), np.arange(1, 11)])
    images = np.array([f"i{k}" for k in range(11)])
    band = image_bootstrap(values, samples, images, n_boot=500, seed=0)
    assert band.mean[0] == pytest.approx(50 / 60) and band.high[0] - band.low[0] > 0.5
    assert (band.n_images, band.n_samples, band.n_tokens) == (11, 11, 60)


def test_a_null_of_other_tokens_samples_or_depth_is_refused(pair: dict[str, Path], tmp_path: Path) -> None:
    trace = load_trace(pair["real"])
    samples = shapes_samples(n_images=8, prompts=("color", "describe"))
    changed = [dataclasses.replace(s, token_ids=s.token_ids.copy()) for s in samples]
    changed[3].token_ids[1] += 1
    other = load_trace(write_null(tmp_path / "other", changed, "blank"))
    with pytest.raises(
        UsageError, match=r"scores other tokens than the trace \(sample img1-describe, step 1\)"
    ):
        image_effect(trace, {"blank": other}, n_boot=20)
    renamed = [dataclasses.replace(samples[0], sample_id="stranger")]
    foreign = load_trace(write_null(tmp_path / "foreign", renamed, "blank"))
    with pytest.raises(UsageError, match="holds samples the trace lacks"):
        image_effect(trace, {"blank": foreign}, n_boot=20)
    deeper = load_trace(
        write_trace(tmp_path / "deep", samples, n_layers=N_LAYERS + 1, mode="score", condition="x")
    )
    with pytest.raises(UsageError, match="its n_layers is 7, the trace's 6"):
        image_effect(trace, {"x": deeper}, n_boot=20)
    with pytest.raises(UsageError, match="not a scored trace with a condition"):
        nulls_by_condition([trace])
    with pytest.raises(UsageError, match="a second null of condition 'blank'"):
        nulls_by_condition([load_trace(pair["blank"]), other])


def test_a_null_missing_samples_pairs_the_rest_and_says_so(pair: dict[str, Path], tmp_path: Path) -> None:
    samples = shapes_samples(n_images=8, prompts=("color", "describe"))
    partial = load_trace(
        write_null(
            tmp_path / "partial",
            null_of(samples[:10], {f"/images/img{i}.png": 0.5 for i in range(8)}),
            "no-image",
        )
    )
    effect = image_effect(load_trace(pair["real"]), {"no-image": partial}, n_boot=20)
    entry = effect["conditions"]["no-image"]
    assert (entry["n_samples"], entry["n_images"], entry["samples_not_in_null"]) == (10, 5, 6)
    assert image_effect(load_trace(pair["real"]), None) == {
        "not computed": "no null traces given (evolens analyze TRACE --null DIR, or nulls: in the run config)"
    }


def test_analyze_with_nulls_writes_the_effect_and_its_figure(
    pair: dict[str, Path], tmp_path: Path, capsys
) -> None:
    out = tmp_path / "analysis"
    args = ["analyze", str(pair["real"]), "--out", str(out), "--n-boot", "30", "--no-features"]
    assert main([*args, "--null", str(pair["blank"]), "--null", str(pair["shuffled"])]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["image_effect"]["conditions"]) == {"blank", "shuffled"}
    assert {"image_effect.png", "image_effect.svg", "probes.png"} <= set(summary["figures"])
    assert (out / "image_effect.png").stat().st_size > 0
    assert "image effect (real - blank) on log p: band away from 0 at layers 0-6" in capsys.readouterr().out
    assert main([*args, "--null", str(pair["real"])]) == 2
    assert "not a scored trace with a condition" in capsys.readouterr().err
