"""Feature maps (issue 15, item 5) and text in figures (item 6), checked on the drawn artists.

Defects: the t-SNE/PCA PNGs coloured points by stage only (one colour for a 28-layer stage, so the
shallow-to-deep path was invisible), markers repeated past ~10 images, the legend covered data, the answer
word was missing, images sorted as text (img10 before img2), PCA axes lacked explained variance, and a `$`
in a prompt was read as matplotlib mathtext ("worth $5 or $10" drawn as an italic "5or10").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize

from evolens.analysis.features import answer_points, project_2d, separation_by_layer
from evolens.analysis.single_token import candidate_curves, heatmap_data, lens_grid
from evolens.analysis.stages import detect_stages
from evolens.data.rows import natural_key
from evolens.eval.plots import word_curves_figure
from evolens.interventions.report import skip_figure
from evolens.io.trace import load_trace
from evolens.plots.features import plot_feature_map, plot_separation
from evolens.plots.heatmap import plot_heatmap
from evolens.plots.lens_grid import plot_lens_grid
from evolens.plots.style import MARKERS, save_figure
from evolens.plots.token_probs import plot_token_probabilities
from tests.analysis.conftest import ExactTrace, planted_trace_samples
from tests.analysis.synthetic import write_trace

DOLLARS = "Is this worth $5 or $10?"
N_IMAGES = 17  # past the 15 marker shapes


@pytest.fixture(scope="module")
def many_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """17 images named img1..img17 (stored out of natural order), in groups, one without a group."""
    samples = planted_trace_samples(n_samples=N_IMAGES, n_steps=3)
    for index, sample in enumerate(samples):
        sample.sample_id = f"img{index + 1}"
    order = sorted(range(N_IMAGES), key=lambda i: samples[i].sample_id)  # text order: img1, img10, ...
    groups = ["animals", "flowers", "fruit"]
    labels = [groups[i % 3] if i != 4 else None for i in order]
    return write_trace(tmp_path_factory.mktemp("many") / "trace", [samples[i] for i in order], groups=labels)


def sample_collections(axes) -> dict[str, object]:
    return {
        c.get_gid().removeprefix("sample "): c
        for c in axes.collections
        if (c.get_gid() or "").startswith("sample ")
    }


def test_points_are_coloured_by_layer_along_each_images_path(planted_trace_dir: Path) -> None:
    trace = load_trace(planted_trace_dir)
    stages = detect_stages(trace)
    points = answer_points(trace, trace.sample_ids, 0)
    projection = project_2d(points.states, "pca")
    figure = plot_feature_map(projection.xy, points.rows, stages, "pca", by_sample=True)
    axes = figure.axes[0]
    colours = colormaps["viridis"]
    norm = Normalize(0, trace.n_layers)
    drawn = sample_collections(axes)
    assert set(drawn) == set(trace.sample_ids)
    for sample_id, collection in drawn.items():
        mine = np.flatnonzero(points.rows["sample_id"].to_numpy() == sample_id)
        mine = mine[np.argsort(points.rows["layer"].to_numpy()[mine])]
        np.testing.assert_allclose(collection.get_offsets(), projection.xy[mine])
        expected = colours(norm(points.rows["layer"].to_numpy()[mine]))
        np.testing.assert_allclose(collection.get_facecolors(), expected, atol=1e-6)
    paths = [line for line in axes.get_lines() if len(line.get_xdata()) == trace.n_layers]
    assert len(paths) == len(trace.sample_ids), "each image's shallow-to-deep path is drawn"
    colorbar = figure.axes[-1]
    assert colorbar.get_ylabel() == "layer (shallow → deep)"
    ticks = [t.get_text() for t in colorbar.get_yticklabels()]
    assert ticks == ["0 rapid evolution", "12 stabilization", "27 mutation", "30"]


def test_pca_axes_carry_the_explained_variance(planted_trace_dir: Path) -> None:
    trace = load_trace(planted_trace_dir)
    points = answer_points(trace, trace.sample_ids, 0)
    projection = project_2d(points.states, "pca")
    centred = points.states.astype(np.float64) - points.states.astype(np.float64).mean(0)
    singular = np.linalg.svd(centred, compute_uv=False)
    shares = singular**2 / (singular**2).sum()
    np.testing.assert_allclose(projection.explained, shares[:2], rtol=1e-6)
    axes = plot_feature_map(
        projection.xy, points.rows, detect_stages(trace), "pca", explained=projection.explained
    )
    assert axes.axes[0].get_xlabel() == f"PC1 ({100 * shares[0]:.1f}%)"
    assert axes.axes[0].get_ylabel() == f"PC2 ({100 * shares[1]:.1f}%)"
    assert project_2d(points.states, "tsne").explained is None


def test_many_images_are_numbered_in_natural_order_outside_the_axes(many_images: Path) -> None:
    trace = load_trace(many_images)
    rows_by_id = answer_points(trace, trace.sample_ids, 0)
    rows = rows_by_id.rows.drop(columns="group", errors="ignore")
    xy = project_2d(rows_by_id.states, "pca").xy
    figure = plot_feature_map(xy, rows, detect_stages(trace), "pca", by_sample=True, title="t")
    axes = figure.axes[0]
    ordered = sorted(trace.sample_ids, key=natural_key)
    assert ordered[:3] == ["img1", "img2", "img3"] and ordered[-1] == "img17"
    (legend,) = figure.legends
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels == [
        f"{n + 1} {s}: {rows.set_index('sample_id').loc[s, 'answer'].iloc[0]}" for n, s in enumerate(ordered)
    ]
    assert [a.get_text() for a in axes.texts] == [str(n + 1) for n in range(N_IMAGES)], "numbered at the end"
    drawn = sample_collections(axes)
    markers = [drawn[s].get_paths()[0].vertices.round(6).tobytes() for s in ordered]
    assert len(set(markers[: len(MARKERS)])) == len(MARKERS), "every marker shape used before one repeats"
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    box, legend_box = axes.get_window_extent(renderer), legend.get_window_extent(renderer)
    assert legend_box.y1 <= box.y0, "the legend lies below the axes, never over the points"


def test_groups_facet_the_map_and_a_missing_group_is_its_own_panel(many_images: Path) -> None:
    trace = load_trace(many_images)
    points = answer_points(trace, trace.sample_ids, 0)
    group_of = dict(zip(trace.samples["sample_id"], trace.samples["group"], strict=True))
    rows = points.rows.assign(group=points.rows["sample_id"].map(group_of))
    xy = project_2d(points.states, "pca").xy
    figure = plot_feature_map(xy, rows, detect_stages(trace), "pca", by_sample=True, title="t")
    panels = [a for a in figure.axes if a.get_title().startswith("group: ")]
    assert [a.get_title() for a in panels] == [
        f"group: {g}" for g in ("(no group)", "animals", "flowers", "fruit")
    ]
    for axes in panels:
        group = axes.get_title().removeprefix("group: ")
        members = set(sample_collections(axes))
        expected = {s for s, g in group_of.items() if ("(no group)" if pd.isna(g) else g) == group}
        assert members == expected
        background = [c for c in axes.collections if c.get_gid() == "background"]
        assert len(background[0].get_offsets()) == len(rows) - (rows["sample_id"].isin(members)).sum()
    single = plot_feature_map(xy, rows.assign(group=None), detect_stages(trace), "pca", by_sample=True)
    assert not [a for a in single.axes if a.get_title().startswith("group: ")], "no groups: one panel"


def svg_text(figure, tmp_path: Path, name: str) -> str:
    return save_figure(figure, tmp_path, name)[1].read_text()


def test_dollars_are_text_not_mathtext_in_every_figure(exact_trace: ExactTrace, tmp_path: Path) -> None:
    trace = exact_trace.trace
    stages = detect_stages(trace)
    points = answer_points(trace, trace.sample_ids, 0)
    figures = {
        "heatmap": plot_heatmap(heatmap_data(trace, "img-1"), stages, title=DOLLARS),
        "lens_grid": plot_lens_grid(lens_grid(trace, "img-1"), stages, title=DOLLARS),
        "token_probs": plot_token_probabilities(
            candidate_curves(trace, 3, late_from=2), stages, title=DOLLARS
        ),
        "features": plot_feature_map(
            project_2d(points.states, "pca").xy, points.rows, stages, "pca", by_sample=True, title=DOLLARS
        ),
        "separation": plot_separation(separation_by_layer(points), stages, title=DOLLARS),
    }
    for name, figure in figures.items():
        titles = [a.get_title() for a in figure.axes] + [
            figure._suptitle.get_text() if figure._suptitle else ""
        ]
        assert DOLLARS in titles, name
        assert f">{DOLLARS}<" in svg_text(figure, tmp_path, name), f"{name}: the title is not drawn verbatim"


def test_dollars_in_experiment_figures(tmp_path: Path) -> None:
    stat = {"mean": 0.5, "low": 0.4, "high": 0.6, "n": 2}
    condition = {
        "kind": "stage",
        "name": "$5 or $10",
        "token_agreement": stat,
        "chair_i": stat,
        "speedup_per_token": 1.5,
        "control_of": None,
    }
    skip_figure({"model": DOLLARS, "n_samples": 2, "conditions": [condition]}, tmp_path / "skip")
    assert f"Layer skipping on {DOLLARS}" in (tmp_path / "skip.svg").read_text()
    curves = {"jsd_next": [0.1, 0.2], "prob": [0.1, 0.2, 0.3]}
    report = {
        "model": DOLLARS,
        "n_words": 2,
        "n_hallucinated": 1,
        "stages": {"critical_layer": 1},
        "curves": {"faithful": curves, "hallucinated": curves},
    }
    word_curves_figure(report, tmp_path / "words")
    assert f">{DOLLARS}: 2 object/colour words" in (tmp_path / "words.svg").read_text()


def test_natural_key_orders_numbers_by_value() -> None:
    names = ["flower10", "Flower2", "flower1", "flower2b", "apple", "flower²"]
    assert sorted(names, key=natural_key) == [
        "apple",
        "flower1",
        "Flower2",
        "flower2b",
        "flower10",
        "flower²",
    ]
    assert pd.Series(["img10", "img9"]).sort_values(key=lambda s: s.map(natural_key)).tolist() == [
        "img9",
        "img10",
    ]
