"""The precision check's verdicts, measured once per network and device kind and kept in the cache.

A reduced precision (``--precision bf16|fp16|tf32|auto``) runs on a network only once
:func:`~clipstyle.optimize.precision_check.check_precision` has measured it safe there (issue 22:
image error, gradient cosine ≥ 0.99, a 100-step run ending at most 2 % above fp32's). The first
optimization of a network in a mode pays for the check (two 100-step runs of a projection at the network's
resolution); the verdict is then a small JSON file in ``<cache>/precision/`` keyed by the network's weights
(a SHA-256 of its state dict), the mode, the device kind and the torch version, so later runs read it.

* an explicit mode that fails is refused with :class:`~clipstyle.optimize.precision_check.PrecisionRefusedError`
  (exit 2) naming the failed measurement;
* training a generator (pivotal tuning, ``adapt``) has verdicts of its own (``trains_weights``);
* ``auto`` takes the first candidate of :func:`~clipstyle.optimize.precision.auto_candidates` that passes,
  and fp32 when none does.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from clipstyle.optimize.precision import auto_candidates, resolve_precision

__all__ = ["network_fingerprint", "verdict_path", "verified_precision"]

CHECK_STEPS = 100
_VERSION = 1  # bump when the check's definition changes: older verdicts are then measured again


def network_fingerprint(G: torch.nn.Module) -> str:
    """SHA-256 (hex) of ``G``'s state dict: names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name, t in sorted(G.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def verdict_path(fingerprint: str, mode: str, device: torch.device,
                 cache_dir: str | os.PathLike[str] | None = None, trains_weights: bool = False) -> Path:
    """Where the verdict of ``mode`` on the network ``fingerprint`` and ``device``'s kind is kept (a latent's
    and a training run's verdicts are separate files)."""
    from clipstyle.io.cache import cache_root

    use = "weights" if trains_weights else "latent"
    key = hashlib.sha256(f"{fingerprint}|{mode}|{device.type}|{torch.__version__}|{_VERSION}|{use}".encode()
                         ).hexdigest()
    return cache_root(cache_dir) / "precision" / f"{key[:32]}.json"


def _verdict(G: torch.nn.Module, fingerprint: str, mode: str, device: torch.device, cache_dir, steps: int,
             trains_weights: bool) -> dict:
    from clipstyle.io.files import atomic_write_json
    from clipstyle.optimize.precision_check import check_precision

    path = verdict_path(fingerprint, mode, device, cache_dir, trains_weights)
    try:
        verdict = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(verdict, dict) and isinstance(verdict.get("ok"), bool) and \
                isinstance(verdict.get("reasons"), list):
            return verdict
    except (OSError, ValueError):
        pass  # not measured yet (or an unreadable file): measure
    check = check_precision(G, mode, device, steps=steps, trains_weights=trains_weights)
    verdict = {"ok": check.ok, "reasons": list(check.reasons), "mode": mode, "device": device.type,
               "torch": torch.__version__, "image_max_error": check.image_max_error,
               "image_rms_error": check.image_rms_error, "grad_cosine": check.grad_cosine,
               "loss_fp32": check.loss_fp32, "loss_reduced": check.loss_reduced, "steps": steps,
               "trains_weights": trains_weights}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, verdict)
    except OSError:
        pass  # a read-only cache: the verdict holds for this run only
    return verdict


def verified_precision(G: torch.nn.Module, precision: str, device: torch.device | str, *,
                       cache_dir: str | os.PathLike[str] | None = None, steps: int = CHECK_STEPS,
                       trains_weights: bool = False) -> str:
    """The mode to run for ``precision`` on generator ``G`` (see the module docstring).

    Args:
        G: the generator the optimization runs through (or trains).
        precision: one of :data:`~clipstyle.optimize.precision.PRECISIONS`.
        device: the run's device (its kind keys the verdict).
        cache_dir: the cache root (default :func:`clipstyle.io.cache.cache_root`).
        steps: length of the check's short runs.
        trains_weights: the optimization trains ``G``'s synthesis weights (pivotal tuning, ``adapt``): the
            training check of :func:`~clipstyle.optimize.precision_check.check_precision` decides.

    Returns:
        ``fp32``, ``tf32``, ``bf16`` or ``fp16``.

    Raises:
        PrecisionRefusedError: an explicit reduced mode failed its check on ``G`` (exit 2, the reasons).
        PrecisionError: an unknown mode, or one the device cannot run.
    """
    from clipstyle.optimize.precision_check import PrecisionRefusedError

    device = torch.device(device)
    auto = str(precision).strip().lower() == "auto"
    candidates = auto_candidates(device) if auto else (resolve_precision(precision, device),)
    fingerprint = None
    for mode in candidates:
        if mode == "fp32":
            return mode
        fingerprint = fingerprint or network_fingerprint(G)
        verdict = _verdict(G, fingerprint, mode, device, cache_dir, steps, trains_weights)
        if verdict["ok"]:
            return mode
        if not auto:
            what = "training this network" if trains_weights else "this network"
            raise PrecisionRefusedError(f"--precision {mode} is refused for {what}: "
                                        + "; ".join(verdict["reasons"]) + "; use --precision fp32")
    return "fp32"
