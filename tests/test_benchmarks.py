"""The benchmark scripts run and report what they claim: the GPU benchmark on tiny configs on the CPU, the
layer-skip ceilings and the trace-overhead ratios on known answers."""

from __future__ import annotations

import copy
import json
import sys

import pytest
import torch
from benchmarks import (
    bench_layer_skip,
    demo_load,
    gpu_overhead,
    image_tokens_cost,
    sweep_settings,
    trace_overhead,
)

from evolens.models.demo.lora import merge_lora
from evolens.tracing.sweep_numba import numba_sweeps


def test_gpu_benchmark_runs_on_tiny_configs(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    argv = ["gpu_overhead.py", "--tiny", "--device", "cpu", "--models", "llava-1.5-7b"]
    monkeypatch.setattr(sys, "argv", [*argv, "--batch-sizes", "1,2", "--tokens", "3", "--repeats", "1"])
    gpu_overhead.main()
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["benchmark"] == "gpu_overhead" and report["settings"]["tiny"] is True
    model = report["models"]["llava-1.5-7b"]
    assert model["vocab"] == 32064 and model["layers"] == 2
    assert model["adapter_check_max_abs_diff"] < 1e-3
    for batch in ("1", "2"):
        row = model["batches"][batch]
        assert set(row["seconds"]) == {"plain", "floor", "traced"}
        assert all(seconds > 0 for seconds in row["seconds"].values())
        assert row["traced_over_floor"] == pytest.approx(row["seconds"]["traced"] / row["seconds"]["floor"])
        assert row["sweeps"] in ("numba", "eager")  # the CPU compiles nothing unless EVOLENS_COMPILE=1


def test_layer_skip_ceilings_known_answers() -> None:
    assert bench_layer_skip.ceiling(30, 15, 0.0) == pytest.approx(2.0)
    assert bench_layer_skip.ceiling(30, 15, 7.0) == pytest.approx(37 / 22)
    assert bench_layer_skip.ceiling(30, 0, 7.0) == 1.0
    # the README's old claim (2.47x for 15 of 30) exceeds even the free-head ceiling
    assert bench_layer_skip.ceiling(30, 15, 0.0) < 2.47


def test_trace_overhead_ratios_use_the_methods_that_ran() -> None:
    ratios = trace_overhead.ratios_of({"plain": 2.0, "floor": 4.0, "ours": 5.0, "paper": 50.0})
    assert ratios == {"a_ours_over_plain": 2.5, "b_ours_over_floor": 1.25, "c_paper_over_ours": 10.0}
    both = trace_overhead.ratios_of({"floor": 4.0, "ours": 5.0, "ours-eager": 6.0})
    assert both == {"b_ours_over_floor": 1.25, "b_ours_eager_over_floor": 1.5}
    assert trace_overhead.ratios_of({"ours": 5.0, "ours-score": 2.0}) == {"d_score_over_ours": 0.4}


def test_image_tokens_cost_ratio() -> None:
    assert image_tokens_cost.ratio_of({"plain": 2.0, "image_tokens": 3.0}) == 1.5


def test_demo_load_baseline_merges_the_same_weights_as_merge_lora() -> None:
    """The load benchmark compares two ways of doing the same work: equal weights after either merge."""
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Linear(5, 4))
    factors = {"0.lora_A": torch.randn(2, 6), "0.lora_B": torch.randn(5, 2)}
    fresh, in_place = copy.deepcopy(base), copy.deepcopy(base)
    merge_lora(fresh, factors, 2.0)
    demo_load.merge_in_place(in_place, factors, 2.0)
    expected = base[0].weight + 2.0 * factors["0.lora_B"] @ factors["0.lora_A"]
    torch.testing.assert_close(fresh[0].weight, expected)
    torch.testing.assert_close(in_place[0].weight, expected)
    assert torch.equal(fresh[1].weight, base[1].weight) and torch.equal(in_place[1].weight, base[1].weight)


def test_sweep_settings_times_every_setting_against_the_matmul(
    monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    argv = ["sweep_settings.py", "--rows", "2", "--layers", "3", "--width", "8", "--vocab", "500"]
    monkeypatch.setattr(sys, "argv", [*argv, "--repeats", "1", "--chunks", "10,12", "--budgets", "default"])
    sweep_settings.main()
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["benchmark"] == "sweep_settings"
    expected = {"transcendental", "eager[10,default]", "eager[12,default]", "matmul[1]", "matmul[2]"}
    if numba_sweeps() is not None:
        expected.add("numba[default]")
        assert report["numba_cached_load_seconds"] > 0 and report["numba_compile_seconds"] > 0
    if report["machine"].get("legacy_c"):
        expected.add("legacy-c[default]")
    assert set(report["ratio_to_matmul"]) == expected
    for name, ratio in report["ratio_to_matmul"].items():
        assert ratio == pytest.approx(report["seconds"][name] / report["seconds"]["matmul"])
