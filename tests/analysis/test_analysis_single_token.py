"""Reading traces and the numbers behind the single-token figures, against the known distributions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evolens.analysis.single_token import candidate_curves, find_step, heatmap_data, lens_grid
from evolens.analysis.token_strings import TokenStrings
from evolens.errors import InputError, UsageError
from evolens.io.trace import load_trace
from tests.analysis.conftest import N_LAYERS, VOCAB, ExactTrace
from tests.analysis.synthetic import jsd


def test_trace_matrices_follow_sample_then_step_order(exact_trace: ExactTrace) -> None:
    trace = exact_trace.trace
    assert trace.n_layers == N_LAYERS and trace.n_tokens == 16
    assert trace.sample_ids == ["img-0", "img-1", "img-2"]
    expected = np.concatenate([s.jsd_next for s in exact_trace.samples])
    np.testing.assert_allclose(trace.matrix("jsd_next"), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(trace.sample_index(), np.repeat([0, 1, 2], [5, 7, 4]))
    ids, probs = trace.topk()
    assert ids.shape == probs.shape == (16, N_LAYERS + 1, 4)


def test_jsd_in_the_fixture_is_the_standard_definition(exact_trace: ExactTrace) -> None:
    """The fixture's JSD is symmetric, bounded by ln 2 and 0 on identical inputs."""
    p = exact_trace.dists["img-0"]
    np.testing.assert_allclose(jsd(p[:, :-1], p[:, 1:]), jsd(p[:, 1:], p[:, :-1]))
    assert jsd(p, p).max() < 1e-12 and exact_trace.trace.matrix("jsd_next").max() <= np.log(2)


def test_heatmap_values_are_the_traces_jsd(exact_trace: ExactTrace) -> None:
    data = heatmap_data(exact_trace.trace, "img-1")
    np.testing.assert_allclose(data.values, exact_trace.samples[1].jsd_next, rtol=1e-6, atol=1e-7)
    assert data.tokens == exact_trace.samples[1].tokens
    np.testing.assert_array_equal(data.layers, np.arange(1, N_LAYERS + 1))
    assert data.vmax == pytest.approx(data.raw.max())


def test_per_layer_normalisation_divides_each_column_by_its_max(exact_trace: ExactTrace) -> None:
    data = heatmap_data(exact_trace.trace, "img-1", normalization="per-layer")
    raw = exact_trace.samples[1].jsd_next
    np.testing.assert_allclose(data.values, raw / raw.max(0), rtol=1e-5)
    np.testing.assert_allclose(data.values.max(0), 1.0, rtol=1e-6)


def test_paper_metric_reproduces_the_papers_scaling(exact_trace: ExactTrace) -> None:
    data = heatmap_data(exact_trace.trace, "img-0", metric="paper_js")
    paper = exact_trace.samples[0].paper_js
    assert data.normalization == "per-layer"
    np.testing.assert_allclose(data.values, paper / paper.max(0), rtol=1e-5)


def test_step_range_and_pages(exact_trace: ExactTrace) -> None:
    data = heatmap_data(exact_trace.trace, "img-1", steps=(2, 5))
    np.testing.assert_array_equal(data.steps, [2, 3, 4, 5])
    np.testing.assert_allclose(data.values, exact_trace.samples[1].jsd_next[2:6], rtol=1e-6, atol=1e-7)
    pages = heatmap_data(exact_trace.trace, "img-1").pages(3)
    assert [len(p.tokens) for p in pages] == [3, 3, 1]
    np.testing.assert_allclose(
        np.concatenate([p.values for p in pages]), exact_trace.samples[1].jsd_next, rtol=1e-6, atol=1e-7
    )
    with pytest.raises(UsageError):
        heatmap_data(exact_trace.trace, "img-1", steps=(50, 60))


def test_candidate_curves_hold_the_true_probabilities(exact_trace: ExactTrace) -> None:
    trace = exact_trace.trace
    row = int(trace.rows_of("img-1")[3])
    curves = candidate_curves(trace, row, late_from=3)
    dist = exact_trace.dists["img-1"][3]  # (L+1, V)
    emitted = int(dist[-1].argmax())
    assert curves.token_ids[0] == curves.emitted == emitted
    np.testing.assert_allclose(curves.probs[0], dist[:, emitted], rtol=1e-5)
    late_top = {int(t) for layer in range(3, N_LAYERS + 1) for t in np.argsort(-dist[layer])[:2]} - {emitted}
    assert set(curves.token_ids[1:]) <= late_top and len(curves.token_ids) == min(4, len(late_top) + 1)
    for token, probs, known in zip(curves.token_ids, curves.probs, curves.known, strict=True):
        np.testing.assert_allclose(probs[known], dist[known, token], rtol=1e-5)
        assert (probs[~known] == 0).all()
    assert curves.labels == [VOCAB[t] for t in curves.token_ids]


def test_lens_grid_is_the_argmax_of_every_layer(exact_trace: ExactTrace) -> None:
    grid = lens_grid(exact_trace.trace, "img-2")
    dist = exact_trace.dists["img-2"]
    np.testing.assert_array_equal(grid.top_ids, dist.argmax(-1).T)
    np.testing.assert_allclose(grid.top_probs, dist.max(-1).T, rtol=1e-5)
    assert grid.labels[-1].tolist() == exact_trace.samples[2].tokens
    assert [len(p.emitted) for p in grid.pages(3)] == [3, 1]


def test_find_step_by_index_or_text(exact_trace: ExactTrace) -> None:
    trace = exact_trace.trace
    rows = trace.rows_of("img-1")
    assert find_step(trace, "img-1", 2) == rows[2] and find_step(trace, "img-1", "-1") == rows[-1]
    text = exact_trace.samples[1].tokens[4]
    first = exact_trace.samples[1].tokens.index(text)
    assert find_step(trace, "img-1", text.strip().upper()) == rows[first]
    with pytest.raises(UsageError):
        find_step(trace, "img-1", 99)
    with pytest.raises(UsageError):
        find_step(trace, "img-1", "never-emitted")
    with pytest.raises(InputError):
        trace.rows_of("no-such-sample")


def test_token_strings_fall_back_to_ids(tmp_path, exact_trace: ExactTrace) -> None:
    strings = TokenStrings(exact_trace.trace)
    assert strings(2) == VOCAB[2]
    copy = tmp_path / "trace"
    copy.mkdir()
    for item in ("meta.json", "samples", "steps"):
        source = exact_trace.trace.directory / item
        target = copy / item
        if source.is_dir():
            target.mkdir()
            for part in source.iterdir():
                (target / part.name).write_bytes(part.read_bytes())
        else:
            target.write_bytes(source.read_bytes())
    bare = TokenStrings(load_trace(copy))
    emitted = exact_trace.samples[0].token_ids[0]
    assert bare(emitted) == VOCAB[emitted]
    unseen = next(
        i
        for i in range(len(VOCAB))
        if i not in set(np.concatenate([s.token_ids for s in exact_trace.samples]))
    )
    assert bare(unseen) == f"#{unseen}"


def test_hidden_states_are_read_back(exact_trace: ExactTrace) -> None:
    hidden = exact_trace.trace.hidden("img-0")
    assert hidden is not None and hidden.states.shape == (5, N_LAYERS + 1, 8)
    np.testing.assert_allclose(hidden.at(2, 3), exact_trace.samples[0].hidden[2, 3], rtol=1e-3, atol=1e-3)


def test_not_a_trace_is_an_input_error(tmp_path) -> None:
    with pytest.raises(InputError, match="not a trace directory"):
        load_trace(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"n_layers": 4}))
    with pytest.raises(InputError, match="no finished samples"):
        load_trace(tmp_path)


def test_paper_metric_needs_paper_js_in_the_trace(tmp_path, exact_trace: ExactTrace) -> None:
    from dataclasses import replace

    from tests.analysis.synthetic import write_trace

    trace = load_trace(write_trace(tmp_path / "t", [replace(s, paper_js=None) for s in exact_trace.samples]))
    assert not trace.has("paper_js") and trace.has("jsd_next")
    with pytest.raises(UsageError, match="paper_js"):
        heatmap_data(trace, "img-0", metric="paper_js")
