"""``evolens.trace``: generate on a dataset and record every layer's next-token distribution as metrics.

The data path of one batch: samples -> left-padded inputs -> ``generate`` with ``LayerCapture`` hooks and a
``TokenStreamer`` -> per step, ``StepMetricsEngine`` on the captured states and the emitted tokens ->
``SampleRecord`` per sample -> ``TraceWriter`` part. A sample whose image cannot be read fails alone
(failures.jsonl); NaN/inf in a layer's state stops the run with the sample, step and layer named.
"""

from __future__ import annotations

import ctypes
import zlib
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from evolens.data.images import file_sha256, image_sha256, load_image
from evolens.data.resolve import ImagesArgument, Sample, resolve_samples
from evolens.errors import InputError, UsageError
from evolens.io.store import SampleRecord, TraceWriter, read_failures
from evolens.lenses.logit import Lens
from evolens.lenses.spec import lens_record, make_lens
from evolens.models.capture import LayerCapture, TokenStreamer
from evolens.models.loaded import LoadedModel
from evolens.tracing.engine import StepMetricsEngine
from evolens.tracing.engines import TraceEngine, TraceJob, TraceResult
from evolens.tracing.progress import Progress, ProgressCallback
from evolens.tracing.recorder import BatchRecorder
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
        check_inputs_fit(loaded.name, loaded.adapter.vision, job.samples)
        tracer = Tracer(loaded, job.spec)
        with TraceWriter.open(job.out, trace_meta(loaded, job.spec, tracer.lens)) as writer:
            result, todo = remaining_work(writer, job.samples, job.exclusive)
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


class Tracer:
    """Traces batches of samples on one model with one spec (the lens and buffers are reused).

    ``lens`` defaults to the one ``spec.lens`` names (``evolens.lenses.spec.make_lens``).
    """

    def __init__(self, loaded: LoadedModel, spec: TraceSpec, lens: Lens | None = None) -> None:
        self.loaded = loaded
        self.spec = spec
        self.lens = lens if lens is not None else make_lens(loaded, spec.lens)
        self.engine = StepMetricsEngine(self.lens, spec.top_k, spec.records_paper_js)

    def trace_samples(
        self, samples: Sequence[Sample], on_failure: Callable[[str, str | None, str], None] | None = None
    ) -> list[SampleRecord]:
        """Trace one batch; samples whose image cannot be read are reported to ``on_failure`` and left out."""
        readable: list[tuple[Sample, Image.Image | None]] = []
        for sample in samples:
            try:
                readable.append((sample, None if sample.image is None else load_image(sample.image)))
            except InputError as exc:
                if on_failure is None:
                    raise
                on_failure(sample.sample_id, _path_text(sample.image), str(exc))
        return self.trace_images(readable, on_failure)

    def trace_images(
        self,
        readable: Sequence[tuple[Sample, Image.Image | None]],
        on_failure: Callable[[str, str | None, str], None] | None = None,
    ) -> list[SampleRecord]:
        """Trace one batch whose images are already decoded (None for a text-only sample); samples whose
        input the processor refuses are reported to ``on_failure`` and left out."""
        if not readable:
            return []
        chosen = [sample for sample, _ in readable]
        images = [image for _, image in readable]
        hashes = [image_sha256(sample.image, image) for sample, image in readable]  # what is traced
        try:
            inputs = self.loaded.build_inputs(
                [s.prompt for s in chosen], images if any(i is not None for i in images) else None
            )
        except (InputError, ValueError) as exc:  # the processor refused an input: find which, alone
            if len(chosen) > 1:
                return [record for pair in readable for record in self.trace_images([pair], on_failure)]
            if on_failure is None:
                raise
            on_failure(chosen[0].sample_id, _path_text(chosen[0].image), f"cannot build the input: {exc}")
            return []
        recorder = self.generate(inputs, [s.sample_id for s in chosen])
        return [
            self._record(sample, recorder, row, sha)
            for row, (sample, sha) in enumerate(zip(chosen, hashes, strict=True))
        ]

    def generate(self, inputs: Any, sample_ids: list[str]) -> BatchRecorder:
        """Run ``generate`` on one left-padded batch with the hooks on; returns the per-row records."""
        spec = self.spec
        recorder = BatchRecorder(self.engine, sample_ids, self.loaded.eos_token_ids, spec.hidden)
        if spec.do_sample:
            torch.manual_seed(_batch_seed(spec.seed, sample_ids))
        with LayerCapture(self.loaded) as capture:
            streamer = TokenStreamer(lambda tokens: recorder.on_step(capture.pop(), tokens))
            emitted = self.loaded.generate(
                inputs,
                max_new_tokens=spec.max_new_tokens,
                do_sample=spec.do_sample,
                temperature=spec.temperature,
                top_p=spec.top_p,
                streamer=streamer,
            )
        recorder.check_matches(emitted)
        self.engine.release()
        return_freed_memory()
        return recorder

    def _record(self, sample: Sample, recorder: BatchRecorder, row: int, sha256: str | None) -> SampleRecord:
        token_ids = recorder.token_ids(row)
        return SampleRecord(
            sample_id=sample.sample_id,
            image=_path_text(sample.image),
            image_sha256=sha256,
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


def trace_meta(loaded: LoadedModel, spec: TraceSpec, lens: Lens | None = None) -> dict[str, Any]:
    """meta.json of a trace made with ``loaded``, ``spec`` and ``lens`` (default: the spec's lens)."""
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
        "decoding": spec.decoding(),
        "seed": spec.seed,
        "hidden": None if spec.hidden is None else spec.hidden.to_dict(),
        "versions": {
            "evolens": __version__,
            "torch": torch.__version__,
            "transformers": version("transformers"),
        },
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def changed_inputs(writer: TraceWriter, samples: Sequence[Sample]) -> set[str]:
    """Ids of finished samples whose input is not what was traced: another prompt, or an image file whose
    bytes changed (SHA-256). An image that cannot be read now keeps its finished trace."""
    traced = writer.finished_inputs()
    changed = set()
    for sample in samples:
        if sample.sample_id not in traced:
            continue
        prompt, sha = traced[sample.sample_id]
        image = None if sample.image is None else Path(sample.image)
        if prompt != sample.prompt or (image is not None and image.is_file() and file_sha256(image) != sha):
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
