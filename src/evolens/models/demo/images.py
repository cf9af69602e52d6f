"""The bundled demo image set: a dozen held-out shapes-world scenes and scikit-image's natural photos.

Nothing is stored in the repository: ``materialize_demo_images(folder)`` renders the scenes and exports the
photos at run time, and writes ``images.jsonl`` with one line per image:
``{"id", "image", "prompt", "ground_truth"}`` (``ground_truth`` is the scene dict for shapes-world images
and null for photos; ``image`` is a path relative to the folder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from evolens.data.shapes.render import render_scene
from evolens.data.shapes.world import sample_scene
from evolens.io.atomic import json_text

MANIFEST_NAME = "images.jsonl"
DEMO_PROMPT = "Describe this image."
# Held out: training uses seeds 0.., validation 5_000_000.., evaluation 10_000_000...
DEMO_SCENE_SEED_BASE = 20_000_000
N_DEMO_SCENES = 12
# scikit-image photos that ship inside its wheel (no download), RGB ones first.
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "camera")


@dataclass(frozen=True)
class DemoImage:
    """One entry of the demo image set."""

    id: str
    image: Path
    prompt: str
    ground_truth: dict[str, Any] | None

    def to_json(self, root: Path) -> str:
        return json_text(
            {
                "id": self.id,
                "image": str(self.image.relative_to(root)),
                "prompt": self.prompt,
                "ground_truth": self.ground_truth,
            },
            indent=None,
            sort_keys=False,
        )


def demo_scenes() -> list:
    """The demo set's shapes-world scenes: 1, 2 and 3 objects in turn."""
    return [sample_scene(DEMO_SCENE_SEED_BASE + i, n_objects=1 + i % 3) for i in range(N_DEMO_SCENES)]


def materialize_demo_images(folder: str | Path) -> Path:
    """Write the demo images and ``images.jsonl`` into ``folder``; returns the manifest path.

    Existing files are overwritten, so the folder always matches this version of evolens.
    """
    root = Path(folder)
    (root / "images").mkdir(parents=True, exist_ok=True)
    entries: list[DemoImage] = []
    for scene in demo_scenes():
        image_id = f"shapes-{scene.seed}"
        path = root / "images" / f"{image_id}.png"
        render_scene(scene).save(path)
        entries.append(DemoImage(image_id, path, DEMO_PROMPT, scene.to_dict()))
    for name in SKIMAGE_PHOTOS:
        path = root / "images" / f"skimage-{name}.png"
        Image.fromarray(_skimage_photo(name)).save(path)
        entries.append(DemoImage(f"skimage-{name}", path, DEMO_PROMPT, None))
    manifest = root / MANIFEST_NAME
    manifest.write_text("".join(entry.to_json(root) + "\n" for entry in entries))
    return manifest


def read_demo_manifest(manifest: str | Path) -> list[dict[str, Any]]:
    """The entries of an ``images.jsonl``, with ``image`` resolved to an absolute path."""
    manifest = Path(manifest)
    entries = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    for entry in entries:
        entry["image"] = str((manifest.parent / entry["image"]).resolve())
    return entries


def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data

    return np.asarray(getattr(skimage.data, name)())
