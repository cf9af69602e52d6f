"""Layer plans: which decoder layers run during generation and which are skipped.

Decoder layers are numbered 0..L-1 (``LoadedModel.decoder_layers``). Lens layers are numbered 0..L as in
docs/trace-format.md: lens layer l is the output of decoder layer l-1 (lens 0 = the input embeddings), so
the decoder layers that carry lens layer ``a`` to lens layer ``b`` are ``a..b-1``. A skipped layer passes
its input through unchanged (its output = its input); "early exit at lens layer k" skips ``k..L-1`` so the
model's output is ``unembedding(final_norm(h_k))``, the normed lens of layer k.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from evolens.errors import UsageError
from evolens.tracing.spec import parse_indices
from evolens.vocabulary import format_layers


@dataclass(frozen=True)
class LayerPlan:
    """A set of decoder layers to skip.

    Attributes:
        n_layers: L, the number of decoder layers of the model the plan is for.
        skipped: decoder-layer indices (0..L-1) whose computation is replaced by the identity.
        name: a short label for tables ("baseline", "stabilization", "random-3", ...).
    """

    n_layers: int
    skipped: frozenset[int] = field(default_factory=frozenset)
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "skipped", frozenset(int(i) for i in self.skipped))
        if self.n_layers < 1:
            raise UsageError(f"a layer plan needs a model with at least one layer, got {self.n_layers}")
        outside = sorted(i for i in self.skipped if not 0 <= i < self.n_layers)
        if outside:
            raise UsageError(
                f"layer(s) {format_layers(outside)} outside 0..{self.n_layers - 1} "
                f"(the model has {self.n_layers} decoder layers)"
            )
        if len(self.skipped) == self.n_layers:
            raise UsageError(f"skipping all {self.n_layers} layers leaves no model; skip fewer layers")

    @classmethod
    def none(cls, n_layers: int, name: str = "baseline") -> LayerPlan:
        """The plan that skips nothing."""
        return cls(n_layers, frozenset(), name)

    @classmethod
    def of(cls, n_layers: int, layers: Iterable[int], name: str = "") -> LayerPlan:
        """Skip exactly ``layers`` (decoder indices)."""
        skipped = frozenset(layers)
        return cls(n_layers, skipped, name or f"skip {format_layers(skipped)}")

    @classmethod
    def parse(cls, spec: str, n_layers: int, name: str = "") -> LayerPlan:
        """Parse "12-20", "3,5,7-9" (inclusive ranges of decoder indices); an empty spec is an error."""
        layers = parse_layers(spec)
        if not layers:
            raise UsageError("empty skip: give at least one layer, e.g. --skip 12-20")
        return cls.of(n_layers, layers, name)

    @classmethod
    def lens_span(cls, n_layers: int, start: int, stop: int, name: str = "") -> LayerPlan:
        """Skip the decoder layers carrying lens layer ``start`` to lens layer ``stop``: ``start..stop-1``."""
        if not 0 <= start < stop <= n_layers:
            raise UsageError(f"lens span {start}->{stop} is empty or outside 0..{n_layers}")
        return cls.of(n_layers, range(start, stop), name)

    @classmethod
    def early_exit(cls, n_layers: int, lens_layer: int) -> LayerPlan:
        """Exit at lens layer k (1..L): decoder layers k..L-1 are skipped; k = L skips nothing."""
        if not 1 <= lens_layer <= n_layers:
            raise UsageError(f"early exit layer {lens_layer} is outside 1..{n_layers}")
        return cls(n_layers, frozenset(range(lens_layer, n_layers)), f"exit@{lens_layer}")

    @property
    def kept(self) -> list[int]:
        """Decoder layers that still run, in order."""
        return [i for i in range(self.n_layers) if i not in self.skipped]

    @property
    def fraction_skipped(self) -> float:
        return len(self.skipped) / self.n_layers

    def describe(self) -> str:
        """ "skip 12-20 (9/30 layers)" or "all 30 layers"."""
        if not self.skipped:
            return f"all {self.n_layers} layers"
        return f"skip {format_layers(self.skipped)} ({len(self.skipped)}/{self.n_layers} layers)"

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "n_layers": self.n_layers, "skipped": sorted(self.skipped)}


def parse_layers(spec: str) -> list[int]:
    """ "12-20", "3,5,7-9" -> the sorted layer numbers (inclusive ranges); no range checks; "" -> []."""
    return list(parse_indices(spec, "layer range")) if spec.replace(",", "").strip() else []
