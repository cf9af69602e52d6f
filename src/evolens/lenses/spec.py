"""``--lens``: a lens spec string turned into a ``Lens`` for one model, and what meta.json records of it.

Specs: ``normed`` (default, the logit lens through the final norm), ``raw`` (the paper's), ``tuned`` (the
tuned lens that comes with the model: ``LoadedModel.bundled_lens``) and ``tuned:PATH`` (a tuned lens folder
in the ``tuned-lens`` format, e.g. written by ``evolens train-lens``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from evolens.errors import UsageError

if TYPE_CHECKING:  # parsing a spec (config validation) must not load torch
    from evolens.lenses.logit import Lens
    from evolens.models.loaded import LoadedModel

LensMode = Literal["normed", "raw"]
"""The logit lens' two modes: through the final norm (correct), or without it before the last layer."""
LENS_MODES: tuple[str, ...] = get_args(LensMode)
LENS_SPECS = (*LENS_MODES, "tuned", "tuned:PATH")


@dataclass(frozen=True)
class LensSpec:
    """A parsed ``--lens`` value: ``kind`` "normed", "raw" or "tuned"; ``path`` for ``tuned:PATH``."""

    kind: str
    path: Path | None = None

    @classmethod
    def parse(cls, text: str) -> LensSpec:
        """From "normed", "raw", "tuned" or "tuned:PATH" (else a ``UsageError`` naming the valid forms)."""
        kind, colon, path = str(text).strip().partition(":")
        if kind in LENS_MODES and not colon:
            return cls(kind)
        if kind == "tuned":
            if colon and not path.strip():
                raise UsageError("--lens tuned:PATH needs a folder after 'tuned:'")
            return cls("tuned", Path(path.strip()).expanduser() if colon else None)
        raise UsageError(f"unknown lens '{text}'; use one of: {', '.join(LENS_SPECS)}")

    def __str__(self) -> str:
        return self.kind if self.path is None else f"{self.kind}:{self.path}"


def check_lens_spec(text: str) -> str:
    """``text`` itself when it is a valid lens spec (it is not resolved yet), else a ``UsageError``."""
    LensSpec.parse(text)
    return text


def make_lens(loaded: LoadedModel, spec: str) -> Lens:
    """The lens ``spec`` names, for ``loaded`` (a missing folder or a lens of another shape: UsageError)."""
    from evolens.lenses.logit import logit_lens
    from evolens.lenses.tuned import TunedLens

    parsed = LensSpec.parse(spec)
    if parsed.kind != "tuned":
        return logit_lens(loaded.unembed, parsed.kind)
    folder = parsed.path or loaded.bundled_lens
    if folder is None:
        raise UsageError(
            f"model '{loaded.name}' comes with no tuned lens; train one with `evolens train-lens` "
            "and pass --lens tuned:PATH"
        )
    lens = TunedLens.load(folder, loaded.unembed, loaded.n_layers)
    if lens.matches_unembedding() is False:
        warnings.warn(
            f"tuned lens {folder} was trained on another unembedding than {loaded.name}'s "
            f"(it names '{lens.config.base_model_name_or_path}')",
            stacklevel=2,
        )
    return lens


def lens_record(lens: Lens) -> dict[str, Any]:
    """What meta.json records of a lens: its name, and for a tuned lens its folder and params.pt's SHA-256."""
    path = getattr(lens, "path", None)
    return {
        "lens": lens.name,
        "lens_path": None if path is None else str(path),
        "lens_sha256": getattr(lens, "sha256", None),
    }
