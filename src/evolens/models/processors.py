"""Loading a model's processor for what evolens feeds it: images and text, never video.

In transformers 5.x every video processor needs torchvision, and ``AutoProcessor`` builds a processor's video
part even for image-only use (huggingface/transformers#48558), so Qwen2/2.5/3-VL and LLaVA-OneVision
processors fail to load on a machine without torchvision, or from a directory without a video config.
``load_processor`` builds those processors without their video part; everything else is ``AutoProcessor``.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from functools import cache
from typing import Any

import transformers

VIDEO_PART = "video_processor"


def load_processor(name: str, config: Any) -> Any:
    """The processor of the model at ``name`` (a local directory or cached hub id) with config ``config``."""
    processor_class = _processor_class(config)
    if processor_class is not None and VIDEO_PART in processor_class.get_attributes():
        return without_video_processor(processor_class).from_pretrained(name, local_files_only=True)
    return transformers.AutoProcessor.from_pretrained(name, local_files_only=True)


class NoVideoProcessor:
    """Stands in for the missing video part where a processor reads its settings for image-only calls
    (``SmolVLMProcessor.apply_chat_template`` reads ``num_frames`` and ``fps``)."""

    num_frames: int | None = None
    fps: float | None = None


@cache
def without_video_processor(processor_class: Any) -> Any:
    """A subclass of ``processor_class`` (same name, same ``__call__``) whose only parts are the others.

    ``ProcessorMixin`` takes a processor's parts from ``get_attributes()`` in ``__init__``,
    ``from_pretrained`` and ``save_pretrained`` alike; the parent's ``__init__`` gets video_processor=None.
    """
    parts = [part for part in processor_class.get_attributes() if part != VIDEO_PART]
    return type(
        processor_class.__name__,
        (processor_class,),
        {
            "get_attributes": classmethod(lambda cls: list(parts)),
            "__init__": _video_part_optional(processor_class.__init__),
            VIDEO_PART: NoVideoProcessor(),
            "__module__": processor_class.__module__,
            "__doc__": f"{processor_class.__name__} for images and text (no video part).",
        },
    )


def _video_part_optional(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` with ``video_processor`` defaulting to None where it is required (SmolVLM).

    The copy shares ``init``'s code object, because ``from_pretrained`` reads the accepted parameter names off
    ``__init__.__code__``; only the defaults differ.
    """
    code = init.__code__
    names = code.co_varnames[: code.co_argcount]
    defaults = init.__defaults__ or ()
    first_default = len(names) - len(defaults)
    if VIDEO_PART not in names or names.index(VIDEO_PART) >= first_default:
        return init
    defaults = (None,) * (first_default - names.index(VIDEO_PART)) + defaults
    copy = types.FunctionType(code, init.__globals__, init.__name__, defaults, init.__closure__)
    copy.__kwdefaults__ = init.__kwdefaults__
    return copy


def _processor_class(config: Any) -> Any:
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING  # 2.6 s: only when loading

    try:
        return PROCESSOR_MAPPING[type(config)]
    except KeyError:
        return None
