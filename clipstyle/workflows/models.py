"""Loaded models shared by the runs of one process: the generator, CLIP, e4e, ArcFace and LPIPS.

``clipstyle batch`` and the web UI run many workflows in one process; a :class:`ModelCache` loads each
model once per key (network and blend; CLIP model and weights; a weights file) and hands the pipeline
the ones it takes (:attr:`Workflow.models <clipstyle.workflows.registry.Workflow.models>`). Which key a
run needs comes from its settings (:meth:`Settings.model_keys
<clipstyle.workflows.base.Settings.model_keys>`), so a latent file's network is chosen by the same rule
here as in a single command.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from clipstyle.workflows.base import Settings
    from clipstyle.workflows.registry import Workflow

__all__ = ["ModelCache", "load_model"]


def load_model(kind: str, key: tuple, device: str, progress: bool = False) -> Any:
    """Load one model.

    Args:
        kind: ``G`` (key ``(network, blend)``), ``guide`` (``(clip_model, clip_pretrained)``), ``encoder``
            (``(path,)``), ``identity`` (``(path,)``), ``perceptual`` (``(kind, weights)``: ``lpips`` or
            ``none``).
        device: a resolved device (``cpu``, ``cuda:0``…).

    Returns:
        The model, or None for a key that asks for none (``perceptual`` ``none``).

    Raises:
        The loaders' errors: CheckpointError, DownloadError, OfflineError, BadFileError…
    """
    if kind == "G":
        from clipstyle.pipelines.common import load_network

        network, blend = key
        return load_network(network, device, blend, progress=progress)
    if kind == "guide":
        from clipstyle.pipelines.common import load_guide

        return load_guide(key[0], key[1], device)
    if kind == "encoder":
        from clipstyle.encoders.e4e import load_encoder

        return load_encoder(key[0], device=device)
    if kind == "identity":
        from clipstyle.encoders.arcface import load_face_identity

        return load_face_identity(key[0], device=device)
    if kind == "perceptual":
        if str(key[0]).lower() == "none":
            return None
        from clipstyle.inversion.lpips import load_lpips

        return load_lpips(key[1], device=device, progress=progress)
    raise ValueError(f"unknown model kind {kind!r}")


class ModelCache:
    """Models loaded at most once per (kind, key) on one device; safe to share between threads.

    Args:
        device: ``auto`` (CUDA, else MPS, else CPU), ``cpu``, ``cuda``, ``cuda:1``, ``mps``.
        progress: show download progress bars.
        loader: ``loader(kind, key, device, progress)`` (default :func:`load_model`).

    Raises:
        DeviceError: an unknown or absent device.
    """

    def __init__(self, device: str = "auto", progress: bool = False,
                 loader: Callable[[str, tuple, str, bool], Any] | None = None) -> None:
        from clipstyle.optimize.devices import resolve_device

        self.device = resolve_device(device)
        self.progress = progress
        self._loader = loader or load_model
        self._models: dict[tuple[str, tuple], Any] = {}
        self._lock = threading.Lock()

    def get(self, kind: str, key: tuple) -> Any:
        """The model of ``kind`` for ``key``, loaded on first use."""
        with self._lock:
            if (kind, key) not in self._models:
                self._models[(kind, key)] = self._loader(kind, key, self.device, self.progress)
            return self._models[(kind, key)]

    def put(self, kind: str, key: tuple, model: Any) -> None:
        """Register an already loaded model under ``key`` (the UI's start-up network, a test's tiny model)."""
        with self._lock:
            self._models[(kind, key)] = model

    def loaded(self) -> list[tuple[str, tuple]]:
        """The (kind, key) pairs loaded so far."""
        with self._lock:
            return list(self._models)

    def for_workflow(self, workflow: "Workflow", settings: "Settings") -> dict[str, Any]:
        """The models ``workflow`` takes, for ``settings`` (kinds its settings name no key for are left out:
        the pipeline then does without them or loads nothing)."""
        keys = settings.model_keys()
        return {kind: self.get(kind, keys[kind]) for kind in workflow.models if keys.get(kind) is not None}
