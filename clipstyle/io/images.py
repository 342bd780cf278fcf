"""Loading user images (photos to edit or project, image prompts) into RGB and tensors.

Every image is normalised the same way, whatever the file holds:

* EXIF orientation is applied (phone photos come out upright);
* transparency (RGBA, LA, P or L/RGB with a ``tRNS`` colour) is composited on **white**;
* grayscale and bilevel images become 3-channel RGB; CMYK, YCbCr, LAB and HSV are converted;
* 16-bit grayscale PNGs (Pillow modes ``I;16*`` / ``I``) are scaled by 1/65535, not clipped,
  and kept in float until after resizing, so no precision is lost to an early 8-bit step.
  (Pillow itself reduces 16-bit *RGB* PNGs to 8 bits per channel on open.)

Two representations come out: a ``PIL.Image`` in mode ``RGB`` (:func:`load_image`) and a
float array ``[H, W, 3]`` in ``[0, 1]`` (:func:`load_image_array`), which
:func:`image_to_tensor` turns into the generator's convention: float32 ``[1, 3, S, S]`` in ``[-1, 1]``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from clipstyle.errors import BadFileError
from clipstyle.io.files import check_input_path

if TYPE_CHECKING:
    import torch

__all__ = ["ImageError", "image_to_tensor", "load_image", "load_image_array", "load_image_tensor"]

ImageLike = Union[Image.Image, np.ndarray]
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageError(BadFileError):
    """An image file is missing, unreadable or unusable. ``str()`` is one line naming the file."""


def _open(path: str | os.PathLike[str]) -> Image.Image:
    """Open and fully decode ``path`` with EXIF orientation applied; errors become :class:`ImageError`."""
    p = check_input_path(path, "image file")  # missing, a folder, a FIFO, a device: said in one line
    try:
        with Image.open(p) as opened:
            opened.load()
            try:
                # Always a new, fully loaded image (a copy when no rotation is needed).
                img = ImageOps.exif_transpose(opened)
            except Exception:  # noqa: BLE001 - a broken EXIF block must not make the pixels unusable
                img = opened.copy()
    except (UnidentifiedImageError, Image.DecompressionBombError) as err:
        if isinstance(err, UnidentifiedImageError):
            raise ImageError(f"{path} is not an image file PIL can read") from err
        raise ImageError(f"{path} is too large to load safely ({' '.join(str(err).split())})") from err
    except (OSError, SyntaxError, ValueError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ImageError(f"{path} is a damaged or unsupported image file ({reason})") from err
    return img


def _pil_to_float_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow image → float32 ``[H, W, 3]`` in ``[0, 1]`` (alpha composited on white)."""
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        # 16-bit grayscale. Mode "I" (32-bit int) is what older Pillow versions return for
        # 16-bit PNGs; we assume the same 0..65535 range for it and clip outside that.
        gray = np.asarray(img).astype(np.float64)
        gray = np.clip(gray / 65535.0, 0.0, 1.0).astype(np.float32)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        # 32-bit float images (TIFF) are taken to hold values in [0, 1].
        gray = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P" or "transparency" in img.info:
        img = img.convert("RGBA" if ("transparency" in img.info or mode == "PA") else "RGB")
        mode = img.mode
    if mode in _ALPHA_MODES:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        rgb, alpha = rgba[:, :, :3], rgba[:, :, 3:4]
        return rgb * alpha + (1.0 - alpha)  # "over" a white background
    if mode != "RGB":
        img = img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, ...
    return np.asarray(img, dtype=np.float32) / 255.0


def check_image(path: str | os.PathLike[str]) -> None:
    """Read only the header of ``path``: an image PIL can open (no pixels decoded).

    Raises:
        InputPathError: missing, a folder, a FIFO, a device. ImageError: not an image, or a damaged header.
    """
    p = check_input_path(path, "image file")  # missing, a folder, a FIFO, a device: said in one line
    try:
        with Image.open(p):
            pass
    except UnidentifiedImageError:
        raise ImageError(f"{path} is not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"{path} is a damaged or unsupported image file ({' '.join(str(err).split())})") from None


def load_image_array(path: str | os.PathLike[str]) -> np.ndarray:
    """Load an image file as float32 ``[H, W, 3]`` RGB in ``[0, 1]``, at full source precision.

    See the module docstring for how orientation, transparency, colour modes and 16-bit data
    are handled.

    Raises:
        ImageError: "no such file: X", "X is not an image file PIL can read", or a damaged/huge file.
    """
    return _pil_to_float_rgb(_open(path))


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Load an image file as an upright 8-bit ``PIL.Image`` in mode ``"RGB"``.

    16-bit data is scaled to its 8-bit equivalent (``round(v / 65535 * 255)``); any size is
    accepted, including 1×1.

    Args:
        path: the image file.

    Returns:
        A fully loaded RGB image (no file handle kept open).

    Raises:
        ImageError: "no such file: X", "X is not an image file PIL can read", or a damaged/huge file.
    """
    img = _open(path)
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    arr = _pil_to_float_rgb(img)
    return Image.fromarray(np.round(arr * 255.0).astype(np.uint8), mode="RGB")


def _as_float_rgb(img: ImageLike) -> np.ndarray:
    if isinstance(img, Image.Image):
        return _pil_to_float_rgb(img)
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ImageError(f"expected an image array [H, W, 3] or [H, W], got shape {tuple(np.shape(img))}")
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        arr = arr.astype(np.float32) / 65535.0
    else:
        arr = np.clip(arr.astype(np.float32), 0.0, 1.0)  # float arrays are taken to be in [0, 1]
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr


def _center_crop(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return arr[top : top + side, left : left + side]


def _resize(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """Lanczos-resize float ``[H, W, 3]`` one channel at a time in Pillow's 32-bit float mode."""
    if arr.shape[1] == width and arr.shape[0] == height:
        return arr
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(arr[:, :, i]), mode="F").resize(
            (width, height), Image.Resampling.LANCZOS
        ))
        for i in range(arr.shape[2])
    ]
    return np.clip(np.stack(channels, axis=2), 0.0, 1.0)  # Lanczos rings slightly past [0, 1]


def image_to_tensor(img: ImageLike, size: int | None, crop: bool = True) -> "torch.Tensor":
    """Turn an image into a generator-style tensor.

    Args:
        img: a ``PIL.Image`` (any mode; converted as in :func:`load_image_array`) or a NumPy array
            ``[H, W, 3]`` / ``[H, W]`` of dtype uint8 (0–255), uint16 (0–65535) or float (0–1).
        size: output side ``S`` in pixels, or ``None`` to keep the (cropped) native size.
        crop: ``True`` (default) takes the largest centred square first, so nothing is distorted.
            ``False`` keeps the whole picture and resizes it to ``S×S`` *ignoring* the aspect
            ratio (the picture is stretched/squashed); with ``size=None`` it returns the full
            ``[1, 3, H, W]`` image.

    Returns:
        float32 tensor ``[1, 3, S, S]`` (or ``[1, 3, H, W]``, see above) in ``[-1, 1]``, on CPU.
        Resizing is Lanczos in float precision (so 16-bit sources keep their precision) and
        upsamples small images (a 1×1 image becomes a constant square).

    Raises:
        ImageError: the image has zero width or height, or the array has an unusable shape.
        ValueError: ``size`` is not a positive integer.
    """
    import torch

    if size is not None and (not isinstance(size, (int, np.integer)) or size <= 0):
        raise ValueError(f"size must be a positive integer or None, got {size!r}")
    arr = _as_float_rgb(img)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"image has zero size ({arr.shape[1]}×{arr.shape[0]})")
    if crop:
        arr = _center_crop(arr)
    if size is not None:
        arr = _resize(arr, int(size), int(size))
    tensor = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)
    return (tensor * 2.0 - 1.0).contiguous()


def load_image_tensor(path: str | os.PathLike[str], size: int | None, crop: bool = True) -> "torch.Tensor":
    """:func:`load_image_array` then :func:`image_to_tensor`: float32 ``[1, 3, S, S]`` in ``[-1, 1]``.

    Raises:
        ImageError: missing, unreadable or zero-sized image.
    """
    return image_to_tensor(load_image_array(path), size, crop=crop)
