"""Turning generator output into files: uint8 conversion, PNG, GIF, MP4 and image grids.

Conventions (see DESIGN.md): generator images are float ``[N, C, H, W]`` with nominal range
``[-1, 1]``; they become uint8 with ``floor(clamp(x * 127.5 + 128, 0, 255))``, exactly as
NVIDIA's ``gen_images.py`` does. Arrays handed to the writers are uint8 ``[H, W, C]`` (or
``[H, W]``) with C = 1 (grayscale), 3 (RGB) or 4 (RGBA).

Every file is written atomically through :mod:`clipstyle.io.files`, so an interrupted run never
leaves a truncated image behind. These writers overwrite an existing file at ``path``; callers
that must not (user-named outputs) check with :func:`clipstyle.io.files.refuse_overwrite` first.
"""

from __future__ import annotations

import importlib.util
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from clipstyle.errors import UsageError, UserRuntimeError
from clipstyle.io.files import atomic_temp_path, atomic_write_bytes

if TYPE_CHECKING:
    import torch

__all__ = [
    "RenderError",
    "as_uint8_image",
    "make_grid",
    "save_gif",
    "save_mp4",
    "IMAGE_FORMATS",
    "image_format",
    "save_image",
    "save_png",
    "side_by_side",
    "to_uint8",
]

ImageInput = Union[np.ndarray, "torch.Tensor"]
VIDEO_INSTALL_HINT = "pip install imageio-ffmpeg (or pip install clipstyle[video])"


class RenderError(UserRuntimeError):
    """An image or video could not be produced; ``str()`` is one line saying what to do."""


def _is_tensor(x: Any) -> bool:
    return hasattr(x, "detach") and hasattr(x, "permute")


def to_uint8(x: "torch.Tensor") -> np.ndarray:
    """Convert generator output to uint8 pixels.

    Args:
        x: float tensor ``[N, C, H, W]`` (or ``[C, H, W]``, treated as N = 1) in nominal range
            ``[-1, 1]``, any device, gradients allowed (it is detached). C must be 1, 3 or 4.

    Returns:
        ``np.ndarray`` uint8 ``[N, H, W, C]``: ``floor(clamp(x * 127.5 + 128, 0, 255))``, so
        −1 → 0, 0 → 128, 1 → 255. NaN becomes 0 (black). C = 1 stays a single channel.

    Raises:
        RenderError: wrong number of dimensions or channels.
    """
    import torch

    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[1] not in (1, 3, 4):
        raise RenderError(f"expected images [N, C, H, W] with C in (1, 3, 4), got shape {tuple(x.shape)}")
    y = (x.detach().to(torch.float32) * 127.5 + 128).clamp(0, 255)
    y = torch.nan_to_num(y, nan=0.0)
    return y.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # float → uint8 truncates = floor here


def as_uint8_image(img: ImageInput) -> np.ndarray:
    """Normalise one image to uint8 ``[H, W, C]`` (C in 1, 3, 4).

    Accepts a uint8 NumPy array ``[H, W]``/``[H, W, C]``, or a tensor ``[1, C, H, W]`` /
    ``[C, H, W]`` (float in ``[-1, 1]``, converted with :func:`to_uint8`; a uint8 tensor is
    only transposed).

    Raises:
        RenderError: wrong dtype (e.g. a float NumPy array, whose range is ambiguous), shape or
            channel count, or a batch of more than one image.
    """
    if _is_tensor(img):
        t = img.detach()
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise RenderError(f"expected one image, got a batch of {t.shape[0]}; save them one by one")
            t = t[0]
        if t.ndim != 3:
            raise RenderError(f"expected an image tensor [C, H, W] or [1, C, H, W], got shape {tuple(img.shape)}")
        if str(t.dtype) == "torch.uint8":
            arr = t.permute(1, 2, 0).cpu().numpy()
        else:
            arr = to_uint8(t)[0]
    else:
        arr = np.asarray(img)
        if arr.dtype != np.uint8:
            raise RenderError(
                f"expected a uint8 image array, got dtype {arr.dtype}; convert float images with render.to_uint8"
            )
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise RenderError(f"expected an image [H, W, C] with C in (1, 3, 4), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise RenderError(f"cannot save an empty image of shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _to_pil(arr: np.ndarray) -> Any:
    from PIL import Image

    if arr.shape[2] == 1:
        return Image.fromarray(arr[:, :, 0], mode="L")
    return Image.fromarray(arr, mode="RGB" if arr.shape[2] == 3 else "RGBA")


def save_png(path: str | os.PathLike[str], img: ImageInput, *, metadata: Mapping[str, str] | None = None) -> Path:
    """Write one image as a PNG, atomically.

    Args:
        path: destination file (parent folder must exist); replaced if it exists.
        img: see :func:`as_uint8_image` (uint8 ``[H, W, C]`` array or a ``[1, C, H, W]``/``[C, H, W]`` tensor).
        metadata: optional text chunks (e.g. ``{"prompt": ..., "seed": "1"}``) stored in the PNG.

    Returns:
        ``Path(path)``.

    Raises:
        RenderError: unusable image (see :func:`as_uint8_image`).
    """
    from PIL.PngImagePlugin import PngInfo

    pil = _to_pil(as_uint8_image(img))
    info = None
    if metadata:
        info = PngInfo()
        for key, value in metadata.items():
            info.add_itxt(str(key), str(value))
    buf = io.BytesIO()
    pil.save(buf, format="PNG", pnginfo=info)
    return atomic_write_bytes(path, buf.getvalue())


#: Still-image formats by file extension (PIL's format names): what ``render --out`` and the like write.
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
                 ".tiff": "TIFF"}


def image_format(path: str | os.PathLike[str]) -> str:
    """The PIL format that ``path``'s extension names (``x.jpg`` → ``JPEG``).

    Raises:
        UsageError: an extension that is no still-image format we write (checked before any work).
    """
    suffix = Path(path).suffix.lower()
    fmt = IMAGE_FORMATS.get(suffix)
    if fmt is None:
        raise UsageError(f"cannot write an image as {suffix or 'a file without extension'} ({path}); use one of "
                         f"{', '.join(sorted(IMAGE_FORMATS))}")
    return fmt


def save_image(path: str | os.PathLike[str], img: ImageInput) -> Path:
    """Write one image in the format its extension names (:data:`IMAGE_FORMATS`; JPEG at quality 95), atomically.

    Args:
        path: destination file (parent folder must exist); replaced if it exists.
        img: see :func:`as_uint8_image`.

    Raises:
        UsageError: an unknown extension. RenderError: unusable image.
    """
    fmt = image_format(path)
    if fmt == "PNG":
        return save_png(path, img)
    pil = _to_pil(as_uint8_image(img))
    if fmt == "JPEG" and pil.mode == "RGBA":
        pil = pil.convert("RGB")  # JPEG has no alpha
    buf = io.BytesIO()
    pil.save(buf, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    return atomic_write_bytes(path, buf.getvalue())


def _frames_uint8(frames: Sequence[ImageInput]) -> list[np.ndarray]:
    if len(frames) == 0:
        raise RenderError("no frames to write")
    out = [as_uint8_image(f) for f in frames]
    first = out[0].shape
    for i, f in enumerate(out):
        if f.shape[:2] != first[:2]:
            raise RenderError(f"all frames must have the same size: frame 0 is {first[1]}×{first[0]}, "
                              f"frame {i} is {f.shape[1]}×{f.shape[0]}")
    return out


def save_gif(
    path: str | os.PathLike[str],
    frames: Sequence[ImageInput],
    fps: float = 10.0,
    *,
    duration_ms: int | None = None,
    loop: int | None = 0,
    max_size: int | None = None,
) -> Path:
    """Write an animated GIF, atomically.

    Each frame is quantised to its own 256-colour median-cut palette with Floyd–Steinberg
    dithering (RGBA frames are flattened on white first; GIF has only 1-bit transparency).
    Consecutive identical frames are merged by Pillow into one longer frame.

    Args:
        path: destination file (parent folder must exist); replaced if it exists.
        frames: images as accepted by :func:`as_uint8_image`, all the same width and height.
        fps: frames per second, used when ``duration_ms`` is not given.
        duration_ms: display time of each frame in milliseconds. GIF stores hundredths of a
            second and most viewers treat delays under 20 ms as 100 ms, so the value is
            clamped to at least 20.
        loop: 0 = loop forever (default), ``k`` > 0 = the GIF loop count ``k``, ``None`` = play once.
        max_size: if given, frames whose longer side exceeds it are downscaled (Lanczos, aspect
            kept) so that side is ``max_size`` — keeps ``progress.gif`` of 1024² runs small.

    Returns:
        ``Path(path)``.

    Raises:
        RenderError: no frames, frames of different sizes, bad image data, ``fps <= 0`` or
            ``max_size < 1``.
    """
    from PIL import Image

    if max_size is not None and max_size < 1:
        raise RenderError(f"max_size must be >= 1, got {max_size}")
    arrays = _frames_uint8(frames)
    if duration_ms is None:
        if not fps or fps <= 0:
            raise RenderError(f"fps must be positive, got {fps}")
        duration_ms = round(1000.0 / fps)
    duration_ms = max(20, int(duration_ms))
    pal_frames = []
    for arr in arrays:
        if arr.shape[2] == 4:
            alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
            arr = np.round(arr[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
        if arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        rgb = Image.fromarray(arr, mode="RGB")
        if max_size is not None and max(rgb.size) > max_size:
            scale = max_size / max(rgb.size)
            new_size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
            rgb = rgb.resize(new_size, Image.Resampling.LANCZOS)
        pal_frames.append(rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG))
    kwargs: dict[str, Any] = {"save_all": True, "append_images": pal_frames[1:], "duration": duration_ms}
    if loop is not None:
        kwargs["loop"] = int(loop)
    buf = io.BytesIO()
    pal_frames[0].save(buf, format="GIF", **kwargs)
    return atomic_write_bytes(path, buf.getvalue())


def video_available() -> bool:
    """True if MP4 writing is possible (``imageio-ffmpeg`` is installed)."""
    return importlib.util.find_spec("imageio_ffmpeg") is not None


def save_mp4(
    path: str | os.PathLike[str], frames: Sequence[ImageInput], fps: float = 30.0, *, quality: int = 8
) -> Path:
    """Write an H.264 MP4 (yuv420p, plays everywhere), atomically.

    Odd widths/heights are padded by one edge-replicated row/column (H.264 with 4:2:0 chroma
    needs even sizes); nothing is rescaled. Alpha is flattened on white, grayscale expanded.

    Args:
        path: destination file (parent folder must exist); replaced if it exists.
        frames: images as accepted by :func:`as_uint8_image`, all the same size.
        fps: frames per second (> 0).
        quality: imageio-ffmpeg quality 0–10 (10 best).

    Returns:
        ``Path(path)``.

    Raises:
        RenderError: ``imageio-ffmpeg`` is not installed (the message says how to install it),
            ffmpeg fails, or the frames are unusable.
    """
    if not video_available():
        raise RenderError(f"writing MP4 needs the imageio-ffmpeg package: {VIDEO_INSTALL_HINT}; or write a GIF instead")
    if not fps or fps <= 0:
        raise RenderError(f"fps must be positive, got {fps}")
    import imageio.v2 as imageio

    arrays = _frames_uint8(frames)
    h, w = arrays[0].shape[:2]
    pad = ((0, h % 2), (0, w % 2), (0, 0))
    dest = Path(path)
    try:
        with atomic_temp_path(dest) as tmp:
            writer = imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                        quality=quality, pixelformat="yuv420p", macro_block_size=2)
            with writer:
                for arr in arrays:
                    if arr.shape[2] == 4:
                        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
                        arr = np.round(arr[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
                    if arr.shape[2] == 1:
                        arr = np.repeat(arr, 3, axis=2)
                    writer.append_data(np.pad(arr, pad, mode="edge") if any(p[1] for p in pad) else arr)
    except (OSError, RuntimeError, ValueError) as err:
        if isinstance(err, RenderError):
            raise
        raise RenderError(f"ffmpeg could not write {dest}: {' '.join(str(err).split())}") from err
    return dest


def make_grid(
    images: np.ndarray | Sequence[ImageInput] | "torch.Tensor",
    rows: int | None = None,
    cols: int | None = None,
    pad: int = 0,
    pad_value: int = 255,
) -> np.ndarray:
    """Tile images row by row into one uint8 image.

    Args:
        images: uint8 ``[N, H, W, C]`` array, a float tensor ``[N, C, H, W]`` in ``[-1, 1]``, or a
            list of images accepted by :func:`as_uint8_image`. Sizes may differ: every cell is as
            large as the largest image, smaller images are centred in their cell. Channel counts
            are unified (gray → RGB, RGB → RGBA with opaque alpha).
        rows, cols: grid shape. Neither given: ``cols = ceil(sqrt(N))``; one given: the other is
            derived. Unused cells are filled with ``pad_value``.
        pad: pixels of ``pad_value`` between cells (not around the border).
        pad_value: 0–255 fill value (255 = white).

    Returns:
        uint8 ``[rows*H + (rows-1)*pad, cols*W + (cols-1)*pad, C]``.

    Raises:
        RenderError: no images, ``rows * cols < N``, non-positive rows/cols, negative pad.
    """
    if _is_tensor(images):
        items = list(to_uint8(images))  # type: ignore[arg-type]
    elif isinstance(images, np.ndarray) and images.ndim == 4:
        items = list(images)
    else:
        items = list(images)  # type: ignore[arg-type]
    arrays = [as_uint8_image(im) for im in items]
    n = len(arrays)
    if n == 0:
        raise RenderError("make_grid needs at least one image")
    if pad < 0:
        raise RenderError(f"pad must be >= 0, got {pad}")
    if rows is None and cols is None:
        cols = math.ceil(math.sqrt(n))
    if cols is None:
        cols = math.ceil(n / rows)  # type: ignore[operator]
    if rows is None:
        rows = math.ceil(n / cols)
    if rows <= 0 or cols <= 0 or rows * cols < n:
        raise RenderError(f"a {rows}×{cols} grid cannot hold {n} images")
    channels = max(a.shape[2] for a in arrays)
    if channels > 1:
        fixed = []
        for a in arrays:
            if a.shape[2] == 1:
                a = np.repeat(a, 3, axis=2)
            if channels == 4 and a.shape[2] == 3:
                a = np.concatenate([a, np.full(a.shape[:2] + (1,), 255, np.uint8)], axis=2)
            fixed.append(a)
        arrays = fixed
    cell_h = max(a.shape[0] for a in arrays)
    cell_w = max(a.shape[1] for a in arrays)
    grid = np.full((rows * cell_h + (rows - 1) * pad, cols * cell_w + (cols - 1) * pad, channels),
                   pad_value, dtype=np.uint8)
    for i, a in enumerate(arrays):
        r, c = divmod(i, cols)
        top = r * (cell_h + pad) + (cell_h - a.shape[0]) // 2
        left = c * (cell_w + pad) + (cell_w - a.shape[1]) // 2
        grid[top : top + a.shape[0], left : left + a.shape[1]] = a
    return grid


def side_by_side(*images: ImageInput, pad: int = 0, pad_value: int = 255) -> np.ndarray:
    """Place images left to right in one row (e.g. source photo | edit). See :func:`make_grid`."""
    return make_grid(list(images), rows=1, cols=len(images) or 1, pad=pad, pad_value=pad_value)
