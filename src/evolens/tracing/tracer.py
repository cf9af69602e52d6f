"""``evolens.trace``: generate on a dataset and record every layer's next-token distribution as metrics.

The data path of one batch: samples -> left-padded inputs -> ``generate`` with ``LayerCapture`` hooks and a
``TokenStreamer`` -> per step, ``StepMetricsEngine`` on the captured states and the emitted tokens ->
``SampleRecord`` per sample -> ``TraceWriter`` part. A sample whose image cannot be read fails alone
(failures.jsonl); NaN/inf in a layer's state stops the run with the sample, step and layer named.
"""

from __future__ import annotations

import ctypes
import dataclasses
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from evolens.data.images import file_sha256, image_sha256
from evolens.data.resolve import ImagesArgument, Sample, resolve_samples
from evolens.errors import InputError, UsageError
from evolens.io.store import SampleRecord, TraceWriter, read_failures
from evolens.lenses.logit import Lens
from evolens.lenses.spec import lens_record, make_lens
from evolens.models.capture import AttentionShares, LayerCapture, TokenStreamer
from evolens.models.image_tokens import image_token_id
from evolens.models.loaded import LoadedModel
from evolens.tracing.conditions import ConditionedImages
from evolens.tracing.engine import StepMetricsEngine
from evolens.tracing.engines import TraceEngine, TraceJob, TraceResult
from evolens.tracing.image_lens import ImageTokenLens
from evolens.tracing.progress import Progress, ProgressCallback
from evolens.tracing.recorder import BatchRecorder
from evolens.tracing.scoring import forward, with_responses
from evolens.tracing.spec import TraceSpec


def trace(
    model: str | LoadedModel,
    images: ImagesArgument = None,
    prompt: str | Sequence[str] | None = None,
    out: str | Path = "evolens-trace",
    spec: TraceSpec | None = None,
    engine: TraceEngine | None = None,
    *,
    progress: bool | ProgressCallback = False,
    device: str = "cpu",
    dtype: str | None = None,
    limit: int | None = None,
    exclusive: bool = False,
    **settings: Any,
) -> TraceResult:
    """Trace generation on ``images`` x ``prompt`` and write the dataset to ``out`` (resumable): the one entry
    point, whatever runs it.

    ``images``: an image file, a folder, a JSONL manifest, a list of files or of ``Sample``, or None for
    text-only prompts (see ``evolens.data.resolve``). ``spec``: every trace setting (``TraceSpec``);
    ``settings``: ``TraceSpec`` fields given one by one (``max_new_tokens=128``), over ``spec``'s.
    ``engine``: what runs it (``LocalEngine()`` by default; ``evolens.tracing.engines.engine_for`` gives
    the Ray engine). ``limit``: trace at most this many inputs. ``exclusive``: the trace keeps only these
    inputs (finished samples not among them are removed, as a run does when inputs leave). ``device`` and
    ``dtype`` apply when ``model`` is a name.
    """
    spec = TraceSpec.of(**{**(spec.model_dump() if spec is not None else {}), **settings})
    job = TraceJob(
        model=model,
        samples=resolve_samples(images, prompt, limit=limit),
        out=Path(out),
        spec=spec,
        device=device,
        dtype=dtype,
        progress=progress,
        exclusive=exclusive,
    )
    return (engine or LocalEngine()).run(job)


class LocalEngine:
    """Runs a trace in this process: the model loaded once, its batches one after the other."""

    name = "local"

    def run(self, job: TraceJob) -> TraceResult:
        """Trace ``job`` (see ``TraceEngine``)."""
        loaded = job.loaded_model()
        samples = with_token_responses(job.samples, loaded)
        check_inputs_fit(loaded.name, loaded.adapter.vision, samples)
        tracer = Tracer(loaded, job.spec, samples=samples)
        meta = trace_meta(loaded, job.spec, tracer.lens, mode=job_mode(samples))
        with TraceWriter.open(job.out, meta) as writer:
            result, todo = remaining_work(writer, samples, job.exclusive)
            callback = job.progress if callable(job.progress) else None
            with Progress("trace", len(todo), enabled=job.progress is not False, callback=callback) as report:
                for batch in batches(todo, job.spec.batch_size):
                    records = tracer.trace_samples(batch, on_failure=writer.record_failure)
                    writer.write(records)
                    result.traced.extend(r.sample_id for r in records)
                    report.advance(len(batch), tokens=sum(len(r.token_ids) for r in records))
        result.failures = [
            f for f in read_failures(writer.directory) if f["sample_id"] in {s.sample_id for s in todo}
        ]
        return result


def remaining_work(
    writer: TraceWriter, samples: Sequence[Sample], exclusive: bool
) -> tuple[TraceResult, list[Sample]]:
    """What is left to trace in an opened trace (the same for every engine): finished samples whose input
    changed are removed (to be retraced), with ``exclusive`` so are those no longer among ``samples``;
    the samples not finished are returned in order, and their earlier failures forgotten."""
    result = TraceResult(writer.directory)
    result.retraced = writer.remove(changed_inputs(writer, samples))
    if exclusive:
        result.removed = writer.remove(writer.finished - {s.sample_id for s in samples})
    todo = [s for s in samples if s.sample_id not in writer.finished]
    result.skipped = [s.sample_id for s in samples if s.sample_id in writer.finished]
    writer.forget_failures({s.sample_id for s in todo})
    return result, todo


@dataclass(frozen=True)
class Shown:
    """One sample as the model is shown it: the image it sees (None: none), the SHA-256 of the sample's own
    image file as read, and what was shown (``SampleRecord.image_used``)."""

    sample: Sample
    image: Image.Image | None
    sha256: str | None
    used: str | None


def with_token_responses(samples: Sequence[Sample], loaded: LoadedModel) -> list[Sample]:
    """The samples with every text response turned into the model's token ids (no special tokens added);
    a response that gives no token is a UsageError naming the sample."""
    tokenized = []
    for sample in samples:
        if isinstance(sample.response, str):
            ids = tuple(loaded.tokenizer(sample.response, add_special_tokens=False)["input_ids"])
            if not ids:
                raise UsageError(f"sample '{sample.sample_id}': its response is empty; nothing to score")
            sample = dataclasses.replace(sample, response=ids)
        tokenized.append(sample)
    return tokenized


def job_mode(samples: Sequence[Sample]) -> str:
    """ "score" when every sample comes with a response, "generate" when none does (a mix is refused)."""
    given = {sample.response is not None for sample in samples}
    if len(given) > 1:
        raise UsageError("some inputs come with a response and some without: score them, or trace them apart")
    return "score" if given == {True} else "generate"


class Tracer:
    """Traces batches of samples on one model with one spec (the lens and buffers are reused): generating,
    or scoring the samples' given responses (teacher forcing, ``evolens.tracing.scoring``).

    ``lens`` defaults to the one ``spec.lens`` names (``evolens.lenses.spec.make_lens``); ``samples``: all
    inputs of the trace, which the shuffled condition deranges images among (``tracing.conditions``).
    """

    def __init__(
        self, loaded: LoadedModel, spec: TraceSpec, lens: Lens | None = None, samples: Sequence[Sample] = ()
    ) -> None:
        self.loaded = loaded
        self.spec = spec
        self.lens = lens if lens is not None else make_lens(loaded, spec.lens)
        self.engine = StepMetricsEngine(self.lens, spec.top_k, spec.records_paper_js)
        self.images = ConditionedImages(spec.condition, samples, spec.seed)
        self.image_lens = (
            ImageTokenLens(loaded, self.lens, spec.probe_word_list) if spec.image_tokens else None
        )

    def trace_samples(
        self, samples: Sequence[Sample], on_failure: Callable[[str, str | None, str], None] | None = None
    ) -> list[SampleRecord]:
        """Trace one batch; samples whose image cannot be read are reported to ``on_failure`` and left out."""
        shown: list[Shown] = []
        for sample in samples:
            try:
                own, seen, used = self.images.load(sample)
            except InputError as exc:
                if on_failure is None:
                    raise
                on_failure(sample.sample_id, _path_text(sample.image), str(exc))
                continue
            shown.append(Shown(sample, seen, image_sha256(sample.image, own), used))
        return self._batch(shown, on_failure)

    def trace_images(
        self,
        readable: Sequence[tuple[Sample, Image.Image | None]],
        on_failure: Callable[[str, str | None, str], None] | None = None,
    ) -> list[SampleRecord]:
        """Trace one batch whose images are already decoded (None for a text-only sample), shown as they are;
        samples whose input the processor refuses are reported to ``on_failure`` and left out."""
        return self._batch(
            [
                Shown(sample, image, image_sha256(sample.image, image), _path_text(sample.image))
                for sample, image in readable
            ],
            on_failure,
        )

    def _batch(
        self, shown: Sequence[Shown], on_failure: Callable[[str, str | None, str], None] | None
    ) -> list[SampleRecord]:
        """Generate (or score) one batch; a sample whose input the processor refuses fails alone."""
        if not shown:
            return []
        chosen = [entry.sample for entry in shown]
        images = [entry.image for entry in shown]
        try:
            inputs = self.loaded.build_inputs(
                [s.prompt for s in chosen], images if any(i is not None for i in images) else None
            )
        except (InputError, ValueError) as exc:  # the processor refused an input: find which, alone
            if len(chosen) > 1:
                return [record for entry in shown for record in self._batch([entry], on_failure)]
            if on_failure is None:
                raise
            on_failure(chosen[0].sample_id, _path_text(chosen[0].image), f"cannot build the input: {exc}")
            return []
        ids = [s.sample_id for s in chosen]
        scored = chosen[0].response is not None
        recorder = (
            self.score(inputs, ids, [s.response for s in chosen]) if scored else self.generate(inputs, ids)
        )
        records = [self._record(entry, recorder, row) for row, entry in enumerate(shown)]
        if self.image_lens is not None and recorder.image_states is not None:
            kept, mask = recorder.image_states
            sizes = [None if entry.image is None else entry.image.size for entry in shown]
            lensed = self.image_lens.records(kept, mask, inputs, sizes, [r.text for r in records])
            for record, image_tokens in zip(records, lensed, strict=True):
                record.image_tokens = image_tokens
            recorder.image_states = None
        return records

    def _image(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) the prompts' image tokens (all False for a model without them): the keys the attention
        readout counts as the image."""
        token = image_token_id(self.loaded)
        return torch.zeros_like(input_ids, dtype=torch.bool) if token is None else input_ids == token

    def _keep(self, input_ids: torch.Tensor) -> torch.Tensor | None:
        """(B, T) the image tokens whose states the image-token lens reads, or None without it."""
        return None if self.image_lens is None else self.image_lens.mask(input_ids)

    def score(self, inputs: Any, sample_ids: list[str], responses: Sequence[Any]) -> BatchRecorder:
        """Teacher-force the given responses (token ids) on one left-padded batch of prompts in one forward
        pass with the hooks on; returns the per-row records, as ``generate`` does."""
        pad = self.loaded.tokenizer.pad_token_id
        batch = with_responses(
            inputs,
            [list(response) for response in responses],
            self.loaded.eos_token_ids[0] if pad is None else pad,
            self.loaded.adapter.response_inputs,
        )
        recorder = BatchRecorder(self.engine, sample_ids, self.loaded.eos_token_ids, self.spec.hidden)
        keep = self._keep(batch.inputs["input_ids"])
        prompt_ids = inputs["input_ids"]
        with (
            LayerCapture(self.loaded, positions=batch.positions, keep=keep) as capture,
            AttentionShares(self.loaded, self._image(prompt_ids), positions=batch.positions) as attention,
        ):
            forward(self.loaded, batch.inputs)
            states = capture.pop()
        recorder.on_steps(states, batch.tokens, batch.lengths, attention.pop())
        if keep is not None and capture.kept is not None:
            recorder.image_states = (capture.kept, keep)
        self.engine.release()
        return_freed_memory()
        return recorder

    def generate(self, inputs: Any, sample_ids: list[str]) -> BatchRecorder:
        """Run ``generate`` on one left-padded batch with the hooks on; returns the per-row records."""
        spec = self.spec
        recorder = BatchRecorder(self.engine, sample_ids, self.loaded.eos_token_ids, spec.hidden)
        if spec.do_sample:
            torch.manual_seed(_batch_seed(spec.seed, sample_ids))
        keep = self._keep(inputs["input_ids"])
        with (
            LayerCapture(self.loaded, keep=keep) as capture,
            AttentionShares(self.loaded, self._image(inputs["input_ids"])) as attention,
        ):
            streamer = TokenStreamer(lambda tokens: recorder.on_step(capture.pop(), tokens, attention.pop()))
            emitted = self.loaded.generate(
                inputs,
                max_new_tokens=spec.max_new_tokens,
                do_sample=spec.do_sample,
                temperature=spec.temperature,
                top_p=spec.top_p,
                streamer=streamer,
            )
        recorder.check_matches(emitted)
        if keep is not None and capture.kept is not None:
            recorder.image_states = (capture.kept, keep)
        self.engine.release()
        return_freed_memory()
        return recorder

    def _record(self, entry: Shown, recorder: BatchRecorder, row: int) -> SampleRecord:
        sample, token_ids = entry.sample, recorder.token_ids(row)
        return SampleRecord(
            sample_id=sample.sample_id,
            image=_path_text(sample.image),
            image_sha256=entry.sha256,
            image_used=entry.used,
            prompt=sample.prompt,
            text=self.loaded.decode(token_ids),
            token_ids=token_ids,
            tokens=self.loaded.token_strings(token_ids),
            metrics=recorder.metrics(row),
            ground_truth=sample.ground_truth,
            hidden=recorder.hidden(row),
            group=sample.group,
        )


def return_freed_memory() -> None:
    """Give the heap memory freed during a batch back to the operating system (glibc's ``malloc_trim``;
    elsewhere nothing). Otherwise the next batch's prefill finds that heap fragmented by the step-by-step
    growth of the KV cache and grows it further: on the demo, 16 images in two batches of 8, the memory a
    trace adds fell from 247 to 173 MiB with this and ``StepMetricsEngine.release`` between batches
    (``benchmarks/trace_overhead.py``, methods ours-kept-buffers and ours)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def trace_meta(
    loaded: LoadedModel, spec: TraceSpec, lens: Lens | None = None, mode: str = "generate"
) -> dict[str, Any]:
    """meta.json of a trace made with ``loaded``, ``spec`` and ``lens`` (default: the spec's lens);
    ``mode``: "generate", or "score" (given responses, teacher forced: no decoding settings apply)."""
    from evolens import __version__

    return {
        "model": loaded.name,
        "revision": loaded.revision,
        "family": loaded.adapter.family,
        "dtype": str(loaded.dtype).removeprefix("torch."),
        **lens_record(lens if lens is not None else make_lens(loaded, spec.lens)),
        "n_layers": loaded.n_layers,
        "vocab_size": loaded.unembed.vocab_size,
        "top_k": spec.top_k,
        "paper_js": spec.records_paper_js,
        "decoding": spec.decoding() if mode == "generate" else {"teacher_forced": True},
        "mode": mode,
        "condition": spec.condition,
        "seed": spec.seed,
        "hidden": None if spec.hidden is None else spec.hidden.to_dict(),
        "image_tokens": spec.image_tokens_record(),
        "versions": {
            "evolens": __version__,
            "torch": torch.__version__,
            "transformers": version("transformers"),
        },
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def changed_inputs(writer: TraceWriter, samples: Sequence[Sample]) -> set[str]:
    """Ids of finished samples whose input is not what was traced: another prompt, another response to score
    (a scored response is recorded up to its first end-of-sequence token), or an image file whose bytes
    changed (SHA-256). An image that cannot be read now keeps its finished trace."""
    traced = writer.finished_inputs()
    changed = set()
    for sample in samples:
        if sample.sample_id not in traced:
            continue
        prompt, sha, tokens = traced[sample.sample_id]
        image = None if sample.image is None else Path(sample.image)
        other_response = isinstance(sample.response, tuple) and list(sample.response[: len(tokens)]) != tokens
        if (
            prompt != sample.prompt
            or other_response
            or (image is not None and image.is_file() and file_sha256(image) != sha)
        ):
            changed.add(sample.sample_id)
    return changed


def check_inputs_fit(model_name: str, vision: bool, samples: list[Sample]) -> None:
    """Refuse images for a text-only model, and repeated sample ids (UsageError)."""
    if not vision and any(s.image is not None for s in samples):
        raise UsageError(f"model '{model_name}' is text-only and takes no images; trace prompts alone")
    ids = [s.sample_id for s in samples]
    if len(set(ids)) != len(ids):
        raise UsageError("sample ids are not unique")


def batches(samples: Sequence[Sample], size: int) -> list[list[Sample]]:
    """Consecutive batches of at most ``size``; rows with and without an image never share a batch."""
    cut: list[list[Sample]] = []
    for sample in samples:
        last = cut[-1] if cut else None
        if last is None or len(last) >= size or (last[0].image is None) != (sample.image is None):
            cut.append([sample])
        else:
            last.append(sample)
    return cut


def _batch_seed(seed: int, sample_ids: list[str]) -> int:
    """A seed that depends only on ``seed`` and which samples share the batch (reproducible on resume)."""
    return (seed * 1_000_003 + zlib.crc32("\n".join(sample_ids).encode())) % 2**63


def _path_text(path: Path | None) -> str | None:
    return None if path is None else str(path)
