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
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["UIConfig", "Models", "StopFlags", "stream", "status_html"]


@dataclass(frozen=True)
class UIConfig:
    """Settings of one ``clipstyle ui`` process (the CLI's option names).

    Attributes:
        network: generator alias, path or URL. clip_model / clip_pretrained: the CLIP model (``"none"``:
            random weights, tests). device: ``auto``, ``cpu``, ``cuda`` or ``mps``. outdir: where run folders
            offered for download are written. preview_every: preview image every this many steps.
    """

    network: str = "ffhq"
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = "openai"
    device: str = "auto"
    outdir: str = "out/ui"
    preview_every: int = 5


class Models:
    """The process's generator (loaded once), CLIP (loaded on first use) and extra networks (by name)."""

    def __init__(self, config: UIConfig) -> None:
        from clipstyle.pipelines.common import load_network, pick_device

        self.config = config
        self.device = pick_device(config.device)
        self.G = load_network(config.network, self.device, progress=False)
        self.lock = threading.Lock()  # one job on G (and CLIP) at a time
        self._guide = None
        self._others: dict[str, Any] = {}

    @property
    def guide(self) -> Any:
        """The CLIP model (loaded on first use)."""
        if self._guide is None:
            from clipstyle.pipelines.common import load_guide

            self._guide = load_guide(self.config.clip_model, self.config.clip_pretrained, self.device)
        return self._guide

    def network(self, name: str) -> Any:
        """Another generator (the Blend tab's B), loaded once per name."""
        if name not in self._others:
            from clipstyle.pipelines.common import load_network

            self._others[name] = load_network(name, self.device, progress=False)
        return self._others[name]


class StopFlags:
    """One Stop flag per browser session (Gradio's ``session_hash``)."""

    def __init__(self) -> None:
        self._flags: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def new(self, session: str) -> threading.Event:
        """A fresh, unset flag for ``session``'s next job."""
        with self._lock:
            self._flags[session] = flag = threading.Event()
        return flag

    def stop(self, session: str) -> bool:
        """Set ``session``'s flag; False when it has no job."""
        with self._lock:
            flag = self._flags.get(session)
        if flag is None:
            return False
        flag.set()
        return True


def status_html(done: int, total: int, text: str, key: str = "text") -> str:
    """The status line of a tab: an HTML ``<progress>`` bar (``id="<key>-progress"``, value/max = done/total)
    and ``text`` (``id="<key>-status-text"``)."""
    import html

    return (f'<div class="cs-status"><progress id="{key}-progress" value="{int(done)}" max="{max(1, int(total))}">'
            f'</progress> <span id="{key}-status-text">{html.escape(text)}</span></div>')


def stream(job: Callable[[Callable[..., None]], Any], lock: threading.Lock, stop: threading.Event | None = None
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
            stop.set()


def preview(images: Any) -> np.ndarray:
    """Images ``[N, 3, H, W]`` in [-1, 1] → one uint8 ``[H, W, 3]`` (a grid for N > 1)."""
    from clipstyle.optimize.loop import to_uint8_frames
    from clipstyle.pipelines.run import grid_of

    return grid_of(to_uint8_frames(images))
