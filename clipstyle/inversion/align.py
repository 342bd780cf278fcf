"""FFHQ face alignment, offline (``clipstyle align``, ``project --align``, ``edit --align``).

The crop is the FFHQ dataset's (Karras et al. 2019, "A Style-Based Generator Architecture for GANs",
Appendix A), from 68 facial landmarks (iBUG layout):

* eyes e_l, e_r = means of landmarks 36–41 and 42–47, ē = (e_l + e_r)/2; mouth m̄ = midpoint of 48 and 54;
* the oriented square has centre ``c = ē + 0.1·(m̄ − ē)``, x axis along ``(e_r − e_l) − ⟂(m̄ − ē)``
  (the eye line corrected by the eye→mouth direction), half side
  ``s = max(2.0·‖e_r − e_l‖, 1.8·‖m̄ − ē‖)``;
* the photo is first shrunk by an integer factor while the square stays ≥ 2× the output size, cropped to the
  square plus a 10% border, and *reflect-padded* where the square leaves the photo (padding ≥ 30% of the
  side), the padded band blurred (σ = 2% of the side) and faded towards the median colour so no mirrored
  features show (the photo itself is not blurred: the released script's weight ``clip(3m + 1, 0, 1)`` is 1
  everywhere, which blurs the whole face whenever padding happens; we use the ramp ``clip(3m, 0, 1)``);
* the square is resampled (bilinear) at 4× the output size and the result downsized with Lanczos —
  supersampling, so the face is antialiased.

Landmarks come from dlib's frontal face detector and its 68-point shape predictor, whose model file ships in
the ``face-recognition-models`` package (``pip install clipstyle[align]``: ``dlib-bin`` +
``face-recognition-models``), so nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipstyle.errors import UsageError

__all__ = [
    "AlignedFace",
    "AlignmentError",
    "align_face",
    "align_photo",
    "detect_faces",
    "detect_landmarks",
    "face_quad",
    "predictor_path",
    "quad_to_output",
]

INSTALL_HINT = "pip install clipstyle[align] (dlib-bin and face-recognition-models)"


class AlignmentError(UsageError):
    """Face alignment is unavailable or found no face. ``str()`` is one line."""


class AlignmentUnavailable(AlignmentError):
    """The landmark detector is not installed (a usage problem: install the extra)."""


@dataclass(frozen=True)
class AlignedFace:
    """Result of :func:`align_photo`: ``image`` (PIL RGB size²), ``quad`` ``[4, 2]`` (the square in the photo,
    corners top-left, bottom-left, bottom-right, top-right), ``landmarks`` ``[68, 2]`` (x, y in the photo),
    ``faces`` (how many faces were detected; the largest was aligned)."""

    image: object
    quad: np.ndarray
    landmarks: np.ndarray
    faces: int


def face_quad(landmarks: np.ndarray) -> np.ndarray:
    """The crop square for 68 landmarks ``[68, 2]`` (x, y pixels): corners ``[4, 2]`` in the order
    top-left, bottom-left, bottom-right, top-right (PIL's ``QUAD`` transform order).

    Raises:
        AlignmentError: not ``[68, 2]``.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise AlignmentError(f"face alignment needs 68 landmarks [68, 2], got shape {list(lm.shape)}")
    eye_left, eye_right = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    eye_mid = (eye_left + eye_right) / 2
    eye_vec = eye_right - eye_left
    mouth_mid = (lm[48] + lm[54]) / 2
    mouth_vec = mouth_mid - eye_mid
    x = eye_vec - np.array([-mouth_vec[1], mouth_vec[0]])
    x = x / max(np.hypot(*x), 1e-12)
    x = x * max(np.hypot(*eye_vec) * 2.0, np.hypot(*mouth_vec) * 1.8)
    y = np.array([-x[1], x[0]])
    centre = eye_mid + mouth_vec * 0.1
    return np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y])


def quad_to_output(points: np.ndarray, quad: np.ndarray, size: int) -> np.ndarray:
    """Where photo points ``[K, 2]`` land in the aligned ``size²`` image cropped by ``quad`` (pixel units)."""
    quad = np.asarray(quad, dtype=np.float64)
    origin, ex, ey = quad[0], quad[3] - quad[0], quad[1] - quad[0]
    rel = np.asarray(points, dtype=np.float64) - origin
    return np.stack([rel @ ex / (ex @ ex), rel @ ey / (ey @ ey)], axis=1) * size


def predictor_path() -> Path:
    """The 68-landmark dlib model shipped by ``face-recognition-models`` (found without importing it: its
    ``__init__`` needs ``pkg_resources``).

    Raises:
        AlignmentUnavailable: the package (or the file) is missing.
    """
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / "models" / "shape_predictor_68_face_landmarks.dat"
        if path.is_file():
            return path
    raise AlignmentUnavailable(f"--align needs dlib's 68-landmark model: {INSTALL_HINT}")


def _dlib():
    try:
        import dlib  # type: ignore[import-not-found]
    except ImportError:
        raise AlignmentUnavailable(f"--align needs the dlib face landmark detector: {INSTALL_HINT}") from None
    return dlib


def detect_faces(rgb: np.ndarray) -> list[np.ndarray]:
    """68 landmarks ``[68, 2]`` (x, y) of every face found in uint8 ``[H, W, 3]``, largest first.

    Raises:
        AlignmentUnavailable: dlib or the model file is missing.
    """
    dlib = _dlib()
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(predictor_path()))
    rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    rects = list(detector(rgb, 1))
    rects.sort(key=lambda r: r.width() * r.height(), reverse=True)
    out = []
    for rect in rects:
        shape = predictor(rgb, rect)
        out.append(np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64))
    return out


def detect_landmarks(rgb: np.ndarray, device: str = "cpu") -> np.ndarray:
    """68 landmarks ``[68, 2]`` of the largest face in uint8 ``[H, W, 3]`` (``device`` is unused: dlib runs on
    the CPU).

    Raises:
        AlignmentUnavailable: no detector installed. AlignmentError: no face found.
    """
    faces = detect_faces(rgb)
    if not faces:
        raise AlignmentError("no face was found in the photo; run without --align")
    return faces[0]


def _pad_reflect(img: np.ndarray, pad: tuple[int, int, int, int], qsize: float) -> np.ndarray:
    """Reflect-pad ``img`` (uint8 [H, W, 3]) by (left, top, right, bottom); blur and fade the padded band."""
    from PIL import Image, ImageFilter

    left, top, right, bottom = pad
    out = np.pad(img.astype(np.float32), ((top, bottom), (left, right), (0, 0)), mode="reflect")
    h, w = out.shape[:2]
    yy, xx = np.ogrid[:h, :w]

    def ramp(pos: np.ndarray, before: int, after: int, n: int) -> np.ndarray:  # 0 at the border, 1 inside
        a = pos / before if before > 0 else np.full(pos.shape, np.inf)
        b = (n - 1 - pos) / after if after > 0 else np.full(pos.shape, np.inf)
        return np.minimum(np.minimum(a, b), 1.0)

    fx, fy = ramp(xx.astype(np.float32), left, right, w), ramp(yy.astype(np.float32), top, bottom, h)
    mask = np.maximum(1.0 - fx, 1.0 - fy)[..., None].astype(np.float32)
    radius = max(qsize * 0.02, 0.5)
    blurred = np.asarray(Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    # FFHQ's script weights the blur by clip(3·mask + 1, 0, 1), which is 1 everywhere (the whole photo is
    # blurred whenever it pads); the intended ramp, clip(3·mask, 0, 1), leaves the photo itself sharp.
    out += (blurred - out) * np.clip(mask * 3.0, 0.0, 1.0)
    out += (np.median(out, axis=(0, 1)) - out) * np.clip(mask, 0.0, 1.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def crop_quad(rgb: np.ndarray, quad: np.ndarray, size: int, supersample: int = 4):
    """Resample the oriented square ``quad`` of ``rgb`` (uint8 [H, W, 3]) to a ``size²`` PIL image the FFHQ
    way (shrink, crop, reflect-pad, supersampled bilinear, Lanczos down)."""
    from PIL import Image

    img = Image.fromarray(rgb)
    quad = np.asarray(quad, dtype=np.float64).copy()
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        img = img.resize((int(np.rint(img.size[0] / shrink)), int(np.rint(img.size[1] / shrink))),
                         Image.Resampling.LANCZOS)
        quad /= shrink
        qsize /= shrink
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo, hi = np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int)
    crop = (max(lo[0] - border, 0), max(lo[1] - border, 0), min(hi[0] + border, img.size[0]),
            min(hi[1] + border, img.size[1]))
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[:2]
    lo, hi = np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int)
    pad = [max(-lo[0] + border, 0), max(-lo[1] + border, 0), max(hi[0] - img.size[0] + border, 0),
           max(hi[1] - img.size[1] + border, 0)]
    if max(pad) > border - 4:
        pad = [max(p, int(np.rint(qsize * 0.3))) for p in pad]
        arr = np.asarray(img)
        arr = _pad_reflect_safe(arr, tuple(pad), qsize)
        img = Image.fromarray(arr)
        quad += pad[:2]
    work = size * supersample
    out = img.transform((work, work), Image.Transform.QUAD, tuple((quad + 0.5).flatten()), Image.Resampling.BILINEAR)
    return out.resize((size, size), Image.Resampling.LANCZOS) if work != size else out


def _pad_reflect_safe(arr: np.ndarray, pad: tuple[int, int, int, int], qsize: float) -> np.ndarray:
    """:func:`_pad_reflect`, repeated while a pad exceeds what one reflection of the image can give."""
    left, top, right, bottom = pad
    while left or top or right or bottom:
        h, w = arr.shape[:2]
        step = (min(left, w - 1), min(top, h - 1), min(right, w - 1), min(bottom, h - 1))
        if max(step) == 0:  # a 1-pixel image: replicate
            arr = np.pad(arr, ((top, bottom), (left, right), (0, 0)), mode="edge")
            break
        arr = _pad_reflect(arr, step, qsize)
        left, top, right, bottom = left - step[0], top - step[1], right - step[2], bottom - step[3]
    return arr


def align_photo(image, size: int, landmarks: np.ndarray | None = None) -> AlignedFace:
    """Detect the largest face of ``image`` (PIL) and crop it the FFHQ way to ``size²``.

    Raises:
        AlignmentUnavailable: dlib / the model is missing. AlignmentError: no face, bad landmarks, size < 1.
    """
    if size < 1:
        raise AlignmentError(f"the aligned size must be >= 1, got {size}")
    rgb = np.asarray(image.convert("RGB"))
    if landmarks is None:
        faces = detect_faces(rgb)
        if not faces:
            raise AlignmentError("no face was found in the photo; run without --align")
        lm, count = faces[0], len(faces)
    else:
        lm, count = np.asarray(landmarks, dtype=np.float64), 1
    quad = face_quad(lm)
    return AlignedFace(image=crop_quad(rgb, quad, size), quad=quad, landmarks=lm, faces=count)


def align_face(image, size: int, landmarks: np.ndarray | None = None, device: str = "cpu"):
    """:func:`align_photo`'s image only (``PIL.Image`` RGB ``size × size``); ``device`` is unused."""
    return align_photo(image, size, landmarks).image
