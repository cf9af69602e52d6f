"""Feature maps (t-SNE / PCA of hidden states) coloured by layer, and the per-layer separation curves."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colorbar import Colorbar
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from evolens.analysis.stages import StageResult
from evolens.data.rows import natural_key
from evolens.plots.style import MARKERS, figure_style, mark_key_layers, new_figure, shade_stages
from evolens.vocabulary import KEY_LAYER_COLORS, STAGE_LABELS

METHOD_NAMES = {"tsne": "t-SNE", "pca": "PCA"}
LAYER_COLORMAP = "viridis"
NO_GROUP = "(no group)"
LEGEND_COLUMNS = 3


def plot_feature_map(
    coordinates: np.ndarray,
    rows: pd.DataFrame,
    stages: StageResult,
    method: str,
    by_sample: bool = False,
    title: str = "",
    explained: tuple[float, float] | None = None,
) -> Figure:
    """Points (n, 2) coloured by their layer (shallow to deep on a sequential colormap, stages named on
    the colourbar).

    ``rows`` (n rows) gives each point's ``layer`` and ``sample_id``, optionally ``answer`` (the answer
    word) and ``group`` (a sample's group label, may be missing or null). With ``by_sample`` each sample's
    points are joined in layer order (its path from shallow to deep), drawn with its own marker, numbered
    at its deepest layer and listed, in natural order (img2 before img10) with its answer word, in a
    legend below the axes; samples carrying two or more groups get one panel per group (same axes, the
    other groups' points in grey). ``explained`` (PCA's variance shares) labels the axes "PC1 (34.1%)".
    """
    coordinates = np.asarray(coordinates, dtype=np.float64)
    layers = rows["layer"].to_numpy()
    colours = ScalarMappable(Normalize(vmin=0, vmax=stages.n_layers), LAYER_COLORMAP)
    samples = sorted(dict.fromkeys(rows["sample_id"].astype(str)), key=natural_key) if by_sample else []
    groups = _groups(rows) if by_sample else {}
    labels = sorted(set(groups.values()), key=natural_key)
    panels: list[str | None] = list(labels) if len(labels) > 1 else [None]
    n_columns = 1 if len(panels) == 1 else 2
    n_rows = math.ceil(len(panels) / n_columns)
    legend_height = 0.17 * math.ceil(len(samples) / LEGEND_COLUMNS)
    with figure_style():
        if n_columns == 1:
            figure = new_figure(7.0, 6.0 + legend_height)
        else:
            figure = new_figure(10.0, 3.9 * n_rows + 0.5 + legend_height)
        axes_list: list[Axes] = []
        for index, panel in enumerate(panels):
            first = axes_list[0] if axes_list else None
            axes = figure.add_subplot(n_rows, n_columns, index + 1, sharex=first, sharey=first)
            axes_list.append(axes)
            _label_axes(axes, method, explained)
            if not by_sample:
                x, y = coordinates.T
                axes.scatter(x, y, c=colours.to_rgba(layers), s=14, alpha=0.8, edgecolors="none")
                continue
            members = [s for s in samples if panel is None or groups[s] == panel]
            if panel is not None:
                others = ~rows["sample_id"].astype(str).isin(members).to_numpy()
                x, y = coordinates[others].T
                axes.scatter(x, y, s=6, color="0.85", edgecolors="none", gid="background")
                axes.set_title(f"group: {panel}", fontsize=10)
            for sample_id in members:
                _draw_path(axes, coordinates, rows, sample_id, samples.index(sample_id), colours)
        _stage_colorbar(figure.colorbar(colours, ax=axes_list, fraction=0.035, pad=0.01), stages)
        if samples:
            figure.legend(
                handles=_sample_handles(rows, samples, groups if panels != [None] else {}),
                loc="outside lower center",
                ncol=LEGEND_COLUMNS,
                fontsize=7,
                frameon=False,
                title="sample: answer" if "answer" in rows else "sample",
                title_fontsize=7,
            )
        text = textwrap.fill(title or f"{METHOD_NAMES.get(method, method)} of hidden states", 70)
        if panels == [None]:
            axes_list[0].set_title(text)
        else:
            figure.suptitle(text)
    return figure


def _groups(rows: pd.DataFrame) -> dict[str, str]:
    """Each sample's group label (NO_GROUP where missing or null); empty when no sample carries one."""
    if "group" not in rows or rows["group"].isna().all():
        return {}
    first = rows.drop_duplicates("sample_id")
    return {
        str(s): NO_GROUP if pd.isna(g) else str(g)
        for s, g in zip(first["sample_id"], first["group"], strict=True)
    }


def _draw_path(
    axes: Axes,
    coordinates: np.ndarray,
    rows: pd.DataFrame,
    sample_id: str,
    number: int,
    colours: ScalarMappable,
) -> None:
    """One sample's points in layer order: a thin line, markers coloured by layer, its number at the end."""
    mine = np.flatnonzero(rows["sample_id"].astype(str).to_numpy() == sample_id)
    mine = mine[np.argsort(rows["layer"].to_numpy()[mine], kind="stable")]
    xy = coordinates[mine]
    axes.plot(xy[:, 0], xy[:, 1], color="0.55", lw=0.6, alpha=0.7, zorder=1)
    axes.scatter(
        xy[:, 0],
        xy[:, 1],
        c=colours.to_rgba(rows["layer"].to_numpy()[mine]),
        marker=MARKERS[number % len(MARKERS)],
        s=26,
        edgecolors="0.25",
        linewidths=0.3,
        zorder=2,
        gid=f"sample {sample_id}",
    )
    axes.annotate(
        str(number + 1), tuple(xy[-1]), xytext=(3, 3), textcoords="offset points", fontsize=6, zorder=3
    )


def _stage_colorbar(colorbar: Colorbar, stages: StageResult) -> None:
    """Ticks at each stage's first layer, named after the stage; lines at the critical and mutation layers."""
    colorbar.set_label("layer (shallow → deep)")
    starts = [stage.start for stage in stages.stages]
    names = [f"{stage.start} {STAGE_LABELS.get(stage.name, stage.name)}" for stage in stages.stages]
    if stages.n_layers not in starts:
        starts, names = [*starts, stages.n_layers], [*names, str(stages.n_layers)]
    colorbar.set_ticks(starts, labels=names, fontsize=7)
    if stages.critical_layer is not None:
        colorbar.ax.axhline(stages.critical_layer, color=KEY_LAYER_COLORS["critical"], ls="--", lw=1)
    if stages.mutation_layer is not None:
        colorbar.ax.axhline(stages.mutation_layer, color=KEY_LAYER_COLORS["mutation"], ls=":", lw=1.2)


def _label_axes(axes: Axes, method: str, explained: tuple[float, float] | None) -> None:
    """ "PC1 (34.1%)" / "PC2 (12.0%)" for PCA with its variance shares, else "t-SNE 1" / "t-SNE 2"."""
    if method == "pca" and explained is not None:
        axes.set_xlabel(f"PC1 ({100 * explained[0]:.1f}%)")
        axes.set_ylabel(f"PC2 ({100 * explained[1]:.1f}%)")
    else:
        name = METHOD_NAMES.get(method, method)
        axes.set_xlabel(f"{name} 1")
        axes.set_ylabel(f"{name} 2")
    if method == "tsne":  # t-SNE coordinates have no meaning of their own
        axes.tick_params(labelbottom=False, labelleft=False)


def _sample_handles(rows: pd.DataFrame, samples: list[str], groups: dict[str, str]) -> list[Line2D]:
    """Legend entries "3 flower10: red" (and the group when panels split them), in the samples' order."""
    first = rows.drop_duplicates("sample_id")
    answers = (
        dict(zip(first["sample_id"].astype(str), first["answer"], strict=True)) if "answer" in rows else {}
    )
    handles = []
    for number, sample_id in enumerate(samples):
        label = f"{number + 1} {sample_id[:28]}"
        if sample_id in answers:
            label += f": {answers[sample_id]}"
        if groups:
            label += f" ({groups[sample_id]})"
        marker = MARKERS[number % len(MARKERS)]
        handles.append(Line2D([], [], ls="", marker=marker, color="0.35", ms=5, label=label))
    return handles


def plot_separation(separation: pd.DataFrame, stages: StageResult, title: str = "") -> Figure:
    """The per-layer separation measures of the answer-step states (see ``separation_by_layer``)."""
    with figure_style():
        figure = new_figure(7.5, 3.6)
        left = figure.add_subplot(1, 2, 1)
        right = figure.add_subplot(1, 2, 2)
        for axes in (left, right):
            shade_stages(axes, stages)
            mark_key_layers(axes, stages, text=False)
        left.plot(separation["layer"], separation["dispersion"], color="black", marker="o", ms=3)
        left.set_ylabel("spread between images\n(mean pairwise distance / mean norm)")
        right.plot(
            separation["layer"],
            separation["silhouette_by_image"],
            marker="o",
            ms=3,
            label="by image (layers l-1..l+1)",
        )
        if separation["silhouette_by_answer"].notna().any():
            right.plot(
                separation["layer"],
                separation["silhouette_by_answer"],
                marker="s",
                ms=3,
                label="by answer word",
            )
        right.axhline(0, color="0.5", lw=0.8)
        right.set_ylim(-1, 1)
        right.set_ylabel("silhouette score")
        right.legend(fontsize=7, loc="lower right")
        for axes in (left, right):
            axes.set_xlabel("layer")
        figure.suptitle(title or "How well the answer-step states separate by image, per layer")
    return figure
