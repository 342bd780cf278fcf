"""Interpolation: slerp/lerp endpoints and geometry, frame counts with and without loop, the command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from clipstyle.latents import save_latents
from clipstyle.latents.interpolate import (
    frame_count,
    interpolate_path,
    lerp,
    path_positions,
    slerp,
)

from .test_creative_cli import (  # noqa: F401
    assert_one_line_error,
    load,
    network_path,
    run_cli,
    run_dir_of,
)


def test_slerp_endpoints_and_norm():
    torch.manual_seed(0)
    a, b = torch.randn(18, 512), torch.randn(18, 512)
    center = torch.randn(512)
    for c in (None, center):
        torch.testing.assert_close(slerp(a, b, 0.0, c), a, atol=1e-6, rtol=0)
        torch.testing.assert_close(slerp(a, b, 1.0, c), b, atol=1e-6, rtol=0)
        torch.testing.assert_close(slerp(a, b, 1e-9, c), a, atol=1e-5, rtol=0)  # continuous at the ends
        torch.testing.assert_close(slerp(a, b, 1 - 1e-9, c), b, atol=1e-5, rtol=0)
    ua, ub = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    for t in (0.25, 0.5, 0.9):
        torch.testing.assert_close(slerp(ua, ub, t).norm(dim=-1), torch.ones(18), atol=1e-5, rtol=0)
    # the angle is split in proportion to t
    mid = slerp(ua, ub, 0.3)
    angle = lambda x, y: torch.arccos((x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1)))  # noqa: E731
    torch.testing.assert_close(angle(ua, mid), 0.3 * angle(ua, ub), atol=1e-4, rtol=0)
    torch.testing.assert_close(lerp(a, b, 0.0), a, atol=0, rtol=0)
    torch.testing.assert_close(lerp(a, b, 1.0), b, atol=0, rtol=0)


def test_slerp_degenerate_falls_back_to_lerp():
    a = torch.tensor([[1.0, 2.0, 3.0]])
    torch.testing.assert_close(slerp(a, 2 * a, 0.5), 1.5 * a)   # parallel
    torch.testing.assert_close(slerp(a, -a, 0.25), 0.5 * a)     # opposite
    assert torch.isfinite(slerp(torch.zeros(1, 3), a, 0.5)).all()
    with pytest.raises(ValueError):
        slerp(a, torch.ones(1, 4), 0.5)


@pytest.mark.parametrize("keys,frames,loop,total", [(2, 30, False, 31), (2, 30, True, 60), (3, 4, False, 9),
                                                    (3, 4, True, 12), (2, 1, False, 2)])
def test_frame_counts(keys, frames, loop, total):
    assert frame_count(keys, frames, loop) == total
    pos = path_positions(keys, frames, loop)
    assert len(pos) == total and pos[0] == (0, 1, 0.0)
    if loop:
        assert pos[-1][1] == 0 and pos[-1][2] < 1  # heads back to the start without repeating it
    else:
        assert pos[-1] == (keys - 2, keys - 1, 1.0)
    path = interpolate_path(torch.arange(keys, dtype=torch.float32)[:, None].repeat(1, 3), frames, "slerp", loop,
                            torch.full((3,), -1.0))
    assert path.shape == (total, 3)
    for k in range(keys):
        torch.testing.assert_close(path[k * frames], torch.full((3,), float(k)), atol=1e-6, rtol=0)


def test_path_errors():
    with pytest.raises(ValueError, match="two keyframes"):
        frame_count(1, 5, False)
    with pytest.raises(ValueError, match="frames"):
        frame_count(2, 0, False)
    with pytest.raises(ValueError, match="mode"):
        interpolate_path(torch.zeros(2, 3), 2, "cubic")


def test_cli_w_and_z_spaces(tmp_path, capsys):
    net = network_path("sg2")
    G = load("sg2")
    common = ["--network", net, "--device", "cpu", "--outdir", tmp_path]
    code, out, err = run_cli(["interpolate", "1", "2", "3", "--frames", 3, "--mode", "slerp", "--loop", *common], capsys)
    assert code == 0, err
    d = run_dir_of(out)
    with np.load(d / "latents.npz") as f:
        ws = torch.from_numpy(f["ws"])
    assert ws.shape == (9, 10, 64) and json.loads((d / "run.json").read_text())["settings"]["total_frames"] == 9
    z1 = torch.from_numpy(np.random.RandomState(1).randn(1, 64)).float()
    z2 = torch.from_numpy(np.random.RandomState(2).randn(1, 64)).float()
    with torch.no_grad():
        w1, w2 = G.mapping(z1, None), G.mapping(z2, None)
    torch.testing.assert_close(ws[0], w1[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(ws[3], w2[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(ws[1], slerp(w1[0], w2[0], 1 / 3, G.w_avg), atol=1e-6, rtol=0)

    # Z space: each frame is the mapping of the interpolated z
    code, out, err = run_cli(["interpolate", "1", "2", "--frames", 2, "--space", "z", "--mode", "slerp",
                              "--truncation", 0.5, *common], capsys)
    assert code == 0, err
    with np.load(run_dir_of(out) / "latents.npz") as f:
        ws = torch.from_numpy(f["ws"])
    assert ws.shape[0] == 3
    with torch.no_grad():
        mid = G.mapping(slerp(z1, z2, 0.5), None, truncation_psi=0.5)
    torch.testing.assert_close(ws[1], mid[0], atol=1e-5, rtol=0)

    # files carrying z work in Z space; files without z get a one-line error
    save_latents(tmp_path / "with_z.npz", w1, z=z1)
    save_latents(tmp_path / "no_z.npz", w2)
    code, out, err = run_cli(["interpolate", tmp_path / "with_z.npz", "2", "--space", "z", "--frames", 1, *common], capsys)
    assert code == 0, err
    code, out, err = run_cli(["interpolate", "1", tmp_path / "no_z.npz", "--space", "z", *common], capsys)
    assert_one_line_error(code, err, 2, "--space z needs z")


def test_cli_mp4(tmp_path, capsys):
    from clipstyle.render.files import video_available

    net = network_path("sg2")
    code, out, err = run_cli(["interpolate", "1", "2", "--frames", 2, "--mp4", "--network", net, "--device", "cpu",
                              "--outdir", tmp_path], capsys)
    assert code == 0, err
    d = run_dir_of(out)
    assert (d / "interpolation.gif").is_file()
    if video_available():
        assert (d / "interpolation.mp4").stat().st_size > 0
    else:
        assert "imageio-ffmpeg" in err and len(err.strip().splitlines()) == 1
        assert not (d / "interpolation.mp4").exists()


def test_sg3_interpolation(tmp_path, capsys):
    net = network_path("sg3")
    code, out, err = run_cli(["interpolate", "1", "2", "--frames", 2, "--network", net, "--device", "cpu",
                              "--outdir", tmp_path], capsys)
    assert code == 0, err
    assert math.isfinite(np.load(run_dir_of(out) / "latents.npz")["ws"].sum())
