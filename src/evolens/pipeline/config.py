"""The configuration of ``evolens run``: one validated object, from a YAML file and/or command-line flags.

Every key is checked by pydantic; a bad value or an unknown key is a ``UsageError`` (exit 2) whose one line
names the key and says why (``data.limit: must be greater than 0 (got -3)``). The resolved config (defaults
filled in, paths absolute) is saved with the results as ``OUT/config.yaml``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from evolens.data.config import DataConfig, Section, validation_message
from evolens.errors import UsageError
from evolens.io.atomic import json_text
from evolens.lenses.spec import LensSpec
from evolens.tracing.spec import RayOptions, TraceSpec

PATH_KEYS = ("out", "data.path", "data.annotations")


def _checked_lens(lens: str) -> str:
    try:
        return str(LensSpec.parse(lens))
    except UsageError as exc:
        raise ValueError(str(exc)) from exc


def parse_answer(text: str) -> int | list[str]:
    """``--answer``: "3" -> step 3; "red, green" -> ["red", "green"] (see ``AnalyzeConfig.answer``)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    words = [word.strip() for word in text.split(",") if word.strip()]
    if not words:
        raise UsageError(f"--answer '{text}': give answer words (red,green,...) or a step index")
    return words


def answer_words(text: str | None) -> list[str] | None:
    """``--answer`` as the causal tests' answer words: the words, or None for a step index or no flag."""
    parsed = None if text is None else parse_answer(text)
    return parsed if isinstance(parsed, list) else None


class AnalyzeConfig(Section):
    """The analyses of the trace (``evolens analyze``): stages, figures and feature views."""

    enabled: bool = True
    answer: int | list[str] = 0
    """Where the many-images feature view looks: a generated step index, or the answer words (the first
    step that emits one of them, e.g. the colour names for the colour question)."""
    projections: list[Literal["tsne", "pca"]] = Field(default_factory=list)
    """Feature-space views of the hidden states (t-SNE and/or PCA); they need ``trace.keep_hidden``."""
    n_boot: int = Field(default=1000, ge=10)
    """Bootstrap replicates of the confidence intervals."""
    max_answer_images: int = Field(default=24, gt=0)
    """At most this many images (the first ones) per prompt in the many-images feature map (t-SNE costs
    grow with the square of the points); a capped map says so in the notes."""


NullCondition = Literal["no-image", "blank", "shuffled"]


class NullsConfig(Section):
    """The nulls: the trace's own tokens scored again without the image, with a blank or with another
    sample's image (``evolens score --from``), each into ``OUT/nulls/<condition>``; the analysis compares
    the trace with each (summary.json ``image_effect``)."""

    conditions: list[NullCondition] = Field(default_factory=list)
    """Which nulls to score, e.g. [no-image, blank, shuffled]; empty = none."""

    @field_validator("conditions")
    @classmethod
    def _each_once(cls, conditions: list[str]) -> list[str]:
        if len(set(conditions)) != len(conditions):
            raise ValueError(f"a condition is listed twice ({', '.join(conditions)})")
        return conditions

    @property
    def enabled(self) -> bool:
        return bool(self.conditions)


class SkipConfig(Section):
    """The layer-skipping experiments (``evolens skip --plan stages``)."""

    enabled: bool = False
    plan: str = "stages"
    """'stages' (from the detected stages) or an explicit range such as '12-20'."""
    random_seeds: int = Field(default=3, ge=0, le=50)
    limit: int | None = Field(default=None, gt=0)
    """Run the experiments on at most this many of the traced samples (they re-generate, so they cost)."""


class CausalConfig(Section):
    """The causal tests by layer window (``evolens causal``) on the trace's own answers: the target is the
    first generated token that spells one of ``answer`` (else the first token), its alternatives the other
    answer words; written to ``OUT/causal/causal.json`` and its figure."""

    methods: list[Literal["knockout", "ablate", "patch"]] = Field(default_factory=list)
    """Which interventions to run; empty = none."""
    window: int = Field(default=3, ge=1)
    corrupt: Literal["noise", "no-image", "blank", "shuffled"] = "noise"
    queries: Literal["target", "all"] = "target"
    baseline: Literal["mean", "zero"] = "mean"
    answer: list[str] = Field(default_factory=list)
    """Answer words, e.g. the colours of the shapes world."""
    limit: int | None = Field(default=None, gt=0)
    """At most this many of the traced samples (each window is a forward pass per batch)."""

    @property
    def enabled(self) -> bool:
        return bool(self.methods)


class HallucinationConfig(Section):
    """Hallucination metrics against the data's ground truth (shapes world, COCO or AMBER annotations)."""

    enabled: bool = False


class LensCompareConfig(Section):
    """The samples traced again with a second lens; stages and KL-to-final compared (``evolens compare``)."""

    enabled: bool = False
    lens: str = "tuned"
    """The second lens (the first is ``trace.lens``): normed, raw, tuned or tuned:PATH."""

    @field_validator("lens")
    @classmethod
    def _known_lens(cls, lens: str) -> str:
        return _checked_lens(lens)


class ReportConfig(Section):
    """The interactive ``report.html``."""

    enabled: bool = True
    max_samples: int = Field(default=60, gt=0)
    """Samples whose token-by-layer detail the report embeds (the dataset curves use all of them)."""
    title: str | None = None


class RunConfig(Section):
    """Everything ``evolens run`` does, in one object."""

    model: str = "demo"
    device: str = "cpu"
    dtype: str | None = None
    engine: Literal["local", "ray"] = "local"
    """Where the trace stage runs: in this process, or on the actors of a Ray cluster (``ray``). Not part
    of what was traced: a trace begun by one engine can be finished by the other."""
    ray: RayOptions = Field(default_factory=RayOptions)
    out: Path = Path("evolens-run")
    data: DataConfig
    trace: TraceSpec = Field(default_factory=TraceSpec)
    nulls: NullsConfig = Field(default_factory=NullsConfig)
    analyze: AnalyzeConfig = Field(default_factory=AnalyzeConfig)
    skip: SkipConfig = Field(default_factory=SkipConfig)
    causal: CausalConfig = Field(default_factory=CausalConfig)
    hallucination: HallucinationConfig = Field(default_factory=HallucinationConfig)
    lens_compare: LensCompareConfig = Field(default_factory=LensCompareConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @model_validator(mode="after")
    def _hidden_states_when_needed(self) -> RunConfig:
        if self.trace.keep_hidden is None:
            self.trace.keep_hidden = self.analyze.enabled and bool(self.analyze.projections)
        return self

    def resolved(self, base: Path | None = None) -> RunConfig:
        """A copy with every path absolute (relative ones taken from ``base``, default the cwd)."""
        base = (base or Path.cwd()).resolve()

        def absolute(path: Path | None) -> Path | None:
            return None if path is None else (base / path.expanduser()).resolve()

        data = self.data.model_copy(
            update={"path": absolute(self.data.path), "annotations": absolute(self.data.annotations)}
        )

        def absolute_lens(spec: str) -> str:
            lens = LensSpec.parse(spec)
            return str(lens if lens.path is None else LensSpec(lens.kind, absolute(lens.path)))

        trace = self.trace.model_copy(update={"lens": absolute_lens(self.trace.lens)})
        compare = self.lens_compare.model_copy(update={"lens": absolute_lens(self.lens_compare.lens)})
        return self.model_copy(
            update={"out": absolute(self.out), "data": data, "trace": trace, "lens_compare": compare}
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (paths as strings)."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def fingerprint(self, *sections: str) -> str:
        """SHA-256 of the named top-level keys' values: equal fingerprints mean the same work."""
        values = {name: self.to_dict()[name] for name in sections}
        return hashlib.sha256(json_text(values, indent=None).encode()).hexdigest()


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML config (if given), apply ``overrides`` (dotted keys, e.g. ``"data.limit": 5``), validate.

    Relative data paths in the file are taken relative to the file's folder; ``out`` and the paths in
    overrides relative to the cwd.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
        _absolutize_file_paths(raw, Path(path).resolve().parent)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        if dotted in PATH_KEYS:
            value = str(Path(value).expanduser().resolve())
        _set_dotted(raw, dotted, value)
    raw.setdefault("data", {})
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise UsageError(validation_message(exc, RunConfig, path)) from exc
    return config.resolved(Path.cwd())


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{path}:{where} not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: the config must be a mapping of keys to values, not {type(raw).__name__}")
    return raw


def _absolutize_file_paths(raw: dict[str, Any], folder: Path) -> None:
    """Data paths written in a config file are relative to that file, whatever the cwd (``out`` stays
    relative to the cwd: results go where the command runs)."""
    data = raw.get("data")
    if isinstance(data, dict):
        for key in ("path", "annotations"):
            if isinstance(data.get(key), str):
                data[key] = str(folder / Path(data[key]).expanduser())


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise UsageError(f"{'.'.join(parents)}: must be a mapping to set {dotted}")
    node[leaf] = value
