"""``align``: crop the largest face of a photo the FFHQ way (:mod:`clipstyle.inversion.align`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipstyle.pipelines.run import Run

__all__ = ["align"]


def align(photo: str | Path, *, size: int = 1024) -> Run:
    """Align the largest face of ``photo`` to ``size²``.

    Returns:
        A :class:`Run` without a latent: ``images`` ``[1, size, size, 3]`` uint8 (``Run.image`` is the
        aligned face), ``extra_json`` with ``faces`` (how many were found), ``quad`` ``[4, 2]`` and
        ``landmarks`` ``[68, 2]`` in photo pixels.

    Raises:
        ImageError: missing/unreadable photo. AlignmentUnavailable: dlib or its model missing.
        AlignmentError: no face found.
    """
    from clipstyle.inversion.align import align_photo
    from clipstyle.io.images import load_image

    photo = Path(photo)
    face = align_photo(load_image(photo), size)
    arr = np.asarray(face.image, dtype=np.uint8)[None]
    return Run(name=f"aligned-{photo.stem}", result=None, settings={"command": "align", "photo": str(photo),
                                                                     "size": size},
               network={}, images_=arr,
               extra_json={"faces": face.faces, "quad": face.quad.tolist(), "landmarks": face.landmarks.tolist()})
