"""Capturing every lens layer's state during ``generate()`` (KV cache on), and the token each step emits.

``LayerCapture`` hooks the decoder layers: a forward pre-hook on the first reads its input (the
embeddings, image features merged and any embedding scale applied: lens layer 0), a forward hook on the
l-th (counting from 1) reads its output (lens layer l). Each forward pass keeps
only position -1, which with left padding is the position predicting the next token in every row; the
prefill is step 0 and each decode pass one more step.

``TokenStreamer`` receives the tokens ``generate`` emits (transformers calls ``put(prompt_ids)`` once, then
``put(next_tokens)`` after every step, ``end()`` at the end), which is exact for greedy and sampled decoding
and works for any model. Each emitted step is handed on with the states of the pass that produced it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

import torch
from transformers.generation.streamers import BaseStreamer

from evolens.models.check import last_layer_output
from evolens.models.loaded import LoadedModel


class LayerCapture:
    """Context manager: while active, each forward pass of the model yields one (B, L+1, d) state tensor.

    Completed passes queue up in order (usually one at a time); ``pop`` takes the oldest.
    """

    def __init__(self, loaded: LoadedModel) -> None:
        self.layers = loaded.decoder_layers
        self.n_lens_layers = len(self.layers) + 1
        self._current: torch.Tensor | None = None
        self._done: deque[torch.Tensor] = deque()
        self._handles: list[Any] = []

    def __enter__(self) -> LayerCapture:
        first = self.layers[0].register_forward_pre_hook(self._on_input, with_kwargs=True)
        self._handles.append(first)
        for index, layer in enumerate(self.layers):
            self._handles.append(layer.register_forward_hook(self._output_hook(index + 1)))
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def pop(self) -> torch.Tensor:
        """The oldest completed pass: (B, L+1, d) in the model's dtype and device."""
        if not self._done:
            raise RuntimeError("a token was emitted without a completed forward pass of all decoder layers")
        return self._done.popleft()

    def clear(self) -> None:
        """Drop passes whose tokens will never be emitted."""
        self._done.clear()
        self._current = None

    def _on_input(self, _module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        batch, _, width = hidden.shape
        self._current = hidden.new_empty(batch, self.n_lens_layers, width)
        self._current[:, 0] = hidden[:, -1]

    def _output_hook(self, lens_layer: int) -> Callable[..., None]:
        def hook(_module: torch.nn.Module, _args: tuple, output: Any) -> None:
            if self._current is None:
                return
            self._current[:, lens_layer] = last_layer_output(output)[:, -1]
            if lens_layer == self.n_lens_layers - 1:
                self._done.append(self._current)
                self._current = None

        return hook


class TokenStreamer(BaseStreamer):
    """Calls ``on_step(tokens)`` with the (B,) token ids of every generated step, in order."""

    def __init__(self, on_step: Callable[[torch.Tensor], None]) -> None:
        self.on_step = on_step
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # the first call hands over the prompt ids
            self._prompt_seen = True
            return
        self.on_step(value.reshape(-1))

    def end(self) -> None:
        """Nothing to flush: every step was handled when its token arrived."""
