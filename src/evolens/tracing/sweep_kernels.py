"""The two vocabulary sweeps of ``evolens.tracing.sweep`` as numba kernels (no torch in this module).

Each kernel handles one range [v0, v1) of the vocabulary of a (G, n, V) fp32 logits block, so that the
caller can give each thread its own range (``sweep_numba.NumbaSweeps``). Inside a range it works on tiles of
``TILE`` entries of all n layers of one row: the probabilities of a tile are formed once, kept in a small
float64 buffer (n x TILE, in L2) and used for every sum, so each logit is read from memory twice in all.

Every value after the fp32 logits is float64, as in the eager sweeps. exp and log are written out here
(``_exp``, ``_log``: range reduction and a polynomial, relative error below 3e-16 on the ranges used) so
that the compiler inlines and vectorizes them; no library function is called in a loop.
``error_model="numpy"`` matters: with Python's error model every division carries a zero check, and the
loops holding ``_log`` are not vectorized (5x slower).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from evolens.tracing.kernel_cache import numba_cache_ready

CACHE = numba_cache_ready()  # before numba is imported: it reads its cache folder then
from numba import njit  # noqa: E402

FASTMATH = {"contract", "reassoc", "nsz", "arcp"}
"""Reassociation (vectorized sums) and fused multiply-adds; NaN and infinity keep their IEEE meaning."""
kernel: Any = njit(fastmath=FASTMATH, nogil=True, error_model="numpy", cache=CACHE)
inlined: Any = njit(fastmath=FASTMATH, nogil=True, error_model="numpy", cache=CACHE, inline="always")
TILE = 512
"""Vocabulary entries per tile: n x TILE float64 probabilities of a tile stay in L2."""
BLOCK = 64
"""Width of the block maxima (``evolens.tracing.sweep.BLOCK``)."""
EXP_FLOOR = -700.0
"""As ``evolens.tracing.sweep.EXP_FLOOR``: p = exp(max(log p, EXP_FLOOR)) is never 0 or subnormal."""

_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_SQRT2 = 1.4142135623730951


@inlined
def _exp(x: float) -> float:
    """exp(x) for -708 <= x <= 709: x = k ln2 + r with |r| <= ln2 / 2, exp(r) by its Taylor series to
    r^12 (truncation < 2e-16 relative), times 2^k built from its bits."""
    k = math.floor(x * _INV_LN2 + 0.5)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    p = 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    return p * np.int64((np.int64(k) + 1023) << 52).view(np.float64)


@inlined
def _log(s: float) -> float:
    """log(s) for normal s > 0: s = 2^e m with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(f) with
    f = (m - 1) / (m + 1), |f| <= 0.172, by its series to f^19 (truncation < 3e-17)."""
    bits = np.float64(s).view(np.int64)
    e = (bits >> 52) - 1023
    m = np.int64((bits & 0xFFFFFFFFFFFFF) | 0x3FF0000000000000).view(np.float64)
    high = m > _SQRT2
    m = m * 0.5 if high else m
    e = e + 1 if high else e
    f = (m - 1.0) / (m + 1.0)
    f2 = f * f
    q = 1.0 / 19.0
    q = q * f2 + 1.0 / 17.0
    q = q * f2 + 1.0 / 15.0
    q = q * f2 + 1.0 / 13.0
    q = q * f2 + 1.0 / 11.0
    q = q * f2 + 1.0 / 9.0
    q = q * f2 + 1.0 / 7.0
    q = q * f2 + 1.0 / 5.0
    q = q * f2 + 1.0 / 3.0
    q = q * f2 + 1.0
    exponent = np.float64(e)
    return exponent * _LN2_HI + (2.0 * f * q + exponent * _LN2_LO)


@kernel
def first_pass(
    z: np.ndarray, v0: int, v1: int, block_max: np.ndarray, shift: np.ndarray, sumexp: np.ndarray
) -> None:
    """Block maxima and the log-sum-exp terms of the range [v0, v1) (v0 a multiple of ``BLOCK``).

    z (G, n, V) fp32. Writes block_max[g, l, v0 // BLOCK : ceil(v1 / BLOCK)] (fp32), and per row-layer
    shift[g, l] = the range's largest logit and sumexp[g, l] = sum_v exp(z - shift) (float64).
    """
    rows, layers, _ = z.shape
    for g in range(rows):
        for layer in range(layers):
            logits = z[g, layer, v0:v1]
            maxima = block_max[g, layer]
            largest = -np.inf
            for start in range(0, v1 - v0, BLOCK):
                block = logits[start : min(start + BLOCK, v1 - v0)]
                value = block[0]
                for j in range(1, block.shape[0]):
                    value = max(value, block[j])
                maxima[(v0 + start) // BLOCK] = value
                largest = max(largest, np.float64(value))
            total = 0.0
            for j in range(v1 - v0):
                total += _exp(max(np.float64(logits[j]) - largest, EXP_FLOOR))
            shift[g, layer] = largest
            sumexp[g, layer] = total


@kernel
def sums_pass(
    z: np.ndarray,
    v0: int,
    v1: int,
    lse: np.ndarray,
    token_logit: np.ndarray,
    full: bool,
    paper: bool,
    out: np.ndarray,
) -> None:
    """The range's share of every vocabulary sum of ``evolens.tracing.sweep.ChunkSums``, added to ``out``.

    z (G, n, V) fp32; lse (G, n) float64; token_logit (G, n) fp32; out (7, G, n) float64, zeroed by the
    caller, rows in ``ChunkSums`` order (p_logp, next_slogs, last_slogs, last_cross, next_cross,
    prev_cross, above); the consecutive-layer rows use their first n - 1 columns, last_slogs n - 2.
    ``full``: also last_slogs, last_cross and above; ``paper``: also next_cross and prev_cross.
    """
    rows, layers, _ = z.shape
    last = layers - 1
    p = np.empty((layers, TILE))
    for g in range(rows):
        for start in range(v0, v1, TILE):
            width = min(TILE, v1 - start)
            for layer in range(layers):
                logits = z[g, layer, start : start + width]
                probs = p[layer]
                shift = lse[g, layer]
                token = token_logit[g, layer]
                entropy_term = 0.0
                count = 0.0
                for j in range(width):
                    logp = np.float64(logits[j]) - shift
                    value = _exp(max(logp, EXP_FLOOR))
                    probs[j] = value
                    entropy_term += value * logp
                    count += 1.0 if logits[j] > token else 0.0
                out[0, g, layer] += entropy_term
                if full:
                    out[6, g, layer] += count
            p_last = p[last]
            if full:
                for layer in range(layers):
                    logits = z[g, layer, start : start + width]
                    shift = lse[g, layer]
                    cross = 0.0
                    for j in range(width):
                        cross += p_last[j] * (np.float64(logits[j]) - shift)
                    out[3, g, layer] += cross
            if paper:
                for layer in range(last):
                    here = z[g, layer, start : start + width]
                    after = z[g, layer + 1, start : start + width]
                    p_here, p_after = p[layer], p[layer + 1]
                    shift_here, shift_after = lse[g, layer], lse[g, layer + 1]
                    forward = 0.0
                    backward = 0.0
                    for j in range(width):
                        forward += p_after[j] * (np.float64(here[j]) - shift_here)
                        backward += p_here[j] * (np.float64(after[j]) - shift_after)
                    out[4, g, layer] += forward
                    out[5, g, layer] += backward
            for layer in range(last):
                p_here, p_after = p[layer], p[layer + 1]
                slogs = 0.0
                for j in range(width):
                    mixture = p_here[j] + p_after[j]
                    slogs += mixture * _log(mixture)
                out[1, g, layer] += slogs
            if full:
                for layer in range(last - 1):
                    p_here = p[layer]
                    slogs = 0.0
                    for j in range(width):
                        mixture = p_here[j] + p_last[j]
                        slogs += mixture * _log(mixture)
                    out[2, g, layer] += slogs
