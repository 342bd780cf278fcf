"""Styleblocks: scaling one row of ws changes only that row; frames match a direct synthesis."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from clipstyle.latents.styleblocks import (
    factors,
    parse_range,
    scale_row,
    styleblock_frames,
)
from clipstyle.render.files import to_uint8

from .test_creative_cli import load, network_path, run_cli, run_dir_of  # noqa: F401


@pytest.mark.parametrize("spec,expected", [("0:1", (0.0, 1.0)), ("-2:2", (-2.0, 2.0)), ("1.5:-0.5", (1.5, -0.5)),
                                           ("3", (3.0, 3.0)), (" -1e-1 : 2 ", (-0.1, 2.0))])
def test_parse_range(spec, expected):
    assert parse_range(spec) == expected


@pytest.mark.parametrize("spec", ["", "a:b", "1:2:3", "nan:1", "1:inf"])
def test_parse_range_rejects(spec):
    with pytest.raises(ValueError, match="LO:HI|finite"):
        parse_range(spec, "--scale")


def test_factors_are_inclusive_and_counted():
    assert factors(-2, 2, 5) == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert factors(0, 1, 1) == [0.0]
    with pytest.raises(ValueError):
        factors(0, 1, 0)


def test_scale_row_touches_only_that_row():
    torch.manual_seed(0)
    ws = torch.randn(1, 10, 64)
    out = scale_row(ws, 4, [-2.0, 0.0, 0.5, 1.0])
    assert out.shape == (4, 10, 64)
    others = [r for r in range(10) if r != 4]
    assert torch.equal(out[:, others], ws[:, others].expand(4, -1, -1))  # bit-identical
    torch.testing.assert_close(out[:, 4], torch.tensor([-2.0, 0.0, 0.5, 1.0])[:, None] * ws[0, 4])
    assert torch.equal(out[3], ws[0])  # factor 1 is the input
    center = torch.randn(64)
    around = scale_row(ws, 4, [0.0, 1.0], center)
    assert torch.equal(around[0, 4], center) and torch.allclose(around[1, 4], ws[0, 4], atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        scale_row(ws, 10, [1.0])


def test_frames_equal_direct_synthesis_with_the_scaled_row():
    G = load("sg2")
    ws = G.mapping(torch.from_numpy(np.random.RandomState(3).randn(1, 64)).float(), None)
    values = [-1.5, 0.0, 2.0]
    frames, scaled = styleblock_frames(G, ws, 2, values)
    assert frames.shape == (3, 64, 64, 3) and frames.dtype == np.uint8
    for k, f in enumerate(values):
        direct = ws.clone()
        direct[:, 2] = f * ws[:, 2]
        assert torch.equal(scaled[k], direct[0])
        with torch.no_grad():
            ref = to_uint8(G.synthesis(direct))[0]
        diff = np.abs(frames[k].astype(int) - ref.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01  # batch-of-3 vs batch-of-1 rounding only
    assert not np.array_equal(frames[0], frames[2])  # the row matters


def test_cli_sheet_and_latents(tmp_path, capsys):
    net = network_path("sg2")
    G = load("sg2")
    code, out, err = run_cli(["styleblocks", "--seed", 5, "--blocks", "1,middle", "--scale=-2:2", "--frames", 4,
                              "--network", net, "--device", "cpu", "--outdir", tmp_path], capsys)
    assert code == 0, err
    d = run_dir_of(out)
    rows = [1, 3, 4, 5, 6]
    assert sorted(p.name for p in d.glob("*.gif")) == [f"block{r:02d}.gif" for r in rows] + ["progress.gif"]
    assert np.array_equal(np.asarray(Image.open(d / "result.png")), np.asarray(Image.open(d / "sheet.png")))
    assert Image.open(d / "block03.gif").n_frames == 4
    sheet = np.asarray(Image.open(d / "sheet.png"))
    assert sheet.shape == (len(rows) * 64, 4 * 64, 3)
    ws0 = G.mapping(torch.from_numpy(np.random.RandomState(5).randn(1, 64)).float(), None)
    for i, r in enumerate(rows):
        with np.load(d / f"block{r:02d}.npz") as f:
            saved = torch.from_numpy(f["ws"])
        others = [k for k in range(10) if k != r]
        assert torch.equal(saved[:, others], ws0[:, others].expand(4, -1, -1))
        torch.testing.assert_close(saved[:, r], torch.tensor([-2.0, -2 / 3, 2 / 3, 2.0])[:, None] * ws0[0, r])
        with torch.no_grad():
            ref = to_uint8(G.synthesis(saved))  # one batch, as the command renders it
        cells = sheet[i * 64:(i + 1) * 64].reshape(64, 4, 64, 3).transpose(1, 0, 2, 3)
        assert np.abs(cells.astype(int) - ref.astype(int)).max() <= 1
    assert json.loads((d / "run.json").read_text())["settings"]["blocks"] == rows


def test_cli_latents_file_and_avg(tmp_path, capsys):
    from clipstyle.latents import save_latents

    net = network_path("sg2")
    ws = torch.randn(2, 10, 64)
    save_latents(tmp_path / "two.npz", ws)
    code, out, err = run_cli(["styleblocks", "--latents", f"{tmp_path / 'two.npz'}#1", "--blocks", "9", "--frames", 2,
                              "--around", "avg", "--network", net, "--device", "cpu", "--outdir", tmp_path], capsys)
    assert code == 0, err
    with np.load(run_dir_of(out) / "block09.npz") as f:
        saved = f["ws"]
    G = load("sg2")
    np.testing.assert_array_equal(saved[0, 9], G.w_avg.numpy())       # factor 0 about w_avg
    np.testing.assert_allclose(saved[1, 9], ws[1, 9].numpy(), atol=1e-6)  # factor 1: item #1 itself
    np.testing.assert_array_equal(saved[:, :9], ws[1:2, :9].numpy().repeat(2, 0))


def test_sg3_styleblocks(tmp_path, capsys):
    net = network_path("sg3")
    G = load("sg3")
    code, out, err = run_cli(["styleblocks", "--seed", 1, "--blocks", f"0,{G.num_ws - 1}", "--frames", 2,
                              "--network", net, "--device", "cpu", "--outdir", tmp_path], capsys)
    assert code == 0, err
    with np.load(run_dir_of(out) / "block00.npz") as f:
        saved = f["ws"]
    np.testing.assert_array_equal(saved[0, 0], 0 * saved[1, 0])
    np.testing.assert_array_equal(saved[0, 1:], saved[1, 1:])
