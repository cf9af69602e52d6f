"""The figures draw the analysis' numbers (checked on the artists), and are written deterministically."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from evolens.analysis.distribution import layer_statistics, statistics_to_dict
from evolens.analysis.single_token import candidate_curves, heatmap_data, lens_grid
from evolens.analysis.stages import build_stages, detect_stages
from evolens.io.trace import load_trace
from evolens.plots.heatmap import cell_text, plot_heatmap
from evolens.plots.layer_curves import plot_comparison, plot_layer_statistics
from evolens.plots.lens_grid import plot_lens_grid
from evolens.plots.style import save_figure, token_label
from evolens.plots.token_probs import plot_token_probabilities
from tests.analysis.conftest import ExactTrace


def test_heatmap_draws_the_jsd_matrix_with_token_rows(exact_trace: ExactTrace) -> None:
    data = heatmap_data(exact_trace.trace, "img-1")
    figure = plot_heatmap(data, detect_stages(exact_trace.trace))
    axes = figure.axes[0]
    np.testing.assert_allclose(
        axes.images[0].get_array(), exact_trace.samples[1].jsd_next, rtol=1e-6, atol=1e-7
    )
    assert [t.get_text() for t in axes.get_yticklabels()] == [token_label(t) for t in data.tokens]
    assert [t.get_text() for t in axes.get_xticklabels()] == [str(layer) for layer in data.layers]
    cells = [t.get_text() for t in axes.texts if t.get_position()[1] >= 0]
    assert cells == [cell_text(v) for v in data.values.ravel()]
    assert figure.axes[1].get_ylabel().startswith("JSD")  # the colorbar is labelled


def test_cell_text_is_short() -> None:
    assert [cell_text(v) for v in (0.0, 0.4812, 0.05, 0.004, 5.1e-5)] == ["0", "0.48", "0.05", "4e-3", "5e-5"]


def test_token_chart_draws_each_candidates_probabilities(exact_trace: ExactTrace) -> None:
    curves = candidate_curves(exact_trace.trace, 3, late_from=2)
    axes = plot_token_probabilities(curves).axes[0]
    drawn = [line.get_ydata() for line in axes.get_lines() if len(line.get_ydata()) == len(curves.layers)]
    np.testing.assert_allclose(np.array(drawn[::-1]), curves.probs)
    assert axes.get_ylim() == (0.0, 1.0) and axes.get_ylabel() == "probability"
    assert "(emitted)" in axes.get_legend().get_texts()[0].get_text()


def test_lens_grid_writes_the_top1_tokens(exact_trace: ExactTrace) -> None:
    grid = lens_grid(exact_trace.trace, "img-2")
    axes = plot_lens_grid(grid).axes[0]
    np.testing.assert_allclose(axes.images[0].get_array(), grid.top_probs)
    assert [t.get_text() for t in axes.texts] == [token_label(s, width=9) for s in grid.labels.ravel()]
    bold = [t.get_fontweight() == "bold" for t in axes.texts]
    assert bold == list((grid.top_ids == grid.top_ids[-1]).ravel())


def test_layer_curves_draw_the_means(exact_trace: ExactTrace) -> None:
    trace = exact_trace.trace
    statistics = statistics_to_dict(layer_statistics(trace, n_boot=20), trace)
    figure = plot_layer_statistics(
        statistics, detect_stages(trace), metrics=("jsd_next", "prob"), groups=("all",)
    )
    jsd_line = next(line for line in figure.axes[0].get_lines() if line.get_label().startswith("all tokens"))
    np.testing.assert_allclose(jsd_line.get_xdata(), np.arange(1, trace.n_layers + 1))
    np.testing.assert_allclose(jsd_line.get_ydata(), statistics["jsd_next"]["all"]["mean"], atol=1e-6)
    comparison = plot_comparison(
        [("a", statistics, None), ("b", statistics, detect_stages(trace))], metrics=("prob",)
    )
    labels = [line.get_label() for line in comparison.axes[0].get_lines()]
    assert labels[0].startswith("a (n=16)") and any(label.startswith("b (n=16)") for label in labels)


def test_figures_are_written_byte_identical(tmp_path, exact_trace: ExactTrace) -> None:
    data = heatmap_data(exact_trace.trace, "img-0")
    first = save_figure(plot_heatmap(data), tmp_path / "a", "heatmap")
    second = save_figure(plot_heatmap(data), tmp_path / "b", "heatmap")
    assert [p.name for p in first] == ["heatmap.png", "heatmap.svg"]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes() and a.stat().st_size > 1000
    assert first[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("token", "label"),
    [
        (" the", "␣the"),
        ("\n", "↵"),
        (" \t\n  ", "␣⇥↵␣␣"),
        ("$x$", "$x$"),
        ("", "∅"),
        ("a" * 20, "a" * 13 + "…"),
        ("\xa0", r"\u00a0"),
        ("a\\b", "a\\b"),
    ],
)
def test_token_labels(token: str, label: str) -> None:
    assert token_label(token) == label


def test_a_one_layer_stage_reads_layer_n_in_legends(planted_trace_dir) -> None:
    """Issue 15, item 12: a one-layer stage must read "layer 30", not "layers 30-30"."""
    trace = load_trace(planted_trace_dir)
    detected = detect_stages(trace)
    stages = replace(detected, stages=build_stages(trace.n_layers, 12, trace.n_layers))
    statistics = statistics_to_dict(layer_statistics(trace, n_boot=10), trace)
    figure = plot_layer_statistics(statistics, stages, metrics=("jsd_next",), groups=("all",))
    legend = [t.get_text() for a in figure.axes if a.get_legend() for t in a.get_legend().get_texts()]
    legend += [t.get_text() for lg in figure.legends for t in lg.get_texts()]
    assert "mutation (layer 30)" in legend and "stabilization (layers 12-29)" in legend, legend
