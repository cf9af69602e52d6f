"""The tuned lens (Belrose et al. 2023): an affine translator per lens layer, trained to match the last layer.

    p_l = softmax(unembed(final_norm(h_l + A_l h_l + b_l)))      for lens layers l = 0..L-1
    p_L = softmax(unembed(final_norm(h_L)))                       (the model's own logits: no translator)

A ``TunedLens`` is a ``Lens`` (``evolens.lenses.logit``), so the step engine, the trace and every analysis
work with it unchanged. Zero translators make it the normed logit lens exactly.

On disk it is the ``tuned-lens`` package's format (0.2.0), so lenses trained there load here and ours load
there: a folder with ``config.json`` (``TunedLensConfig``'s fields) and ``params.pt`` (``torch.save`` of
the state dict of a ``ModuleList`` of L ``nn.Linear(d, d)``: ``"{l}.weight"`` (d, d), ``"{l}.bias"`` (d,)).
The translator adds its output to its input, as there: ``h + Linear(h)``.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evolens.errors import InputError, UsageError
from evolens.io import atomic
from evolens.models.readout import Unembed

CONFIG_FILE = "config.json"
PARAMS_FILE = "params.pt"
LENS_TYPE = "linear_tuned_lens"


@dataclass
class TunedLensConfig:
    """``config.json`` of a tuned lens, field for field the ``tuned-lens`` package's ``TunedLensConfig``.

    Attributes:
        base_model_name_or_path: the model the lens was trained for.
        d_model: hidden size d.
        num_hidden_layers: L, the number of decoder layers (= translators: lens layers 0..L-1).
        bias: whether the translators have a bias b_l.
        base_model_revision: the model's revision, when known.
        unembed_hash: ``unembed_hash`` of the model's unembedding (``tuned-lens``'s hash).
        lens_type: always "linear_tuned_lens".
    """

    base_model_name_or_path: str
    d_model: int
    num_hidden_layers: int
    bias: bool = True
    base_model_revision: str | None = None
    unembed_hash: str | None = None
    lens_type: str = LENS_TYPE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: Path | str = "config.json") -> TunedLensConfig:
        """From ``config.json``'s object; unknown keys are ignored (as ``tuned-lens`` does)."""
        known = {f.name for f in fields(cls)}
        missing = [
            name for name in ("base_model_name_or_path", "d_model", "num_hidden_layers") if name not in values
        ]
        if missing:
            raise InputError(f"{source}: not a tuned-lens config (missing {', '.join(missing)})")
        config = cls(**{key: value for key, value in values.items() if key in known})
        if config.lens_type != LENS_TYPE:
            raise InputError(f"{source}: lens type '{config.lens_type}' is not supported (only {LENS_TYPE})")
        return config


def unembed_hash(weight: torch.Tensor) -> str:
    """``tuned-lens``'s fingerprint of an unembedding matrix (V, d): SHA-256 of its numpy summary string."""
    summary = np.array_str(weight.detach().cpu().float().numpy(), precision=1)
    return hashlib.sha256(summary.encode()).hexdigest()


class TunedLens(nn.Module):
    """Per-layer affine translators in front of the model's readout; satisfies the ``Lens`` protocol.

    Attributes:
        name: "tuned" (how meta.json records the lens).
        unembed: the model's readout (final norm + unembedding, fp32).
        config: the lens' ``config.json``.
        weight: A_l for l = 0..L-1, (L, d, d) fp32, laid out like ``nn.Linear.weight`` (out, in).
        bias: b_l, (L, d) fp32, or None.
        path: the folder the lens was read from (None for a lens made in memory).
        sha256: SHA-256 of the ``params.pt`` it was read from (None for a lens made in memory).
    """

    name = "tuned"

    def __init__(self, unembed: Unembed, config: TunedLensConfig) -> None:
        super().__init__()
        d, n_layers = config.d_model, config.num_hidden_layers
        if unembed.weight.shape[1] != d:
            raise UsageError(
                f"the tuned lens is for hidden size {d}, the model's is {unembed.weight.shape[1]}"
            )
        self.unembed = unembed
        self.config = config
        device = unembed.device
        self.weight = nn.Parameter(torch.zeros(n_layers, d, d, device=device))
        self.bias = nn.Parameter(torch.zeros(n_layers, d, device=device)) if config.bias else None
        self.path: Path | None = None
        self.sha256: str | None = None

    @classmethod
    def identity(
        cls, unembed: Unembed, n_layers: int, model_name: str = "", revision: str | None = None
    ) -> TunedLens:
        """Zero translators (the normed logit lens) for a model with ``n_layers`` decoder layers."""
        config = TunedLensConfig(
            base_model_name_or_path=model_name,
            d_model=int(unembed.weight.shape[1]),
            num_hidden_layers=n_layers,
            base_model_revision=revision,
            unembed_hash=unembed_hash(unembed.weight),
        )
        return cls(unembed, config)

    @property
    def n_layers(self) -> int:
        """L: lens layers 0..L-1 have a translator, lens layer L does not."""
        return int(self.weight.shape[0])

    def translate_layer(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        """h + A_l h + b_l for one lens layer l < L: (..., d) -> (..., d) fp32 (differentiable)."""
        hidden = hidden.to(self.weight.device, torch.float32)
        bias = None if self.bias is None else self.bias[layer]
        return hidden + nn.functional.linear(hidden, self.weight[layer], bias)

    def translate(self, states: torch.Tensor) -> torch.Tensor:
        """Every lens layer's translated state: (B, L+1, d) any dtype -> (B, L+1, d) fp32 (layer L as is)."""
        states = states.to(self.weight.device, torch.float32)
        if states.shape[1] != self.n_layers + 1:
            raise UsageError(
                f"the tuned lens has {self.n_layers} translators for {self.n_layers + 1} lens layers; "
                f"got states of {states.shape[1]} lens layers"
            )
        layers_first = states[:, :-1].transpose(0, 1)  # (L, B, d)
        moved = torch.bmm(layers_first, self.weight.transpose(1, 2))
        if self.bias is not None:
            moved = moved + self.bias.unsqueeze(1)
        return torch.cat([(layers_first + moved).transpose(0, 1), states[:, -1:]], dim=1)

    def layer_logits(self, states: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Lens logits of every lens layer: states (B, L+1, d) -> (B, L+1, V) fp32 (into ``out`` if given)."""
        with torch.no_grad():
            return self.unembed.logits(self.translate(states), normed=True, out=out)

    def log_probs(self, states: torch.Tensor) -> torch.Tensor:
        """log p_l for every lens layer: states (B, L+1, d) -> (B, L+1, V) fp32 log-probabilities."""
        return torch.log_softmax(self.layer_logits(states), dim=-1)

    def translator_state(self, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """The translators as ``tuned-lens``'s ``layer_translators.state_dict()``, on the CPU in ``dtype``."""
        state: dict[str, torch.Tensor] = {}
        for layer in range(self.n_layers):
            state[f"{layer}.weight"] = self.weight[layer].detach().to("cpu", dtype).clone()
            if self.bias is not None:
                state[f"{layer}.bias"] = self.bias[layer].detach().to("cpu", dtype).clone()
        return state

    def load_translator_state(self, state: dict[str, torch.Tensor], source: Path | str = PARAMS_FILE) -> None:
        """Set the translators from a ``tuned-lens`` state dict (a missing, extra or misshapen key: error)."""
        d = self.config.d_model
        expected: dict[str, tuple[int, ...]] = {f"{layer}.weight": (d, d) for layer in range(self.n_layers)}
        if self.bias is not None:
            expected.update({f"{layer}.bias": (d,) for layer in range(self.n_layers)})
        missing = sorted(set(expected) - set(state), key=_key_order)
        extra = sorted(set(state) - set(expected), key=_key_order)
        if missing or extra:
            detail = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(extra[:3])}"
            raise UsageError(
                f"{source}: translators do not fit a lens of {self.n_layers} layers x {d} ({detail})"
            )
        for key, shape in expected.items():
            if tuple(state[key].shape) != shape:
                raise UsageError(f"{source}: '{key}' has shape {tuple(state[key].shape)}, expected {shape}")
        with torch.no_grad():
            for layer in range(self.n_layers):
                self.weight[layer].copy_(state[f"{layer}.weight"])
                if self.bias is not None:
                    self.bias[layer].copy_(state[f"{layer}.bias"])

    def save(self, directory: str | Path, dtype: torch.dtype = torch.float32) -> Path:
        """Write ``config.json`` and ``params.pt`` (translators in ``dtype``) into ``directory``."""
        directory = Path(directory)
        buffer = io.BytesIO()
        torch.save(self.translator_state(dtype), buffer)
        atomic.write_bytes(directory / PARAMS_FILE, buffer.getvalue())
        atomic.write_json(directory / CONFIG_FILE, self.config.to_dict())
        return directory

    @classmethod
    def load(cls, directory: str | Path, unembed: Unembed, n_layers: int) -> TunedLens:
        """Read a tuned lens (``tuned-lens`` format) for a model of ``n_layers`` layers, readout ``unembed``.

        A missing folder or file, a corrupt file, or translators of another shape are one-line errors.
        """
        directory = Path(directory)
        config_path, params_path = directory / CONFIG_FILE, directory / PARAMS_FILE
        for path in (config_path, params_path):
            if not path.is_file():
                what = "no such folder" if not directory.is_dir() else f"no {path.name} in it"
                raise UsageError(f"tuned lens {directory}: {what} (a tuned lens is config.json + params.pt)")
        try:
            values = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{config_path}: not readable JSON ({exc})") from exc
        config = TunedLensConfig.from_dict(values, config_path)
        d = int(unembed.weight.shape[1])
        if config.num_hidden_layers != n_layers or config.d_model != d:
            raise UsageError(
                f"tuned lens {directory} is for {config.num_hidden_layers} layers of width {config.d_model}; "
                f"this model has {n_layers} layers of width {d}"
            )
        data = params_path.read_bytes()
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many kinds for a corrupt or foreign file
            raise InputError(
                f"{params_path}: not a readable tuned-lens checkpoint ({type(exc).__name__})"
            ) from exc
        if not isinstance(state, dict):
            raise InputError(f"{params_path}: expected a state dict, found {type(state).__name__}")
        lens = cls(unembed, config)
        lens.load_translator_state(state, params_path)
        lens.path = directory.resolve()
        lens.sha256 = hashlib.sha256(data).hexdigest()
        return lens.requires_grad_(False)

    def matches_unembedding(self) -> bool | None:
        """Whether the lens was trained on this unembedding (``tuned-lens``'s hash); None if not recorded."""
        if not self.config.unembed_hash:
            return None
        return self.config.unembed_hash == unembed_hash(self.unembed.weight)


def _key_order(key: str) -> tuple[int, str]:
    head, _, tail = key.partition(".")
    return (int(head), tail) if head.isdigit() else (-1, key)
