"""The per-layer metrics of a trace, each defined once: its name, shape, unit, label and meaning.

The trace store's schema, the engine's ``StepMetrics``, the analyses, the figures, the report and the CLI
all read names and labels from here, so a metric is spelled and described the same way everywhere.

A metric's ``per`` says what one generated token holds (L decoder layers, lens layers 0..L):

- ``"layer"``: L+1 values, one per lens layer 0..L;
- ``"transition"``: L values, one per pair of consecutive lens layers; value l-1 belongs to layer l
  (the change layer l made, between layers l-1 and l), so it is drawn at layers 1..L;
- ``"layer_topk"``: (L+1, k) values, the k most likely tokens of each lens layer;
- ``"layer_heads"``: (L, H) values, one per attention head of each decoder layer 1..L.

A stored metric's ``source`` says what computes it: ``"lens"``, the step engine from each layer's lens
distribution (``evolens.tracing.engine.StepMetrics``); ``"attention"``, the attention probabilities of the
current position, recomputed from each decoder layer's queries and keys (``evolens.models.capture``).

Stored metrics are columns of the trace's steps table (docs/trace-format.md); derived ones are computed
by the analyses from stored ones (``evolens.analysis.distribution.metric_values``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Per = Literal["layer", "transition", "layer_topk", "layer_heads"]


@dataclass(frozen=True)
class Metric:
    """One per-layer metric.

    Attributes:
        name: the steps column (stored) or the analyses' key (derived), e.g. "jsd_next".
        per: what a token holds: "layer" (L+1), "transition" (L, at layers 1..L) or "layer_topk" (L+1, k).
        unit: "nats", "probability", "rank", "bits", "fraction", "token id", ...
        label: the one human label of the metric (axis titles, legends, summary.json, the report).
        short: a short name for titles and colour bars ("JSD", "p").
        direction: what a higher value means.
        stored: True for a column of the trace, False for a metric the analyses derive.
        arrow: the stored column's Arrow type ("list<float32>"); None for a derived metric.
        source: for a stored metric, what computes it: "lens" (the step engine) or "attention" (the
            attention readout of ``evolens.models.capture.AttentionShares``).
    """

    name: str
    per: Per
    unit: str
    label: str
    short: str
    direction: str
    stored: bool
    arrow: str | None = None
    source: Literal["lens", "attention"] = "lens"

    def __post_init__(self) -> None:
        if self.stored != (self.arrow is not None):
            raise ValueError(f"metric {self.name}: a stored metric has an Arrow type, a derived one none")

    @property
    def first_layer(self) -> int:
        """The lens layer of a token's first value: 1 for a transition (the layer that made the change)."""
        return 1 if self.per in ("transition", "layer_heads") else 0

    def layers(self, n_layers: int) -> range:
        """The lens layers a token's values belong to, for L = ``n_layers``: 1..L or 0..L."""
        return range(self.first_layer, n_layers + 1)


DEFINED = (
    Metric(
        "prob",
        "layer",
        "probability",
        "p(emitted token)",
        "p",
        "the emitted token is more likely",
        stored=True,
        arrow="list<float32>",
    ),
    Metric(
        "rank",
        "layer",
        "rank",
        "rank of the emitted token",
        "rank",
        "the emitted token is further from top-1 (0 = top-1)",
        stored=True,
        arrow="list<int32>",
    ),
    Metric(
        "entropy",
        "layer",
        "nats",
        "entropy (nats)",
        "H",
        "a more uncertain next-token distribution",
        stored=True,
        arrow="list<float32>",
    ),
    Metric(
        "jsd_next",
        "transition",
        "nats",
        "JSD to the previous layer (nats)",
        "JSD",
        "more change made by the layer (at most ln 2)",
        stored=True,
        arrow="list<float32>",
    ),
    Metric(
        "jsd_last",
        "layer",
        "nats",
        "JSD to the last layer (nats)",
        "JSD to the last layer",
        "further from the output distribution (at most ln 2)",
        stored=True,
        arrow="list<float32>",
    ),
    Metric(
        "kl_last",
        "layer",
        "nats",
        "KL(p_L ‖ p_l) (nats)",
        "KL",
        "further from the output distribution",
        stored=True,
        arrow="list<float32>",
    ),
    Metric(
        "paper_js",
        "transition",
        "the paper's JS (about JSD / V)",
        "the paper's JS to the previous layer (raw lens)",
        "paper's JS",
        "more change made by the layer, on the paper's scale",
        stored=True,
        arrow="list<float32>",
    ),
    Metric(
        "topk_ids",
        "layer_topk",
        "token id",
        "top-k token ids",
        "top-k",
        "nothing: ids, the most likely first",
        stored=True,
        arrow="list<list<int32>>",
    ),
    Metric(
        "topk_probs",
        "layer_topk",
        "probability",
        "top-k probabilities",
        "top-k p",
        "a more likely candidate",
        stored=True,
        arrow="list<list<float32>>",
    ),
    Metric(
        "attn_image",
        "transition",
        "fraction",
        "attention share on the image tokens",
        "attn image",
        "the layer's heads read more from the image tokens",
        stored=True,
        arrow="list<float32>",
        source="attention",
    ),
    Metric(
        "attn_prompt",
        "transition",
        "fraction",
        "attention share on the prompt text",
        "attn prompt",
        "the layer's heads read more from the prompt's other tokens",
        stored=True,
        arrow="list<float32>",
        source="attention",
    ),
    Metric(
        "attn_generated",
        "transition",
        "fraction",
        "attention share on the generated tokens",
        "attn generated",
        "the layer's heads read more from the tokens generated so far",
        stored=True,
        arrow="list<float32>",
        source="attention",
    ),
    Metric(
        "attn_image_heads",
        "layer_heads",
        "fraction / 255",
        "attention share on the image tokens, per head",
        "attn image (heads)",
        "a head reads more from the image tokens (round(255 x share), uint8)",
        stored=True,
        arrow="list<list<uint8>>",
        source="attention",
    ),
    Metric(
        "log_rank",
        "layer",
        "bits",
        "log2(1 + rank of emitted token)",
        "log2(1 + rank)",
        "the emitted token is further from top-1 (0 = top-1)",
        stored=False,
    ),
    Metric(
        "log_prob",
        "layer",
        "nats",
        "log p(emitted token)",
        "log p",
        "the emitted token is more likely (0 = certain)",
        stored=False,
    ),
    Metric(
        "top1",
        "layer",
        "fraction",
        "fraction with emitted token top-1",
        "top-1",
        "more tokens already have their emitted token on top",
        stored=False,
    ),
)
ATTENTION_SHARES = ("attn_image", "attn_prompt", "attn_generated")
"""Where the current position's attention goes, per decoder layer (head-averaged shares summing to 1)."""
METRICS: dict[str, Metric] = {m.name: m for m in DEFINED}
"""Every metric by name: the stored ones in the steps table's column order, then the derived ones."""
STORED: tuple[Metric, ...] = tuple(m for m in DEFINED if m.stored)
"""The steps table's metric columns, in order."""
LENS_STORED: tuple[Metric, ...] = tuple(m for m in STORED if m.source == "lens")
"""The stored metrics the step engine computes (``StepMetrics`` has exactly these fields)."""

LAYER_STATISTICS = ("jsd_next", "kl_last", "entropy", "prob", "log_rank", "top1")
"""The per-layer means with intervals that summary.json's ``distribution`` holds, in the panel order of
the ``layer_curves`` figure."""
OVERVIEW = ("jsd_next", "prob", "entropy", "kl_last")
"""The four curves the report shows for the dataset and ``evolens compare`` overlays."""
EXPLORER = ("jsd_next", "prob", "entropy", "jsd_last", "rank")
"""The matrices the report's sample explorer colours its heatmap by."""
HEATMAP = ("jsd_next", "paper_js")
"""The metrics the heatmap figure can show."""
IMAGE_EFFECT = ("log_prob", "log_rank", "entropy", "jsd_next", "kl_last")
"""The metrics whose paired difference real - null (the same tokens scored without the image, with a blank
or another image) summary.json's ``image_effect`` holds, in the panel order of its figure."""


def metric(name: str) -> Metric:
    """The metric called ``name``; ValueError naming the known ones otherwise."""
    if name not in METRICS:
        raise ValueError(f"unknown metric '{name}'; known: {', '.join(METRICS)}")
    return METRICS[name]


def names(per: Per | None = None, stored: bool | None = None) -> tuple[str, ...]:
    """Names of the metrics with that ``per`` and/or ``stored``, in ``METRICS`` order."""
    return tuple(
        m.name for m in DEFINED if (per is None or m.per == per) and (stored is None or m.stored == stored)
    )
