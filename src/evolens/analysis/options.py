"""What ``analyze`` computes and draws, and how: the options every analysis of a trace takes."""

from __future__ import annotations

from dataclasses import dataclass, field

from evolens.analysis.features import Answer
from evolens.analysis.stages import StageConfig


@dataclass
class AnalyzeOptions:
    """What ``analyze`` draws and how.

    Attributes:
        samples: samples that get single-token figures; None = the first sample.
        steps: (first, last) generated steps for the heatmap and the lens grid; None = all, in pages.
        metric: heatmap metric, "jsd_next" or "paper_js" (the paper's figure: raw lens, its formula,
            per-layer scaling).
        normalization: heatmap colours, "none" (comparable across layers) or "per-layer".
        tokens: tokens (step index or text) that get the probability chart; empty = picked automatically
            (the first content word and the token whose late-layer rival came closest).
        rows_per_page / steps_per_page: page sizes of the heatmap and of the lens grid.
        answer: for the many-images feature map, the answer step: "auto" (first content word), a step
            index, or the answer words.
        projections: "tsne" and/or "pca".
        max_feature_steps: at most this many steps of a sample in its feature map (t-SNE cost grows
            with the square of the points: 100 steps x 30 layers take about a minute on one core).
        max_answer_images: at most this many images (the first ones) in a many-images map.
        figures: draw figures at all (False: summary.json only, without feature maps).
        features: draw feature maps when hidden states are stored.
        n_boot, seed: bootstrap replicates and seed.
        stage_config: the stage detector's parameters.
    """

    samples: list[str] | None = None
    steps: tuple[int, int] | None = None
    metric: str = "jsd_next"
    normalization: str = "none"
    tokens: list[str] = field(default_factory=list)
    rows_per_page: int = 40
    steps_per_page: int = 20
    answer: Answer = "auto"
    projections: tuple[str, ...] = ("tsne", "pca")
    max_feature_steps: int = 100
    max_answer_images: int = 24
    figures: bool = True
    features: bool = True
    n_boot: int = 1000
    seed: int = 0
    stage_config: StageConfig = field(default_factory=StageConfig)
