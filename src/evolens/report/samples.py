"""Per-sample data for the report's explorer: tokens, per-layer metric matrices, top-k, a thumbnail.

Matrices (``evolens.vocabulary.EXPLORER``) are rows = generated steps, columns = lens layers 0..L (a
transition metric such as ``jsd_next`` has L columns: column l-1 holds JSD(p_{l-1}, p_l), shown at layer l).
Token ids of every top-k list go into one shared ``vocab`` table so each string is stored once (strings:
``report.build.token_strings``).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evolens.io.trace import Trace
from evolens.vocabulary import EXPLORER, METRICS

THUMBNAIL_SIDE = 320
DIGITS = 5


def rounded(values: np.ndarray, digits: int = DIGITS) -> list:
    """Nested lists of floats rounded to ``digits`` decimals (NaN -> None), for compact JSON."""
    array = np.round(np.asarray(values, dtype=np.float64), digits)
    cleaned = array.astype(object)
    cleaned[~np.isfinite(array)] = None
    return cleaned.tolist()


def sample_entries(trace: Trace, sample_ids: Sequence[str], vocab: dict[int, str]) -> list[dict[str, Any]]:
    """One explorer entry per sample id; top-k ids are added to ``vocab`` (filled with strings later)."""
    samples = trace.samples.set_index("sample_id")
    topk_ids, topk_probs = trace.topk()
    entries = []
    for sample_id in sample_ids:
        rows = trace.rows_of(sample_id)
        record = samples.loc[sample_id]
        ids = topk_ids[rows]
        vocab.update(dict.fromkeys(np.unique(ids).tolist(), ""))
        image = record.get("image") if isinstance(record.get("image"), str) else None
        entries.append(
            {
                "id": sample_id,
                "prompt": str(record["prompt"]),
                "text": str(record["text"]),
                "image_name": None if image is None else Path(str(image)).name,
                "image": thumbnail_data_uri(image),
                "tokens": [str(t) for t in trace.steps["token"].to_numpy()[rows]],
                "token_ids": trace.steps["token_id"].to_numpy()[rows].astype(int).tolist(),
                "settle_layer": settle_layers(trace.matrix("rank")[rows]).tolist(),
                "metrics": {name: rounded(trace.matrix(name)[rows]) for name in EXPLORER},
                "topk_ids": ids.tolist(),
                "topk_probs": rounded(topk_probs[rows], 4),
            }
        )
    return entries


def explorer_metrics() -> list[dict[str, Any]]:
    """The explorer's metrics for the page, in order: {"key", "label", "first"}; ``first`` is the lens
    layer of a matrix's column 0."""
    return [
        {"key": name, "label": METRICS[name].label, "first": METRICS[name].first_layer} for name in EXPLORER
    ]


def settle_layers(rank: np.ndarray) -> np.ndarray:
    """(n_steps,) the first lens layer from which the emitted token stays top-1 up to the last layer.

    Args:
        rank: (n_steps, L+1) rank of the emitted token per layer (0 = top-1).
    """
    not_top = rank != 0
    # index of the last layer where the token is not top-1, +1; 0 when it is top-1 everywhere
    reversed_first = np.argmax(not_top[:, ::-1], axis=1)
    last_not_top = rank.shape[1] - 1 - reversed_first
    return np.where(not_top.any(axis=1), last_not_top + 1, 0)


def thumbnail_data_uri(image: str | None, side: int = THUMBNAIL_SIDE) -> str | None:
    """A JPEG data URI of the image at most ``side`` pixels on its long side; None if it can't be read."""
    if image is None or not Path(image).is_file():
        return None
    from evolens.data.images import load_image
    from evolens.errors import InputError

    try:
        picture = load_image(image)
    except InputError:
        return None
    picture.thumbnail((side, side))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def pick_samples(trace: Trace, max_samples: int) -> list[str]:
    """The first ``max_samples`` sample ids in trace order (the dataset's order)."""
    return trace.sample_ids[:max_samples]
