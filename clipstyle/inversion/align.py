"""Optional FFHQ-style face alignment before projection (``clipstyle project --align``).

FFHQ faces (Karras et al. 2019, Appendix A) are cropped by an oriented square derived from 68 facial
landmarks (iBUG layout): its centre lies slightly below the midpoint between the eyes (10% of the way to
the mouth), its x axis follows the eye line corrected by the eye→mouth direction, and its half side is
``max(2.0 × eye distance, 1.8 × eye-to-mouth distance)``. The landmarks come from the optional
``face_alignment`` package (``pip install clipstyle[align]``); without it ``--align`` fails with a
one-line message.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AlignmentError", "face_quad", "align_face", "detect_landmarks"]

INSTALL_HINT = "pip install clipstyle[align] (it installs the face_alignment package)"


class AlignmentError(ValueError):
    """Face alignment is unavailable or found no face. ``str()`` is one line."""


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
    # x axis: the eye line, tilted by the eye→mouth direction turned a quarter turn.
    x = eye_vec - np.array([-mouth_vec[1], mouth_vec[0]])
    x = x / max(np.hypot(*x), 1e-12)
    half = max(np.hypot(*eye_vec) * 2.0, np.hypot(*mouth_vec) * 1.8)
    x = x * half
    y = np.array([-x[1], x[0]])
    centre = eye_mid + mouth_vec * 0.1
    return np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y])


def detect_landmarks(rgb: np.ndarray, device: str = "cpu") -> np.ndarray:
    """68 landmarks ``[68, 2]`` of the largest face in uint8 ``[H, W, 3]``, via ``face_alignment``.

    Raises:
        AlignmentError: the package is not installed (message: :data:`INSTALL_HINT`), or no face is found.
    """
    try:
        import face_alignment  # type: ignore[import-not-found]
    except ImportError:
        raise AlignmentError(f"--align needs a face landmark detector: {INSTALL_HINT}") from None
    kind = getattr(face_alignment.LandmarksType, "TWO_D", None) or getattr(face_alignment.LandmarksType, "_2D")
    detector = face_alignment.FaceAlignment(kind, device=device)
    faces = detector.get_landmarks_from_image(rgb) or []
    if not faces:
        raise AlignmentError("no face was found in the photo; run without --align")
    faces = [np.asarray(f)[:, :2] for f in faces]
    return max(faces, key=lambda f: np.ptp(f[:, 0]) * np.ptp(f[:, 1]))


def align_face(image, size: int, landmarks: np.ndarray | None = None, device: str = "cpu"):
    """Crop a face the FFHQ way and resize it to ``size``².

    Args:
        image: ``PIL.Image`` (RGB).
        size: output side in pixels.
        landmarks: ``[68, 2]``; detected with :func:`detect_landmarks` when None.

    Returns:
        ``PIL.Image`` RGB ``size × size`` (areas outside the photo are filled by edge pixels).

    Raises:
        AlignmentError: no detector installed, no face found, bad landmarks.
    """
    from PIL import Image

    rgb = np.asarray(image.convert("RGB"))
    lm = detect_landmarks(rgb, device) if landmarks is None else np.asarray(landmarks)
    quad = face_quad(lm)
    # Pad by edge replication so a crop reaching past the border does not turn black.
    pad = int(np.ceil(max(0.0, -quad.min(), (quad[:, 0] - rgb.shape[1]).max(), (quad[:, 1] - rgb.shape[0]).max())))
    if pad > 0:
        rgb = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        quad = quad + pad
    side = int(np.ceil(np.hypot(*(quad[3] - quad[0]))))
    work = max(size, min(side, 4 * size))  # sample at roughly the crop's own resolution, then downsize
    out = Image.fromarray(rgb).transform((work, work), Image.Transform.QUAD, tuple(quad.flatten()),
                                         Image.Resampling.BILINEAR)
    return out if work == size else out.resize((size, size), Image.Resampling.LANCZOS)
