"""What a trace is asked to do, defined once: ``TraceSpec`` (every trace setting) and ``RayOptions`` (where
the Ray engine runs).

Both are pydantic models (unknown keys and bad values are errors that name the key) and serve, unchanged,
as the API's arguments (``evolens.trace(..., spec=TraceSpec(...))``), the ``trace:`` and ``ray:`` sections
of a run config, and the values behind ``evolens trace``'s flags (a test checks that every field has its
flag, with the same default). No torch here: the command line and config validation import this module.

Also here, because the specs need it: ``parse_indices``, the one parser of index lists such as "0-9",
"3,5,7-9" (hidden-state steps and layers, layer-skipping ranges, analysis steps), and ``HiddenSelection``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator, model_validator

from evolens.data.config import Section
from evolens.errors import UsageError
from evolens.lenses.spec import LensSpec

CONDITIONS = ("image", "no-image", "blank", "shuffled")
"""The input conditions (``evolens.tracing.conditions``)."""


def parse_indices(text: str, what: str) -> tuple[int, ...]:
    """ "12-20", "3,5,7-9" -> the sorted distinct indices (inclusive ranges, no upper bound checked); a
    ``UsageError`` naming ``what`` for anything else (a backwards range, a negative number, text)."""
    indices: set[int] = set()
    parts = [part for part in str(text).split(",") if part.strip()]
    if not parts:
        raise UsageError(f"{what}: no index in '{text}'; use e.g. 12-20 or 3,5,7-9")
    for part in parts:
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise UsageError(f"{what}: cannot read '{part.strip()}'; use e.g. 12-20 or 3,5,7-9")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if high < low:
            raise UsageError(f"{what}: '{part.strip()}' runs backwards; write {high}-{low}")
        indices.update(range(low, high + 1))
    return tuple(sorted(indices))


def parse_probe_words(text: str) -> tuple[str, ...]:
    """ "red, blue,circle" -> ("red", "blue", "circle"): stripped, distinct, in order; a ValueError for a
    list without a word."""
    words = tuple(dict.fromkeys(word.strip() for word in str(text).split(",") if word.strip()))
    if not words:
        raise ValueError(f"--probe-words: no word in '{text}'; use e.g. red,circle")
    return words


@dataclass(frozen=True)
class HiddenSelection:
    """Which hidden states a trace stores (fp16): steps and lens layers, None meaning all of them."""

    steps: tuple[int, ...] | None = None
    layers: tuple[int, ...] | None = None

    @classmethod
    def parse(cls, steps: str | None = None, layers: str | None = None) -> HiddenSelection:
        """From specs like "all", "0-9", "0,5,10-12" (None or "all" = all)."""

        def indices(text: str | None, flag: str) -> tuple[int, ...] | None:
            return None if text is None or text.strip().lower() == "all" else parse_indices(text, flag)

        return cls(indices(steps, "--hidden-steps"), indices(layers, "--hidden-layers"))

    def to_dict(self) -> dict[str, list[int] | None]:
        return {
            "steps": None if self.steps is None else list(self.steps),
            "layers": None if self.layers is None else list(self.layers),
        }

    def keeps_step(self, step: int) -> bool:
        return self.steps is None or step in self.steps

    def layer_index(self, n_lens_layers: int) -> list[int]:
        """The kept lens layers that exist in a model with ``n_lens_layers`` (= L+1) of them."""
        return (
            list(range(n_lens_layers))
            if self.layers is None
            else [i for i in self.layers if i < n_lens_layers]
        )


class TraceSpec(Section):
    """Every setting of a trace: what decides its numbers (recorded in meta.json; a rerun into the same
    folder must match) and how it is batched."""

    max_new_tokens: int = Field(default=64, gt=0, le=4096)
    """Tokens to generate per sample."""
    batch_size: int = Field(default=4, gt=0)
    """Samples per generate() call (left padded); the numbers do not depend on it."""
    lens: str = "normed"
    """normed (final norm first, correct), raw (the paper's), tuned (the model's own tuned lens) or
    tuned:PATH (a folder in the tuned-lens format, e.g. from ``evolens train-lens``)."""
    top_k: int = Field(default=5, gt=0, le=100)
    """Top tokens kept per layer and step."""
    paper_js: bool | None = None
    """Also record the paper's "JS" on the raw lens; left out, only with ``lens: raw`` (where it is free;
    otherwise it costs a second unembedding of every layer)."""
    keep_hidden: bool | None = None
    """Store hidden states (fp16; ~2 x L x d bytes per token: 69 MB per 256-token sample on a 7B model).
    Left out: off for ``evolens trace``; in a run, on exactly when a view needs them."""
    hidden_steps: str = "all"
    """With keep_hidden: the steps to keep, e.g. all, 0-9, 0,3,5."""
    hidden_layers: str = "all"
    """With keep_hidden: the lens layers to keep (same forms)."""
    do_sample: bool = False
    """Sample instead of greedy decoding."""
    temperature: float = Field(default=1.0, gt=0)
    """Sampling temperature."""
    top_p: float = Field(default=1.0, gt=0, le=1)
    """Sampling nucleus."""
    seed: int = 0
    """Seeds sampling (each batch is seeded from it and its sample ids, reproducible on resume) and the
    shuffled condition's derangement."""
    condition: str = "image"
    """What the model is shown of each sample's image: image (its own), no-image, blank (a uniform image of
    its size and mean colour) or shuffled (another sample's image): the nulls of
    ``evolens.tracing.conditions``."""
    image_tokens: bool = False
    """Also read the lens at every image token of the prompt at every layer: the trace's ``image_tokens/``
    table (each token's region of the image, its top-1 token and the probe words' probabilities per
    layer). Needs a model whose image occupies sequence positions."""
    probe_words: str | None = None
    """With image_tokens: comma-separated words whose probability is recorded at every image token and
    layer; left out, the content words each sample generated."""

    @field_validator("lens")
    @classmethod
    def _known_lens(cls, lens: str) -> str:
        try:
            return str(LensSpec.parse(lens))
        except UsageError as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("condition")
    @classmethod
    def _known_condition(cls, condition: str) -> str:
        if condition not in CONDITIONS:
            raise ValueError(f"unknown condition '{condition}'; use one of {', '.join(CONDITIONS)}")
        return condition

    @field_validator("hidden_steps", "hidden_layers")
    @classmethod
    def _indices(cls, text: str) -> str:
        try:
            HiddenSelection.parse(text, text)
        except UsageError as exc:
            raise ValueError(str(exc)) from exc
        return text

    @field_validator("probe_words")
    @classmethod
    def _words(cls, text: str | None) -> str | None:
        if text is None:
            return None
        words = parse_probe_words(text)
        return ",".join(words)

    @model_validator(mode="after")
    def _probes_need_image_tokens(self) -> TraceSpec:
        if self.probe_words is not None and not self.image_tokens:
            raise ValueError("probe_words (--probe-words) needs image_tokens (--image-tokens)")
        return self

    @property
    def probe_word_list(self) -> tuple[str, ...] | None:
        """The probe words given (None: each sample's generated content words)."""
        return None if self.probe_words is None else parse_probe_words(self.probe_words)

    def image_tokens_record(self) -> dict[str, Any] | None:
        """What meta.json records of the image-token lens: None when off, else the probe words given (None:
        each sample's generated content words)."""
        if not self.image_tokens:
            return None
        words = self.probe_word_list
        return {"probe_words": None if words is None else list(words)}

    @property
    def records_paper_js(self) -> bool:
        """Whether the paper's "JS" is recorded: as asked, else only with the raw lens."""
        return LensSpec.parse(self.lens).kind == "raw" if self.paper_js is None else self.paper_js

    @property
    def hidden(self) -> HiddenSelection | None:
        """The hidden states to store, or None."""
        return HiddenSelection.parse(self.hidden_steps, self.hidden_layers) if self.keep_hidden else None

    def decoding(self) -> dict[str, Any]:
        """The decoding settings as recorded in meta.json."""
        sampling = {"temperature": self.temperature, "top_p": self.top_p} if self.do_sample else {}
        return {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample, **sampling}


class RayOptions(Section):
    """Where and how wide the Ray engine runs (``evolens trace --engine ray``, a run's ``ray:`` section)."""

    address: str | None = None
    """The cluster to join ("auto", "HOST:PORT", "ray://HOST:10001"); left out, a local cluster is started
    for the trace (or the one this process is connected to is used)."""
    actors: int = Field(default=1, ge=1)
    """Tracer actors, each with its own copy of the model."""
    gpus_per_actor: float | None = Field(default=None, ge=0)
    """GPUs per actor (fractions share a GPU); left out, 1 with a CUDA device, else 0."""
    cpus_per_actor: float = Field(default=1.0, gt=0)
    """Logical CPUs per actor (fractions allowed); on the CPU also its torch threads."""
    max_retries: int = Field(default=3, ge=0)
    """Times Ray traces a batch again after its actor died (Ray's max_task_retries); a batch whose actor
    dies more often is listed as failed."""
    max_restarts: int = Field(default=3, ge=0)
    """Times Ray restarts an actor that died (Ray's max_restarts), bounded: an actor that dies while it
    loads the model would otherwise be restarted forever. An actor out of restarts ends Ray Data's run;
    the batches left run again on new actors."""

    @property
    def deaths_per_batch(self) -> int:
        """How many times a batch may kill its actor before it is listed as failed: Ray gives up on it after
        ``max_retries`` retries, or when its actor is out of its ``max_restarts`` restarts."""
        return min(self.max_retries, self.max_restarts) + 1

    def actor_gpus(self, device: str) -> float:
        """GPUs each actor asks Ray for, checked against the device the model goes to."""
        on_gpu = device.startswith("cuda")
        gpus = (1.0 if on_gpu else 0.0) if self.gpus_per_actor is None else float(self.gpus_per_actor)
        if on_gpu and ":" in device:
            raise UsageError(
                f"--device {device}: with the Ray engine use --device cuda (Ray assigns the GPUs)"
            )
        if on_gpu and gpus == 0:
            raise UsageError("--device cuda needs --gpus-per-actor above 0")
        if not on_gpu and gpus > 0:
            raise UsageError(f"--gpus-per-actor {gpus:g} needs --device cuda (the model goes to {device})")
        return gpus
