"""Logging a finished run folder: what ``clipstyle batch --log`` does for each job once its folder is written.

A batch optimizes several jobs in one stacked loop, possibly on Ray workers, so its trackers are fed from
the folders the driver writes: ``run.json``'s ``loss_history`` (every step's loss terms and learning rate,
the same numbers a live tracker gets), the frames of ``progress.gif`` as previews (one every ``save_every``
steps), ``result.png``, the settings and figures of ``run.json``, and the folder itself (MLflow's artifacts).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from clipstyle.tracking.base import TrackedImage, flat_metrics, scalar_tag

__all__ = ["log_run_folder"]

#: Keys of ``run.json`` that are not a workflow's own figures.
_STANDARD = {"settings", "network", "versions", "created", "interrupted", "steps_done", "best_loss", "best_step",
             "timings", "loss_history"}


def log_run_folder(log: Sequence[Any], folder: str | Path, *, name: str, group: str | None = None,
                   warn: Callable[[str], None] | None = None) -> None:
    """Log the complete run folder ``folder`` as one tracker run named ``name`` (grouped under ``group``).

    Never raises because of a tracker or an unreadable file: a problem is one warning (see
    :class:`~clipstyle.tracking.Trackers`).

    Raises:
        LogSpecError / MissingExtraError: a bad spec (check them before the batch starts).
    """
    from clipstyle.tracking import open_trackers

    folder = Path(folder)
    with open_trackers(log, name, group=group, preview_every=0, warn=warn) as trk:
        try:
            record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
            settings = record.get("settings") or {}
            trk.log_settings(settings)
            for rec in record.get("loss_history") or ():
                trk.log_scalars(int(rec["step"]), {scalar_tag(k): float(v) for k, v in rec.items() if k != "step"})
            steps = int(record.get("steps_done") or 0)
            every = int(settings.get("save_every") or 0)
            if every > 0:
                for i, frame in enumerate(_gif_frames(folder / "progress.gif")[:-1]):  # the last is the result
                    trk.put_image("preview", i * every, TrackedImage(frame))
            summary = flat_metrics({k: v for k, v in record.items() if k not in _STANDARD})
            best = record.get("best_loss")
            if isinstance(best, (int, float)) and math.isfinite(best):
                summary["loss/best"] = float(best)
            if summary:
                trk.log_scalars(steps, summary)
            trk.put_image("result", steps, TrackedImage(_png_array(folder / "result.png")))
            trk.put_folder(folder)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            trk.report(f"experiment tracking: could not read {folder}: {type(exc).__name__}: {exc}")


def _png_array(path: Path) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _gif_frames(path: Path) -> list[Any]:
    import numpy as np
    from PIL import Image, ImageSequence

    if not path.is_file():
        return []
    with Image.open(path) as im:
        return [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
