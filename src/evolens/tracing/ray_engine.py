"""``RayEngine``: the engine (``evolens.tracing.engines``) that spreads a trace over the actors of a Ray
cluster (Ray Data): ``evolens.trace(..., engine=RayEngine(RayOptions(actors=4)))``.

The same inputs, ``TraceSpec``, meta.json and trace directory as the local engine; a trace started by one
engine can be continued by the other. The driver:

1. connects to the cluster (``RayOptions.address``) or starts a local one, and checks that the actors fit;
2. loads the model once in a Ray task for meta.json (a different model or setting than an existing trace is
   refused, as with the local engine) and opens the trace, which runs the finalize pass;
3. writes a marker file that every actor must see (``DIR/ray/driver-<token>``: the trace directory is on
   storage the actors share), the samples not finished yet as a Parquet manifest
   (``DIR/ray/manifest.parquet``) and runs
   ``read_parquet -> decode_images (CPU tasks) -> TraceActor (ActorPoolStrategy(size=actors))``
   (``evolens.tracing.ray_stages``); each actor commits its batches to the trace directory itself;
4. records failed inputs in failures.jsonl as their outcomes arrive, and at the end runs the finalize pass
   again (``evolens.io.repair``): each finished sample once, with exactly ``n_steps`` step rows.

Exactly once: a batch is one part, committed by its samples file, and Ray retries a batch whose actor died
(it rewrites the same part). Rerun after any crash and only the samples without a committed row are traced.

Bounded: Ray restarts an actor at most ``RayOptions.max_restarts`` times and retries a batch whose actor died
at most ``RayOptions.max_retries`` times. A batch that kills its actor that often ends Ray Data's run; its
samples are recorded as failed, and the batches without an outcome run again on a new actor pool
(``_trace_batches``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import secrets
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from evolens.data.arrow import decode_images
from evolens.data.resolve import Sample
from evolens.errors import EvolensError, UsageError
from evolens.io.store import TraceWriter, finished_sample_ids, read_failures
from evolens.lenses.spec import LensSpec
from evolens.models.load import BUILTIN, load_model
from evolens.models.loaded import LoadedModel
from evolens.tracing.engines import TraceJob, TraceResult
from evolens.tracing.progress import Progress, ProgressCallback
from evolens.tracing.ray_stages import (
    ModelLoader,
    TraceActor,
    attempt_node,
    attempts,
    part_name,
    write_manifest,
    write_marker,
)
from evolens.tracing.spec import RayOptions, TraceSpec
from evolens.tracing.tracer import batches, check_inputs_fit, remaining_work, trace_meta

Result = TypeVar("Result")

DECODE_CPUS = 1.0
"""Logical CPUs of one image-decoding task; the cluster must keep them free beside the actors."""
DECODE_MEMORY = 2**30
"""Bytes of memory one image-decoding task reserves (its worker process and a batch of images). Its
resources differing from the actors' also keeps Ray Data from fusing decoding into the actors."""


class RayEngine:
    """Runs a trace on the actors of a Ray cluster (see the module doc); ``options``: where and how wide.

    The job's model is a name (each actor loads it with the job's device and dtype) or a picklable function
    that returns the ``LoadedModel``; the batches are the local engine's, so both engines compute the same
    numbers (and, with sampling, the same tokens). Relative paths (images, the output folder, a model
    folder, ``tuned:PATH``) are taken from the driver's working directory."""

    name = "ray"

    def __init__(self, options: RayOptions) -> None:
        self.options = options

    def run(self, job: TraceJob) -> TraceResult:
        """Trace ``job`` on the cluster (see ``TraceEngine``)."""
        if job.spec.condition != "image" or any(sample.response is not None for sample in job.samples):
            raise UsageError("scoring and input conditions run on the local engine (--engine local)")
        ray = _ray()
        options, samples = self.options, job.samples
        gpus = options.actor_gpus(job.device)
        spec = job.spec.model_copy(update={"lens": _absolute_lens(job.spec.lens)})
        load = _loader(job.model, job.device, job.dtype)
        with contextlib.ExitStack() as held:  # the trace's lock, from opening it to the last finalize pass
            with _cluster(options):
                _check_resources(options, gpus)
                probe = ray.remote(_model_meta).options(
                    num_cpus=options.cpus_per_actor, num_gpus=gpus, max_retries=0
                )
                meta, vision = _reraise_user_error(lambda: ray.get(probe.remote(load, spec)))
                check_inputs_fit(meta["model"], vision, samples)
                writer = held.enter_context(TraceWriter.open(job.out, meta))
                result, left = remaining_work(writer, samples, job.exclusive)
                position = {s.sample_id: index for index, s in enumerate(samples)}
                todo = [(position[s.sample_id], s) for s in left]
                if todo:
                    by_id = {s.sample_id: (position[s.sample_id], s) for s in left}
                    cut = batches(left, spec.batch_size)  # the local engine's batches
                    pool = _Pool(load, spec, writer, options, gpus, job.device)
                    batched = [[by_id[s.sample_id] for s in batch] for batch in cut]
                    _trace_batches(pool, batched, job.progress)
            writer.finalize()
            shutil.rmtree(writer.directory / "ray", ignore_errors=True)
        return _result(result, [s for _, s in todo])


Batch = list[tuple[int, Sample]]
"""One of the local engine's batches as ``(input index, sample)`` pairs: a manifest row, a part."""


@dataclass(frozen=True)
class _Pool:
    """What every run of the actor pool needs, and the folder of this trace run (``DIR/ray``: the
    manifest, the driver's marker and the actors' attempt files; removed at the end)."""

    load: ModelLoader
    spec: TraceSpec
    writer: TraceWriter
    options: RayOptions
    gpus: float
    device: str
    token: str = dataclasses.field(default_factory=lambda: secrets.token_hex(8))

    @property
    def folder(self) -> Path:
        return self.writer.directory.absolute() / "ray"

    @property
    def marker(self) -> Path:
        return self.folder / f"driver-{self.token}"

    @property
    def attempts(self) -> Path:
        return self.folder / f"attempts-{self.token}"


def _trace_batches(pool: _Pool, batches: list[Batch], progress: bool | ProgressCallback) -> None:
    """Trace ``batches`` on the actor pool, recording each failed input as its outcome arrives.

    A run of the pool over the batches left ends early when a batch killed its actor past Ray's retries
    (``_run_pool``); the next run starts new actors. Each run that does not end the trace gets outcomes,
    lists a batch as failed or spends one of a batch's ``RayOptions.deaths_per_batch``, so the runs are
    bounded."""
    write_marker(pool.marker, pool.token)
    total = sum(len(batch) for batch in batches)
    callback = progress if callable(progress) else None
    with Progress("trace", total, enabled=progress is not False, callback=callback) as report:
        left = batches
        while left:
            left = _run_pool(pool, left, report)


def _run_pool(pool: _Pool, batches: list[Batch], report: Progress) -> list[Batch]:
    """One Ray Data run of the actor pool over ``batches``; the batches to run again (none when it ran to
    the end, see ``_after_death`` otherwise)."""
    done: set[str] = set()
    tried = sum(len(attempts(pool.attempts).get(_part(batch), [])) for batch in batches)
    try:
        for outcome in _outcomes(_dataset(pool, batches)):
            if outcome["error"] is not None:
                pool.writer.record_failure(outcome["sample_id"], outcome["image"], outcome["error"])
            done.add(outcome["sample_id"])
            report.advance(1, tokens=outcome["tokens"])
    except _ray().exceptions.RayActorError as death:
        return _after_death(pool, batches, done, tried, report, death)
    return []


def _after_death(
    pool: _Pool, batches: list[Batch], done: set[str], tried: int, report: Progress, death: Exception
) -> list[Batch]:
    """After Ray gave up on a batch (``death``): list the batches that killed their actors
    ``RayOptions.deaths_per_batch`` times as failed, and return the others without outcomes, to run again.
    A run that traced nothing at all (no outcome, no new attempt: actors that die while they start) ends the
    trace with Ray's error instead, as nothing says that the next run would fare better."""
    left = [batch for batch in batches if any(sample.sample_id not in done for _, sample in batch)]
    tries = attempts(pool.attempts)
    if not done and sum(len(tries.get(_part(batch), [])) for batch in left) == tried:
        raise death
    finished = finished_sample_ids(pool.writer.directory)
    failed = {part for part, files in tries.items() if len(files) >= pool.options.deaths_per_batch}
    for batch in (batch for batch in left if _part(batch) in failed):
        reason = _death_reason([attempt_node(attempt) for attempt in tries[_part(batch)]])
        for _, sample in batch:
            if sample.sample_id not in finished:  # else committed before its actor died
                image = None if sample.image is None else str(sample.image)
                pool.writer.record_failure(sample.sample_id, image, reason)
        report.advance(len(batch))
    return [batch for batch in left if _part(batch) not in failed]


def _part(batch: Batch) -> str:
    """The part ``batch`` commits to (``ray_stages.part_name``), which names its attempt files."""
    return part_name([index for index, _ in batch], [sample.sample_id for _, sample in batch])


def _death_reason(nodes: list[str]) -> str:
    """The failure recorded for each sample of a batch that killed its actor on ``nodes`` (one per try)."""
    where = ", ".join(sorted(set(nodes)))
    return (
        f"the actor tracing this batch died {len(nodes)} times (node {where}): out of memory, a crash or a "
        "fatal CUDA error; the Ray logs of the node say which (/tmp/ray/session_latest/logs)"
    )


def _ray() -> Any:
    """The ray module, imported on first use (an optional extra, and a second to import)."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise UsageError("the Ray engine needs Ray: pip install 'evolens[ray]'") from exc
    return ray


def _result(result: TraceResult, todo: list[Sample]) -> TraceResult:
    """Fill ``result`` from what the trace directory holds now that the run is over."""
    finished = finished_sample_ids(result.out)
    todo_ids = {s.sample_id for s in todo}
    result.traced = [s.sample_id for s in todo if s.sample_id in finished]
    result.failures = [f for f in read_failures(result.out) if f["sample_id"] in todo_ids]
    missing = todo_ids - finished - {f["sample_id"] for f in result.failures}
    if missing:
        raise EvolensError(
            f"{len(missing)} samples were not committed (e.g. {sorted(missing)[0]}); "
            "run the same command again to trace them"
        )
    return result


def _absolute_lens(lens: str) -> str:
    """``tuned:PATH`` with PATH absolute (the actors need not share the driver's working directory)."""
    spec = LensSpec.parse(lens)
    return lens if spec.path is None else f"tuned:{spec.path.absolute()}"


def _loader(
    model: str | Callable[[], LoadedModel] | LoadedModel, device: str, dtype: str | None
) -> ModelLoader:
    """What each actor calls to load ``model`` (a local folder by its absolute path: Ray's workers need
    not share the driver's working directory)."""
    if isinstance(model, LoadedModel):
        raise UsageError("the Ray engine loads the model in every actor: pass its name, not a loaded model")
    if isinstance(model, str):
        folder = Path(model)
        source = str(folder.absolute()) if model not in BUILTIN and folder.exists() else model
        return functools.partial(_load_as, model, source, device, dtype)
    return model


def _load_as(name: str, source: str, device: str, dtype: str | None) -> LoadedModel:
    """``load_model(source)``, named ``name`` (the name the user gave, which meta.json records)."""
    return dataclasses.replace(load_model(source, device=device, dtype=dtype), name=name)


@contextlib.contextmanager
def _cluster(options: RayOptions) -> Iterator[None]:
    """Connected to the cluster for the duration; a connection made here is closed (a local cluster
    started here is shut down)."""
    ray = _ray()
    if ray.is_initialized():
        yield
        return
    settings: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if options.address is None:
        needed = options.actors * options.cpus_per_actor + DECODE_CPUS
        settings.update(num_cpus=max(os.cpu_count() or 1, math.ceil(needed)), include_dashboard=False)
    try:
        ray.init(address=options.address, **settings)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise UsageError(f"cannot reach the Ray cluster at {options.address}: {exc}") from exc
    try:
        yield
    finally:
        ray.shutdown()


def _check_resources(options: RayOptions, gpus: float) -> None:
    """Refuse actors the cluster cannot hold (Ray Data would wait for them forever)."""
    resources = _ray().cluster_resources()
    cpus_needed = options.actors * options.cpus_per_actor + DECODE_CPUS
    if resources.get("CPU", 0) < cpus_needed:
        raise UsageError(
            f"the Ray cluster has {resources.get('CPU', 0):g} CPUs; {options.actors} actors x "
            f"{options.cpus_per_actor:g} CPUs plus {DECODE_CPUS:g} for decoding images need {cpus_needed:g}: "
            "lower --actors or --cpus-per-actor (fractions such as 0.5 are allowed)"
        )
    if resources.get("GPU", 0) < options.actors * gpus:
        raise UsageError(
            f"the Ray cluster has {resources.get('GPU', 0):g} GPUs; {options.actors} actors x {gpus:g} GPUs "
            "do not fit: lower --actors or --gpus-per-actor"
        )


def _model_meta(load: ModelLoader, spec: TraceSpec) -> tuple[dict[str, Any], bool]:
    """meta.json of the model ``load`` gives, and whether it takes images (runs as a Ray task)."""
    loaded = load()
    return trace_meta(loaded, spec), loaded.adapter.vision


def _dataset(pool: _Pool, batches: list[Batch]) -> Any:
    """manifest (one row per batch) -> decoded images -> traced and committed by the actor pool."""
    ray = _ray()
    manifest = write_manifest(pool.folder / "manifest.parquet", batches)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.raise_original_map_exception = True  # an EvolensError in an actor reaches the driver as itself
    context.max_errored_blocks = 0  # a batch Ray gave up on ends the run: _run_pool decides what follows
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"
    # "Dataset execution will now abort" with Ray's traceback: _run_pool says what happens next
    logging.getLogger("ray.data._internal.execution.streaming_executor_state").setLevel(logging.CRITICAL)
    decoded = (
        ray.data.read_parquet(str(manifest))
        .repartition(target_num_rows_per_block=1)  # a block per batch: per-batch progress and retries
        .map_batches(
            decode_images, batch_size=1, batch_format="pyarrow", num_cpus=DECODE_CPUS, memory=DECODE_MEMORY
        )
    )
    with warnings.catch_warnings():
        # Ray 2.60 deprecates map_batches' **ray_remote_args (removal announced for 2.64) but has no named
        # parameter for max_restarts and max_task_retries yet
        warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated", DeprecationWarning)
        return decoded.map_batches(
            TraceActor,
            batch_size=1,
            batch_format="pyarrow",
            fn_constructor_kwargs=_actor_arguments(pool),
            # one batch at a time per actor: a batch queued behind one that kills the actor would spend
            # its retries on deaths not its own
            compute=ray.data.ActorPoolStrategy(
                size=min(pool.options.actors, len(batches)), max_tasks_in_flight_per_actor=1
            ),
            num_cpus=pool.options.cpus_per_actor,
            num_gpus=pool.gpus,
            max_restarts=pool.options.max_restarts,
            max_task_retries=pool.options.max_retries,
        )


def _actor_arguments(pool: _Pool) -> dict[str, Any]:
    """``TraceActor``'s constructor arguments."""
    cpu_only = pool.gpus == 0 and pool.device == "cpu"
    return {
        "load": pool.load,
        "spec": pool.spec,
        "out": str(pool.writer.directory.absolute()),
        "meta": pool.writer.meta,
        "marker": str(pool.marker),
        "token": pool.token,
        "attempts": str(pool.attempts),
        "threads": max(1, int(pool.options.cpus_per_actor)) if cpu_only else None,
    }


def _outcomes(dataset: Any) -> Iterator[dict[str, Any]]:
    """The outcome rows as the actors finish their batches; a user error raised in an actor comes out
    as itself (one line), not as Ray's wrapped traceback."""
    tables = iter(dataset.iter_batches(batch_size=None, batch_format="pyarrow"))
    while True:
        table = _reraise_user_error(lambda: next(tables, None))
        if table is None:
            return
        yield from table.to_pylist()


def _reraise_user_error(call: Callable[[], Result]) -> Result:
    """``call()``; an ``EvolensError`` that Ray wrapped is raised as itself (one line for the CLI)."""
    try:
        return call()
    except Exception as exc:
        cause = _user_error(exc)
        if cause is None:
            raise
        raise _first_line(cause) from None


def _first_line(error: EvolensError) -> EvolensError:
    """``error`` with the first line of its message only: Ray Data appends its retry advice to an exception
    raised in a map function, and an evolens error is one line (``evolens.errors``)."""
    error.args = (str(error).split("\n", 1)[0],)
    return error


def _user_error(exc: BaseException) -> EvolensError | None:
    """The ``EvolensError`` that Ray wrapped (in ``RayTaskError``, ``UserCodeException``...), if any."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, EvolensError) and not isinstance(current, _ray().exceptions.RayError):
            return current
        pending.extend([getattr(current, "cause", None), current.__cause__, current.__context__])
    return None
