"""Naming found segments by position: the study's three stages where the segmentation fits that story.

The story (paper): the layers change the readout a lot (rapid evolution), then little (stabilization, from
the critical layer on), then a lot again in late layers (mutation, from the mutation layer to the last
layer). Each segment of lens layers 2..L has a change c_i, the mean over its layers of the standardized
change features (``stage_signal``); a segment is *late* when it starts at >= ``min_depth`` x L. The early
segments are called *high* when c_i is above the midpoint of the lowest and highest early change, else
*low* (one early segment is low). The story fits when, in order:

- zero or more high early segments: rapid evolution;
- the low early segments, and the late ones that change no more than the most changing of them:
  stabilization (its first layer is the critical layer);
- from the first late segment that changes more than every stabilization segment, every remaining segment:
  mutation (a calmer last segment after a late burst is still the mutation stage, as in the study, where it
  runs from the mutation layer to the last layer).

It does not fit when there is one segment (no boundary), when the change rises again before the late
layers (a high early segment after a low one), or when it stays high until a late layer; the segments then
stay unnamed and ``note`` says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Naming:
    """Names of the segments (None = unnamed), whether the three-stage story fits, and why (or why not)."""

    names: tuple[str | None, ...]
    fits: bool
    note: str


def name_segments(
    spans: Sequence[tuple[int, int]], change: Sequence[float] | None, n_layers: int, min_depth: float
) -> Naming:
    """Name segments ``spans`` ((start, end) lens layers, both included, in order) from their change
    ``change`` (larger = the layers change the readout more; None when it cannot be measured)."""
    count = len(spans)
    unnamed: tuple[str | None, ...] = (None,) * count
    if count == 1:
        return Naming(unnamed, False, "one segment: no boundary beats the nulls, so no stages are found")
    if change is None:
        return Naming(unnamed, False, "no change feature varies, so the segments cannot be named")
    late = min_depth * n_layers
    early = [i for i, span in enumerate(spans) if span[0] < late]  # the first segment always starts early
    lowest, highest = min(change[i] for i in early), max(change[i] for i in early)
    high = [change[i] > (lowest + highest) / 2 for i in early]
    rapid = next((i for i, h in enumerate(high) if not h), len(early))  # stabilization starts here
    if rapid == len(early):
        return Naming(unnamed, False, f"the change stays high through every segment before layer {late:g}")
    rise = next((i for i in range(rapid, len(early)) if high[i]), None)
    if rise is not None:
        return Naming(
            unnamed,
            False,
            f"the change rises again at layer {spans[rise][0]}, before the late layers (>= layer {late:g})",
        )
    if len(early) == 1 and change[1] < change[0]:
        return Naming(unnamed, False, f"the change stays high until layer {spans[1][0]}, a late layer")
    stable = max(change[i] for i in range(rapid, len(early)))
    stable_end = next((i for i in range(len(early), count) if change[i] > stable), count)
    names = ["rapid_evolution"] * rapid + ["stabilization"] * (stable_end - rapid)
    names += ["mutation"] * (count - stable_end)
    note = {
        (True, True): "the three stages of the study",
        (True, False): "two stages: the change drops and does not rise again (no mutation stage)",
        (False, True): "two stages: a late rise of the change; no rapid evolution after the first transition",
        (False, False): "one stage",
    }[(rapid > 0, stable_end < count)]
    return Naming(tuple(names), True, note)
