"""Divergences, entropy, ranks and top-k of next-token distributions: pure tensor functions, no I/O.

Every function takes natural-log probabilities ``logp`` of shape (..., V) (a log_softmax output) and
reduces the last axis over the whole vocabulary; zero probabilities are handled (0 log 0 = 0).
These direct definitions are the reference. The trace's hot path (``evolens.tracing.sweep`` and
``evolens.tracing.engine``) computes the same quantities from float64 vocabulary-additive sums; the
``*_from_sums`` functions here are the formulas it finishes with, tested against the direct ones.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

LN2 = math.log(2.0)
"""The largest possible Jensen-Shannon divergence, in nats."""
LN2_FLOAT32 = float(np.nextafter(np.float32(LN2), np.float32(0.0)))
"""The largest float32 not above ln 2 (float32(ln 2) itself rounds up): the clamp of fp32 JSDs."""


def _plogq(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """sum_v p_v log q_v with 0 log 0 = 0: (..., V) -> (...)."""
    p = logp.exp()
    return torch.where(p > 0, p * logq, torch.zeros_like(p)).sum(-1)


def entropy(logp: torch.Tensor) -> torch.Tensor:
    """H(p) = -sum_v p_v log p_v in nats: (..., V) -> (...); ln V for the uniform distribution."""
    return -_plogq(logp, logp)


def kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_v p_v (log p_v - log q_v) in nats, >= 0: (..., V), (..., V) -> (...)."""
    return _plogq(logp, logp) - _plogq(logp, logq)


def jsd(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence 1/2 KL(p||m) + 1/2 KL(q||m), m = (p+q)/2, natural log: in [0, ln 2].

    Symmetric, 0 on identical inputs. Shapes (..., V), (..., V) -> (...).
    """
    logm = torch.logaddexp(logp, logq) - LN2
    return (0.5 * kl(logp, logm) + 0.5 * kl(logq, logm)).clamp(0.0, LN2)


def token_rank(logp: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
    """How many tokens are strictly more likely than ``token`` (0 = top-1): (..., V), (...) -> (...) int64."""
    chosen = logp.gather(-1, token.unsqueeze(-1).to(torch.int64))
    return (logp > chosen).sum(-1)


def token_prob(logp: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
    """p(token): (..., V), (...) -> (...)."""
    return logp.gather(-1, token.unsqueeze(-1).to(torch.int64)).squeeze(-1).exp()


def top_k(logp: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k most likely tokens, most likely first: ids (..., k) int64 and probabilities (..., k)."""
    values, ids = largest(logp, k)
    return ids, values.exp()


TOPK_BLOCK = 64


def largest(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk(x, k, dim=-1)`` (values, indices), found in two stages when the last axis splits into
    blocks of ``TOPK_BLOCK``: the k largest elements lie in the k blocks with the largest maxima, so one
    max-reduction pass and a top-k over k * TOPK_BLOCK candidates replace a top-k over the whole axis."""
    width = x.shape[-1]
    blocks = width // TOPK_BLOCK
    if width % TOPK_BLOCK or blocks < 2 * k:
        return torch.topk(x, k, dim=-1)
    maxima = x.reshape(*x.shape[:-1], blocks, TOPK_BLOCK).amax(-1)
    first = maxima.topk(k, dim=-1).indices.unsqueeze(-1) * TOPK_BLOCK
    candidates = (first + torch.arange(TOPK_BLOCK, device=x.device)).flatten(-2)
    values, chosen = x.gather(-1, candidates).topk(k, dim=-1)
    return values, candidates.gather(-1, chosen)


def paper_js(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """The paper's "JS" (the DoLa formula): 1/2 [KL(M||P) + KL(M||Q)] with each KL averaged over the
    vocabulary, M = (P+Q)/2, exactly as ``F.kl_div(log P, M, reduction="none").mean(-1)``.

    Not the standard JSD: it is roughly JSD / V and unbounded; use it on the raw lens to compare with
    the paper's figures. Shapes (..., V), (..., V) -> (...).
    """
    m = 0.5 * (logp.exp() + logq.exp())
    first = F.kl_div(logp, m, reduction="none").mean(-1)
    second = F.kl_div(logq, m, reduction="none").mean(-1)
    return 0.5 * (first + second)


def scale_paper_js(values: np.ndarray) -> np.ndarray:
    """The paper's plot-time scaling: each layer column divided by its maximum over tokens.

    ``values`` is (n_tokens, L) (``paper_js`` rows stacked); returns the same shape with every column's
    maximum equal to 1 (all-zero columns stay 0). Colours of different layers are then not comparable.
    """
    values = np.asarray(values, dtype=np.float64)
    peak = values.max(axis=0, keepdims=True)
    return np.divide(values, peak, out=np.zeros_like(values), where=peak > 0)


def jsd_from_sums(
    mixture_slogs: torch.Tensor, entropy_p: torch.Tensor, entropy_q: torch.Tensor
) -> torch.Tensor:
    """JSD from vocabulary-additive sums: ln 2 - 1/2 sum_v s_v log s_v - 1/2 (H(p) + H(q)), s = p + q.

    (Because m = s/2 and sum s = 2, H(m) = ln 2 - 1/2 sum s log s, and JSD = H(m) - (H(p) + H(q))/2.)
    The difference cancels terms of size H, so the sums must carry more precision than the result needs:
    in float64 (as the engine computes them) the absolute error is ~1e-16 x H; in fp32 it would be
    ~1e-7 x H. The result is clamped to [0, ln 2].
    """
    return (LN2 - 0.5 * mixture_slogs - 0.5 * (entropy_p + entropy_q)).clamp(0.0, LN2_FLOAT32)


def kl_from_sums(entropy_p: torch.Tensor, cross_p_logq: torch.Tensor) -> torch.Tensor:
    """KL(p||q) = -H(p) - sum_v p_v log q_v, clamped at 0."""
    return (-entropy_p - cross_p_logq).clamp_min(0.0)


def paper_js_from_sums(
    mixture_slogs: torch.Tensor,
    entropy_p: torch.Tensor,
    entropy_q: torch.Tensor,
    cross_q_logp: torch.Tensor,
    cross_p_logq: torch.Tensor,
    vocab_size: int,
) -> torch.Tensor:
    """The paper's "JS" from the same sums: 1/(2V) sum_v [2 m log m - m log p - m log q], m = s/2.

    With sum m log m = 1/2 sum s log s - ln 2 and sum m log p = 1/2 (-H(p) + sum q log p).
    """
    m_logm = 0.5 * mixture_slogs - LN2
    m_logp = 0.5 * (-entropy_p + cross_q_logp)
    m_logq = 0.5 * (-entropy_q + cross_p_logq)
    return ((2.0 * m_logm - m_logp - m_logq) / (2.0 * vocab_size)).clamp_min(0.0)
