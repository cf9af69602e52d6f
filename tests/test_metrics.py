"""Divergences, entropy, ranks, top-k and the fused per-step engine, against independent float64 code."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import log_softmax as np_log_softmax
from scipy.stats import entropy as scipy_entropy
from torch import nn

from evolens.lenses.logit import logit_lens
from evolens.models.readout import Unembed
from evolens.tracing import metrics, sweep
from evolens.tracing.engine import StepMetricsEngine, _balanced

LN2 = math.log(2)


def random_logits(rows: int, vocab: int, seed: int, scale: float = 3.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, scale, size=(rows, vocab))


def as_logp(logits: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np_log_softmax(logits, axis=-1))


@pytest.mark.parametrize("scale", [0.5, 3.0, 12.0])
def test_divergences_match_scipy(scale: float) -> None:
    a, b = random_logits(6, 500, 1, scale), random_logits(6, 500, 2, scale)
    p, q = np.exp(np_log_softmax(a, -1)), np.exp(np_log_softmax(b, -1))
    logp, logq = as_logp(a), as_logp(b)
    np.testing.assert_allclose(metrics.entropy(logp), scipy_entropy(p, axis=-1), rtol=1e-10)
    np.testing.assert_allclose(metrics.kl(logp, logq), scipy_entropy(p, q, axis=-1), rtol=1e-9)
    np.testing.assert_allclose(
        metrics.jsd(logp, logq), jensenshannon(p, q, axis=-1) ** 2, rtol=1e-8, atol=1e-12
    )


def test_divergence_properties() -> None:
    logp, logq = as_logp(random_logits(8, 300, 3)), as_logp(random_logits(8, 300, 4))
    assert torch.allclose(metrics.jsd(logp, logq), metrics.jsd(logq, logp), atol=1e-12)
    assert torch.allclose(metrics.jsd(logp, logp), torch.zeros(8, dtype=logp.dtype), atol=1e-12)
    assert bool((metrics.kl(logp, logq) >= 0).all())
    assert bool((metrics.jsd(logp, logq) <= LN2).all())
    uniform = torch.full((1, 1000), -math.log(1000), dtype=torch.float64)
    assert metrics.entropy(uniform).item() == pytest.approx(math.log(1000), rel=1e-12)


def test_disjoint_supports_reach_ln2_and_zeros_are_safe() -> None:
    logp = torch.tensor([[0.0, -math.inf, -math.inf]])
    logq = torch.tensor([[-math.inf, 0.0, -math.inf]])
    assert metrics.jsd(logp, logq).item() == pytest.approx(LN2)
    assert metrics.entropy(logp).item() == 0.0
    assert math.isinf(metrics.kl(logp, logq).item())


def test_rank_prob_and_top_k_known_answers() -> None:
    logp = torch.log(torch.tensor([[0.1, 0.4, 0.2, 0.3]]))
    assert metrics.token_rank(logp, torch.tensor([1])).item() == 0
    assert metrics.token_rank(logp, torch.tensor([0])).item() == 3
    assert metrics.token_prob(logp, torch.tensor([3])).item() == pytest.approx(0.3)
    ids, probs = metrics.top_k(logp, 2)
    assert ids.tolist() == [[1, 3]]
    assert probs[0].tolist() == pytest.approx([0.4, 0.3])


@pytest.mark.parametrize(("width", "k"), [(49152, 5), (640, 3), (100, 5), (64 * 9, 5)])
def test_two_stage_top_k_equals_torch_topk(width: int, k: int) -> None:
    x = torch.randn(7, 3, width, generator=torch.Generator().manual_seed(width))
    x[0, 0, :] = 0.0  # ties
    x[1, 0, -5:] = 50.0  # all winners in one block
    values, indices = metrics.largest(x, k)
    expected = torch.topk(x, k, dim=-1)
    assert torch.equal(values, expected.values)
    assert torch.equal(x.gather(-1, indices), expected.values)
    assert torch.equal(indices[2:], expected.indices[2:])  # rows 0 and 1 have ties: any order


def dola_js_float64(logits_p: np.ndarray, logits_q: np.ndarray) -> np.ndarray:
    """The DoLa formula written out in numpy: 1/2 [mean_v m log(m/p) + mean_v m log(m/q)]."""
    logp, logq = np_log_softmax(logits_p, -1), np_log_softmax(logits_q, -1)
    m = 0.5 * (np.exp(logp) + np.exp(logq))
    return 0.5 * ((m * (np.log(m) - logp)).mean(-1) + (m * (np.log(m) - logq)).mean(-1))


def test_paper_js_matches_an_independent_implementation() -> None:
    a, b = random_logits(5, 400, 5), random_logits(5, 400, 6)
    expected = dola_js_float64(a, b)
    np.testing.assert_allclose(metrics.paper_js(as_logp(a), as_logp(b)), expected, rtol=1e-10)
    # Times V it is 1/2 [KL(M||P) + KL(M||Q)] (KL *from* the mixture: not the standard JSD, not bounded).
    p, q = np.exp(np_log_softmax(a, -1)), np.exp(np_log_softmax(b, -1))
    m = 0.5 * (p + q)
    reverse = 0.5 * (scipy_entropy(m, p, axis=-1) + scipy_entropy(m, q, axis=-1))
    np.testing.assert_allclose(expected * 400, reverse, rtol=1e-10)


def test_scale_paper_js_makes_every_layer_column_peak_at_one() -> None:
    values = np.array([[0.1, 2.0, 0.0], [0.3, 1.0, 0.0], [0.2, 4.0, 0.0]])
    scaled = metrics.scale_paper_js(values)
    np.testing.assert_allclose(scaled.max(axis=0), [1.0, 1.0, 0.0])
    np.testing.assert_allclose(scaled[:, 0], [1 / 3, 1.0, 2 / 3])


# ---- the fused engine against the direct definitions (float64) ----


def within_fp32_rounding(
    fused: torch.Tensor, exact: torch.Tensor, name: str, absolute: float = 1e-7, relative: float = 0.0
) -> None:
    """fp32 ``fused`` is the float64 ``exact`` up to ``absolute`` (+ ``relative`` x |exact|) or up to the
    rounding of ``exact`` to fp32 (half an fp32 spacing), whichever is larger."""
    assert fused.dtype == torch.float32, name
    exact32 = exact.float()
    half_spacing = 0.5 * (torch.nextafter(exact32.abs(), torch.tensor(math.inf)) - exact32.abs()).double()
    allowed = torch.maximum(half_spacing, absolute + relative * exact.abs())
    error = (fused.double() - exact).abs()
    assert bool((error <= allowed * (1 + 1e-9)).all()), (
        f"{name}: error {error.max():.3g} over {allowed.min():.3g}"
    )


VOCAB, WIDTH, LAYERS, ROWS = 3000, 24, 6, 4


@pytest.fixture(scope="module")
def lens() -> Unembed:
    torch.manual_seed(0)
    norm = nn.LayerNorm(WIDTH)
    nn.init.uniform_(norm.weight, 0.5, 1.5)
    return Unembed(norm.requires_grad_(False), torch.randn(VOCAB, WIDTH), 0.1 * torch.randn(VOCAB), None)


@pytest.fixture(scope="module")
def states_and_tokens() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    states = torch.randn(ROWS, LAYERS, WIDTH, generator=generator) * torch.linspace(0.2, 4.0, LAYERS)[:, None]
    return states, torch.randint(0, VOCAB, (ROWS,), generator=generator)


def direct_metrics(
    lens: Unembed, states: torch.Tensor, tokens: torch.Tensor, mode: str
) -> dict[str, torch.Tensor]:
    """Every metric from the full float64 distributions with the direct definitions."""
    logp = torch.log_softmax(logit_lens(lens, mode).layer_logits(states).double(), -1)  # type: ignore[arg-type]
    raw = torch.log_softmax(logit_lens(lens, "raw").layer_logits(states).double(), -1)
    token = tokens[:, None].expand(logp.shape[:2])
    last = logp[:, -1:].expand_as(logp)
    ids, probs = metrics.top_k(logp, 5)
    return {
        "prob": metrics.token_prob(logp, token),
        "rank": metrics.token_rank(logp, token),
        "entropy": metrics.entropy(logp),
        "jsd_next": metrics.jsd(logp[:, :-1], logp[:, 1:]),
        "jsd_last": metrics.jsd(logp, last),
        "kl_last": metrics.kl(last, logp),
        "paper_js": metrics.paper_js(raw[:, :-1], raw[:, 1:]),
        "topk_ids": ids,
        "topk_probs": probs,
    }


@pytest.mark.parametrize("mode", ["normed", "raw"])
def test_engine_equals_direct_definitions(lens: Unembed, states_and_tokens, mode: str) -> None:
    states, tokens = states_and_tokens
    fused = StepMetricsEngine(logit_lens(lens, mode), top_k=5, paper_js=True)(states, tokens)
    direct = direct_metrics(lens, states, tokens, mode)
    assert fused.entropy.dtype == torch.float32 and fused.rank.dtype == torch.int32
    assert fused.jsd_next.shape == (ROWS, LAYERS - 1) and fused.topk_ids.shape == (ROWS, LAYERS, 5)
    for name in ("prob", "entropy", "jsd_next", "jsd_last", "kl_last", "topk_probs", "paper_js"):
        within_fp32_rounding(getattr(fused, name), direct[name], name)
    assert torch.equal(fused.rank.long(), direct["rank"])
    assert torch.equal(fused.topk_ids.long(), direct["topk_ids"])


def test_engine_invariants(lens: Unembed, states_and_tokens) -> None:
    states, tokens = states_and_tokens
    fused = StepMetricsEngine(logit_lens(lens))(states, tokens)
    assert bool(((fused.jsd_next >= 0) & (fused.jsd_next <= LN2)).all())
    assert bool((fused.jsd_last[:, -1] == 0).all() and (fused.kl_last[:, -1] == 0).all())
    repeated = torch.cat([states[:, :2], states[:, 1:]], dim=1)  # lens layers 1 and 2 identical
    assert StepMetricsEngine(logit_lens(lens))(repeated, tokens).jsd_next[:, 1].max() < 1e-12
    assert bool((fused.topk_probs[..., :-1] >= fused.topk_probs[..., 1:]).all())
    top1 = fused.topk_ids[..., 0] == tokens[:, None]
    assert torch.equal(fused.rank == 0, top1)


def test_paper_js_does_not_depend_on_the_main_lens(lens: Unembed, states_and_tokens) -> None:
    states, tokens = states_and_tokens
    normed = StepMetricsEngine(logit_lens(lens, "normed"), paper_js=True)(states, tokens)
    raw = StepMetricsEngine(logit_lens(lens, "raw"), paper_js=True)(states, tokens)
    torch.testing.assert_close(normed.paper_js, raw.paper_js)
    assert StepMetricsEngine(logit_lens(lens, "normed"))(states, tokens).paper_js is None


def test_row_groups_give_the_same_numbers(lens: Unembed, states_and_tokens) -> None:
    states, tokens = states_and_tokens
    whole = StepMetricsEngine(logit_lens(lens), paper_js=True)(states, tokens)
    one_row_at_a_time = StepMetricsEngine(logit_lens(lens), paper_js=True, max_bytes=1)(states, tokens)
    assert one_row_at_a_time.topk_ids.shape == whole.topk_ids.shape
    for name in ("prob", "entropy", "jsd_next", "jsd_last", "kl_last", "paper_js", "topk_probs"):
        torch.testing.assert_close(getattr(whole, name), getattr(one_row_at_a_time, name), msg=name)
    assert torch.equal(whole.rank, one_row_at_a_time.rank)
    assert torch.equal(whole.topk_ids, one_row_at_a_time.topk_ids)  # 64-wide chunks, the last one 56 wide


def test_large_vocabulary_stays_within_the_memory_budget() -> None:
    vocab, width, layers, rows = 262_144, 8, 3, 4
    torch.manual_seed(2)
    big = Unembed(nn.Identity(), torch.randn(vocab, width), None, None)
    budget = 2 * 4 * layers * vocab * 4  # under two rows' worth of scratch buffers
    engine = StepMetricsEngine(logit_lens(big), max_bytes=budget)
    states, tokens = torch.randn(rows, layers, width), torch.randint(0, vocab, (rows,))
    fused = engine(states, tokens)
    assert engine.scratch_bytes <= budget
    logp = torch.log_softmax(logit_lens(big).layer_logits(states).double(), -1)
    within_fp32_rounding(fused.entropy, metrics.entropy(logp), "entropy")
    within_fp32_rounding(fused.prob, metrics.token_prob(logp, tokens[:, None].expand(rows, layers)), "prob")


def test_softcap_bounds_every_layer() -> None:
    torch.manual_seed(3)
    weight = 50 * torch.randn(100, 4)
    capped = Unembed(nn.Identity(), weight, None, softcap=5.0)
    states = torch.randn(2, 3, 4)
    logits = logit_lens(capped).layer_logits(states)
    assert logits.abs().max() <= 5.0
    torch.testing.assert_close(logits, 5.0 * torch.tanh(states @ weight.T / 5.0))


# ---- precision against float64 on the same logits, at a real vocabulary size ----


class GivenLogits:
    """A lens (the ``Lens`` protocol) that returns fixed logits, so the engine sees exactly these numbers."""

    name = "given"

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits
        self.unembed = Unembed(nn.Identity(), torch.zeros(logits.shape[-1], 1), None, None)

    def layer_logits(self, states: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits.clone() if out is None else out.copy_(self.logits)


def realistic_logits(rows: int, layers: int, vocab: int, seed: int) -> torch.Tensor:
    """(rows, layers, vocab) fp32 logits from flat (entropy ~ln V) to peaked (one token ~ p 0.99),
    with heavy tails (Student t), a few strong runners-up and layers that agree more with depth."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    shared = torch.distributions.StudentT(5.0).sample((rows, 1, vocab))
    own = torch.distributions.StudentT(5.0).sample((rows, layers, vocab))
    depth = torch.linspace(0.0, 1.0, layers)[None, :, None]
    logits = (1 - 0.8 * depth) * own + depth * shared
    logits = logits * torch.linspace(0.3, 2.5, layers)[None, :, None]
    winners = torch.randint(0, vocab, (rows, 4), generator=generator)
    boost = torch.tensor([12.0, 9.0, 8.0, 6.0])[None, None, :] * depth
    logits.scatter_add_(-1, winners[:, None, :].expand(rows, layers, 4), boost.expand(rows, layers, 4))
    return logits.float()


def float64_metrics(logits: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """The direct definitions on the same logits in float64."""
    logp = torch.log_softmax(logits.double(), -1)
    last = logp[:, -1:].expand_as(logp)
    return {
        "prob": metrics.token_prob(logp, tokens[:, None].expand(logp.shape[:2])),
        "entropy": metrics.entropy(logp),
        "jsd_next": metrics.jsd(logp[:, :-1], logp[:, 1:]),
        "jsd_last": metrics.jsd(logp, last),
        "kl_last": metrics.kl(last, logp),
    }


@pytest.mark.parametrize("backend", ["numba", "eager"])
@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_match_float64_on_the_same_logits(seed: int, backend: str) -> None:
    """As computed, entropy and JSD within 1e-7 nats and KL within 1e-6 relative of float64 on the same
    logits at V = 49,152; as stored, the same values rounded to fp32. The errors are printed (pytest -s)."""
    rows, layers, vocab = 4, 12, 49_152
    logits = realistic_logits(rows, layers, vocab, seed)
    tokens = logits[:, -1].argmax(-1)
    exact = float64_metrics(logits, tokens)
    assert exact["entropy"].min() < 1e-3 and exact["entropy"].max() > 10.0  # peaked and flat layers
    engine = StepMetricsEngine(GivenLogits(logits), native=backend == "numba")
    if engine.backend != backend:
        pytest.skip("the numba sweeps do not load here")
    computed = engine.metrics64(torch.zeros(rows, layers, 1), tokens)
    stored = engine(torch.zeros(rows, layers, 1), tokens)
    errors = {name: (getattr(computed, name) - exact[name]).abs() for name in exact}
    for name in ("entropy", "jsd_next", "jsd_last"):
        assert errors[name].max() <= 1e-7, name
        within_fp32_rounding(getattr(stored, name), exact[name], name, absolute=1e-7)
    # KL within 1e-6 relative; 1e-12 absolute is the float64 reference's own rounding (it even goes negative)
    assert bool((errors["kl_last"] <= 1e-6 * exact["kl_last"].abs() + 1e-12).all())
    within_fp32_rounding(stored.kl_last, exact["kl_last"], "kl_last", absolute=1e-12, relative=1e-6)
    within_fp32_rounding(stored.prob, exact["prob"], "prob", absolute=0.0, relative=1e-6)
    stored_errors = {name: (getattr(stored, name).double() - exact[name]).abs().max() for name in exact}
    print(
        f"\nV={vocab}, seed {seed}, {backend}: max |engine - float64| as computed (float64): "
        + ", ".join(f"{name} {float(value.max()):.1e}" for name, value in errors.items())
        + "; as stored (fp32): "
        + ", ".join(f"{name} {float(value):.1e}" for name, value in stored_errors.items())
    )


def test_eager_sweep_equals_the_compilable_functions() -> None:
    """``EagerSweep`` (buffers, in place) and ``chunk_sums`` (plain code for torch.compile) agree."""
    logits = realistic_logits(3, 6, 640, seed=4)
    shift = logits.amax(-1, keepdim=True).double()
    eager = sweep.EagerSweep(logits.device)
    torch.testing.assert_close(eager.sumexp(logits, shift), sweep.chunk_sumexp(logits, shift))
    lse = torch.logsumexp(logits.double(), -1, keepdim=True)
    token_logit = logits[..., 7:8]
    for full, paper in [(True, True), (False, True), (True, False)]:
        assert_same_sums(
            eager.sums(logits, lse, token_logit, full, paper),
            sweep.chunk_sums(logits, lse, token_logit, full, paper),
        )


def assert_same_sums(ours: sweep.ChunkSums, plain: sweep.ChunkSums, atol: float = 1e-12) -> None:
    """Every field of two ``ChunkSums`` present in both or neither, equal to float64 rounding."""
    for name, value in ours._asdict().items():
        expected = getattr(plain, name)
        assert (value is None) == (expected is None), name
        if value is not None:
            torch.testing.assert_close(value, expected, rtol=1e-12, atol=atol, msg=name)


@pytest.mark.slow
def test_compiled_engine_equals_eager_engine(lens: Unembed, states_and_tokens) -> None:
    """torch.compile of the sweep (the CUDA default; EVOLENS_COMPILE=1 on the CPU) gives the eager numbers."""
    states, tokens = states_and_tokens
    eager = StepMetricsEngine(logit_lens(lens), paper_js=True, compile=False)(states, tokens)
    engine = StepMetricsEngine(logit_lens(lens), paper_js=True, compile=True)
    compiled = engine(states, tokens)
    assert engine.sweeps.compiled, "torch.compile fell back to eager"
    for name in ("prob", "entropy", "jsd_next", "jsd_last", "kl_last", "paper_js", "topk_probs"):
        torch.testing.assert_close(getattr(compiled, name), getattr(eager, name), msg=name)
    assert torch.equal(compiled.rank, eager.rank) and torch.equal(compiled.topk_ids, eager.topk_ids)


@pytest.mark.parametrize(("rows", "most"), [(8, 5), (7, 5), (2, 5), (11, 5), (1, 1), (9, 4), (5, 5)])
def test_row_groups_are_balanced_and_cover_every_row(rows: int, most: int) -> None:
    groups = _balanced(rows, most)
    sizes = [stop - start for start, stop in groups]
    assert groups[0][0] == 0 and groups[-1][1] == rows
    assert all(a[1] == b[0] for a, b in pairwise(groups))  # contiguous, in order
    assert len(groups) == -(-rows // most) and max(sizes) <= most and max(sizes) - min(sizes) <= 1


def test_release_frees_the_buffers_and_keeps_the_numbers(lens: Unembed, states_and_tokens) -> None:
    states, tokens = states_and_tokens
    for native in (True, False):
        engine = StepMetricsEngine(logit_lens(lens), paper_js=True, native=native)
        before = engine(states, tokens)
        assert engine.scratch_bytes > 0
        engine.release()
        assert engine.scratch_bytes == 0
        after = engine(states, tokens)
        for name in ("prob", "entropy", "jsd_next", "jsd_last", "kl_last", "paper_js", "topk_probs"):
            assert torch.equal(getattr(before, name), getattr(after, name)), name
