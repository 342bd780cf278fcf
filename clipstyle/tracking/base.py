"""The tracker protocol and :class:`Trackers`: one run's trackers fed from the optimization loop.

:class:`Trackers` is what a pipeline holds. Its :meth:`Trackers.callback` is a callback of the one
loop (:func:`clipstyle.optimize.loop.run`): it turns each :class:`~clipstyle.optimize.loop.StepInfo`
into scalars (``loss/total``, ``loss/<term>``, ``lr``) and, every ``preview_every`` steps, the step's
images into one uint8 grid, and hands them (the scalars in bundles at most 0.5 s apart) to a background
thread that calls the trackers. The loop never waits on a tracker's disk or network I/O (measured in
docs/tracking.md), and a tracker that raises
is switched off with one :class:`TrackerWarning` (issued on the caller's thread, once per tracker): a
tracker never fails a run.
"""

from __future__ import annotations

import json
import math
import queue
import re
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

__all__ = ["TrackedImage", "Tracker", "TrackerWarning", "Trackers", "flat_metrics", "param_value", "scalar_tag"]

#: How long :meth:`Trackers.close` waits for a tracker's pending writes (a remote server that hangs).
CLOSE_TIMEOUT_S = 120.0
#: Most events queued before the loop waits for the trackers (bounds memory when a tracker is slow).
MAX_QUEUED = 10_000
#: Per-step scalars are handed to the trackers' thread in bundles, at most this many seconds apart (and before
#: any image): one wake-up of that thread per bundle instead of one per step.
BUNDLE_SECONDS = 0.5


class TrackerWarning(UserWarning):
    """A tracker failed and was switched off; the run and its result are unaffected."""


class TrackedImage:
    """An image handed to trackers: ``array`` uint8 ``[H, W, C]`` (C = 1 or 3) and ``png``, its PNG bytes,
    encoded once (zlib level 1: several times faster than the default, a little larger) however many
    trackers ask — on the trackers' thread, never the loop's."""

    def __init__(self, array: Any) -> None:
        self.array = array
        self._png: bytes | None = None

    @property
    def height(self) -> int:
        return int(self.array.shape[0])

    @property
    def width(self) -> int:
        return int(self.array.shape[1])

    @property
    def channels(self) -> int:
        return int(self.array.shape[2])

    @property
    def png(self) -> bytes:
        if self._png is None:
            import io

            from PIL import Image

            buf = io.BytesIO()
            arr = self.array[..., 0] if self.array.shape[-1] == 1 else self.array
            Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
            self._png = buf.getvalue()
        return self._png


class Tracker(Protocol):
    """One experiment tracker (TensorBoard, MLflow, or yours). Methods run on :class:`Trackers`' thread,
    in call order; any exception switches the tracker off with one warning.

    ``label`` names it in warnings; ``wants_folder`` says whether it stores the run folder
    (:meth:`log_folder`). Images are :class:`TrackedImage` (uint8 ``.array``, ``.png`` bytes); scalars are
    plain floats.
    """

    label: str
    wants_folder: bool

    def start(self, name: str, group: str | None) -> None: ...

    def log_settings(self, settings: Mapping[str, Any]) -> None: ...

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None: ...

    def log_image(self, tag: str, step: int, image: TrackedImage) -> None: ...

    def log_folder(self, folder: Path) -> None: ...

    def close(self, status: str) -> None: ...


_TAG_BAD = re.compile(r"[^A-Za-z0-9_\-. /]")


def scalar_tag(key: str, prefix: str = "") -> str:
    """The scalar name of a ``run.json`` history key: ``loss`` → ``loss/total``, ``lr`` → ``lr``, a loss term
    ``T`` → ``loss/T``; ``prefix`` (a phase such as ``tune``) goes in front as ``prefix/…``. Characters
    MLflow refuses become ``_``."""
    tag = "loss/total" if key == "loss" else "lr" if key == "lr" else f"loss/{key}"
    return _TAG_BAD.sub("_", f"{prefix}/{tag}" if prefix else tag)


def param_value(value: Any) -> str:
    """A setting as the string trackers store: strings as they are, anything else as JSON (``None`` →
    ``null``); MLflow's limit of 6000 characters is kept by cutting the end (``…``)."""
    from clipstyle.io.files import to_jsonable

    text = value if isinstance(value, str) else json.dumps(to_jsonable(value), sort_keys=True)
    return text if len(text) <= 6000 else text[:5999] + "…"


def flat_metrics(data: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Finite numbers among the leaves of nested dicts (``run.json``'s ``metrics``, ``tune_metrics``,
    ``identity_similarity``…), keyed ``a/b`` (``metrics/psnr``); booleans, strings and lists are left out."""
    out: dict[str, float] = {}
    for key, value in data.items():
        name = _TAG_BAD.sub("_", f"{prefix}/{key}" if prefix else str(key))
        if isinstance(value, Mapping):
            out.update(flat_metrics(value, name))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value)):
            out[name] = float(value)
    return out


class Trackers:
    """The trackers of one run, fed on a background thread; use as a context manager.

    Args:
        trackers: :class:`Tracker` objects (built by :func:`clipstyle.tracking.open_trackers`).
        name: the run's name (a prompt, a photo's stem): the TensorBoard sub-folder, the MLflow run name.
        group: a batch's name: runs of one batch are grouped under it.
        preview_every: log the step's images every this many steps (0 = never; the CLI's ``--save-every``).
        preview_size: previews are scaled down (area average, on the loop's device) to at most this many
            pixels a side per image before they leave the device; the final image is logged at full size.
        settings: settings known before the run (logged at once); :meth:`finish` adds the run's own.
        warn: how a tracker failure is reported (the CLI passes its one-line ``warning:`` printer); default
            :func:`warnings.warn` with :class:`TrackerWarning`.

    The queue is bounded (:data:`MAX_QUEUED` events): a tracker slower than the loop eventually makes the
    loop wait rather than hold every image in memory.
    """

    def __init__(self, trackers: Sequence[Tracker], name: str, *, group: str | None = None,
                 preview_every: int = 10, settings: Mapping[str, Any] | None = None,
                 warn: Callable[[str], None] | None = None, preview_size: int = 512) -> None:
        self.trackers = tuple(trackers)
        self.preview_size = int(preview_size)
        self._warn = warn
        self.name, self.group, self.preview_every = name, group, int(preview_every)
        self._failed: dict[int, str] = {}
        self._warned: set[int] = set()
        self._logged: dict[str, Any] = {}
        self._closed = False
        self._bundle: list[tuple[int, dict[str, float]]] = []
        self._bundle_since = time.monotonic()
        self._queue: queue.Queue = queue.Queue(MAX_QUEUED)
        self._thread: threading.Thread | None = None
        if self.trackers:
            self._thread = threading.Thread(target=self._work, name=f"clipstyle-trackers-{name[:20]}", daemon=True)
            self._thread.start()
            self._put("start", name, group)
            if settings:
                self.log_settings(settings)

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def __enter__(self) -> "Trackers":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close("failed" if exc_type is not None and not issubclass(exc_type, KeyboardInterrupt)
                   else "interrupted" if exc_type is not None else "finished")

    # -- the loop's side ---------------------------------------------------------------------------------
    def callback(self, info: Any, images: Any) -> None:
        """The loop callback: log ``info``'s scalars and, every ``preview_every`` steps, ``images``
        (``[N, C, H, W]`` in [-1, 1], as the loop passes them) as one grid tagged ``preview``."""
        self.phase_callback("")(info, images)

    def phase_callback(self, phase: str) -> Callable[[Any, Any], None]:
        """A loop callback whose tags start with ``phase/`` (``tune`` for pivotal tuning, say); ``""`` = none."""

        def cb(info: Any, images: Any) -> None:
            if not self.trackers or self._closed:
                return
            scalars = {scalar_tag("loss", phase): float(info.loss), scalar_tag("lr", phase): float(info.lr)}
            scalars.update({scalar_tag(k, phase): float(v) for k, v in info.terms.items()})
            self._bundle.append((int(info.step), scalars))
            preview = bool(self.preview_every and info.step % self.preview_every == 0 and images is not None)
            if preview or time.monotonic() - self._bundle_since > BUNDLE_SECONDS:
                self._send_bundle()
            if preview:
                self._put("log_image", f"{phase}/preview" if phase else "preview", int(info.step),
                          TrackedImage(_grid_uint8(images, self.preview_size)))
            self._report()

        return cb

    def log_settings(self, settings: Mapping[str, Any]) -> None:
        """Log settings (hyper-parameters) not logged yet; a setting logged before with another value is
        logged again as ``KEY.resolved`` (MLflow's parameters cannot change)."""
        new: dict[str, Any] = {}
        for key, value in settings.items():
            if key not in self._logged:
                new[key] = value
            elif param_value(self._logged[key]) != param_value(value):
                new[f"{key}.resolved"] = value
        self._logged.update(new)
        if new and self.trackers:
            self._put("log_settings", new)

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Log more scalars at ``step`` (a workflow's own figures)."""
        if self.trackers:
            self._put("log_scalars", int(step), {_TAG_BAD.sub("_", k): float(v) for k, v in scalars.items()})

    def put_image(self, tag: str, step: int, image: TrackedImage) -> None:
        """Log an image (``preview``, ``result``…) at ``step``."""
        if self.trackers:
            self._put("log_image", tag, int(step), image)

    def put_folder(self, folder: str | Path) -> None:
        """Hand a finished run folder to the trackers that store files (MLflow's artifacts)."""
        if self.trackers:
            self._put("log_folder", Path(folder))

    def report(self, message: str) -> None:
        """Say one line about a tracking problem (the ``warn`` given, else a :class:`TrackerWarning`)."""
        self._say(message, stacklevel=2)

    # -- the end -----------------------------------------------------------------------------------------
    def finish(self, run: Any, folder: str | Path | None = None) -> None:
        """Log the end of ``run`` (a :class:`~clipstyle.pipelines.run.Run`) and close the trackers.

        Logs the final image (tag ``result``), ``loss/best`` and the numbers of ``run.extra_json``
        (``metrics/psnr``, ``tune_metrics/…``, ``identity_similarity``…) at the last step, every setting of
        ``run.settings``, and ``folder`` (the saved run folder) to the trackers that store files (MLflow's
        artifacts). Without ``folder`` such trackers get the run's files written into a temporary folder (what
        :meth:`Run.save` writes). Never raises because of a tracker.
        """
        if self._closed or not self.trackers:
            return
        tmp: Path | None = None
        try:
            self.log_settings(dict(run.settings))
            r = run.result
            step = int(r.steps_done) if r is not None else 0
            summary = {}
            if r is not None and math.isfinite(float(r.best_loss)):
                summary["loss/best"] = float(r.best_loss)
            summary.update(flat_metrics(dict(run.extra_json)))
            if summary:
                self._put("log_scalars", step, summary)
            import numpy as np

            self._put("log_image", "result", step, TrackedImage(np.asarray(run.image)))
            if any(getattr(t, "wants_folder", False) for t in self.trackers):
                if folder is None:
                    tmp = Path(tempfile.mkdtemp(prefix="clipstyle-track-"))
                    run.write_into(tmp)
                    folder = tmp
                self._put("log_folder", Path(folder))
        except Exception as exc:  # noqa: BLE001 - a tracker problem must not lose the result
            self._say(f"experiment tracking: could not log the result of {self.name!r}: {type(exc).__name__}: "
                      f"{exc}; the result is kept", stacklevel=3)
        finally:
            self.close("interrupted" if getattr(run, "interrupted", False) else "finished")
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)

    def close(self, status: str = "finished") -> None:
        """Flush and close every tracker (``status``: ``finished``, ``interrupted`` or ``failed``); waits at
        most :data:`CLOSE_TIMEOUT_S` for pending writes. Idempotent."""
        if self._closed:
            return
        if self._thread is not None:
            self._send_bundle()
        self._closed = True
        if self._thread is not None:
            self._queue.put(("close", (status,)))
            self._queue.put(None)
            self._thread.join(CLOSE_TIMEOUT_S)
            if self._thread.is_alive():
                self._failed.setdefault(-1, f"still busy after {CLOSE_TIMEOUT_S:.0f} s; its last writes may be lost")
        self._report(stacklevel=3)

    # -- the thread's side -------------------------------------------------------------------------------
    def _put(self, method: str, *args: Any) -> None:
        if self._bundle and method != "log_bundle":  # keep the order: the steps so far go first
            self._send_bundle()
        self._queue.put((method, args))

    def _send_bundle(self) -> None:
        bundle, self._bundle = self._bundle, []
        self._bundle_since = time.monotonic()
        if bundle:
            self._put("log_bundle", bundle)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            method, args = item
            for i, tracker in enumerate(self.trackers):
                if i in self._failed:
                    continue
                try:
                    if method == "log_bundle":
                        for step, scalars in args[0]:
                            tracker.log_scalars(step, scalars)
                    else:
                        getattr(tracker, method)(*args)
                except Exception as exc:  # noqa: BLE001 - reported as a warning on the caller's thread
                    msg = " ".join(f"{type(exc).__name__}: {exc}".split())
                    self._failed[i] = f"{getattr(tracker, 'label', type(tracker).__name__)} failed ({msg[:300]})"
                    if method != "close":
                        try:
                            tracker.close("failed")
                        except Exception:  # noqa: BLE001 - already reported
                            pass

    def _report(self, stacklevel: int = 3) -> None:
        for i, msg in list(self._failed.items()):
            if i not in self._warned:
                self._warned.add(i)
                self._say(f"experiment tracking: {msg}; tracking is off for this run, the result is kept",
                          stacklevel=stacklevel + 1)

    def _say(self, message: str, stacklevel: int) -> None:
        if self._warn is not None:
            self._warn(message)
        else:
            warnings.warn(message, TrackerWarning, stacklevel=stacklevel + 1)


def _grid_uint8(images: Any, max_side: int) -> Any:
    """``[N, C, H, W]`` in [-1, 1] (a tensor) → one uint8 ``[H, W, C]`` image (a grid for N > 1), each image
    area-averaged down to at most ``max_side`` pixels a side first (on its device)."""
    import torch.nn.functional as F

    from clipstyle.optimize.loop import to_uint8_frames
    from clipstyle.render.files import make_grid

    images = images.detach()
    side = max(int(images.shape[-2]), int(images.shape[-1]))
    if max_side > 0 and side > max_side:
        factor = -(-side // max_side)  # an integer factor keeps the area average exact
        images = F.avg_pool2d(images.float(), factor, ceil_mode=True)
    frames = to_uint8_frames(images)  # [N, H, W, C]
    return frames[0] if frames.shape[0] == 1 else make_grid(frames)
