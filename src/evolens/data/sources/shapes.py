"""The shapes world as a data source: scenes rendered from consecutive seeds, ground truth included.

Scene ``i`` is ``sample_scene(seed + i)``; its PNG is written to the folder given (created when missing,
kept when already there), so the same config always yields the same images and ids (``shapes-<seed>``).
``--limit`` is the number of scenes (default ``DEFAULT_SCENES``); ``--shuffle`` has nothing to shuffle.
"""

from __future__ import annotations

from pathlib import Path

from evolens.data.rows import DataRow, pair_with_prompts
from evolens.io import atomic

DEFAULT_SCENES = 12
DEFAULT_PROMPTS = ("Describe this image.", "What is the color of the shape?")


def shapes_rows(
    folder: Path, prompts: list[str], limit: int | None = None, shuffle: bool = False, seed: int = 0
) -> list[DataRow]:
    """``limit`` scenes from ``seed`` on, each paired with every prompt (the demo's two by default)."""
    del shuffle  # consecutive seeds are already an unbiased sample of the world
    import io

    from evolens.data.shapes import render_scene, sample_scene

    rows = []
    for scene_seed in range(seed, seed + (limit or DEFAULT_SCENES)):
        scene = sample_scene(scene_seed)
        path = folder / f"shapes-{scene_seed}.png"
        if not path.is_file():
            buffer = io.BytesIO()
            render_scene(scene).save(buffer, format="PNG")
            atomic.write_bytes(path, buffer.getvalue())
        truth = {"source": "shapes", **scene.to_dict()}
        rows.extend(pair_with_prompts(f"shapes-{scene_seed}", path, prompts or list(DEFAULT_PROMPTS), truth))
    return rows
