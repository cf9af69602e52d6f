"""``evolens run``: data -> trace -> analyze -> (skip) -> (hallucination) -> report, resumable.

Each stage declares the config sections its result depends on; their fingerprint is recorded in
``OUT/run.json`` once the stage's output is complete (see ``record.py``). Run again with the same ``OUT``
and finished stages are skipped, the trace continues where it stopped (finished samples are kept), and a
stage whose settings changed is redone together with everything after it. Settings that change *what was
traced* (model, data, trace) cannot change under an existing trace: that is a usage error unless
``overwrite`` starts the folder over.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from evolens.data.sources import read_manifest
from evolens.errors import EvolensError, StorageError, UsageError
from evolens.io import atomic
from evolens.io.lock import LOCK_NAME, TraceLock
from evolens.pipeline.config import RunConfig
from evolens.pipeline.context import TRACE_IDENTITY, RunContext, Stage
from evolens.pipeline.inputs import digest
from evolens.pipeline.record import RunLayout, RunRecord
from evolens.pipeline.stages import STAGES, read_failures


@dataclass
class RunResult:
    """What a finished run produced: the report path (None if disabled) and the inputs that failed."""

    out: Path
    report: Path | None
    failures: list[dict[str, Any]]
    stages_run: list[str]

    @property
    def exit_code(self) -> int:
        """0 when everything finished, 1 when some inputs failed."""
        return 1 if self.failures else 0


def run_pipeline(
    config: RunConfig,
    overwrite: bool = False,
    quiet: bool = False,
    console: Console | None = None,
) -> RunResult:
    """Run (or resume) every enabled stage of ``config`` in ``config.out``."""
    layout = RunLayout(config.out)
    new_folder = not layout.root.exists()
    with lock_run_folder(layout, overwrite):
        prepare_folder(layout, config)
        return _run_locked(layout, config, new_folder, quiet, console)


def _run_locked(
    layout: RunLayout, config: RunConfig, new_folder: bool, quiet: bool, console: Console | None
) -> RunResult:
    context = RunContext(
        config=config,
        layout=layout,
        record=RunRecord(layout.record),
        console=console or Console(stderr=True),
        quiet=quiet,
    )
    try:
        stages_run = _run_stages(context)
    except EvolensError:
        if new_folder and not layout.trace.exists():  # nothing worth keeping: leave no empty run behind
            _remove_run_folder(layout.root)
        raise
    report = layout.report if config.report.enabled and layout.report.is_file() else None
    return RunResult(layout.root, report, read_failures(layout), stages_run)


def _run_stages(context: RunContext) -> list[str]:
    """Run every enabled stage whose fingerprint (its config sections and the inputs) is not recorded as
    done; a stage that runs again invalidates everything after it."""
    config, layout = context.config, context.layout
    stages_run = []
    redo_rest = False
    for stage in STAGES:
        if not stage.enabled(config):
            continue
        if stage.always:
            details = _timed(context, stage)
            fingerprint = config.fingerprint(*stage.sections)
            if details.get("changes") or not context.record.is_done(stage.name, fingerprint):
                context.record.mark_done(stage.name, fingerprint, **details)
            continue
        fingerprint = f"{config.fingerprint(*stage.sections)}:{inputs_digest(layout)}"
        finished = context.record.is_done(stage.name, fingerprint) and stage.output(layout).exists()
        if not redo_rest and finished:
            context.say(f"{stage.name}: already done (same settings, same inputs)")
            continue
        redo_rest = True
        context.record.forget(stage.name)
        details = _timed(context, stage)
        context.record.mark_done(stage.name, fingerprint, **details)
        stages_run.append(stage.name)
    return stages_run


def _timed(context: RunContext, stage: Stage) -> dict[str, Any]:
    """Run one stage with a start and an end line; its details gain ``seconds``."""
    context.say(f"{stage.name} ...")
    started = time.perf_counter()
    details = stage.run(context)
    seconds = time.perf_counter() - started
    context.say(f"{stage.name}: done in {seconds:.1f} s")
    return {**details, "seconds": round(seconds, 3)}


def inputs_digest(layout: RunLayout) -> str:
    """The digest of the run's inputs (ids, images by SHA-256, prompts, ground truth): it changes when an
    input is added, removed or edited, so every stage after the data stage runs again."""
    return digest(read_manifest(layout.manifest)) if layout.manifest.is_file() else ""


@contextlib.contextmanager
def lock_run_folder(layout: RunLayout, overwrite: bool) -> Iterator[None]:
    """One ``evolens run`` per folder at a time (``evolens.io.lock``): a second one is refused in one line
    before it touches anything. With ``overwrite`` the old folder is moved aside under its lock and the new
    one locked before the old lock goes."""
    root = layout.root
    check_run_folder(layout)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the run folder {root}: {exc.strerror or exc}") from exc
    held = TraceLock.acquire(root)
    try:
        if overwrite and any(path.name != LOCK_NAME for path in root.iterdir()):
            _remove_run_folder(root)
            root.mkdir(parents=True)
            old, held = held, TraceLock.acquire(root)
            old.release()
        yield
    finally:
        held.release()


def check_run_folder(layout: RunLayout) -> None:
    """Refuse an ``--out`` that is a file, or a folder with other things in it than an evolens run."""
    root = layout.root
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root}: exists and is not a folder")
    is_run = layout.record.is_file() or layout.config.is_file()
    if root.is_dir() and any(p.name != LOCK_NAME for p in root.iterdir()) and not is_run:
        raise UsageError(f"{root}: folder is not empty and holds no evolens run; choose another --out")


def prepare_folder(layout: RunLayout, config: RunConfig) -> None:
    """Check that an existing run traced the same things (a run folder started over by ``overwrite`` is
    empty by now); save the config."""
    root = layout.root
    check_run_folder(layout)
    previous = _previous_config(layout)
    if previous is not None:
        changed = [key for key in TRACE_IDENTITY if previous.get(key) != config.to_dict()[key]]
        if changed and layout.trace.exists():
            detail = "; ".join(_changed_keys(previous, config.to_dict(), changed))
            raise UsageError(
                f"{root} holds a run traced with other settings ({detail}); "
                "use --overwrite to start over or another --out"
            )
    atomic.sweep_temporaries(root)
    RunRecord(layout.record).save()
    atomic.write_text(layout.config, config.to_yaml())


def _remove_run_folder(root: Path) -> None:
    """Rename the folder aside in one step, then delete it: a kill mid-delete never leaves half a run."""
    import tempfile

    aside = Path(tempfile.mkdtemp(prefix=f"{atomic.TEMP_PREFIX}{root.name}.removed.", dir=root.parent))
    root.replace(aside / root.name)
    shutil.rmtree(aside, ignore_errors=True)


def _previous_config(layout: RunLayout) -> dict[str, Any] | None:
    if not layout.config.is_file():
        return None
    import yaml

    value = yaml.safe_load(layout.config.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else None


def _changed_keys(old: dict[str, Any], new: dict[str, Any], sections: list[str]) -> list[str]:
    """Dotted names of the leaves that differ within ``sections``."""
    changed = []
    for section in sections:
        before, after = old.get(section), new.get(section)
        if isinstance(before, dict) and isinstance(after, dict):
            for key in sorted(set(before) | set(after)):
                if before.get(key) != after.get(key):
                    changed.append(f"{section}.{key}: {before.get(key)!r} -> {after.get(key)!r}")
        else:
            changed.append(f"{section}: {before!r} -> {after!r}")
    return changed
