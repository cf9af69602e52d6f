"""Reading images safely: every failure is an ``InputError`` with one clear line.

Grayscale, RGBA (composited on white), palette, CMYK and 16-bit images are converted to 8-bit RGB.
Very large images are decoded with a reduced draft where the format allows and downscaled. A decoded image
carries the SHA-256 of the bytes it was decoded from (``image_sha256``), the hash a trace records.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from evolens.data.rows import natural_key
from evolens.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_SIDE = 2048
HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
Image.MAX_IMAGE_PIXELS = 400_000_000  # a 10000x10000 photo is legitimate; larger is refused by PIL
SHA256_INFO = "evolens.sha256"
"""Key of ``Image.info`` under which a decoded image keeps the SHA-256 of the bytes it was decoded from."""


def load_image(path: str | Path) -> Image.Image:
    """Open ``path`` as an 8-bit RGB image no larger than ``MAX_SIDE`` on its long side.

    The file is read once, and the image keeps the SHA-256 of exactly those bytes (``image_sha256``): what
    a trace records stays the hash of what it traced, even if the file changes or goes meanwhile.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an image")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (MAX_SIDE, MAX_SIDE))
            image.load()
            decoded = to_rgb(image)
    except UnidentifiedImageError as exc:
        raise InputError(f"{path}: not an image file") from exc
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: image too large ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: corrupt or truncated image ({str(exc).splitlines()[0]})") from exc
    return with_sha256(decoded, hashlib.sha256(data).hexdigest())


def with_sha256(image: Image.Image, sha256: str | None) -> Image.Image:
    """``image``, keeping ``sha256`` as the hash of the bytes it was decoded from (None: nothing kept)."""
    if sha256 is not None:
        image.info[SHA256_INFO] = sha256
    return image


def image_sha256(path: str | Path | None, image: Image.Image | None) -> str | None:
    """The SHA-256 a trace records for the image file ``path`` decoded as ``image``: the hash the image
    keeps of the bytes it was decoded from (``load_image``); for an image decoded elsewhere (or none), the
    hash of the file as it is now. None without a file (a text-only sample)."""
    if path is None:
        return None
    kept = None if image is None else image.info.get(SHA256_INFO)
    return kept if isinstance(kept, str) else file_sha256(path)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB, transparency composited on white, long side at most ``MAX_SIDE``."""
    image = ImageOps.exif_transpose(image)
    if image.mode in HIGH_DEPTH_MODES:
        image = Image.fromarray(_to_8_bit(np.asarray(image, dtype=np.float64), image.mode), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    image = image.convert("RGB")
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return image


def _to_8_bit(array: np.ndarray, mode: str) -> np.ndarray:
    """A high-depth single-channel array (H, W) -> uint8 (H, W).

    16-bit values keep their brightness (65535 -> 255); 32-bit integer or float data of unknown range is
    stretched from its minimum to its maximum.
    """
    low, high = float(array.min()), float(array.max())
    if mode.startswith("I;16") or (mode == "I" and low >= 0 and high <= 65535 and high > 255):
        scaled = array / 257.0
    elif mode == "F" and low >= 0 and high <= 1:
        scaled = array * 255.0
    elif mode == "I" and low >= 0 and high <= 255:
        scaled = array
    else:
        scaled = (array - low) / (high - low) * 255 if high > low else np.zeros_like(array)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (identifies an image in a trace)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_images(folder: str | Path) -> list[Path]:
    """Image files (by suffix) in ``folder`` and its subfolders, in natural order of their relative paths
    ('b/img2' before 'b/img10'); hidden files and folders (names starting with '.') are left out."""
    root = Path(folder)
    found = [
        path
        for path in root.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    ]
    return sorted(found, key=lambda path: natural_key(path.relative_to(root).as_posix()))
