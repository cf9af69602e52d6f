"""Every validated run setting reaches the stage that uses it, and hidden states are kept only when needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evolens.pipeline import stages
from evolens.pipeline.config import load_config
from evolens.pipeline.run import run_pipeline
from tests.run.conftest import tiny_run_config


def test_hidden_states_are_off_unless_a_view_needs_them(tmp_path: Path) -> None:
    """Defect: `evolens run` kept every hidden state by default (69 MB per sample on a 7B model)."""
    base = {"data.source": "shapes"}
    assert load_config(overrides=base).trace.keep_hidden is False
    assert load_config(overrides={**base, "analyze.projections": ["pca"]}).trace.keep_hidden is True
    chosen = {**base, "analyze.projections": ["pca"], "trace.keep_hidden": False}
    assert load_config(overrides=chosen).trace.keep_hidden is False  # the user's explicit choice wins
    off = {**base, "analyze.projections": ["pca"], "analyze.enabled": False}
    assert load_config(overrides=off).trace.keep_hidden is False


def test_run_passes_every_analyze_setting_and_delegates_skip_outputs(
    tiny_vlm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defects: the run ignored analyze.n_boot and analyze.projections (validated, documented and
    fingerprinted, but never passed on), and re-implemented the skip experiment (it runs
    ``interventions.skip_run.run_skip``, as ``evolens skip`` does)."""
    seen: dict[str, Any] = {}
    real_analyze, real_write = stages.analyze, stages.run_skip

    def spy_analyze(trace_dir: Path, out: Path, options: Any, **kwargs: Any) -> Any:
        seen["options"] = options
        return real_analyze(trace_dir, out, options, **kwargs)

    def spy_write(*args: Any, **kwargs: Any) -> Any:
        seen["skip_written"] = True
        return real_write(*args, **kwargs)

    monkeypatch.setattr(stages, "analyze", spy_analyze)
    monkeypatch.setattr(stages, "run_skip", spy_write)
    text = tiny_run_config(tiny_vlm_dir, tmp_path / "run").replace(
        "trace: {max_new_tokens: 6, batch_size: 1, top_k: 3, keep_hidden: false}",
        "trace: {max_new_tokens: 6, batch_size: 2, top_k: 3}",
    )
    text = text.replace("analyze: {n_boot: 50}", "analyze: {n_boot: 37, projections: [pca]}")
    text += "skip: {enabled: true, plan: '1-2', random_seeds: 1, limit: 2}\nhallucination: {enabled: false}\n"
    config_path = tmp_path / "run.yaml"
    config_path.write_text(text)
    config = load_config(config_path)
    result = run_pipeline(config, quiet=True)
    options = seen["options"]
    assert options.n_boot == 37 and options.projections == ("pca",) and options.features
    assert seen.get("skip_written") and (result.out / "skip" / "skip.json").is_file()
    assert (result.out / "skip" / "skip.png").is_file()
    assert any((result.out / "trace" / "hidden").glob("*.safetensors"))  # turned on by the PCA view


def test_projection_flag_reaches_the_analysis_and_hidden_states_without_a_view_say_so(
    tiny_vlm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defects: `evolens run` had no --projection, so --keep-hidden --answer ... drew no feature map, and
    nothing said why."""
    from evolens.cli import main

    seen: list[Any] = []
    real_analyze = stages.analyze

    def spy_analyze(trace_dir: Path, out: Path, options: Any, **kwargs: Any) -> Any:
        seen.append(options)
        return real_analyze(trace_dir, out, options, **kwargs)

    monkeypatch.setattr(stages, "analyze", spy_analyze)
    base = ["run", "--model", str(tiny_vlm_dir), "--source", "shapes", "--limit", "2"]
    base += ["--max-new-tokens", "3", "--no-skip", "--no-hallucination", "--no-report", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "a"), "--projection", "pca"]) == 0
    assert seen[-1].projections == ("pca",)
    assert any((tmp_path / "a" / "trace" / "hidden").glob("*.safetensors"))  # turned on by the view
    assert main([*base, "--out", str(tmp_path / "b"), "--keep-hidden"]) == 0
    assert seen[-1].projections == ()
    summary = json.loads((tmp_path / "b" / "analysis" / "summary.json").read_text())
    assert any("no projection was asked" in note for note in summary["notes"])
