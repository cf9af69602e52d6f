"""Counterfactual inputs: what the model is shown instead of a sample's own image (``TraceSpec.condition``).

The nulls a reviewer asks for: score (or generate) the same prompts and tokens

- ``image``: with the sample's own image (the real condition);
- ``no-image``: without any image (the prompt alone, through the family's text-only chat template; a family
  whose processor needs an image fails each sample with a one-line reason);
- ``blank``: with a uniform image of the sample image's size and mean colour (the image's presence and
  size, none of its content);
- ``shuffled``: with another sample's image: a fixed derangement of the distinct images of the inputs
  (seeded by ``TraceSpec.seed``; no image keeps its own), so that prompt and response no longer match
  what is shown.

Each record says what the model saw (``SampleRecord.image_used``): the file, the blank's colour, or nothing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from evolens.data.images import load_image
from evolens.data.resolve import Sample
from evolens.errors import UsageError
from evolens.tracing.spec import CONDITIONS


def derangement(samples: Sequence[Sample], seed: int) -> dict[Path, Path]:
    """Each distinct image of ``samples`` -> another one of them, a permutation without fixed points
    (Sattolo's algorithm: one cycle through all of them, in a seeded order); a UsageError with fewer than
    two distinct images."""
    images = sorted({sample.image for sample in samples if sample.image is not None})
    if len(images) < 2:
        raise UsageError("the shuffled condition needs at least two different images")
    order = list(images)
    random.Random(seed).shuffle(order)
    return {order[index]: order[(index + 1) % len(order)] for index in range(len(order))}


class ConditionedImages:
    """Loads what the model sees of each sample under one condition.

    Args:
        condition: one of ``CONDITIONS``.
        samples: all inputs of the trace (the shuffled condition deranges their images, whichever batch
            a sample is traced in and whichever samples a resumed run still has to trace).
        seed: seeds the derangement.
    """

    def __init__(self, condition: str, samples: Sequence[Sample], seed: int = 0) -> None:
        if condition not in CONDITIONS:
            raise UsageError(f"unknown condition '{condition}'; use one of {', '.join(CONDITIONS)}")
        self.condition = condition
        self.donors = derangement(samples, seed) if condition == "shuffled" else {}

    def load(self, sample: Sample) -> tuple[Image.Image | None, Image.Image | None, str | None]:
        """(the sample's own image, the image the model sees, what it is: a path, "blank rgb(...)" or None);
        raises InputError when an image cannot be read."""
        own = None if sample.image is None else load_image(sample.image)
        if own is None or self.condition == "image":
            return own, own, None if sample.image is None else str(sample.image)
        if self.condition == "no-image":
            return own, None, None
        if self.condition == "blank":
            mean = np.asarray(own.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(0)
            colour = (round(mean[0]), round(mean[1]), round(mean[2]))
            return own, Image.new("RGB", own.size, colour), f"blank rgb{colour} {own.width}x{own.height}"
        donor = self.donors[sample.image]  # type: ignore[index]
        return own, load_image(donor), str(donor)
