"""What the web UI needs besides Gradio: the loaded models, one job at a time, Stop flags and streaming.

Nothing here imports Gradio, so it is tested directly. A long action (an optimization, an interpolation)
runs in a worker thread that holds the process-wide model lock (one generator per process: several
browser tabs queue instead of sharing ``G`` mid-run); the request's generator function reads its
progress from a queue and yields previews. Stop sets the session's flag, the pipeline's ``stop()``
sees it after the current step and the pipeline returns the best result so far.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["Job", "Models", "StopFlags", "stream", "status_html", "preview"]

from clipstyle.ui.config import UIConfig  # noqa: E402  (re-exported for old imports)


class Models:
    """The process's models, in the shared :class:`~clipstyle.workflows.models.ModelCache` (:attr:`cache`):
    the generator (loaded now), CLIP, e4e, ArcFace, LPIPS (each loaded on first use, only from the files the
    operator named) and Blend's other networks (only the allowed names)."""

    def __init__(self, config: UIConfig) -> None:
        from clipstyle.workflows.models import ModelCache

        self.config = config
        self.cache = ModelCache(config.device)
        self.device = self.cache.device
        self.G = self.cache.get("G", (config.network, None))
        self.lock = threading.Lock()  # one job on the models at a time
        self.ui: Any = None  # the app's context (caps, sessions, Stop), set by build_app for mounted tabs

    @property
    def guide(self) -> Any:
        """The CLIP model (loaded on first use)."""
        return self.cache.get("guide", (self.config.clip_model, self.config.clip_pretrained))

    @property
    def encoder(self) -> Any:
        """The e4e encoder of ``--encoder`` (None without one)."""
        return None if self.config.encoder is None else self.cache.get("encoder", (self.config.encoder,))

    @property
    def identity(self) -> Any:
        """ArcFace of ``--id-weights`` (None without one)."""
        return None if self.config.id_weights is None else self.cache.get("identity", (self.config.id_weights,))

    @property
    def perceptual(self) -> Any:
        """LPIPS from ``--lpips-weights`` (else the one default download, cached)."""
        return self.cache.get("perceptual", ("lpips", self.config.lpips_weights))

    def network(self, name: str) -> Any:
        """One of the allowed networks (Blend's B), loaded once.

        Raises:
            UsageError: ``name`` is not one the operator allowed.
        """
        if name not in self.config.networks:
            from clipstyle.errors import UsageError

            raise UsageError(f"network {name[:60]!r} is not one this server offers")
        return self.cache.get("G", (name, None))


class Job:
    """One request's stop condition: the session's Stop flag, or its deadline (``--max-seconds``) passed."""

    def __init__(self, flag: threading.Event, seconds: float) -> None:
        self.flag = flag
        self.seconds = float(seconds)
        self.deadline = time.monotonic() + self.seconds

    @property
    def timed_out(self) -> bool:
        return time.monotonic() > self.deadline

    def stopped(self) -> bool:
        """True once Stop was pressed or the time is up (the pipelines' ``stop``)."""
        return self.flag.is_set() or self.timed_out

    def why(self) -> str:
        """Why the run ended early, for the status line."""
        return f"the time limit of {self.seconds:g} s (--max-seconds)" if self.timed_out and \
            not self.flag.is_set() else "Stop"


class StopFlags:
    """One Stop flag per browser session (Gradio's ``session_hash``)."""

    def __init__(self) -> None:
        self._flags: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def new(self, session: str, seconds: float = float("inf")) -> Job:
        """A fresh job for ``session``'s next request (its flag unset, its deadline ``seconds`` away)."""
        with self._lock:
            self._flags[session] = flag = threading.Event()
        return Job(flag, seconds)

    def stop(self, session: str) -> bool:
        """Set ``session``'s flag; False when it has no job."""
        with self._lock:
            flag = self._flags.get(session)
        if flag is None:
            return False
        flag.set()
        return True

    def forget(self, session: str) -> None:
        """Stop the session's job and drop its flag (the browser tab closed)."""
        self.stop(session)
        with self._lock:
            self._flags.pop(session, None)


def status_html(done: int, total: int, text: str, key: str = "text") -> str:
    """The status line of a tab: an HTML ``<progress>`` bar (``id="<key>-progress"``, value/max = done/total)
    and ``text`` (``id="<key>-status-text"``)."""
    import html

    return (f'<div class="cs-status"><progress id="{key}-progress" value="{int(done)}" max="{max(1, int(total))}">'
            f'</progress> <span id="{key}-status-text">{html.escape(text)}</span></div>')


def stream(job: Callable[[Callable[..., None]], Any], lock: threading.Lock, stop: Job | threading.Event | None = None
           ) -> Iterator[tuple[str, Any]]:
    """Run ``job(report)`` in a worker thread holding ``lock``; yield what it reports, then its result.

    ``report(*payload)`` (called by the job's callbacks) yields ``("progress", payload)``; at the end comes
    ``("done", result)``. An exception of the job is raised here. When the consumer stops iterating
    (a closed browser tab), ``stop`` is set so the job ends at its next step.
    """
    items: queue.Queue = queue.Queue()

    def work() -> None:
        try:
            with lock:
                items.put(("done", job(lambda *payload: items.put(("progress", payload)))))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            items.put(("error", exc))

    worker = threading.Thread(target=work, name="clipstyle-ui-job", daemon=True)
    worker.start()
    finished = False
    try:
        while True:
            kind, payload = items.get()
            if kind == "error":
                finished = True
                raise payload
            if kind == "done":
                finished = True
                yield kind, payload
                return
            yield kind, payload
    finally:
        if not finished and stop is not None:
            (stop.flag if isinstance(stop, Job) else stop).set()


def preview(images: Any) -> np.ndarray:
    """Images ``[N, 3, H, W]`` in [-1, 1] → one uint8 ``[H, W, 3]`` (a grid for N > 1)."""
    from clipstyle.optimize.loop import to_uint8_frames
    from clipstyle.pipelines.run import grid_of

    return grid_of(to_uint8_frames(images))
