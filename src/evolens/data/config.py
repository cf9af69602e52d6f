"""Which inputs to trace: the ``data`` section of a run config, also built by ``evolens trace`` and the
experiments from their flags (one input path for every command).

``DataConfig`` is validated by pydantic; ``evolens.data.sources.load_rows`` turns it into samples.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evolens.errors import UsageError

SectionT = TypeVar("SectionT", bound="Section")
SourceKind = Literal["image", "folder", "jsonl", "coco", "amber", "shapes"]
DEFAULT_DESCRIBE_PROMPT = "Please describe this image in detail."


class Section(BaseModel):
    """A config section: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @classmethod
    def of(cls: type[SectionT], **values: Any) -> SectionT:
        """Validated from keyword values (flags, API arguments); a bad one is a one-line ``UsageError``
        naming the setting."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise UsageError(validation_message(exc, cls)) from None


class DataConfig(Section):
    """Which images and prompts to run on.

    ``source`` is inferred from ``path`` when left out: a folder, a ``.jsonl`` manifest or an image file.
    COCO and AMBER need ``annotations`` (COCO: instances or captions JSON; AMBER: its query JSON).
    Every image is paired with every prompt in ``prompts``; manifests and AMBER carry their own prompts,
    which ``prompts`` replaces when given.
    """

    source: SourceKind | None = None
    path: Path | None = None
    annotations: Path | None = None
    prompts: list[str] = Field(default_factory=list)
    limit: int | None = Field(default=None, gt=0)
    shuffle: bool = False
    seed: int = 0

    @field_validator("prompts")
    @classmethod
    def _prompts_not_blank(cls, prompts: list[str]) -> list[str]:
        for prompt in prompts:
            if not prompt.strip():
                raise ValueError("a prompt is empty")
        return prompts

    @model_validator(mode="after")
    def _source_needs(self) -> DataConfig:
        if self.source is None and self.path is not None:
            self.source = infer_source(self.path)
        if self.source is None:
            raise ValueError("give data.path (an image, a folder or a JSONL manifest) or data.source: shapes")
        if self.source != "shapes" and self.path is None:
            raise ValueError(f"source '{self.source}' needs data.path")
        if self.source in ("coco", "amber") and self.annotations is None:
            raise ValueError(f"source '{self.source}' needs data.annotations (the annotation JSON)")
        if self.source in ("image", "folder") and not self.prompts:
            raise ValueError(
                f"source '{self.source}' needs at least one prompt: give a prompt (data.prompts or --prompt)"
            )
        return self


def infer_source(path: Path) -> SourceKind:
    """'folder', 'jsonl' or 'image' from what ``path`` looks like."""
    if path.is_dir():
        return "folder"
    if path.suffix.lower() == ".jsonl":
        return "jsonl"
    return "image"


def data_config(**values: object) -> DataConfig:
    """A ``DataConfig`` from keyword values (None values left out); a bad value is a one-line UsageError."""
    try:
        return DataConfig.model_validate({key: value for key, value in values.items() if value is not None})
    except ValidationError as exc:
        raise UsageError(validation_message(exc, DataConfig)) from exc


def validation_message(exc: ValidationError, model: type[BaseModel], path: Path | None = None) -> str:
    """The first validation error of ``model`` as one line: where, which key, why."""
    error = exc.errors()[0]
    location = [str(part) for part in error["loc"]]
    key = ".".join(location) or "config"
    where = f"{path}: " if path is not None else ""
    if error["type"] == "extra_forbidden":
        return f"{where}{key}: unknown key{_suggestion(model, location)}"
    if error["type"] == "missing":
        return f"{where}{key}: required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    given = error.get("input")
    shown = f" (got {given!r})" if isinstance(given, str | int | float | bool) else ""
    return f"{where}{key}: {message[0].lower()}{message[1:]}{shown}"


def _suggestion(model: type[BaseModel], location: list[str]) -> str:
    for part in location[:-1]:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    close = difflib.get_close_matches(location[-1], list(model.model_fields), n=1)
    known = ", ".join(model.model_fields)
    return f" (did you mean '{close[0]}'?)" if close else f" (known keys: {known})"
