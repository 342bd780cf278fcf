"""``info``, ``generate``, ``convert`` and the main job on every fixture format (issue: every checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipstyle.generator import read_generator_file

from ._cli import TINY_CLIP, run_cli
from . import _tiny
from ._fixtures import fixture_path

# fixture file → (num_ws, resolution, kind, per-row resolutions)
FIXTURES = {
    "sg2_skip_64.pkl": (10, 64, "stylegan2", [4, 8, 8, 16, 16, 32, 32, 64, 64, 64]),
    "tf_sg2_skip_64.pkl": (10, 64, "stylegan2", [4, 8, 8, 16, 16, 32, 32, 64, 64, 64]),
    "rosinality_64.pt": (10, 64, "stylegan2", [4, 8, 8, 16, 16, 32, 32, 64, 64, 64]),
    "rosinality_train_32.pt": (8, 32, "stylegan2", [4, 8, 8, 16, 16, 32, 32, 32]),
    "sg3_t_64.pkl": (16, 64, "stylegan3", [4, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32, 40, 51, 64, 64, 64]),
    "sg3_r_64.pkl": (16, 64, "stylegan3", [4, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32, 40, 51, 64, 64, 64]),
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_info_reports_rows_and_resolutions(name, capsys):
    num_ws, res, kind, rows = FIXTURES[name]
    code, out, err = run_cli(["info", fixture_path(name), "--json"], capsys)
    assert code == 0, err
    info = json.loads(out)
    assert (info["num_ws"], info["img_resolution"], info["kind"]) == (num_ws, res, kind)
    assert [r["resolution"] for r in info["styleblocks"]] == rows
    assert {r["group"] for r in info["styleblocks"]} <= {"coarse", "middle", "fine"}
    assert info["num_params"] > 0 and info["format"]


def test_info_table_is_readable(capsys):
    code, out, err = run_cli(["info", _tiny.network_file("sg2")], capsys)
    assert code == 0, err
    assert "num_ws=10" in out and "coarse" in out and "fine" in out and "architecture: skip" in out


@pytest.mark.parametrize("name", ["sg2_skip_64.pkl", "sg3_t_64.pkl"])
def test_generate_seeds(name, tmp_path, capsys):
    net = fixture_path(name)
    code, out, err = run_cli(["generate", "--network", net, "--seeds", "0-1,0", "--truncation", "0.7", "--grid",
                              "--outdir", tmp_path, "--device", "cpu"], capsys)
    assert code == 0, err
    run_dir = Path(out.strip())
    a, b = (np.asarray(Image.open(run_dir / f"seed{s:04d}.png")) for s in (0, 1))
    assert a.shape == (64, 64, 3) and np.abs(a.astype(int) - b).max() > 10  # two seeds: two images
    assert Image.open(run_dir / "grid.png").size[0] >= 128
    # The same seed again gives the identical image, and the saved latent reproduces it.
    code, out2, err = run_cli(["generate", "--network", net, "--seeds", "0", "--truncation", "0.7",
                               "--outdir", tmp_path, "--device", "cpu"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(a, np.asarray(Image.open(Path(out2.strip()) / "seed0000.png")))
    G = read_generator_file(net)
    z = np.random.RandomState(0).randn(1, G.z_dim)
    with np.load(run_dir / "seed0000.npz") as lat:
        np.testing.assert_allclose(lat["z"], z, rtol=0, atol=1e-6)
        ws = G.mapping(torch.from_numpy(z).float(), None, truncation_psi=0.7)
        np.testing.assert_array_equal(lat["ws"], ws.numpy())


def test_generate_bad_seeds(tmp_path, capsys):
    code, out, err = run_cli(["generate", "--network", _tiny.network_file("sg2"), "--seeds", "3-x",
                              "--outdir", tmp_path], capsys)
    assert code == 2 and "bad seed" in err and "Traceback" not in err


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_convert_round_trip_is_bit_exact(name, tmp_path, capsys):
    src = fixture_path(name)
    out_path = tmp_path / "net.safetensors"
    code, out, err = run_cli(["convert", src, out_path], capsys)
    assert code == 0, err
    A, B = read_generator_file(src), read_generator_file(out_path)
    assert B.source.format == "clipstyle-safetensors" and type(A) is type(B)
    sa, sb = A.state_dict(), B.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    ws = A.mapping(torch.randn(2, A.z_dim), None, truncation_psi=0.7)
    with torch.no_grad():
        assert torch.equal(A.synthesis(ws), B.synthesis(ws))
    # Never overwrites without being asked.
    before = out_path.read_bytes()
    code, out, err = run_cli(["convert", src, out_path], capsys)
    assert code == 2 and "exists" in err and out_path.read_bytes() == before


@pytest.mark.parametrize("name", ["sg3_t_64.pkl", "rosinality_64.pt", "tf_sg2_skip_64.pkl"])
def test_main_job_runs_on_every_family(name, tmp_path, capsys):
    net = fixture_path(name)
    code, out, err = run_cli(["a red apple", "--network", net, "--clip-model", TINY_CLIP, "--clip-pretrained", "none",
                              "--steps", "12", "--cutouts", "4", "--blocks", "coarse", "--outdir", tmp_path,
                              "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    run_dir = Path(out.strip())
    G = read_generator_file(net)
    with np.load(run_dir / "latents.npz") as lat:
        ws = lat["ws"]
    assert ws.shape == (1, G.num_ws, G.w_dim)
    coarse = [i for i, g in enumerate(G.block_groups()) if g == "coarse"]
    others = [i for i in range(G.num_ws) if i not in coarse]
    w_avg = G.w_avg.numpy()
    np.testing.assert_array_equal(ws[0, others], np.broadcast_to(w_avg, (len(others), G.w_dim)))
    assert np.abs(ws[0, coarse] - w_avg).max() > 1e-4
    hist = json.loads((run_dir / "run.json").read_text())["loss_history"]
    assert len(hist) == 12
