"""``evolens.tracing.tracer`` end to end on real and tiny models: invariants, batching, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import evolens
from evolens.errors import NumericalError, UsageError
from evolens.io.store import TraceWriter, read_failures, read_trace
from evolens.models import LoadedModel
from evolens.tracing import tracer as tracer_module
from evolens.tracing.check import trace_matches_logits
from evolens.tracing.tracer import trace

PROMPTS = [
    "What is the capital of France? Answer in one word.",
    "Name three colours.",
    "Is the sky blue? Answer yes or no.",
]
METRICS = ("prob", "rank", "entropy", "jsd_next", "jsd_last", "kl_last", "topk_ids", "topk_probs")


def matrix(steps, column: str) -> np.ndarray:
    """One steps column as a float64 array: (rows, L+1), (rows, L) or (rows, L+1, k)."""
    return np.stack([np.stack(value) for value in steps[column]]).astype(np.float64)


@pytest.fixture(scope="module")
def smollm2_trace(demo_text: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("smollm2") / "trace"
    result = trace(demo_text, None, PROMPTS, out=out, max_new_tokens=8, batch_size=3)
    assert result.ok and len(result.traced) == 3
    return out


def test_greedy_last_layer_is_the_emitted_token(smollm2_trace: Path, demo_text: LoadedModel) -> None:
    tables = read_trace(smollm2_trace)
    steps = tables.steps
    last_rank = matrix(steps, "rank")[:, -1]
    top1 = np.array([ids[-1][0] for ids in steps["topk_ids"]])
    assert (last_rank == 0).all()
    np.testing.assert_array_equal(top1, steps["token_id"].to_numpy())
    jsd = matrix(steps, "jsd_next")
    assert jsd.shape == (len(steps), demo_text.n_layers) and jsd.min() >= 0 and jsd.max() <= np.log(2)
    first = tables.samples.iloc[0]
    assert "Paris" in first["text"] and first["n_steps"] == len(first["token_ids"])
    assert (
        tables.meta["lens"] == "normed"
        and tables.meta["n_layers"] == 30
        and tables.meta["vocab_size"] == 49152
    )


def test_a_row_that_ends_early_stops_at_its_eos(smollm2_trace: Path, demo_text: LoadedModel) -> None:
    samples = read_trace(smollm2_trace).samples
    short = samples[samples["n_steps"] < 8]
    assert len(short), "expected at least one answer shorter than the budget"
    for token_ids in short["token_ids"]:
        assert token_ids[-1] in demo_text.eos_token_ids
        assert not set(token_ids[:-1]) & set(demo_text.eos_token_ids)


def test_batch_equals_one_by_one(smollm2_trace: Path, demo_text: LoadedModel, tmp_path: Path) -> None:
    batched = read_trace(smollm2_trace)
    trace(demo_text, None, PROMPTS, out=tmp_path, max_new_tokens=8, batch_size=1)
    alone = read_trace(tmp_path)
    assert list(alone.samples["token_ids"].map(list)) == list(batched.samples["token_ids"].map(list))
    order = ["sample_id", "step"]
    a = alone.steps.sort_values(order).reset_index(drop=True)
    b = batched.steps.sort_values(order).reset_index(drop=True)
    for column in METRICS:
        left, right = (matrix(frame, column) for frame in (a, b))
        if column == "rank":  # near-equal logits deep in the vocabulary may swap by one under fp32 rounding
            np.testing.assert_array_equal(left[:, -1], right[:, -1])
            np.testing.assert_allclose(left, right, rtol=1e-3, atol=1, err_msg=column)
        else:
            np.testing.assert_allclose(left, right, atol=0 if column == "topk_ids" else 2e-4, err_msg=column)


def test_trace_check_passes_on_the_real_decoder(demo_text: LoadedModel) -> None:
    result = trace_matches_logits(demo_text, None, "Name a fruit.", 4)
    assert result.passed and result.value is not None and result.value <= 1e-4, result
    from evolens.verify import CHECKS

    assert CHECKS["trace_last_layer_is_logits"] is trace_matches_logits


def test_a_perfect_match_is_a_pass_not_a_falsy_number() -> None:
    """Defect: checks returned ``float | bool``, so an exact match (0.0) read as a failure."""
    from evolens.models.check import CheckResult

    exact = CheckResult.within(0.0, 1e-4)
    assert exact.passed and exact.value == 0.0 and not exact.detail
    assert not CheckResult.within(float("nan"), 1e-4).passed
    assert not CheckResult.within(2e-4, 1e-4).passed


def test_resume_after_a_crash_skips_finished_samples(
    tiny_llama: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = [f"Question number {i}?" for i in range(5)]
    real_write = TraceWriter.write
    calls = []

    def crash_on_second_part(self: TraceWriter, records: list) -> None:
        calls.append(len(records))
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_write(self, records)

    monkeypatch.setattr(TraceWriter, "write", crash_on_second_part)
    with pytest.raises(KeyboardInterrupt):
        trace(tiny_llama, None, prompts, out=tmp_path / "t", max_new_tokens=3, batch_size=2)
    monkeypatch.undo()
    resumed = trace(tiny_llama, None, prompts, out=tmp_path / "t", max_new_tokens=3, batch_size=2)
    assert len(resumed.skipped) == 2 and len(resumed.traced) == 3
    clean = trace(tiny_llama, None, prompts, out=tmp_path / "clean", max_new_tokens=3, batch_size=2)
    assert sorted(clean.traced) == sorted(resumed.skipped + resumed.traced)
    steps = pq.read_table(tmp_path / "t" / "steps").to_pandas()
    assert not steps.duplicated(["sample_id", "step"]).any()
    reference = pq.read_table(tmp_path / "clean" / "steps").to_pandas()
    assert len(steps) == len(reference)
    np.testing.assert_allclose(
        matrix(steps.sort_values(["sample_id", "step"]), "entropy"),
        matrix(reference.sort_values(["sample_id", "step"]), "entropy"),
    )
    again = trace(tiny_llama, None, prompts, out=tmp_path / "t", max_new_tokens=3, batch_size=2)
    assert again.traced == [] and len(again.skipped) == 5
    with pytest.raises(UsageError, match="other settings"):
        trace(tiny_llama, None, prompts, out=tmp_path / "t", max_new_tokens=3, lens="raw")


def test_nan_in_a_layer_names_sample_step_and_layer(tiny_llama: LoadedModel, tmp_path: Path) -> None:
    passes = []

    def poison_third_pass(_module, _args, output):
        passes.append(1)
        return output * float("nan") if len(passes) == 3 else output

    handle = tiny_llama.decoder_layers[1].register_forward_hook(poison_third_pass)
    try:
        with pytest.raises(NumericalError, match=r"sample 'prompt-hi-\w+' at step 2, lens layer 2"):
            trace(tiny_llama, None, ["Hi"], out=tmp_path, max_new_tokens=4)
    finally:
        handle.remove()
    assert not read_trace(tmp_path).samples.size  # nothing written for the failed batch


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lens": "logit"}, "unknown lens 'logit'"),
        ({"lens": "tuned"}, "comes with no tuned lens"),
        ({"max_new_tokens": -1}, "max_new_tokens"),
        ({"batch_size": 0}, "batch_size"),
        ({"hidden_steps": "3-1"}, "runs backwards"),
        ({"max_new_tokns": 5}, "max_new_tokns: unknown key \\(did you mean 'max_new_tokens'\\?\\)"),
    ],
)
def test_bad_settings_are_usage_errors(
    tiny_llama: LoadedModel, tmp_path: Path, kwargs: dict, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        trace(tiny_llama, None, ["Hi"], out=tmp_path, **kwargs)


def test_hidden_states_of_chosen_steps_and_layers(tiny_llama: LoadedModel, tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    keep = {"keep_hidden": True, "hidden_steps": "0-1", "hidden_layers": "0,2"}
    trace(tiny_llama, None, ["Name a colour."], out=tmp_path, max_new_tokens=3, **keep)
    tables = read_trace(tmp_path)
    sample = tables.samples.iloc[0]
    stored = load_file(str(tmp_path / "hidden" / f"{sample['sample_id']}.safetensors"))
    assert stored["hidden"].shape == (2, 2, 64) and stored["hidden"].dtype == np.float16
    np.testing.assert_array_equal(stored["steps"], [0, 1])
    np.testing.assert_array_equal(stored["layers"], [0, 2])
    first_token = torch.tensor([sample["token_ids"][0]])
    with torch.inference_mode():
        embedding = tiny_llama.embed_tokens(first_token)[0].numpy()
    np.testing.assert_allclose(stored["hidden"][1, 0], embedding, atol=2e-3)  # step 1 is fed token 0
    assert tables.meta["hidden"] == {"steps": [0, 1], "layers": [0, 2]}


def test_sampling_is_recorded_and_reproducible(tiny_llama: LoadedModel, tmp_path: Path) -> None:
    def sampled(out: str, seed: int) -> list[list[int]]:
        trace(
            tiny_llama,
            None,
            PROMPTS,
            out=tmp_path / out,
            max_new_tokens=6,
            do_sample=True,
            top_p=0.9,
            seed=seed,
        )
        return [list(ids) for ids in read_trace(tmp_path / out).samples["token_ids"]]

    assert sampled("a", 3) == sampled("b", 3)
    assert sampled("a", 3) != sampled("c", 4)
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["decoding"] == {"max_new_tokens": 6, "do_sample": True, "temperature": 1.0, "top_p": 0.9}
    assert meta["seed"] == 3


def test_raw_lens_records_the_papers_js(tiny_llama: LoadedModel, tmp_path: Path) -> None:
    trace(tiny_llama, None, ["Hi"], out=tmp_path, max_new_tokens=2, lens="raw")
    steps = read_trace(tmp_path).steps
    paper = matrix(steps, "paper_js")
    assert paper.shape == (2, tiny_llama.n_layers) and (paper >= 0).all()
    assert evolens.trace is trace


def test_an_input_the_processor_refuses_fails_alone(
    tiny_llama: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evolens.errors import InputError

    build = tiny_llama.build_inputs

    def refuse_one(prompts, images=None):
        if any("refused" in p for p in prompts):
            raise InputError("the processor refused this input")
        return build(prompts, images)

    monkeypatch.setattr(tiny_llama, "build_inputs", refuse_one)
    prompts = ["First question?", "A refused question?", "Third question?"]
    result = trace(tiny_llama, None, prompts, out=tmp_path, max_new_tokens=2, batch_size=3)
    assert len(result.traced) == 2
    assert [f["error"] for f in result.failures] == [
        "cannot build the input: the processor refused this input"
    ]


def test_return_freed_memory_trims_where_it_can(monkeypatch: pytest.MonkeyPatch) -> None:
    """glibc's malloc_trim between batches where there is one; silently nothing where there is not."""
    calls: list[int] = []

    class Libc:
        def malloc_trim(self, pad: int) -> int:
            calls.append(pad)
            return 1

    monkeypatch.setattr(tracer_module.ctypes, "CDLL", lambda name: Libc())
    tracer_module.return_freed_memory()
    assert calls == [0]

    def no_library(name: object) -> None:
        raise OSError("no C library")

    monkeypatch.setattr(tracer_module.ctypes, "CDLL", no_library)
    tracer_module.return_freed_memory()  # no error
    monkeypatch.setattr(tracer_module.ctypes, "CDLL", lambda name: object())
    tracer_module.return_freed_memory()  # a C library without malloc_trim: no error


def test_a_torn_failures_line_does_not_block_the_rerun(tiny_llama: LoadedModel, tmp_path: Path) -> None:
    """A run killed (or out of disk) while appending to failures.jsonl left half a line: the next run
    drops it with a note and goes on; the whole lines stay."""
    prompts = ["First question?", "Second question?"]
    trace(tiny_llama, None, prompts[:1], out=tmp_path, max_new_tokens=2)
    other = {"sample_id": "elsewhere", "image": "e.png", "error": "e.png: empty file"}
    with open(tmp_path / "failures.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(other) + '\n{"sample_id": "cut", "ima')
    with pytest.warns(UserWarning, match=r"failures.jsonl: line 2 .* dropped"):
        again = trace(tiny_llama, None, prompts, out=tmp_path, max_new_tokens=2)
    assert again.ok and len(again.skipped) == 1 and len(again.traced) == 1
    assert read_failures(tmp_path) == [other]
    assert sorted(read_trace(tmp_path).samples["sample_id"]) == sorted(again.skipped + again.traced)
