"""Deprecated: ``save_run`` writes through :class:`~clipstyle.pipelines.run.Run` (the one ``run.json`` writer).

Kept only for callers not yet moved to returning a ``Run`` (``cli/photo.py`` until the photo pipelines
land); remove this module once nothing imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clipstyle.optimize.loop import OptimizeResult
from clipstyle.pipelines.run import Run, grid_of, versions

__all__ = ["save_run", "grid_of", "versions"]


def save_run(run_dir: Path, result: OptimizeResult, settings: dict[str, Any], network: dict[str, Any],
             extra_json: dict[str, Any] | None = None, z: Any = None, c: Any = None,
             result_image: np.ndarray | None = None, gif_frames: list[np.ndarray] | None = None,
             fps: float = 10.0) -> dict[str, Path]:
    """``Run(...).write_into(run_dir)``: the four outputs of an optimization into the empty ``run_dir``."""
    run = Run(name=Path(run_dir).name, result=result, settings=settings, network=network, z=z, c=c,
              extra_json=extra_json or {}, result_image=result_image,
              gif_frames=tuple(gif_frames) if gif_frames is not None else None, fps=fps)
    return run.write_into(Path(run_dir))
