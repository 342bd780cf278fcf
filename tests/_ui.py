"""Serving the UI on the fixture network and the tiny random CLIP for tests."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import pytest

from ._cli import TINY_CLIP
from . import _tiny


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def served_ui(outdir: Path, preview_every: int = 2):
    """``(url, demo)`` of a UI launched in the background; closed on exit."""
    pytest.importorskip("gradio")
    from clipstyle.ui.app import launch
    from clipstyle.ui.runner import UIConfig

    config = UIConfig(network=str(_tiny.network_file("sg2")), clip_model=TINY_CLIP, clip_pretrained="none",
                      device="cpu", outdir=str(outdir), preview_every=preview_every)
    port = free_port()
    demo = launch(config, "127.0.0.1", port, block=False)
    try:
        yield f"http://127.0.0.1:{port}/", demo
    finally:
        demo.close()
