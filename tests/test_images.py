"""``load_image`` on the bad inputs users bring: every failure is one clear ``InputError`` line, every odd
image mode becomes 8-bit RGB with sensible pixels, and huge images are downscaled without a full decode."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import evolens
from evolens.data.arrow import batches_table, decode_images, image_of
from evolens.data.images import MAX_SIDE, file_sha256, image_sha256, load_image
from evolens.data.rows import DataRow
from evolens.errors import InputError
from evolens.models import LoadedModel


def save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def assert_one_line_error(path: Path, *words: str) -> None:
    with pytest.raises(InputError) as caught:
        load_image(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message, message


# --- failures ----------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(tmp_path / "nowhere.png", "no such file")


def test_directory(tmp_path: Path) -> None:
    assert_one_line_error(tmp_path, "directory")


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.touch()
    assert_one_line_error(empty, "empty")


def test_non_image_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("these are not pixels\n" * 20)
    assert_one_line_error(text, "not an image")


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_truncated_file(tmp_path: Path, image_format: str) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format=image_format)
    truncated = tmp_path / f"cut.{image_format.lower()}"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    assert_one_line_error(truncated, "truncated")


# --- conversions ---------------------------------------------------------------------------------------


def test_grayscale_becomes_equal_channels(tmp_path: Path) -> None:
    gray = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))
    image = load_image(save(Image.fromarray(gray, mode="L"), tmp_path / "gray.png"))
    pixels = np.asarray(image)
    assert image.mode == "RGB" and pixels.shape == (8, 64, 3)
    for channel in range(3):
        assert np.array_equal(pixels[..., channel], gray)


def test_rgba_transparent_pixels_become_white(tmp_path: Path) -> None:
    rgba = np.zeros((10, 20, 4), dtype=np.uint8)
    rgba[:, :10] = (255, 0, 0, 255)  # opaque red
    rgba[:, 10:] = (0, 0, 255, 0)  # fully transparent blue
    pixels = np.asarray(load_image(save(Image.fromarray(rgba, mode="RGBA"), tmp_path / "rgba.png")))
    assert (pixels[:, :10] == (255, 0, 0)).all()
    assert (pixels[:, 10:] == (255, 255, 255)).all()


def test_half_transparent_pixels_blend_with_white(tmp_path: Path) -> None:
    rgba = np.full((4, 4, 4), (0, 0, 0, 128), dtype=np.uint8)
    pixels = np.asarray(load_image(save(Image.fromarray(rgba, mode="RGBA"), tmp_path / "half.png")))
    assert np.all(np.abs(pixels.astype(int) - 127) <= 1)


def test_palette_image_keeps_its_colours(tmp_path: Path) -> None:
    palette = Image.new("P", (6, 3))
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    palette.putdata([0, 0, 1, 1, 2, 2] * 3)
    pixels = np.asarray(load_image(save(palette, tmp_path / "palette.gif")))
    assert (pixels[:, 0] == (255, 0, 0)).all()
    assert (pixels[:, 2] == (0, 255, 0)).all()
    assert (pixels[:, 5] == (0, 0, 255)).all()


def test_palette_transparency_becomes_white(tmp_path: Path) -> None:
    palette = Image.new("P", (4, 2))
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    palette.putdata([0, 0, 1, 1] * 2)
    palette.info["transparency"] = 0
    pixels = np.asarray(load_image(save(palette, tmp_path / "transparent.png", transparency=0)))
    assert (pixels[:, :2] == (255, 255, 255)).all()
    assert (pixels[:, 2:] == (255, 0, 0)).all()


@pytest.mark.parametrize("suffix", ["tif", "jpg"])
def test_cmyk_becomes_rgb(tmp_path: Path, suffix: str) -> None:
    cmyk = np.zeros((8, 16, 4), dtype=np.uint8)
    cmyk[:, 8:] = (0, 255, 255, 0)  # no cyan, full magenta and yellow: red
    path = save(Image.fromarray(cmyk, mode="CMYK"), tmp_path / f"cmyk.{suffix}", quality=95)
    pixels = np.asarray(load_image(path)).astype(int)
    tolerance = 0 if suffix == "tif" else 12
    assert np.all(np.abs(pixels[:, :6] - 255) <= tolerance)  # no ink: white
    assert np.all(np.abs(pixels[:, 10:] - (255, 0, 0)) <= tolerance)


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_16_bit_gradient_spans_the_8_bit_range(tmp_path: Path, suffix: str) -> None:
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (4, 1))
    path = save(Image.fromarray(ramp), tmp_path / f"deep.{suffix}")
    assert Image.open(path).mode.startswith("I;16")
    row = np.asarray(load_image(path))[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert np.all(np.diff(row) >= 0)
    assert np.abs(row - np.arange(256)).max() <= 1


def test_dark_16_bit_image_stays_dark(tmp_path: Path) -> None:
    dark = np.full((4, 4), 5000, dtype=np.uint16)
    dark[0, 0] = 0
    pixels = np.asarray(load_image(save(Image.fromarray(dark), tmp_path / "dark.png")))
    assert pixels[1, 1, 0] == round(5000 / 257)  # brightness kept, not stretched to white


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    wide = Image.new("RGB", (40, 20), (0, 128, 0))
    exif = wide.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image = load_image(save(wide, tmp_path / "rotated.jpg", exif=exif))
    assert image.size == (20, 40)


def test_large_image_is_downscaled(tmp_path: Path) -> None:
    big = Image.new("RGB", (3000, 1500), (10, 200, 30))
    image = load_image(save(big, tmp_path / "big.png"))
    assert image.size == (MAX_SIDE, MAX_SIDE // 2)
    assert np.abs(np.asarray(image).astype(int) - (10, 200, 30)).max() <= 1


def test_10000_pixel_photo_loads_in_bounded_memory(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A 10000x10000 JPEG (300 MB as 8-bit RGB) is decoded at a reduced scale: peak memory stays far below."""
    path = tmp_path_factory.mktemp("huge") / "huge.jpg"
    Image.new("L", (10_000, 10_000), 90).save(path, quality=50)
    package_dir = Path(evolens.__file__).parent
    child = textwrap.dedent(
        f"""
        import json, resource, sys, types
        package = types.ModuleType("evolens")  # import evolens.data.images alone, without torch
        package.__path__ = [{str(package_dir)!r}]
        sys.modules["evolens"] = package
        from evolens.data.images import load_image
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        image = load_image({str(path)!r})
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"size": image.size, "mode": image.mode, "grown_kib": after - before,
                           "pixel": image.getpixel((5, 5))}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert max(report["size"]) <= MAX_SIDE and report["size"][0] == report["size"][1]
    assert report["mode"] == "RGB" and report["pixel"] == [90, 90, 90]
    assert report["grown_kib"] < 100 * 1024, f"peak memory grew by {report['grown_kib']} KiB"


# --- prompts -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["", "   \n"])
def test_empty_prompt_is_refused(tiny_llama: LoadedModel, prompt: str) -> None:
    with pytest.raises(InputError, match="empty prompt"):
        tiny_llama.build_inputs(["Describe it.", prompt])


# --- the hash of what was traced ------------------------------------------------------------------------


def test_a_decoded_image_carries_the_hash_of_the_bytes_it_was_decoded_from(tmp_path: Path) -> None:
    """Both engines' decoders (``load_image``, and ``decode_images`` -> ``image_of`` for the Ray engine):
    the file replaced or deleted after it was read does not change the hash the trace records."""
    rng = np.random.default_rng(0)
    path = save(Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)), tmp_path / "a.png")
    read = hashlib.sha256(path.read_bytes()).hexdigest()
    image = load_image(path)
    row = decode_images(batches_table([[(0, DataRow(sample_id="a", image=path, prompt="p"))]]))
    decoded = image_of(row.to_pylist()[0]["samples"][0])
    save(Image.new("RGB", (4, 4), "red"), path)  # replaced after it was read
    assert image_sha256(path, image) == read and image_sha256(path, decoded) == read
    assert image_sha256(path, None) == file_sha256(path) != read  # no decoded image: the file as it is
    path.unlink()
    assert image_sha256(path, image) == read and image_sha256(path, decoded) == read
    assert image_sha256(None, None) is None
