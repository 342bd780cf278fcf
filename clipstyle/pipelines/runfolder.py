"""Writing a run's folder: ``result.png``, ``progress.gif``, ``latents.npz``, ``run.json``."""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from clipstyle import __version__
from clipstyle.latents import save_latents
from clipstyle.optimize.loop import OptimizeResult


def versions() -> dict[str, str]:
    """Versions of the software that made a result (for ``run.json``)."""
    import torch

    out = {"clipstyle": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
           "numpy": np.__version__, "platform": platform.platform()}
    try:
        import open_clip

        out["open_clip"] = open_clip.__version__
    except Exception:  # pragma: no cover - open_clip is a dependency
        pass
    return out


def grid_of(batch: np.ndarray) -> np.ndarray:
    """``[N, H, W, C]`` uint8 → one image (a near-square grid for N > 1)."""
    from clipstyle.render.files import make_grid

    return batch[0] if batch.shape[0] == 1 else make_grid(batch)


def save_run(run_dir: Path, result: OptimizeResult, settings: dict[str, Any], network: dict[str, Any],
             extra_json: dict[str, Any] | None = None, z: Any = None, c: Any = None,
             result_image: np.ndarray | None = None, gif_frames: list[np.ndarray] | None = None,
             fps: float = 10.0) -> dict[str, Path]:
    """Write the four outputs of an optimization into ``run_dir`` (atomically; nothing overwritten).

    ``result_image``/``gif_frames`` override the default (grid of the result batch / the loop's frames).
    Returns the written paths by name.
    """
    from clipstyle.io.files import atomic_write_json
    from clipstyle.render.files import save_gif, save_png

    run_dir = Path(run_dir)
    paths = {name: run_dir / file for name, file in
             (("result", "result.png"), ("gif", "progress.gif"), ("latents", "latents.npz"), ("json", "run.json"))}
    final = result_image if result_image is not None else grid_of(result.frames[-1])
    save_png(paths["result"], final)
    frames = gif_frames if gif_frames is not None else [grid_of(f) for f in result.frames]
    save_gif(paths["gif"], frames, fps=fps)
    meta = {"network": network.get("source"), "settings": settings, "interrupted": result.interrupted}
    save_latents(paths["latents"], result.ws, z=z, c=c, meta=meta)
    record = {
        "settings": settings, "network": network, "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "interrupted": result.interrupted, "steps_done": result.steps_done,
        "best_loss": result.best_loss, "best_step": result.best_step,
        "timings": {"seconds": result.seconds,
                    "it_per_s": result.steps_done / result.seconds if result.seconds > 0 else None},
        "loss_history": list(result.history),
        **(extra_json or {}),
    }
    atomic_write_json(paths["json"], record)
    return paths
