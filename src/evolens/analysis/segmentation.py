"""Exact least-squares segmentation of layer curves: ruptures' PELT for a curve, numpy dynamic programming
for many (null and bootstrap replicates) at once.

A curve z has n positions and d standardized features. A segmentation into segments [i, j) costs
Σ_segments Σ_t ||z_t - mean of the segment||² (ruptures' ``l2`` cost), every segment at least ``min_size``
positions long. A boundary is a position t in 1..n-1 where a segment starts. With a penalty β per
boundary the segmentation minimises cost + β·(number of boundaries), which chooses how many boundaries
there are: PELT (``ruptures.Pelt``) solves this exactly for one curve; ``optimal_segmentations`` does the
same with the classic dynamic programme over the number of boundaries K (C_K, the least cost with K
boundaries), vectorised over a batch of curves, and is tested against ruptures.

Two derived quantities:

- ``no_boundary_penalty``: G = max_K (C_0 - C_K) / K, the smallest penalty under which the curve gets no
  boundary at all (the statistic whose null quantile sets the penalty);
- ``boundary_gains``: given boundaries, for every position t the cost saved by a boundary there: at a
  boundary, what merging its two segments would cost (each kept boundary of an optimal segmentation saves
  at least β); inside a segment, what splitting it at t would save.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np


def segment_costs(z: np.ndarray, min_size: int) -> np.ndarray:
    """(B, n+1, n+1) cost[b, i, j] of segment [i, j) of curve b of ``z`` (B, n, d); +inf when j - i <
    ``min_size``."""
    batch, n, _ = z.shape
    first = np.concatenate([np.zeros((batch, 1, z.shape[2])), np.cumsum(z, axis=1)], axis=1)
    second = np.concatenate([np.zeros((batch, 1)), np.cumsum((z**2).sum(-1), axis=1)], axis=1)
    length = np.arange(n + 1)[None, :] - np.arange(n + 1)[:, None]  # j - i
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = first[:, None, :, :] - first[:, :, None, :]
        cost = second[:, None, :] - second[:, :, None] - (diff**2).sum(-1) / length
    cost = np.maximum(cost, 0.0)
    return np.where(length[None] >= min_size, cost, np.inf)


def max_boundaries(n: int, min_size: int) -> int:
    """The most boundaries ``n`` positions allow with segments of at least ``min_size``."""
    return max(0, n // min_size - 1)


def optimal_costs(z: np.ndarray, min_size: int, pointers: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Least costs with K = 0..K_max boundaries, and the back-pointers to recover them.

    Returns:
        costs: (B, K_max+1) C_K of each curve (+inf where K boundaries do not fit).
        back: (K_max+1, B, n+1) back[k, b, j] = the start of the last segment of the best k-boundary
            segmentation of positions [0, j); empty when ``pointers`` is False.
    """
    cost = segment_costs(z, min_size)
    batch, n = z.shape[0], z.shape[1]
    k_max = max_boundaries(n, min_size)
    best = cost[:, 0, :]  # D_0[j] = cost(0, j)
    back = np.zeros((k_max + 1 if pointers else 0, batch, n + 1), dtype=np.int64)
    totals = [best[:, n]]
    for k in range(1, k_max + 1):
        candidates = best[:, :, None] + cost  # (B, i, j): D_{k-1}[i] + cost(i, j)
        if pointers:
            back[k] = np.argmin(candidates, axis=1)
            best = np.take_along_axis(candidates, back[k][:, None, :], axis=1)[:, 0, :]
        else:
            best = candidates.min(axis=1)
        totals.append(best[:, n])
    return np.stack(totals, axis=1), back


def no_boundary_penalty(z: np.ndarray, min_size: int) -> np.ndarray:
    """(B,) G = max_K (C_0 - C_K) / K: any penalty above it leaves the curve without a boundary."""
    costs, _ = optimal_costs(z, min_size, pointers=False)
    if costs.shape[1] == 1:
        return np.zeros(len(z))
    saved = (costs[:, :1] - costs[:, 1:]) / np.arange(1, costs.shape[1])
    return np.nanmax(np.where(np.isfinite(saved), saved, -np.inf), axis=1).clip(min=0.0)


def optimal_segmentations(z: np.ndarray, penalty: float, min_size: int) -> list[tuple[int, ...]]:
    """The boundaries of each curve of ``z`` (B, n, d) under ``penalty`` per boundary (exact; on ties, the
    fewest boundaries)."""
    costs, back = optimal_costs(z, min_size)
    n = z.shape[1]
    chosen = np.argmin(costs + penalty * np.arange(costs.shape[1]), axis=1)
    found: list[tuple[int, ...]] = []
    for b, k in enumerate(chosen):
        end, starts = n, []
        for level in range(int(k), 0, -1):
            end = int(back[level, b, end])
            starts.append(end)
        found.append(tuple(sorted(starts)))
    return found


def pelt(z: np.ndarray, penalty: float, min_size: int) -> tuple[int, ...]:
    """The boundaries of one curve ``z`` (n, d) by ruptures' PELT with the ``l2`` cost (every position a
    candidate: ``jump=1``)."""
    import ruptures

    n = len(z)
    if max_boundaries(n, min_size) == 0:
        return ()
    ends = ruptures.Pelt(model="l2", min_size=min_size, jump=1).fit(z).predict(pen=penalty)
    return tuple(int(e) for e in ends if e < n)


def boundary_gains(z: np.ndarray, boundaries: Sequence[int], min_size: int) -> np.ndarray:
    """(B, n) for every position t of each curve of ``z`` (B, n, d), the cost a boundary at t saves given
    ``boundaries`` (module doc); NaN at t = 0 and where a split would leave a piece under ``min_size``."""
    cost = segment_costs(z, min_size)
    n = z.shape[1]
    edges = [0, *sorted(boundaries), n]
    gains = np.full((z.shape[0], n), np.nan)
    for index in range(1, len(edges) - 1):  # at each boundary: what merging its segments would cost
        left, t, right = edges[index - 1], edges[index], edges[index + 1]
        gains[:, t] = cost[:, left, right] - cost[:, left, t] - cost[:, t, right]
    for left, right in itertools.pairwise(edges):  # inside each segment: what a split saves
        for t in range(left + min_size, right - min_size + 1):
            gains[:, t] = cost[:, left, right] - cost[:, left, t] - cost[:, t, right]
    return gains


def merge_gains(cost: np.ndarray, boundaries: Sequence[int]) -> np.ndarray:
    """(K,) what merging the two segments of each of ``boundaries`` would cost, from one curve's
    ``segment_costs`` (n+1, n+1)."""
    edges = [0, *sorted(boundaries), cost.shape[-1] - 1]
    return np.array(
        [
            cost[edges[k - 1], edges[k + 1]] - cost[edges[k - 1], edges[k]] - cost[edges[k], edges[k + 1]]
            for k in range(1, len(edges) - 1)
        ]
    )
