"""What the stages of ``evolens run`` share: the ``Stage`` declaration and the ``RunContext``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from evolens.pipeline.config import RunConfig
from evolens.pipeline.record import RunLayout, RunRecord

if TYPE_CHECKING:
    from evolens.models.loaded import LoadedModel

TRACE_IDENTITY = ("model", "dtype", "data", "trace")
"""Config sections that define the traced samples; they may not change under an existing trace."""


@dataclass(frozen=True)
class Stage:
    """One step of the run.

    Attributes:
        name: shown in progress lines and used as its key in run.json.
        sections: config sections its result depends on (include those of every earlier stage it reads).
        output: the file or folder it leaves in the run folder (a stage whose output was deleted is redone).
        run: does the work; returns details recorded with the stage (counts, paths).
        enabled: whether the config asks for it.
        always: runs on every invocation (the data stage: it is cheap and finds inputs that were added,
            removed or changed since the last run, which the later stages' fingerprints then include).
    """

    name: str
    sections: tuple[str, ...]
    output: Callable[[RunLayout], Path]
    run: Callable[[RunContext], dict[str, Any]]
    enabled: Callable[[RunConfig], bool] = lambda config: True
    always: bool = False


@dataclass
class RunContext:
    """What stages share: the config, the folder layout, the console, and the model (loaded on first use)."""

    config: RunConfig
    layout: RunLayout
    record: RunRecord
    console: Console
    quiet: bool = False

    @cached_property
    def model(self) -> LoadedModel:
        """The ``LoadedModel`` of ``config.model`` (loaded once, only by stages that need it)."""
        from evolens.models.load import (
            load_model,  # torch and transformers: only when a stage needs the model
        )
        from evolens.models.loaded import SCOPE

        self.say(f"loading model {self.config.model}")
        loaded = load_model(self.config.model, device=self.config.device, dtype=self.config.dtype)
        if loaded.info.get(SCOPE):
            self.say(f"note: {loaded.info[SCOPE]}")
        return loaded

    def say(self, message: str) -> None:
        """A progress line on stderr, unless quiet."""
        if not self.quiet:
            self.console.print(f"[dim]evolens run:[/dim] {message}", soft_wrap=True)
