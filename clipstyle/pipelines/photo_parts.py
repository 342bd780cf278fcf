"""Building blocks of the photo pipelines (:mod:`clipstyle.pipelines.photo`): networks, targets, the optional
weights (LPIPS, e4e, ArcFace), progress stages, and the run folder with a tuned generator beside its latents."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipstyle.errors import UsageError
from clipstyle.pipelines.run import Run

#: File name of a pivotal-tuning generator inside a run folder (named by ``latents.npz``'s meta).
TUNED_GENERATOR = "generator.safetensors"


class PhotoOptionError(UsageError):
    """A bad option of a photo workflow (a usage error: one line)."""


@dataclass(frozen=True)
class PhotoRun(Run):
    """A :class:`Run` that also writes a tuned generator (``generator.safetensors``) and more latent meta."""

    generator: Any = None
    latent_meta: Any = None

    def write_into(self, folder: Path) -> dict[str, Path]:
        from clipstyle.inversion.files import add_arrays

        paths = super().write_into(folder)
        meta = dict(self.latent_meta or {})
        if self.generator is not None:
            from clipstyle.generator.formats.native import save_native

            paths["generator"] = save_native(self.generator, Path(folder) / TUNED_GENERATOR,
                                             meta={"tuned_by": "clipstyle project --tune (pivotal tuning)"})
            meta["generator"] = TUNED_GENERATOR
        if meta:
            add_arrays(paths["latents"], {}, meta)
        return paths


def say_once(log: Callable[[str], None] | None) -> Callable[[str], None]:
    """A logger that drops repeated messages (each fallback is said once)."""
    seen: set[str] = set()

    def emit(message: str) -> None:
        if message not in seen:
            seen.add(message)
            if log is not None:
                log(message)
    return emit


@contextlib.contextmanager
def stage(name: str, steps: int, quiet: bool, callback: Callable | None) -> Iterator[list]:
    """Callbacks for one stage of a pipeline: a progress bar named ``name`` (unless quiet) + ``callback``."""
    from clipstyle.optimize.progress import ProgressBar

    with ProgressBar(name, steps, enabled=not quiet) as bar:
        yield [bar] + ([callback] if callback is not None else [])








def generator_for_latents(latents: str | Path, network: str | None = None, device: str = "cpu",
                          quiet: bool = True) -> Any:
    """The generator a latent file is rendered with, by the one rule
    (:func:`clipstyle.latents.source.network_for_latents`: ``network``, else the tuned generator the file names,
    else its recorded network when an alias or an existing local file, else ffhq).

    Raises:
        NetworkSourceError (a LatentFileError): a missing tuned generator, a recorded URL or unknown network.
        LatentFileError, CheckpointError, DownloadError: as the loaders do.
    """
    from clipstyle.generator import load_generator
    from clipstyle.latents.source import network_for_latents

    source = network_for_latents(Path(latents), network)
    return load_generator(source, device=device, progress=not quiet and source == network)



def photo_image(photo: Path, align: bool, emit: Callable[[str], None]) -> Any:
    """The photo as a PIL RGB image, FFHQ-aligned (at 1024², the FFHQ size) with ``align``."""
    from clipstyle.io.images import load_image

    img = load_image(photo)
    if not align:
        return img
    from clipstyle.inversion.align import align_photo

    face = align_photo(img, 1024)
    if face.faces > 1:
        emit(f"found {face.faces} faces; aligned the largest")
    return face.image


def target_tensor(img: Any, size: int, crop: bool, G: Any | None, dev: str) -> Any:
    """``[1, C, size, size]`` in [-1, 1] (fitted to G's channels when G is given) on ``dev``."""
    from clipstyle.inversion.project import prepare_target
    from clipstyle.io.images import image_to_tensor

    t = image_to_tensor(img, size, crop=crop)
    return (prepare_target(t, G) if G is not None else t).to(dev)


def load_perceptual(kind: str, weights: str | None, dev: str, quiet: bool) -> Any:
    """LPIPS for ``--perceptual lpips`` (downloaded once, or ``--lpips-weights``), None for ``none``."""
    kind = kind.strip().lower()
    if kind == "none":
        if weights:
            raise PhotoOptionError("--lpips-weights was given with --perceptual none")
        return None
    if kind != "lpips":
        raise PhotoOptionError(f"--perceptual must be lpips or none, got {kind!r}")
    from clipstyle.inversion.lpips import load_lpips

    return load_lpips(weights, device=dev, progress=not quiet)


def load_weights(kind: str, path: str | Path | None, option: str, dev: str) -> Any:
    """The e4e encoder (``kind='encoder'``) or ArcFace (``'identity'``) from ``path``, or None without one.

    Raises:
        FileNotFoundError: one line naming ``option`` when the file is missing.
    """
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{option} {path}: no such file")
    if kind == "encoder":
        from clipstyle.encoders.e4e import load_encoder

        return load_encoder(path, device=dev)
    from clipstyle.encoders.arcface import load_face_identity

    return load_face_identity(path, device=dev)


def projection_config(steps: int, lr: float | None, space: str, perceptual: Any, mse: float | None,
                      noise_reg: float, seed: int, save_every: int, precision: str = "fp32") -> Any:
    from clipstyle.inversion.project import ProjectConfig

    space = space.strip().lower()
    if space not in ("w", "w+"):
        raise PhotoOptionError(f"--space must be w or w+, got {space!r}")
    mse = (0.0 if perceptual is not None else 1.0) if mse is None else mse
    if perceptual is None and mse <= 0:
        raise PhotoOptionError("--perceptual none needs --mse > 0: there would be nothing to project by")
    return ProjectConfig(steps=steps, lr=0.1 if lr is None else lr, space=space, mse=mse, noise_reg=noise_reg,
                         seed=seed, save_every=save_every, precision=precision)


def check_blend_spec(blend: str | None) -> None:
    if blend is not None:
        from clipstyle.latents.constraints import parse_blend_spec

        parse_blend_spec(blend)


def with_blend(G: Any, blend: str | None, dev: str, quiet: bool) -> Any:
    if not blend:
        return G
    from clipstyle.latents.constraints import blend_from_spec

    return blend_from_spec(G, blend, dev, progress=not quiet)


def start_from_latents(path: Path, G: Any, dev: str) -> tuple[Any, dict[str, Any], Any, dict[str, Any]]:
    """``(ws [N, num_ws, w_dim], noise maps, c or None, meta)`` from a latent file (ours or NVIDIA's)."""
    import torch

    from clipstyle.inversion.noise import read_noise
    from clipstyle.latents import load_latents

    lf = load_latents(path, num_ws=G.num_ws, w_dim=G.w_dim)
    noise = read_noise(path, G, lf.meta.get("noise"))
    c = torch.from_numpy(lf.c).to(dev) if lf.c is not None and lf.c.size and G.c_dim > 0 else None
    return torch.from_numpy(lf.ws).to(dev), noise, c, lf.meta


def uint8_image(x: Any) -> np.ndarray:
    from clipstyle.pipelines.run import grid_of
    from clipstyle.render.files import to_uint8

    return grid_of(to_uint8(x))


def side_by_side_frames(left: np.ndarray, frames: Any) -> tuple[np.ndarray, ...]:
    from clipstyle.pipelines.run import grid_of
    from clipstyle.render.files import side_by_side

    return tuple(side_by_side(left, grid_of(f)) for f in frames)


def noise_meta(noise: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays, meta)`` storing projection noise maps in a latent file."""
    if not noise:
        return {}, {}
    from clipstyle.inversion.noise import noise_arrays

    arrays, names = noise_arrays(noise)
    return arrays, {"noise": names}


def identity_similarity(face_id: Any, image: Any, reference: Any) -> float:
    """ArcFace cosine similarity of two image batches ``[1, 3, H, W]`` in [-1, 1] (RGB networks only)."""
    import torch

    with torch.no_grad():
        x = image.to(next(face_id.parameters()).device)
        y = reference.to(x.device)
        if x.shape[1] == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        return float(face_id.similarity(x, y).mean())
