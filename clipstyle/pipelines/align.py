"""``align``: crop the largest face of a photo the FFHQ way (:mod:`clipstyle.inversion.align`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clipstyle.pipelines.run import Run

if TYPE_CHECKING:
    from clipstyle.workflows.photo import AlignSettings

__all__ = ["align"]


def align(photo: "str | Path | AlignSettings | None" = None, /, *, device: str = "auto", callback: Any = None,
          stop: Any = None, log: Any = None, quiet: bool = True, **options: Any) -> Run:
    """Align the largest face of ``photo`` to ``size²`` (Karras et al. 2019, App. A: the FFHQ crop from dlib's
    68 landmarks). ``photo`` is the photo's path or an :class:`~clipstyle.workflows.photo.AlignSettings`;
    ``options`` the other settings (``size``). ``device`` and the rest are accepted for the one contract
    (alignment runs on the CPU).

    Returns:
        A :class:`Run` without a latent: ``images`` ``[1, size, size, 3]`` uint8 (``Run.image`` is the
        aligned face), ``extra_json`` with ``faces`` (how many were found), ``quad`` ``[4, 2]`` and
        ``landmarks`` ``[68, 2]`` in photo pixels.

    Raises:
        SettingsError, ImageError: missing/unreadable photo. AlignmentUnavailable: dlib or its model missing.
        AlignmentError: no face found.
    """
    from clipstyle.inversion.align import align_photo
    from clipstyle.io.images import load_image
    from clipstyle.workflows.photo import AlignSettings

    s = AlignSettings.of(photo, **options)
    path = Path(s.photo)
    face = align_photo(load_image(path), s.size)
    arr = np.asarray(face.image, dtype=np.uint8)[None]
    return Run(name=f"aligned-{path.stem}", result=None, settings={"command": "align", **s.to_dict()},
               network={}, images_=arr,
               extra_json={"faces": face.faces, "quad": face.quad.tolist(), "landmarks": face.landmarks.tolist()})
