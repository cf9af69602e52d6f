"""The trace's ``image_tokens/`` table (``--image-tokens``): what every image token of the prompt reads as at
every lens layer, one row per (sample, image token), and where on the image the token sits.

Written in the part of its sample (``image_tokens/NAME`` before ``samples/NAME``, the commit), read back
with the finished samples only (``read_image_tokens``); docs/trace-format.md describes the columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from evolens.io.repair import PART_GLOB, read_part

IMAGE_TOKENS = "image_tokens"
"""The table's folder in a trace directory."""

IMAGE_TOKENS_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("token_index", pa.int32()),
        ("position", pa.int32()),
        ("view", pa.string()),
        ("x0", pa.float32()),
        ("y0", pa.float32()),
        ("x1", pa.float32()),
        ("y1", pa.float32()),
        ("top1_id", pa.list_(pa.int32())),
        ("probe_words", pa.list_(pa.string())),
        ("probe_ids", pa.list_(pa.int32())),
        ("probe_prob", pa.list_(pa.list_(pa.float32()))),
    ]
)
"""One row per sample x image token; list columns are indexed by lens layer (0..L), then probe word."""


@dataclass
class ImageTokenRecord:
    """The image-token lens of one sample: N image tokens, L+1 lens layers, P probe words.

    Attributes:
        positions: (N,) int, each token's position in the prompt (left padding not counted).
        boxes: (N, 4) float, x0, y0, x1, y1 of each token's region as fractions of the input image's width
            and height (x right, y down); NaN rows for tokens with no place on the image.
        views: N names of the view a token belongs to ("image", "base", "tile", "global", "newline",
            "query"; see ``evolens.models.image_regions``), None where unknown.
        top1_id: (N, L+1) int, the lens's most likely token at each layer.
        probe_words: the P words followed; ``probe_ids`` (P,) the token each is read as.
        probe_prob: (N, L+1, P) float, the lens probability of each probe token.
    """

    positions: np.ndarray
    boxes: np.ndarray
    views: list[str | None]
    top1_id: np.ndarray
    probe_words: list[str]
    probe_ids: list[int]
    probe_prob: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.positions)
        layers = self.top1_id.shape[1] if self.top1_id.ndim == 2 else 0
        expected = {
            "boxes": (self.boxes.shape, (n, 4)),
            "top1_id": (self.top1_id.shape, (n, layers)),
            "probe_prob": (self.probe_prob.shape, (n, layers, len(self.probe_words))),
        }
        for name, (shape, want) in expected.items():
            if tuple(shape) != want:
                raise ValueError(f"image-token record: {name} has shape {tuple(shape)}, expected {want}")
        if len(self.views) != n or len(self.probe_ids) != len(self.probe_words):
            raise ValueError("image-token record: views or probe ids do not match the tokens and words")


def image_tokens_table(sample_ids: list[str], records: list[ImageTokenRecord]) -> pa.Table:
    """The rows of ``records`` (one per sample of ``sample_ids``) as one table of ``IMAGE_TOKENS_SCHEMA``."""
    columns: dict[str, list[object]] = {name: [] for name in IMAGE_TOKENS_SCHEMA.names}
    for sample_id, record in zip(sample_ids, records, strict=True):
        n = len(record.positions)
        columns["sample_id"] += [sample_id] * n
        columns["token_index"] += list(range(n))
        columns["position"] += [int(p) for p in record.positions]
        columns["view"] += list(record.views)
        for axis, name in enumerate(("x0", "y0", "x1", "y1")):
            columns[name] += [None if np.isnan(v) else float(v) for v in record.boxes[:, axis]]
        columns["top1_id"] += [row.tolist() for row in record.top1_id.astype(np.int32)]
        columns["probe_words"] += [list(record.probe_words)] * n
        columns["probe_ids"] += [list(record.probe_ids)] * n
        columns["probe_prob"] += [layers.tolist() for layers in record.probe_prob.astype(np.float32)]
    return pa.table(columns, schema=IMAGE_TOKENS_SCHEMA)


def read_image_tokens(directory: str | Path) -> pd.DataFrame:
    """The ``image_tokens/`` table of a trace (empty, with its columns, when the trace has none): the rows
    of finished samples (those in ``samples/``), each from the part that commits it, ordered by part, sample
    and token."""
    directory = Path(directory)
    folder = directory / IMAGE_TOKENS
    paths = sorted(folder.glob(PART_GLOB)) if folder.is_dir() else []
    tables = []
    for path in paths:
        committed = directory / "samples" / path.name
        if committed.exists():
            ids = read_part(committed, ["sample_id"]).column("sample_id")
            table = read_part(path)
            tables.append(table.filter(pc.is_in(table.column("sample_id"), value_set=ids)))
    if not tables:
        return IMAGE_TOKENS_SCHEMA.empty_table().to_pandas()
    return pa.concat_tables(tables).to_pandas()
