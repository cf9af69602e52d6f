"""``evolens analyze`` and ``evolens compare`` end to end on synthetic traces (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evolens.cli import main

FAST = ["--n-boot", "30", "--projection", "pca"]


@pytest.fixture(scope="module")
def analysis_dir(planted_trace_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("analysis") / "out"
    code = main(["analyze", str(planted_trace_dir), "--out", str(out), "--answer", "red,blue", *FAST])
    assert code == 0
    return out


def test_summary_holds_the_planted_stages(analysis_dir: Path) -> None:
    summary = json.loads((analysis_dir / "summary.json").read_text())
    assert summary["n_layers"] == 30
    assert (summary["critical_layer"], summary["critical_layer_prob"], summary["mutation_layer"]) == (
        12,
        12,
        27,
    )
    assert summary["legacy_stages"] == [
        {"name": "rapid_evolution", "start": 0, "end": 11},
        {"name": "stabilization", "start": 12, "end": 26},
        {"name": "mutation", "start": 27, "end": 30},
    ]
    # four images are too few for the sampling-noise null: the search claims no boundary, and says why
    assert summary["stages"] == [
        {"name": "segment", "start": 2, "end": 30, "label": "layers 2-30", "found_share": 1.0}
    ]
    assert "needs >= 6 images" in summary["stage_search"]["verdicts"][0]
    assert summary["critical_layer_ci"] == [12.0, 12.0]
    assert summary["detector"]["jsd_threshold"] == 0.2 and summary["detector"]["min_stable_layers"] == 3
    assert summary["stability"]["spans"]["critical_layer"]["min"] == 12
    assert len(summary["tokens"]) == 32 and summary["tokens"][0]["critical_layer"] == 12
    assert summary["distribution"]["jsd_next"]["layers"] == list(range(1, 31))


def test_figures_are_png_and_svg(analysis_dir: Path) -> None:
    summary = json.loads((analysis_dir / "summary.json").read_text())
    names = {Path(f).stem for f in summary["figures"]}
    expected = {
        "layer_curves",
        "heatmap_shape-0",
        "lens_grid_shape-0",
        "features_shape-0_pca",
        "features_answer_1_pca",
        "features_answer_1_separation",
    }
    assert expected <= names
    assert any(n.startswith("token_probs_shape-0_step") for n in names)
    for name in names:
        assert (analysis_dir / f"{name}.png").stat().st_size > 0 and (
            analysis_dir / f"{name}.svg"
        ).stat().st_size > 0


def test_feature_coordinates_are_saved_for_the_report(analysis_dir: Path) -> None:
    view = json.loads((analysis_dir / "features" / "features_answer_1_pca.json").read_text())
    n = len(view["x"])
    assert (
        n == 4 * 30 and len(view["y"]) == len(view["layer"]) == len(view["stage"]) == len(view["group"]) == n
    )
    assert set(view["group"]) == {"shape-0", "shape-1", "shape-2", "shape-3"}
    assert view["stage"][view["layer"].index(27)] == "mutation"
    summary = json.loads((analysis_dir / "summary.json").read_text())
    separation = summary["features"]["answer"][0]["separation"]
    assert separation["dispersion"][-1] > separation["dispersion"][0]


def test_summary_is_deterministic(planted_trace_dir: Path, analysis_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    assert main(["analyze", str(planted_trace_dir), "--out", str(out), "--answer", "red,blue", *FAST]) == 0
    # the same numbers, figures and coordinates, byte for byte (paths aside)
    assert (out / "summary.json").read_text().replace(str(out), "") == (
        analysis_dir / "summary.json"
    ).read_text().replace(str(analysis_dir), "")
    for name in ("heatmap_shape-0.svg", "layer_curves.png", "features/features_answer_1_pca.json"):
        assert (out / name).read_bytes() == (analysis_dir / name).read_bytes()


def test_options_paper_metric_steps_and_detector(planted_trace_dir: Path, tmp_path: Path, capsys) -> None:
    detector = tmp_path / "detector.yaml"
    detector.write_text("jsd_threshold: 0.9\nmin_stable_fraction: 0.2\n")
    out = tmp_path / "out"
    args = ["analyze", str(planted_trace_dir), "--out", str(out), "--metric", "paper_js", "--steps", "1-3"]
    code = main([*args, "--token", "red", "--detector", str(detector), "--no-features", "--n-boot", "20"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["detector"]["jsd_threshold"] == 0.9 and summary["detector"]["min_stable_layers"] == 6
    assert (out / "token_probs_shape-0_step1.png").exists()
    assert "critical layer" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--metric", "kl"], 2, "--metric"),
        (["--normalization", "global"], 2, "--normalization"),
        (["--steps", "9-3"], 2, "--steps"),
        (["--sample", "nope"], 2, "no sample 'nope'"),
        (["--token", "zebra"], 2, "never emits"),
        (["--jsd-threshold", "3"], 2, "jsd_threshold"),
    ],
)
def test_bad_input_is_one_line_and_an_exit_code(
    planted_trace_dir, tmp_path, capsys, args, code, message
) -> None:
    assert (
        main(["analyze", str(planted_trace_dir), "--out", str(tmp_path / "o"), "--no-figures", *args]) == code
    )
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1


def test_summary_only(planted_trace_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert main(["analyze", str(planted_trace_dir), "--out", str(out), "--no-figures", "--n-boot", "20"]) == 0
    assert [p.name for p in out.iterdir()] == ["summary.json"]
    assert json.loads((out / "summary.json").read_text())["figures"] == []


def test_missing_trace_directory(tmp_path, capsys) -> None:
    assert main(["analyze", str(tmp_path / "nothing")]) == 2
    assert "not a trace directory" in capsys.readouterr().err


def test_compare_overlays_two_traces(planted_trace_dir: Path, tmp_path: Path) -> None:
    from tests.analysis.conftest import planted_trace_samples
    from tests.analysis.synthetic import write_trace

    other = planted_trace_samples(seed=1)
    for sample in other:
        sample.jsd_next = sample.jsd_next * 0.5
    text_dir = write_trace(tmp_path / "text", other, model="demo-text-like")
    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            str(planted_trace_dir),
            str(text_dir),
            "--labels",
            "vlm,text",
            "--out",
            str(out),
            "--n-boot",
            "20",
        ]
    )
    assert code == 0
    result = json.loads((out / "compare.json").read_text())
    assert [t["label"] for t in result["traces"]] == ["vlm", "text"]
    text = np.array(result["traces"][1]["distribution"]["jsd_next"]["all"]["mean"])
    np.testing.assert_allclose(text, np.concatenate([s.jsd_next for s in other]).mean(0), atol=1e-6)
    assert (out / "compare.png").exists() and (out / "compare.svg").exists()
    assert main(["compare", str(planted_trace_dir), str(text_dir), "--labels", "one", "--out", str(out)]) == 2


def test_compare_lenses_on_the_same_inputs(planted_trace_dir: Path, tmp_path: Path) -> None:
    """The same samples read by a second lens whose curves settle 4 layers earlier: the comparison says the
    inputs match, puts each lens' critical layer (with its interval) in the stage table, and draws KL to
    the final layer per layer."""
    from tests.analysis.conftest import planted_trace_samples
    from tests.analysis.synthetic import write_trace

    tuned = planted_trace_samples()
    for sample in tuned:
        sample.jsd_next[:, :12] = 0.01 + np.random.default_rng(0).uniform(0, 0.01, (len(sample.tokens), 12))
        sample.jsd_next[:, :8] = 0.4
        sample.kl_last = sample.kl_last * 0.25
    tuned_dir = write_trace(tmp_path / "tuned", tuned, lens="tuned", lens_sha256="ab" * 32)
    out = tmp_path / "lenses"
    args = ["compare", str(planted_trace_dir), str(tuned_dir), "--labels", "logit,tuned", "--out", str(out)]
    assert main([*args, "--n-boot", "30"]) == 0
    result = json.loads((out / "compare.json").read_text())
    assert result["same_inputs"] is True
    table = {row["label"]: row for row in result["stages"]}
    assert (table["logit"]["lens"], table["tuned"]["lens"]) == ("normed", "tuned")
    assert (table["logit"]["critical_layer"], table["tuned"]["critical_layer"]) == (12, 8)
    assert table["tuned"]["critical_layer_ci"].startswith("[")
    logit_kl = np.array(result["traces"][0]["distribution"]["kl_last"]["all"]["mean"])
    tuned_kl = np.array(result["traces"][1]["distribution"]["kl_last"]["all"]["mean"])
    np.testing.assert_allclose(tuned_kl, logit_kl * 0.25, rtol=0, atol=1e-5)  # stored rounded
    assert (out / "kl_to_final.png").exists() and (out / "kl_to_final.svg").exists()

    other = planted_trace_samples(seed=1)
    other[0].token_ids = other[0].token_ids + 1  # another generation: no longer the same inputs
    other_dir = write_trace(tmp_path / "other", other)
    assert (
        main(
            [
                "compare",
                str(planted_trace_dir),
                str(other_dir),
                "--out",
                str(tmp_path / "o"),
                "--n-boot",
                "10",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "o" / "compare.json").read_text())["same_inputs"] is False


def test_capped_and_unanswered_images_are_noted(planted_trace_dir: Path, tmp_path: Path) -> None:
    """Defect: the many-images map silently dropped images that never said the answer, and silently
    capped the number of images (max_answer_images, documented nowhere a user would look)."""
    from evolens.pipeline.analyze import AnalyzeOptions, analyze

    options = AnalyzeOptions(
        figures=True, n_boot=20, projections=("pca",), max_answer_images=3, answer=["red"]
    )
    notes = analyze(planted_trace_dir, tmp_path / "capped", options).summary["notes"]
    assert any("uses the first 3 of 4 images" in note for note in notes), notes
    options = AnalyzeOptions(figures=True, n_boot=20, projections=("pca",), answer=["big"])
    result = analyze(planted_trace_dir, tmp_path / "words", options)
    answered = {sample for entry in result.summary["features"]["answer"] for sample in entry["samples"]}
    assert answered == {"shape-0", "shape-1", "shape-2", "shape-3"}
    from dataclasses import replace

    from tests.analysis.conftest import planted_trace_samples
    from tests.analysis.synthetic import write_trace

    samples = planted_trace_samples()
    samples[3] = replace(samples[3], tokens=[t.replace(" red", " blue") for t in samples[3].tokens])
    mixed = write_trace(tmp_path / "mixed" / "trace", samples, model="synthetic-vlm")
    options = AnalyzeOptions(figures=True, n_boot=20, projections=("pca",), answer=["red"])
    result = analyze(mixed, tmp_path / "mixed" / "analysis", options)
    assert any("1 of 4 images never gave the answer" in note and "shape-3" in note for note in result.notes)
    assert result.summary["notes"] == result.notes


def test_answer_map_views_carry_groups_answers_and_explained_variance(tmp_path: Path) -> None:
    """Issue 15, item 5: the many-images map names the answer words, keeps each sample's group label (None
    where a sample has none) for the report, and the PCA view holds its explained variance."""
    from evolens.pipeline.analyze import AnalyzeOptions, analyze
    from tests.analysis.conftest import planted_trace_samples
    from tests.analysis.synthetic import write_trace

    trace = write_trace(
        tmp_path / "trace", planted_trace_samples(n_samples=4), groups=["flowers", None, "fruit", "flowers"]
    )
    options = AnalyzeOptions(answer=["red"], projections=("pca",), n_boot=20)
    result = analyze(trace, tmp_path / "out", options)
    view = json.loads((tmp_path / "out" / "features" / "features_answer_1_pca.json").read_text())
    by_sample = dict(zip(view["sample_id"], view["sample_group"], strict=True))
    assert by_sample == {"shape-0": "flowers", "shape-1": None, "shape-2": "fruit", "shape-3": "flowers"}
    assert set(view["answer"]) == {"red"} and "answers: 'red' x4" in view["title"]
    assert len(view["explained"]) == 2 and 0 < view["explained"][1] <= view["explained"][0] < 1
    assert (tmp_path / "out" / "features_answer_1_pca.png").is_file() and result.figures


def test_views_of_samples_without_groups_have_no_group_labels(analysis_dir: Path) -> None:
    view = json.loads((analysis_dir / "features" / "features_answer_1_pca.json").read_text())
    assert "sample_group" not in view
