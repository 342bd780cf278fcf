"""Issue 13 class 3: Ctrl-C at any moment — before, during and after the imports, while loading, in the loop,
in a projection inside ``edit`` — stops the command with exit 130, one line, no traceback, no segfault, and
keeps the best result where there is one.

Real processes get a real SIGINT. (That every registered command maps Ctrl-C to 130 is walked in-process in
``test_cli_classes.py::test_ctrl_c_anywhere_in_a_command_exits_130_with_one_line``.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ._cli import TINY_CLIP
from . import _tiny

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process")


class Child:
    """``python -m clipstyle ARGS`` with stderr collected as it arrives."""

    def __init__(self, args: list) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100", "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"}  # live bar
        # A terminal's Ctrl-C reaches a process whose SIGINT is not ignored; a test runner started in the background
        # (``cmd &``) ignores it and children inherit that, so the child starts with the default disposition.
        self.proc = subprocess.Popen([sys.executable, "-m", "clipstyle", *map(str, args)], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.err = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while chunk := self.proc.stderr.read1(4096):
            self.err.extend(chunk)

    def wait_for(self, text: str, timeout: float = 120) -> None:
        t0 = time.monotonic()
        while text.encode() not in self.err:
            if self.proc.poll() is not None or time.monotonic() - t0 > timeout:
                raise AssertionError(f"never saw {text!r}: {self.err.decode(errors='replace')}")
            time.sleep(0.05)

    def interrupt(self, timeout: float = 60) -> tuple[int, str, str]:
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"still running {timeout} s after Ctrl-C: {self.err.decode(errors='replace')}")
        out = self.proc.stdout.read().decode()
        self.reader.join(5)
        return code, out, self.err.decode(errors="replace")


def text_args(outdir: Path, *extra) -> list:
    return ["x", "--network", _tiny.network_file("sg2"), "--clip-model", TINY_CLIP, "--clip-pretrained", "none",
            "--steps", "100000", "--device", "cpu", "--cutouts", "0", "--outdir", outdir, *extra]


def assert_clean_interrupt(code: int, err: str) -> None:
    assert code == 130, (code, err)  # never 139/-11 (segfault), never 0 or 1
    assert "Traceback" not in err and "Segmentation" not in err, err
    assert err.rstrip().endswith("interrupted"), err
    assert err.count("interrupted\n") + err.rstrip().endswith("interrupted") >= 1


@pytest.mark.parametrize("delay", [0.3, pytest.param(1.0, marks=pytest.mark.slow),
                                   pytest.param(2.0, marks=pytest.mark.slow)])
def test_ctrl_c_during_imports_and_loading(delay, tmp_path):
    child = Child(text_args(tmp_path / "out"))
    time.sleep(delay)
    code, out, err = child.interrupt()
    assert_clean_interrupt(code, err)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # no half-made run folder


@pytest.mark.slow  # ~10 s alone (the first step of a fresh process), over a minute on a loaded machine
def test_ctrl_c_in_the_loop_keeps_the_best(tmp_path):
    child = Child(text_args(tmp_path / "out"))
    child.wait_for("optimizing")
    child.wait_for("1/100000")
    code, out, err = child.interrupt()
    assert_clean_interrupt(code, err)
    run = Path(out.strip().splitlines()[-1])
    assert sorted(p.name for p in run.iterdir()) == ["latents.npz", "progress.gif", "result.png", "run.json"]
    assert "kept the best result" in err


@pytest.mark.slow
def test_ctrl_c_in_the_projection_of_edit_stops_the_whole_command(tmp_path):
    photo = tmp_path / "p.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(photo)
    child = Child(["edit", photo, "a smile", "--network", _tiny.network_file("sg2"), "--clip-model", TINY_CLIP,
                   "--clip-pretrained", "none", "--perceptual", "none", "--mse", "1", "--project-steps", "100000",
                   "--steps", "100000", "--device", "cpu", "--cutouts", "0", "--outdir", tmp_path / "out"])
    child.wait_for("projecting")
    child.wait_for("1/100000")
    t0 = time.monotonic()
    code, out, err = child.interrupt()
    assert_clean_interrupt(code, err)
    assert "editing" not in err or "0/100000" in err  # the edit phase did not run on
    assert time.monotonic() - t0 < 60


def test_a_ctrl_c_in_one_phase_stops_the_next(tmp_path):
    """In-process: the loop's second call sees the first call's interrupt (errors.interrupt_requested)."""
    import torch

    from clipstyle.cli.common import InterruptWatch
    from clipstyle.generator import read_generator_file
    from clipstyle.latents import Latent
    from clipstyle.optimize.loop import Schedule, run

    G = read_generator_file(_tiny.network_file("sg2"))
    steps = []

    def loss(images, ws):
        steps.append(1)
        if len(steps) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during the third step of phase one
            time.sleep(0.5)
        return images.square().mean(), {}

    before = signal.getsignal(signal.SIGINT)  # default_int_handler in a terminal; SIG_IGN under `cmd &`
    with InterruptWatch() as watch:
        first = run(G, Latent(G.w_avg[None, None].repeat(1, G.num_ws, 1)), loss, Schedule(steps=50))
        second = run(G, Latent(first.ws), loss, Schedule(steps=50))
    assert watch.interrupted and first.interrupted and second.interrupted
    assert first.steps_done == 2 and second.steps_done == 0
    assert torch.equal(second.ws, first.ws)  # phase two kept what phase one had
    assert signal.getsignal(signal.SIGINT) is before  # the previous handler is restored


@pytest.mark.slow  # like the Ctrl-C test above: the first step of a fresh process
@pytest.mark.parametrize("sig, code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGHUP, 129, "SIGHUP")])
def test_sigterm_and_sighup_in_the_loop_keep_the_best_like_ctrl_c(tmp_path, sig, code, name):
    """What `timeout`, schedulers and container stops send: the best result is written, exit 128 + signal."""
    child = Child(text_args(tmp_path / "out"))
    child.wait_for("optimizing")
    child.wait_for("1/100000")
    child.proc.send_signal(sig)
    out = child.proc.stdout.read().decode()
    got = child.proc.wait(60)
    child.reader.join(5)
    err = child.err.decode(errors="replace")
    assert got == code, (got, err)
    assert "Traceback" not in err and err.rstrip().endswith(f"interrupted ({name})"), err
    run = Path(out.strip().splitlines()[-1])
    assert sorted(p.name for p in run.iterdir()) == ["latents.npz", "progress.gif", "result.png", "run.json"]
    assert "kept the best result" in err


def test_every_stop_signal_reaches_interrupt_requested():
    """In-process: SIGTERM and SIGHUP set the flag the loop polls, exactly like SIGINT."""
    from clipstyle.cli.common import InterruptWatch
    from clipstyle.errors import interrupt_requested

    for sig, code in ((signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)):
        with InterruptWatch() as watch:
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), sig)
                time.sleep(1)
            assert interrupt_requested() and watch.exit_code == code
        assert not interrupt_requested()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
