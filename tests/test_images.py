"""Loading user images (clipstyle.io.images): modes, orientation, 16-bit, errors, tensor conversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clipstyle.io.files import InputPathError
from clipstyle.io.images import (
    ImageError,
    image_to_tensor,
    load_image,
    load_image_array,
    load_image_tensor,
)


def _save(tmp_path, img: Image.Image, name: str, **kwargs):
    path = tmp_path / name
    img.save(path, **kwargs)
    return path


def test_rgb_png_round_trip(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    img = load_image(_save(tmp_path, Image.fromarray(arr), "rgb.png"))
    assert img.mode == "RGB" and img.size == (5, 7)
    np.testing.assert_array_equal(np.asarray(img), arr)


def test_rgba_is_composited_on_white(tmp_path):
    arr = np.zeros((2, 3, 4), np.uint8)
    arr[..., 0] = 255  # red
    arr[0, :, 3] = 0  # row 0 fully transparent
    arr[1, 0, 3] = 255  # opaque
    arr[1, 1, 3] = 128  # half
    arr[1, 2, 3] = 255
    out = np.asarray(load_image(_save(tmp_path, Image.fromarray(arr, "RGBA"), "rgba.png")))
    np.testing.assert_array_equal(out[0], np.full((3, 3), 255))
    np.testing.assert_array_equal(out[1, 0], [255, 0, 0])
    half = round(255 * (1 - 128 / 255))
    np.testing.assert_array_equal(out[1, 1], [255, half, half])


def test_la_is_composited_on_white(tmp_path):
    arr = np.array([[[0, 0], [0, 255], [100, 128]]], np.uint8)  # (L, A) pairs
    out = np.asarray(load_image(_save(tmp_path, Image.fromarray(arr, "LA"), "la.png")))
    assert out.shape == (1, 3, 3)
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[0, 1], [0, 0, 0])
    expected = round(100 * 128 / 255 + 255 * (1 - 128 / 255))
    np.testing.assert_array_equal(out[0, 2], [expected] * 3)


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (4, 2), 0)
    img.putpalette([0, 0, 255, 10, 200, 30] + [0] * 762)  # index 0 blue, 1 green
    img.putpixel((1, 0), 1)
    out = np.asarray(load_image(_save(tmp_path, img, "p.png", transparency=0)))
    np.testing.assert_array_equal(out[1, 0], [255, 255, 255])  # index 0 is transparent → white
    np.testing.assert_array_equal(out[0, 1], [10, 200, 30])


def test_palette_without_transparency_and_gif(tmp_path):
    img = Image.new("P", (3, 3), 1)
    img.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    out = np.asarray(load_image(_save(tmp_path, img, "p.gif")))
    np.testing.assert_array_equal(out, np.broadcast_to([200, 100, 50], (3, 3, 3)))


def test_grayscale_and_bilevel_become_rgb(tmp_path):
    arr = np.array([[0, 77, 255]], np.uint8)
    out = np.asarray(load_image(_save(tmp_path, Image.fromarray(arr, "L"), "l.png")))
    assert out.shape == (1, 3, 3)
    np.testing.assert_array_equal(out[..., 0], arr)
    np.testing.assert_array_equal(out[..., 1], arr)
    np.testing.assert_array_equal(out[..., 2], arr)
    bw = Image.new("1", (2, 2), 1)
    out = np.asarray(load_image(_save(tmp_path, bw, "b.png")))
    np.testing.assert_array_equal(out, np.full((2, 2, 3), 255))


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    g16 = np.linspace(0, 65535, 1000).round().astype(np.uint16).reshape(1, 1000)
    path = _save(tmp_path, Image.fromarray(g16), "g16.png")
    with Image.open(path) as check:
        assert check.mode.startswith("I")
    g8 = np.round(g16 / 257.0).astype(np.uint8)  # the 8-bit version of the same gradient

    arr = load_image_array(path)
    assert arr.dtype == np.float32 and arr.shape == (1, 1000, 3)
    assert np.abs(arr[..., 0] - g8 / 255.0).max() <= 1 / 255 + 1e-6
    np.testing.assert_allclose(arr[..., 1], g16 / 65535.0, atol=1e-6)  # full 16-bit precision kept
    assert arr.max() == pytest.approx(1.0) and len(np.unique(arr[..., 0])) > 256

    img = np.asarray(load_image(path))
    assert np.abs(img[..., 0].astype(int) - g8.astype(int)).max() <= 1
    assert img.max() == 255 and img.min() == 0

    t = load_image_tensor(path, None, crop=False)
    np.testing.assert_allclose(t[0, 0].numpy(), g16 / 65535.0 * 2 - 1, atol=1e-5)


def test_16bit_exact_multiples_match_8bit(tmp_path):
    g8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    path16 = _save(tmp_path, Image.fromarray(g8.astype(np.uint16) * 257), "e16.png")
    path8 = _save(tmp_path, Image.fromarray(g8, "L"), "e8.png")
    np.testing.assert_array_equal(np.asarray(load_image(path16)), np.asarray(load_image(path8)))
    np.testing.assert_allclose(load_image_array(path16), load_image_array(path8), atol=1e-6)


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = [255, 0, 0]  # left half red
    arr[:, 20:] = [0, 0, 255]  # right half blue
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = _save(tmp_path, img, "rot.jpg", exif=exif.tobytes(), quality=95)
    out = load_image(path)
    assert out.size == (20, 40)  # width and height swapped
    a = np.asarray(out).astype(int)
    assert a[:18, :, 0].mean() > 200 and a[:18, :, 2].mean() < 60  # left half went to the top
    assert a[22:, :, 2].mean() > 200 and a[22:, :, 0].mean() < 60
    assert load_image_array(path).shape == (40, 20, 3)


def test_cmyk_is_converted(tmp_path):
    img = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # pure red in CMYK
    out = np.asarray(load_image(_save(tmp_path, img, "cmyk.tiff")))
    np.testing.assert_array_equal(out, np.broadcast_to([255, 0, 0], (4, 4, 3)))
    jpg = np.asarray(load_image(_save(tmp_path, img, "cmyk.jpg", quality=95))).astype(int)
    assert jpg.shape == (4, 4, 3) and jpg[..., 0].min() > 200 and jpg[..., 1:].max() < 60


def test_one_pixel_image(tmp_path):
    path = _save(tmp_path, Image.new("RGB", (1, 1), (255, 0, 0)), "one.png")
    assert load_image(path).size == (1, 1)
    t = load_image_tensor(path, 8)
    assert t.shape == (1, 3, 8, 8)
    torch.testing.assert_close(t[0, 0], torch.ones(8, 8))
    torch.testing.assert_close(t[0, 1], -torch.ones(8, 8))


def test_errors_are_one_line_image_errors(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("definitely not a picture\n")
    with pytest.raises(ImageError) as info:
        load_image(text)
    assert str(info.value) == f"{text} is not an image file PIL can read"
    missing = tmp_path / "missing.jpg"
    with pytest.raises(InputPathError) as info:  # a path that is no file: the one input-path check (usage)
        load_image(missing)
    assert str(info.value) == f"no such image file: {missing}"
    with pytest.raises(InputPathError, match="folder"):
        load_image(tmp_path)
    with pytest.raises(InputPathError):
        load_image_tensor(missing, 32)
    assert issubclass(ImageError, ValueError)


def test_truncated_file_is_an_image_error(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    good = _save(tmp_path, Image.fromarray(arr), "full.png")
    bad = tmp_path / "cut.png"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ImageError) as info:
        load_image(bad)
    assert "\n" not in str(info.value) and str(bad) in str(info.value)


def test_image_to_tensor_range_shape_and_crop():
    arr = np.zeros((10, 30, 3), np.uint8)  # wide: black | white centre square | black
    arr[:, 10:20] = 255
    t = image_to_tensor(Image.fromarray(arr), 16)
    assert t.shape == (1, 3, 16, 16) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    torch.testing.assert_close(t, torch.ones_like(t))  # crop keeps only the white centre

    squashed = image_to_tensor(Image.fromarray(arr), 15, crop=False)
    assert squashed.shape == (1, 3, 15, 15)
    assert squashed[0, 0, :, 0].max() < -0.9 and squashed[0, 0, :, 7].min() > 0.9  # stretched, not cropped

    native = image_to_tensor(arr, None)
    assert native.shape == (1, 3, 10, 10)
    full = image_to_tensor(arr, None, crop=False)
    assert full.shape == (1, 3, 10, 30)
    assert full[0, :, 0, 0].tolist() == [-1.0, -1.0, -1.0] and full[0, :, 0, 15].tolist() == [1.0, 1.0, 1.0]


def test_image_to_tensor_inputs_and_validation():
    gray16 = np.full((4, 6), 65535, np.uint16)
    torch.testing.assert_close(image_to_tensor(gray16, 4), torch.ones(1, 3, 4, 4))
    floats = np.full((5, 5, 3), 0.5, np.float32)
    torch.testing.assert_close(image_to_tensor(floats, 3), torch.zeros(1, 3, 3, 3), atol=1e-6, rtol=0)
    with pytest.raises(ValueError):
        image_to_tensor(floats, 0)
    with pytest.raises(ImageError):
        image_to_tensor(np.zeros((0, 4, 3), np.uint8), 8)
    with pytest.raises(ImageError):
        image_to_tensor(np.zeros((4, 4, 2), np.uint8), 8)


def test_downscale_is_antialiased():
    # 1-pixel checkerboard: a proper (Lanczos) downscale averages to mid-gray; point sampling would not.
    checker = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)
    t = image_to_tensor(checker, 8)
    assert t.abs().max() < 0.1
