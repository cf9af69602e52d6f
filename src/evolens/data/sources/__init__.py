"""Data sources for ``evolens run``: an image, a folder, a JSONL manifest, MSCOCO, AMBER, the shapes world.

Every source turns a ``DataConfig`` into the same ``DataRow`` list (id, image, prompt, ground truth), with
``limit``, ``shuffle`` and ``seed`` applied the same way; the run writes them as its JSONL manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from evolens.data.config import DataConfig
from evolens.data.rows import DataRow
from evolens.data.sources.amber import amber_rows
from evolens.data.sources.coco import coco_rows
from evolens.data.sources.local import folder_rows, image_rows, jsonl_rows, manifest_text, read_manifest
from evolens.data.sources.shapes import shapes_rows
from evolens.errors import UsageError

__all__ = ["DataRow", "load_rows", "manifest_text", "read_manifest"]


def _image(config: DataConfig, workdir: Path) -> list[DataRow]:
    return image_rows(_path(config), config.prompts, config.limit, config.shuffle, config.seed)


def _folder(config: DataConfig, workdir: Path) -> list[DataRow]:
    return folder_rows(_path(config), config.prompts, config.limit, config.shuffle, config.seed)


def _jsonl(config: DataConfig, workdir: Path) -> list[DataRow]:
    return jsonl_rows(_path(config), config.prompts, config.limit, config.shuffle, config.seed)


def _coco(config: DataConfig, workdir: Path) -> list[DataRow]:
    return coco_rows(
        _path(config), _annotations(config), config.prompts, config.limit, config.shuffle, config.seed
    )


def _amber(config: DataConfig, workdir: Path) -> list[DataRow]:
    return amber_rows(
        _path(config), _annotations(config), config.prompts, config.limit, config.shuffle, config.seed
    )


def _shapes(config: DataConfig, workdir: Path) -> list[DataRow]:
    folder = config.path or workdir / "shapes"
    return shapes_rows(folder, config.prompts, config.limit, config.shuffle, config.seed)


SOURCES: dict[str, Callable[[DataConfig, Path], list[DataRow]]] = {
    "image": _image,
    "folder": _folder,
    "jsonl": _jsonl,
    "coco": _coco,
    "amber": _amber,
    "shapes": _shapes,
}


def load_rows(config: DataConfig, workdir: Path) -> list[DataRow]:
    """The rows ``config`` selects; ``workdir`` holds what a source generates (the shapes world's images)."""
    rows = SOURCES[str(config.source)](config, workdir)
    if not rows:
        raise UsageError(f"data: the {config.source} source selected no samples")
    unprompted = [row.sample_id for row in rows if not row.prompt.strip()]
    if unprompted:
        where = config.path if config.path is not None else config.source
        raise UsageError(
            f"{where}: no prompt for {', '.join(unprompted[:3])}; add 'prompt' to the lines or give --prompt"
        )
    return rows


def _path(config: DataConfig) -> Path:
    assert config.path is not None  # DataConfig's validator requires it for these sources
    return config.path


def _annotations(config: DataConfig) -> Path:
    assert config.annotations is not None
    return config.annotations
