"""Batches of samples as Arrow rows, with their images decoded in bulk: the form in which an engine that
streams data between processes (the Ray engine) passes samples on.

One row per batch, so that a batch stays whole whatever blocks the engine cuts: ``batches_table`` writes
lists of ``(index, Sample)`` pairs as ``BATCHES_SCHEMA`` rows; ``decode_images`` adds each image's 8-bit RGB
pixels (``load_image``) and the SHA-256 of the bytes they were decoded from, or the one-line error that makes
that sample fail (``DECODED_SCHEMA``);
``sample_of`` and ``image_of`` turn one decoded sample back into a ``Sample`` and a PIL image. Light on
purpose (no torch): CPU workers that only decode images import just this.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from PIL import Image

from evolens.data.images import image_sha256, load_image, with_sha256
from evolens.data.rows import DataRow
from evolens.errors import InputError
from evolens.io.atomic import json_text

SAMPLE_TYPE = pa.struct(
    [
        ("index", pa.int64()),
        ("sample_id", pa.string()),
        ("image", pa.string()),
        ("file", pa.string()),
        ("prompt", pa.string()),
        ("ground_truth", pa.string()),
        ("group", pa.string()),
    ]
)
"""One sample: its position in the resolved inputs, then the ``DataRow`` fields (``image`` as given, and as
an absolute ``file`` that a worker with another working directory opens; ``ground_truth`` as JSON)."""

DECODED_SAMPLE_TYPE = pa.struct(
    [
        *SAMPLE_TYPE,
        ("pixels", pa.binary()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("image_sha256", pa.string()),
        ("error", pa.string()),
    ]
)
"""A sample with its image decoded: RGB bytes, row-major (height, width, 3), and the SHA-256 of the file
bytes they were decoded from, or the error that makes it fail; no pixels when the sample has no image or it
could not be read."""

BATCHES_SCHEMA = pa.schema([("batch", pa.int64()), ("samples", pa.list_(SAMPLE_TYPE))])
DECODED_SCHEMA = pa.schema([("batch", pa.int64()), ("samples", pa.list_(DECODED_SAMPLE_TYPE))])


def batches_table(batches: Sequence[Sequence[tuple[int, DataRow]]]) -> pa.Table:
    """Batches of ``(index, sample)`` pairs as ``BATCHES_SCHEMA`` rows, numbered from 0."""
    rows = [
        {"batch": number, "samples": [_sample_row(index, sample) for index, sample in batch]}
        for number, batch in enumerate(batches)
    ]
    return pa.Table.from_pylist(rows, schema=BATCHES_SCHEMA)


def decode_images(table: pa.Table) -> pa.Table:
    """``BATCHES_SCHEMA`` rows -> the same rows with every sample's image decoded (``DECODED_SCHEMA``)."""
    rows = table.to_pylist()
    for row in rows:
        for sample in row["samples"]:
            image, sample["error"] = None, None
            if sample["image"] is not None:
                try:
                    image = load_image(sample["file"])
                except InputError as exc:  # named as given, as the local engine names it
                    sample["error"] = str(exc).replace(sample["file"], sample["image"])
            sample["pixels"] = None if image is None else image.tobytes()
            sample["width"], sample["height"] = (0, 0) if image is None else image.size
            sample["image_sha256"] = None if image is None else image_sha256(sample["file"], image)
    return pa.Table.from_pylist(rows, schema=DECODED_SCHEMA)


def sample_of(sample: dict[str, Any]) -> DataRow:
    """The ``DataRow`` of one sample of a batch row, its image as the absolute ``file``."""
    return DataRow(
        sample_id=sample["sample_id"],
        image=None if sample["file"] is None else Path(sample["file"]),
        prompt=sample["prompt"],
        ground_truth=None if sample["ground_truth"] is None else json.loads(sample["ground_truth"]),
        group=sample["group"],
    )


def image_of(sample: dict[str, Any]) -> Image.Image | None:
    """The decoded image of one sample of a ``DECODED_SCHEMA`` row (None without pixels), keeping the
    hash of the bytes it was decoded from (``evolens.data.images.image_sha256``)."""
    if sample["pixels"] is None:
        return None
    image = Image.frombytes("RGB", (sample["width"], sample["height"]), sample["pixels"])
    return with_sha256(image, sample.get("image_sha256"))


def _sample_row(index: int, sample: DataRow) -> dict[str, Any]:
    return {
        "index": index,
        "sample_id": sample.sample_id,
        "image": None if sample.image is None else str(sample.image),
        "file": None if sample.image is None else str(Path(sample.image).absolute()),
        "prompt": sample.prompt,
        "ground_truth": None if sample.ground_truth is None else json_text(sample.ground_truth, indent=None),
        "group": sample.group,
    }
