"""Errors a user can cause and fix. The CLI prints their message as one line and exits non-zero."""

from __future__ import annotations


class EvolensError(Exception):
    """Base class: a problem with the user's input, model, data or environment (never a bug)."""

    exit_code: int = 1


class UsageError(EvolensError):
    """Bad flags, bad configuration values, an unknown lens mode: exit code 2."""

    exit_code = 2


class InputError(EvolensError):
    """An input that cannot be used: a missing or corrupt image, an empty prompt."""


class ModelLoadError(EvolensError):
    """A model that cannot be found or loaded (unknown name, not in the local Hugging Face cache)."""


class UnsupportedArchitectureError(ModelLoadError):
    """A model whose architecture has no adapter."""


class AdapterCheckError(ModelLoadError):
    """An adapter whose module paths do not reproduce the model's own logits."""


class NumericalError(EvolensError):
    """NaN or overflow in a layer's hidden state; the message names sample, step and layer."""


class StorageError(EvolensError):
    """The output cannot be written (disk full, permission denied); finished results are kept."""
