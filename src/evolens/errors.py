"""Errors a user can cause and fix. The CLI prints their message as one line and exits with code 2.

Exit codes of every command (README): 0 all done; 1 finished, but some inputs failed (listed, and in
failures.jsonl); 2 nothing or not everything could be done because of something the user can fix (a flag,
a config value, a model, an input file, the output folder, the disk): one line says what; 3 an
unexpected error (a bug): one line naming it and the log file with the traceback.
"""

from __future__ import annotations


class EvolensError(Exception):
    """Base class: a problem with the user's input, model, data or environment (never a bug): exit code 2."""

    exit_code: int = 2


class UsageError(EvolensError):
    """Bad flags, bad configuration values, an unknown lens mode."""


class InputError(EvolensError):
    """An input that cannot be used: a missing or corrupt image or trace file, an empty prompt. In a batch,
    a bad input fails alone (listed in failures.jsonl, exit code 1 at the end)."""


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
