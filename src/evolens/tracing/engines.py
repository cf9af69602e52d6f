"""What runs a trace: the ``TraceEngine`` protocol, the job it is given, and ``engine_for``, the one place
an engine is chosen by name.

``evolens.trace`` builds a ``TraceJob`` (the model, the resolved samples, the output folder, the
``TraceSpec``) and hands it to an engine: ``tracer.LocalEngine`` (this process) or
``ray_engine.RayEngine`` (the actors of a Ray cluster). Every engine writes the same trace format into the
same folder, with the same batches, so the numbers do not depend on which ran; a trace begun by one can be
finished by the other. A new engine (a job queue, a remote service) implements ``run``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from evolens.errors import UsageError

if TYPE_CHECKING:
    from evolens.data.resolve import Sample
    from evolens.models.loaded import LoadedModel
    from evolens.tracing.progress import ProgressCallback
    from evolens.tracing.spec import RayOptions, TraceSpec

ENGINES = ("local", "ray")
"""The engines ``engine_for`` knows by name."""


@dataclass
class TraceResult:
    """What a trace did: where, which samples it finished now, skipped, or failed."""

    out: Path
    traced: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    retraced: list[str] = field(default_factory=list)
    """Finished samples whose input changed (another image file by hash, or another prompt): traced again."""
    removed: list[str] = field(default_factory=list)
    """Finished samples taken out of the trace because they are no longer among the inputs (``exclusive``)."""

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class TraceJob:
    """One trace to run.

    Attributes:
        model: a name (hub id, local folder, "demo"), a loaded model (local engine only), or a picklable
            function returning one (each Ray actor calls it).
        samples: the inputs, resolved (``evolens.data.resolve.resolve_samples``), in order.
        out: the trace folder (created, or continued when it holds a trace of the same settings).
        spec: every trace setting.
        device, dtype: where and how a model given by name is loaded.
        progress: a progress bar (True), a callback, or nothing.
        exclusive: the trace keeps only these samples (finished ones not among them are removed).
        loaded: the model already loaded in this process, for engines that trace here (the run pipeline
            passes the model it loaded for its other stages); engines that load their own ignore it.
    """

    model: str | LoadedModel | Callable[[], LoadedModel]
    samples: list[Sample]
    out: Path
    spec: TraceSpec
    device: str = "cpu"
    dtype: str | None = None
    progress: bool | ProgressCallback = False
    exclusive: bool = False
    loaded: Callable[[], LoadedModel] | None = None

    def loaded_model(self) -> LoadedModel:
        """The model in this process: ``loaded``, the model itself, or loaded by name or loader now."""
        from evolens.models.load import load_model
        from evolens.models.loaded import LoadedModel

        if self.loaded is not None:
            return self.loaded()
        if isinstance(self.model, LoadedModel):
            return self.model
        if isinstance(self.model, str):
            return load_model(self.model, device=self.device, dtype=self.dtype)
        return self.model()


class TraceEngine(Protocol):
    """Runs a ``TraceJob`` into its folder and says what it did."""

    @property
    def name(self) -> str:
        """ "local", "ray", ...: how the engine is asked for."""
        ...

    def run(self, job: TraceJob) -> TraceResult: ...


def engine_for(name: str, ray: RayOptions | None = None) -> TraceEngine:
    """The engine called ``name``; ``ray``: the Ray engine's options (default ``RayOptions()``; the local
    engine has none)."""
    if name == "local":
        from evolens.tracing.tracer import LocalEngine

        return LocalEngine()
    if name == "ray":
        from evolens.tracing.ray_engine import RayEngine
        from evolens.tracing.spec import RayOptions

        return RayEngine(ray or RayOptions())
    raise UsageError(f"--engine {name}: use one of {', '.join(ENGINES)}")
