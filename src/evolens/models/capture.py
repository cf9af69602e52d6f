"""The one place evolens hooks a model's decoder layers: per forward pass, the chosen lens layers' states.

``LayerCapture`` hooks the decoder layers: a forward pre-hook on the first reads its input (the
embeddings, image features merged and any embedding scale applied: lens layer 0), a forward hook on the
l-th (counting from 1) reads its output (lens layer l). Each forward pass keeps only position -1, which with
left padding is the position predicting the next token in every row; in ``generate`` the prefill is step 0
and each decode pass one more step. The trace, the load-time adapter check, ``evolens verify``, early exit
and layer-mix decoding all read layers through it.

``TokenStreamer`` receives the tokens ``generate`` emits (transformers calls ``put(prompt_ids)`` once, then
``put(next_tokens)`` after every step, ``end()`` at the end), which is exact for greedy and sampled decoding
and works for any model. Each emitted step is handed on with the states of the pass that produced it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers.generation.streamers import BaseStreamer

if TYPE_CHECKING:
    from evolens.models.loaded import LoadedModel


def layer_output(output: Any) -> torch.Tensor:
    """A decoder layer's hidden-state output (B, T, d), whether it returns a tensor or a tuple."""
    return output[0] if isinstance(output, tuple | list) else output


def layer_input(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    """A decoder layer's hidden-state input (B, T, d), passed positionally or as ``hidden_states``."""
    return args[0] if args else kwargs["hidden_states"]


class LayerCapture:
    """Context manager: while active, each forward pass yields one (B, n, d) tensor of the last position.

    Args:
        loaded: the model.
        lens_layers: the lens layers to keep, in 0..L (0 = input embeddings, l = output of decoder layer l);
            None keeps all L+1 of them. Column i of every pass holds ``lens_layers[i]``.
        positions: (B, P) sequence positions to keep in each row (teacher forcing: the positions that
            predict each response token); each pass is then (B, n, P, d). None keeps the last position.
        keep: (B, T) bool, positions of the *first* pass (the prefill, or the one teacher-forced pass)
            whose states are also kept at every chosen layer (the image tokens): after that pass,
            ``kept`` holds them, (N, n, d) for the N true entries of ``keep`` in row-major order.

    A pass is complete when the deepest chosen layer has run; completed passes queue up in order (usually
    one at a time) and ``pop`` takes the oldest.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        lens_layers: Sequence[int] | None = None,
        positions: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
    ) -> None:
        self.decoder_layers: nn.ModuleList = loaded.decoder_layers
        n_lens = len(self.decoder_layers) + 1
        self.lens_layers = tuple(range(n_lens)) if lens_layers is None else tuple(lens_layers)
        if not self.lens_layers or not all(0 <= layer < n_lens for layer in self.lens_layers):
            raise ValueError(f"lens layers must be in 0..{n_lens - 1}, got {list(self.lens_layers)}")
        self._column = {layer: i for i, layer in enumerate(self.lens_layers)}
        self.positions = positions
        self._deepest = max(self.lens_layers)
        self._current: torch.Tensor | None = None
        self._done: deque[torch.Tensor] = deque()
        self._handles: list[Any] = []
        self.keep = keep
        self.kept: torch.Tensor | None = None
        """(N, n, d): the states at ``keep``'s positions of the first pass, once it has run."""
        self._kept_current: torch.Tensor | None = None

    def __enter__(self) -> LayerCapture:
        first = self.decoder_layers[0].register_forward_pre_hook(self._on_input, with_kwargs=True)
        self._handles.append(first)
        for layer in sorted(set(self.lens_layers) - {0}):
            self._handles.append(
                self.decoder_layers[layer - 1].register_forward_hook(self._output_hook(layer))
            )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def pop(self) -> torch.Tensor:
        """The oldest completed pass: (B, n, d) (with ``positions``: (B, n, P, d)) in the model's dtype and
        device."""
        if not self._done:
            raise RuntimeError("a token was emitted without a completed forward pass of the decoder layers")
        return self._done.popleft()

    def last(self) -> torch.Tensor:
        """The most recent completed pass (older ones are dropped): (B, n, d)."""
        if not self._done:
            raise RuntimeError("no forward pass of the decoder layers was captured")
        latest = self._done[-1]
        self._done.clear()
        return latest

    def clear(self) -> None:
        """Drop passes whose tokens will never be emitted."""
        self._done.clear()
        self._current = None

    def _store(self, layer: int, hidden: torch.Tensor) -> None:
        if self._kept_current is not None and self.keep is not None:
            self._kept_current[:, self._column[layer]] = hidden[self.keep.to(hidden.device)]
            if layer == self._deepest:
                self.kept, self._kept_current = self._kept_current, None
        if self._current is None:
            return
        if self.positions is None:
            self._current[:, self._column[layer]] = hidden[:, -1]
        else:
            rows = torch.arange(hidden.shape[0], device=hidden.device)[:, None]
            self._current[:, self._column[layer]] = hidden[rows, self.positions.to(hidden.device)]
        if layer == self._deepest:
            self._done.append(self._current)
            self._current = None

    def _on_input(self, _module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = layer_input(args, kwargs)
        batch, _, width = hidden.shape
        kept = () if self.positions is None else (self.positions.shape[1],)
        self._current = hidden.new_empty(batch, len(self.lens_layers), *kept, width)
        if self.keep is not None and self.kept is None:
            if tuple(self.keep.shape) != tuple(hidden.shape[:2]):
                raise ValueError(f"keep mask {tuple(self.keep.shape)} for states {tuple(hidden.shape)}")
            count = int(self.keep.sum())
            self._kept_current = hidden.new_empty(count, len(self.lens_layers), width)
        if 0 in self._column:
            self._store(0, hidden)

    def _output_hook(self, lens_layer: int) -> Callable[..., None]:
        def hook(_module: nn.Module, _args: tuple[Any, ...], output: Any) -> None:
            self._store(lens_layer, layer_output(output))

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


StateEditor = Callable[[int, torch.Tensor], torch.Tensor]
"""``edit(lens_layer, hidden)`` -> the hidden states (B, T, d) that replace a layer's output."""


class StateEdit:
    """Context manager: while active, chosen lens layers' states are replaced in every forward pass.

    Args:
        loaded: the model.
        lens_layers: lens layers to edit, in 0..L: l < L edits the input of decoder layer l + 1 (for l = 0
            the embeddings, image features merged; for l >= 1 the output of layer l together with anything
            a model adds between layers, such as Qwen3-VL's deepstack image features), L the last layer's
            output.
        edit: called with the lens layer and its states (B, T, d); returns the states to use instead.

    The interventions (``evolens.interventions.causal``: ablating image tokens, patching states from
    another run, noising image embeddings) all edit states through this one hook site.
    """

    def __init__(self, loaded: LoadedModel, lens_layers: Sequence[int], edit: StateEditor) -> None:
        self.decoder_layers: nn.ModuleList = loaded.decoder_layers
        self.lens_layers = tuple(sorted(set(lens_layers)))
        self.edit = edit
        self._handles: list[Any] = []

    def __enter__(self) -> StateEdit:
        last = len(self.decoder_layers)
        for layer in self.lens_layers:
            if layer < last:
                hook = self.decoder_layers[layer].register_forward_pre_hook(
                    self._input_hook(layer), with_kwargs=True
                )
            else:
                hook = self.decoder_layers[last - 1].register_forward_hook(self._output_hook(layer))
            self._handles.append(hook)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _input_hook(self, lens_layer: int) -> Callable[..., Any]:
        def hook(
            _module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[tuple[Any, ...], dict[str, Any]]:
            if args:
                return (self.edit(lens_layer, args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": self.edit(lens_layer, kwargs["hidden_states"])}

        return hook

    def _output_hook(self, lens_layer: int) -> Callable[..., Any]:
        def hook(_module: nn.Module, _args: tuple[Any, ...], output: Any) -> Any:
            edited = self.edit(lens_layer, layer_output(output))
            return (edited, *output[1:]) if isinstance(output, tuple | list) else edited

        return hook


def attention_module(layer: nn.Module) -> nn.Module:
    """A decoder layer's self-attention module (its child named ``self_attn`` or whose class names
    attention); a layer without one is an error."""
    for name, child in layer.named_children():
        if name == "self_attn" or (name.endswith("attn") and "cross" not in name):
            return child
    raise ValueError(f"no self-attention module in {type(layer).__name__}")


class AttentionKnockout:
    """Context manager: in the chosen decoder layers, ``queries`` may not attend to ``keys``.

    Args:
        loaded: the model.
        decoder_layers: 1-based decoder layers whose attention is edited.
        queries, keys: (B, T) bool masks of the sequence positions (one full-sequence forward pass without a
            cache: the attention is T x T).

    One additive edit of the attention mask each attention module receives (a causal mask is built where
    the model passes none), through a forward pre-hook: the same for every family whose decoder layers attend
    with a ``attention_mask`` keyword (eager or SDPA attention).
    """

    def __init__(
        self, loaded: LoadedModel, decoder_layers: Sequence[int], queries: torch.Tensor, keys: torch.Tensor
    ) -> None:
        self.modules = [attention_module(loaded.decoder_layers[layer - 1]) for layer in decoder_layers]
        self.blocked = queries[:, None, :, None] & keys[:, None, None, :]  # (B, 1, T, T)
        self._handles: list[Any] = []

    def __enter__(self) -> AttentionKnockout:
        for module in self.modules:
            self._handles.append(module.register_forward_pre_hook(self._hook, with_kwargs=True))
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(
        self, _module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        hidden = layer_input(args, kwargs)
        blocked = self.blocked.to(hidden.device)
        mask = kwargs.get("attention_mask")
        if mask is None:
            length = hidden.shape[1]
            mask = torch.ones(length, length, dtype=torch.bool, device=hidden.device).tril()[None, None]
        mask = mask[..., -blocked.shape[-2] :, -blocked.shape[-1] :]
        if mask.dtype == torch.bool:
            edited = mask & ~blocked
        else:
            edited = mask.masked_fill(blocked, torch.finfo(mask.dtype).min)
        return args, {**kwargs, "attention_mask": edited}


class AttentionShares:
    """Context manager: in every forward pass, each decoder layer's attention probabilities of the current
    position, recomputed from the queries and keys the layer's attention receives, split into what they
    read: image tokens, the prompt's other tokens, the tokens generated so far.

    Args:
        loaded: the model.
        image: (B, T0) bool, the prompt's image tokens (all False without an image).
        positions: as ``LayerCapture``'s: (B, P) query positions of a teacher-forced pass; None reads the
            last position of every pass.

    Keys at positions >= T0 are generated (or, teacher forced, given response) tokens. Nothing changes in
    how the model attends: while active, the attention function each layer looks up
    (``transformers``' ``AttentionInterface``, eager or SDPA alike) is wrapped so that it also hands its
    query, key, mask, scaling and soft-cap here, after rotary embeddings (M-RoPE included), the KV cache
    and grouped-query sharing: the probabilities are softmax(q k^T * scaling, soft-capped, + mask) in fp32,
    the mask carrying causal, padding, sliding-window and prefix rules. A layer without self-attention
    (Mllama's cross-attention layers) gives NaN. ``pop`` takes the oldest completed pass: (B, L, H, 3)
    shares per head (image, prompt, generated; each head's sum to 1), (B, P, L, H, 3) with ``positions``.
    """

    def __init__(
        self, loaded: LoadedModel, image: torch.Tensor, positions: torch.Tensor | None = None
    ) -> None:
        self.decoder_layers: nn.ModuleList = loaded.decoder_layers
        self.image = image.bool()
        self.positions = positions
        self._index: dict[int, int] = {}
        self._heads = 0
        for index, layer in enumerate(self.decoder_layers):
            try:
                self._index[id(attention_module(layer))] = index
            except ValueError:
                continue  # no self-attention in this layer: NaN
        self._pending: dict[int, torch.Tensor] | None = None
        self._seen = 0  # sequence positions the passes so far processed (where this pass's queries start)
        self._length = 0  # query positions of the current pass
        self._done: deque[torch.Tensor] = deque()
        self._handles: list[Any] = []
        self._original: Any = None

    def __enter__(self) -> AttentionShares:
        from transformers.modeling_utils import AttentionInterface

        self._original = AttentionInterface.get_interface
        original, observe = self._original, self._observe

        def get_interface(
            interface: Any, implementation: str, default: Callable[..., Any]
        ) -> Callable[..., Any]:
            function = original(interface, implementation, default)

            def observed(
                module: nn.Module, query: torch.Tensor, key: torch.Tensor, *args: Any, **kwargs: Any
            ) -> Any:
                output = function(module, query, key, *args, **kwargs)
                observe(
                    module, query, key, args[1] if len(args) > 1 else kwargs.get("attention_mask"), kwargs
                )
                return output

            return observed

        AttentionInterface.get_interface = get_interface  # type: ignore[method-assign,assignment]
        self._handles.append(self.decoder_layers[0].register_forward_pre_hook(self._start, with_kwargs=True))
        self._handles.append(self.decoder_layers[-1].register_forward_hook(self._finish))
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        from transformers.modeling_utils import AttentionInterface

        if self._original is not None:
            AttentionInterface.get_interface = self._original  # type: ignore[method-assign]
            self._original = None
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def pop(self) -> torch.Tensor:
        """The oldest completed pass: (B, L, H, 3) fp32 on the CPU ((B, P, L, H, 3) with ``positions``)."""
        if not self._done:
            raise RuntimeError("a token was emitted without a completed forward pass of the decoder layers")
        return self._done.popleft()

    def _start(self, _module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._pending = {}
        self._length = layer_input(args, kwargs).shape[1]

    def _finish(self, _module: nn.Module, _args: tuple[Any, ...], _output: Any) -> None:
        """Complete the pass: (B, Q, L, H, 3) on the CPU, NaN for layers whose attention was not seen (one
        head of NaN when none was: attention that bypasses transformers' attention functions)."""
        pending, self._pending = self._pending, None
        self._seen += self._length
        if pending is None:
            return
        queries = 1 if self.positions is None else self.positions.shape[1]
        sample = next(iter(pending.values()), None)  # (B, Q, H, 3)
        heads = 1 if sample is None else sample.shape[2]
        shares = torch.full((len(self.image), queries, len(self.decoder_layers), heads, 3), float("nan"))
        if pending:
            layers = sorted(pending)
            shares[:, :, layers] = torch.stack([pending[layer] for layer in layers], dim=2).cpu()
        self._done.append(shares[:, 0] if self.positions is None else shares)

    def _observe(
        self,
        module: nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        mask: torch.Tensor | None,
        kwargs: dict[str, Any],
    ) -> None:
        layer = self._index.get(id(module))
        if layer is None or self._pending is None:
            return
        batch, heads, length, _ = query.shape
        keys = key.shape[2]
        if self.positions is None:
            rows = torch.full((batch, 1), length - 1, device=query.device)
        else:
            rows = self.positions.to(query.device)
        picked = torch.arange(batch, device=query.device)[:, None]
        q = query.transpose(1, 2)[picked, rows].transpose(1, 2).float()  # (B, H, Q, hd)
        k = key.float().repeat_interleave(heads // key.shape[1], dim=1)  # (B, H, S, hd)
        scaling = kwargs.get("scaling") or getattr(module, "scaling", None) or q.shape[-1] ** -0.5
        scores = q @ k.transpose(-1, -2) * scaling  # (B, H, Q, S)
        softcap = kwargs.get("softcap")
        if softcap:
            scores = torch.tanh(scores / softcap) * softcap
        # a sliding-window cache keeps only the last keys: key j sits at sequence position offset + j
        offset = self._seen + length - keys
        absolute = offset + torch.arange(keys, device=query.device)  # (S,)
        later = absolute > (self._seen + rows)[..., None]  # (B, Q, S)
        scores = scores.masked_fill(later[:, None], float("-inf"))  # causal, whether or not a mask is given
        if mask is not None:
            mask = mask.expand(batch, *mask.shape[1:]) if mask.shape[0] == 1 else mask
            chosen = mask[picked, :, rows].transpose(1, 2)[..., :keys]  # (B, 1 or H, Q, S)
            if chosen.dtype == torch.bool:
                scores = scores.masked_fill(~chosen, float("-inf"))
            else:
                scores = scores + chosen.float()
        probs = torch.softmax(scores, dim=-1)  # (B, H, Q, S)
        prompt_length = self.image.shape[1]
        in_prompt = absolute < prompt_length
        image = torch.zeros(batch, keys, dtype=torch.bool, device=probs.device)
        image[:, in_prompt] = self.image.to(probs.device)[:, absolute[in_prompt]]
        generated = (~in_prompt)[None].expand(batch, -1)
        parts = [image, ~image & ~generated, generated]
        shares = torch.stack([(probs * part[:, None, None].float()).sum(-1) for part in parts], dim=-1)
        self._pending[layer] = shares.transpose(1, 2)  # (B, Q, H, 3), on the device until the pass ends
