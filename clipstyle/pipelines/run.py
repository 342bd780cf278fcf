"""The result of every workflow: a frozen :class:`Run` that can write its run folder.

A pipeline (``text_to_image``, ``project``, ``edit``…) returns a :class:`Run`; the CLI calls
:meth:`Run.save` and prints the folder, the UI shows :attr:`Run.image` and offers the files, a batch job
saves it under its id. The folder is written into a hidden staging folder beside the target and renamed
into place in one step, so a folder that exists under its final name is always complete (a run killed
at any moment leaves at most a ``.staging-*`` folder, never a half-written run).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from clipstyle.optimize.loop import OptimizeResult

#: The file whose presence marks a complete run folder (written last inside the staging folder).
RUN_RECORD = "run.json"


@dataclass(frozen=True)
class Run:
    """One workflow's outcome.

    Attributes:
        name: what the run folder is named after (a prompt, a photo's stem); slugified on save.
        result: the optimization's :class:`~clipstyle.optimize.loop.OptimizeResult` (``ws`` ``[N, num_ws,
            w_dim]`` float32 CPU, ``frames`` uint8 ``[N, H, W, C]``, loss ``history``), or ``None`` for
            workflows without an optimization (``generate``, ``mix_grid``…; then ``ws_``/``images_`` hold them).
        settings: every setting of the run (the pipeline's keyword arguments, resolved defaults included).
        network: ``G.describe()`` of the generator used.
        z, c: the start ``z`` ``[N, z_dim]`` and labels ``[N, c_dim]`` when known.
        extra_json: more top-level keys for ``run.json`` (metrics such as PSNR, identity similarity).
        extra_images: more PNGs by file name (``item0.png``, ``before.png``…), uint8 ``[H, W, C]``.
        extra_arrays: more arrays stored in ``latents.npz`` (projection noise maps…).
        extra_gifs: more GIFs by file name (``block03.gif``…), each a sequence of uint8 ``[H, W, C]`` frames.
        extra_latents: more latent files by name (``seed0042.npz``…), each ``{"ws": [N, num_ws, w_dim],
            "z": …, "c": …, "meta": {…}}`` (``z``/``c``/``meta`` optional), written with ``save_latents``.
        result_image: the image written as ``result.png`` (default: a grid of the final batch).
        gif_frames: frames of ``progress.gif`` (default: a grid per saved step of ``result.frames``).
        ws_, images_: ``ws`` and final images for workflows without an optimization.
        meta: more keys of the ``meta`` stored in ``latents.npz`` (keyframes, strengths…).
    """

    name: str
    result: OptimizeResult | None
    settings: Mapping[str, Any]
    network: Mapping[str, Any]
    z: Any = None
    c: Any = None
    extra_json: Mapping[str, Any] = field(default_factory=dict)
    extra_images: Mapping[str, np.ndarray] = field(default_factory=dict)
    extra_arrays: Mapping[str, np.ndarray] = field(default_factory=dict)
    result_image: np.ndarray | None = None
    gif_frames: tuple[np.ndarray, ...] | None = None
    ws_: torch.Tensor | None = None
    images_: np.ndarray | None = None
    fps: float = 10.0
    extra_gifs: Mapping[str, Any] = field(default_factory=dict)
    extra_latents: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ws(self) -> torch.Tensor:
        """Final latent ``[N, num_ws, w_dim]`` float32 (the best so far when interrupted)."""
        if self.result is not None:
            return self.result.ws
        if self.ws_ is None:
            raise AttributeError("this run has no latent")
        return self.ws_

    @property
    def images(self) -> np.ndarray:
        """Final images ``[N, H, W, C]`` uint8."""
        if self.result is not None and self.result.frames:
            return self.result.frames[-1]
        if self.images_ is None:
            raise AttributeError("this run has no images")
        return self.images_

    @property
    def image(self):
        """``result.png`` as a PIL image (a grid for a batch)."""
        from PIL import Image

        arr = self.result_image if self.result_image is not None else grid_of(self.images)
        return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)

    @property
    def frames(self) -> tuple[np.ndarray, ...]:
        """The frames of ``progress.gif``, each ``[H, W, C]`` uint8."""
        if self.gif_frames is not None:
            return tuple(self.gif_frames)
        if self.result is not None:
            return tuple(grid_of(f) for f in self.result.frames)
        return (grid_of(self.images),)

    @property
    def history(self) -> tuple[dict[str, float], ...]:
        """One dict per optimization step (``step``, ``lr``, ``loss`` and each loss term)."""
        return self.result.history if self.result is not None else ()

    @property
    def interrupted(self) -> bool:
        """Whether the optimization was stopped (Ctrl-C, ``stop()``) and the best so far kept."""
        return bool(self.result is not None and self.result.interrupted)

    def save(self, outdir: str | os.PathLike[str], name: str | None = None) -> Path:
        """Write the run folder ``outdir/<slug of name>`` (``-0001``… when taken) and return it.

        Files: ``result.png``, ``progress.gif``, ``latents.npz`` (``ws``, ``w``, ``z``, ``c``, ``meta`` and
        the extra arrays; not for a run without a latent, such as ``align``'s), ``run.json`` (settings, network, versions, history, timings, extra keys) and
        the extra PNGs. Everything is written into ``outdir/.staging-<slug>-<pid>`` first and renamed
        onto the freshly claimed (empty) folder, so the final folder appears complete or not at all.

        Raises:
            OSError: ``outdir`` cannot be created or written.
        """
        from clipstyle.io.files import make_run_dir

        outdir = Path(outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        staging = outdir / f".staging-{os.getpid()}-{id(self):x}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            self.write_into(staging)
            target = make_run_dir(outdir, name if name is not None else self.name)
            os.replace(staging, target)  # the claimed folder is empty: POSIX rename replaces it atomically
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    def write_into(self, folder: Path) -> dict[str, Path]:
        """Write the run's files into an existing, empty ``folder`` (no staging); returns them by name."""
        from clipstyle.io.files import atomic_write_json
        from clipstyle.latents import save_latents
        from clipstyle.render.files import save_gif, save_png

        folder = Path(folder)
        paths = {"result": folder / "result.png", "gif": folder / "progress.gif",
                 "latents": folder / "latents.npz", "json": folder / RUN_RECORD}
        save_png(paths["result"], self.result_image if self.result_image is not None else grid_of(self.images))
        save_gif(paths["gif"], list(self.frames), fps=self.fps)
        for file, img in self.extra_images.items():
            paths[file] = folder / file
            save_png(paths[file], img)
        for file, frames in self.extra_gifs.items():
            paths[file] = folder / file
            save_gif(paths[file], list(frames), fps=self.fps)
        for file, item in self.extra_latents.items():
            paths[file] = folder / file
            save_latents(paths[file], item["ws"], z=item.get("z"), c=item.get("c"), meta=item.get("meta"))
        if self.result is None and self.ws_ is None:  # a run without a latent (align): no latents.npz
            del paths["latents"]
            atomic_write_json(paths["json"], self.record())
            return paths
        meta = {"network": self.network.get("source"), "settings": dict(self.settings),
                "interrupted": self.interrupted, **dict(self.meta)}
        save_latents(paths["latents"], self.ws, z=self.z, c=self.c, meta=meta)
        if self.extra_arrays:
            from clipstyle.inversion.files import add_arrays

            add_arrays(paths["latents"], self.extra_arrays)
        atomic_write_json(paths["json"], self.record())
        return paths

    def record(self) -> dict[str, Any]:
        """The content of ``run.json``."""
        import time

        rec: dict[str, Any] = {"settings": dict(self.settings), "network": dict(self.network),
                               "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        r = self.result
        if r is not None:
            rec.update({"interrupted": r.interrupted, "steps_done": r.steps_done, "best_loss": r.best_loss,
                        "best_step": r.best_step, "precision": getattr(r, "precision", "fp32"),
                        "timings": {"seconds": r.seconds,
                                    "it_per_s": r.steps_done / r.seconds if r.seconds > 0 else None},
                        "loss_history": list(r.history)})
        rec.update(dict(self.extra_json))
        return rec


def versions() -> dict[str, str]:
    """Versions of the software that made a result (for ``run.json``)."""
    import platform
    import sys

    from clipstyle import __version__

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


def is_complete(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` is a finished run folder (it exists under its final name and holds ``run.json``)."""
    return (Path(folder) / RUN_RECORD).is_file()
