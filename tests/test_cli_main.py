"""The main job through the real CLI entry point: ``clipstyle "PROMPT" …`` (issue: the main job, end to end)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipstyle.cli import main

from ._cli import TINY_CLIP, run_cli
from . import _tiny

PROMPT = "blond kid with green eyes"


def base_args(tmp_path: Path, network: Path, steps: int = 30) -> list[str]:
    return ["--network", network, "--clip-model", TINY_CLIP, "--clip-pretrained", "none", "--steps", str(steps),
            "--outdir", tmp_path / "out", "--device", "cpu", "--quiet", "--cutouts", "8"]


def clip_distance(guide, G, ws: torch.Tensor, prompt: str) -> float:
    """Deterministic CLIP text distance of the whole image (no cutouts): ``1 − cos``."""
    with torch.no_grad():
        img = G.synthesis(ws)
        return float(1 - (guide.encode_image(img) * guide.encode_text([prompt])).sum(-1).mean())


@pytest.fixture(scope="module")
def main_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("main")
    net = _tiny.network_file("sg2")
    capture = pytest.CaptureFixture  # noqa: F841  (documentation: we capture manually below)
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([PROMPT, *map(str, base_args(tmp, net))])
            code = 0
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue(), net


def test_writes_all_four_outputs(main_run):
    code, out, err, _ = main_run
    assert code == 0, err
    run_dir = Path(out.strip().splitlines()[-1])
    assert sorted(p.name for p in run_dir.iterdir()) == ["latents.npz", "progress.gif", "result.png", "run.json"]
    assert Image.open(run_dir / "result.png").size == (64, 64)
    gif = Image.open(run_dir / "progress.gif")
    assert gif.size == (64, 64) and gif.n_frames == 4  # steps 0, 10, 20 + the result
    with np.load(run_dir / "latents.npz") as lat:
        assert lat["ws"].shape == (1, 10, 64) and lat["ws"].dtype == np.float32
        np.testing.assert_array_equal(lat["w"], lat["ws"])  # gen_images.py --projected-w reads 'w'
    record = json.loads((run_dir / "run.json").read_text())
    assert record["settings"]["prompt"] == PROMPT and record["settings"]["steps"] == 30
    assert len(record["loss_history"]) == 30 and "clip" in record["loss_history"][0]
    assert record["versions"]["torch"] == torch.__version__
    assert record["network"]["num_ws"] == 10 and record["timings"]["seconds"] > 0


def test_clip_loss_falls_by_a_margin(main_run):
    from clipstyle.generator import read_generator_file
    from clipstyle.guidance import CLIPGuide

    code, out, err, net = main_run
    assert code == 0, err
    run_dir = Path(out.strip().splitlines()[-1])
    G = read_generator_file(net)
    guide = CLIPGuide(TINY_CLIP, None)  # random weights, deterministic: same model the CLI used
    ws0 = G.w_avg[None, None].repeat(1, G.num_ws, 1)
    with np.load(run_dir / "latents.npz") as lat:
        ws1 = torch.from_numpy(lat["ws"])
    before, after = clip_distance(guide, G, ws0, PROMPT), clip_distance(guide, G, ws1, PROMPT)
    assert after < before - 0.05, (before, after)


def test_blocks_leave_other_rows_bit_identical(tmp_path, capsys):
    net = _tiny.network_file("sg2")
    code, out, err = run_cli([PROMPT, *base_args(tmp_path, net, steps=10), "--blocks", "8-9", "--seed", "3",
                              "--truncation", "0.7"], capsys)
    assert code == 0, err
    from clipstyle.generator import read_generator_file
    from clipstyle.latents import start_ws

    G = read_generator_file(net)
    ws0, _ = start_ws(G, seed=3, truncation_psi=0.7)
    with np.load(Path(out.strip()) / "latents.npz") as lat:
        ws = lat["ws"]
    np.testing.assert_array_equal(ws[0, :8], ws0[0, :8].numpy())  # bit-identical
    assert np.abs(ws[0, 8:] - ws0[0, 8:].numpy()).max() > 1e-4     # the free rows moved


def test_seed_matches_nvidia_z():
    from clipstyle.latents import seed_z

    z = seed_z(42, 64)
    np.testing.assert_array_equal(z, np.random.RandomState(42).randn(1, 64))


def test_image_prompt_loss_falls(tmp_path, capsys):
    net = _tiny.network_file("sg2")
    target = tmp_path / "target.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(target)
    code, out, err = run_cli(["", *base_args(tmp_path, net, steps=30), "--image-prompt", target], capsys)
    assert code == 0, err
    hist = json.loads((Path(out.strip()) / "run.json").read_text())["loss_history"]
    first = np.mean([h["image"] for h in hist[:3]])
    last = np.mean([h["image"] for h in hist[-3:]])
    assert last < 0.8 * first, (first, last)  # the image loss falls (by a fifth at least)


@pytest.mark.parametrize("args,code,needle", [
    (["", "--steps", "1"], 2, "prompt is empty"),
    (["x", "--blocks", "3-1"], 2, "start is after end"),
    (["x", "--blocks", "0-99"], 2, "out of range"),
    (["x", "--clip-model", "NoSuchModel-99"], 2, "unknown CLIP model"),
    (["x", "--network", "/nonexistent/net.pkl"], 2, "no such network checkpoint"),
    (["x", "--image-prompt", "/nonexistent.png"], 2, "no such image"),
])
def test_user_mistakes_get_one_line_and_exit_code(tmp_path, capsys, args, code, needle):
    net = _tiny.network_file("sg2")
    full = [*args]
    if "--network" not in full:
        full += ["--network", net]
    if "--clip-model" not in full:
        full += ["--clip-model", TINY_CLIP]
    full += ["--clip-pretrained", "none", "--outdir", tmp_path, "--device", "cpu", "--quiet"]
    got, out, err = run_cli(full, capsys)
    assert got == code, err
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_offline_alias_gives_the_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CLIPSTYLE_CACHE", str(tmp_path / "cache"))
    import clipstyle.io.cache as cache

    def offline(*a, **k):
        raise cache.urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(cache.urllib.request, "urlopen", offline)
    got, out, err = run_cli(["x", "--network", "ffhq", "--clip-model", TINY_CLIP, "--clip-pretrained", "none",
                             "--outdir", tmp_path, "--device", "cpu", "--quiet"], capsys)
    assert got == 1
    assert "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl" in err
    assert "--network" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_help_explains_options(capsys):
    code, out, err = run_cli(["--help"], capsys)
    assert code == 0
    for opt in ("--network", "--clip-model", "--clip-pretrained", "--steps", "--lr", "--seed", "--truncation",
                "--class", "--blocks", "--cutouts", "--l2", "--image-prompt", "--save-every", "--outdir", "--device"):
        assert opt in out
