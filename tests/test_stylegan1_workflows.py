"""StyleGAN1 networks in every workflow: the main job, styleblocks, --blocks groups, mixing, blending,
interpolation, directions, projection; ``info`` and ``generate`` with StyleGAN1's truncation defaults;
StyleGAN3's --rotate/--translate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipstyle.generator import read_generator_file
from clipstyle.generator.blend import blend_generators, synthesis_resolutions
from clipstyle.latents import parse_blocks

from ._cli import TINY_CLIP, run_cli
from . import _tiny
from ._fixtures import fixture_path

CLIP = ["--clip-model", TINY_CLIP, "--clip-pretrained", "none"]


def _run_dir(out: str) -> Path:
    return Path(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def net(tiny_sg1_path):
    return tiny_sg1_path


def test_block_groups_follow_the_paper(net):
    G = read_generator_file(net)
    groups = G.block_groups()
    assert parse_blocks("coarse", G.num_ws, groups) == (0, 1, 2, 3)     # 4²–8²
    assert parse_blocks("middle", G.num_ws, groups) == (4, 5, 6, 7)     # 16²–32²
    assert parse_blocks("fine", G.num_ws, groups) == (8, 9)             # 64²


def test_main_job_moves_only_the_chosen_styleblocks(tmp_path, capsys, net):
    code, out, err = run_cli(["a blond kid with green eyes", "--network", net, *CLIP, "--steps", "6", "--seed", "3",
                              "--blocks", "coarse", "--cutouts", "4", "--outdir", tmp_path, "--device", "cpu",
                              "--quiet"], capsys)
    assert code == 0, err
    run = _run_dir(out)
    assert {"result.png", "latents.npz", "run.json", "progress.gif"} <= {p.name for p in run.iterdir()}
    G = read_generator_file(net)
    z = torch.from_numpy(np.random.RandomState(3).randn(1, 64)).float()
    start = G.mapping(z, None).numpy()
    with np.load(run / "latents.npz") as f:
        ws = f["ws"]
    assert np.array_equal(ws[:, 4:], start[:, 4:])           # middle and fine rows untouched, bit for bit
    assert np.abs(ws[:, :4] - start[:, :4]).max() > 1e-4     # coarse rows optimized
    assert Image.open(run / "result.png").size == (64, 64)


def test_styleblocks_sheet_has_one_row_per_block(tmp_path, capsys, net):
    code, out, err = run_cli(["styleblocks", "-n", net, "--seed", "1", "--blocks", "fine", "--frames", "3",
                              "--outdir", tmp_path, "--device", "cpu"], capsys)
    assert code == 0, err
    run = _run_dir(out)
    assert sorted(p.name for p in run.glob("block*.gif")) == ["block08.gif", "block09.gif"]
    with np.load(run / "block08.npz") as f:
        ws = f["ws"]
    assert ws.shape == (3, 10, 64)
    assert np.array_equal(ws[:, :8], np.broadcast_to(ws[:1, :8], ws[:, :8].shape))  # only row 8 varies
    assert not np.array_equal(ws[0, 8], ws[-1, 8])


def test_mix_takes_the_blocks_from_the_column(tmp_path, capsys, net):
    code, out, err = run_cli(["mix", "--rows", "1", "--cols", "2", "--blocks", "middle", "-n", net,
                              "--outdir", tmp_path, "--device", "cpu"], capsys)
    assert code == 0, err
    G = read_generator_file(net)
    w = {s: G.mapping(torch.from_numpy(np.random.RandomState(s).randn(1, 64)).float(), None).numpy() for s in (1, 2)}
    with np.load(_run_dir(out) / "mix-seed1-seed2.npz") as f:
        ws = f["ws"]
    np.testing.assert_array_equal(ws[:, 4:8], w[2][:, 4:8])
    np.testing.assert_array_equal(ws[:, :4], w[1][:, :4])
    np.testing.assert_array_equal(ws[:, 8:], w[1][:, 8:])


def test_blend_cuts_stylegan1_by_resolution(net):
    A = read_generator_file(net)
    B = read_generator_file(net)
    with torch.no_grad():
        for p in B.synthesis.parameters():
            p.add_(0.1)
    res = synthesis_resolutions(A)
    assert None not in res.values() and set(res.values()) == {4.0, 8.0, 16.0, 32.0, 64.0}
    G = blend_generators(A, B, at=16)
    sa, sb, sg = A.state_dict(), B.state_dict(), G.state_dict()
    for k, r in res.items():
        assert torch.equal(sg[k], sa[k] if r <= 16 else sb[k]), k
    assert G.config == A.config  # A's numerics (instance-norm eps) and provenance
    ws = A.mapping(torch.randn(1, 64, generator=torch.Generator().manual_seed(0)), None)
    with torch.no_grad():
        assert not torch.equal(G.synthesis(ws), A.synthesis(ws))


def test_blend_command_writes_a_stylegan1_network(tmp_path, capsys, net):
    out = tmp_path / "b.safetensors"
    other = _tiny.save_tiny_network(_tiny.tiny_sg1(seed=1), tmp_path / "other.safetensors")
    code, _, err = run_cli(["blend", net, other, "--at", "8", "--out", out], capsys)
    assert code == 0, err
    G = read_generator_file(out)
    assert G.kind == "stylegan1" and G.source.format == "clipstyle-safetensors"


def test_interpolate_and_direction_apply(tmp_path, capsys, net):
    code, out, err = run_cli(["interpolate", "1", "2", "-n", net, "--frames", "4", "--outdir", tmp_path / "i",
                              "--device", "cpu"], capsys)
    assert code == 0, err
    with np.load(_run_dir(out) / "latents.npz") as f:
        frames = f["ws"]
    assert frames.shape[0] >= 4 and frames.shape[1:] == (10, 64)
    d = tmp_path / "d.npy"
    np.save(d, np.ones(64, np.float32))
    code, out, err = run_cli(["direction", "apply", "1", d, "--blocks", "coarse", "--strength", "0:2", "--frames", "3",
                              "-n", net, "--outdir", tmp_path / "d", "--device", "cpu"], capsys)
    assert code == 0, err
    with np.load(_run_dir(out) / "latents.npz") as f:
        ws = f["ws"]
    np.testing.assert_allclose(ws[2, :4] - ws[0, :4], 2.0, atol=1e-5)
    np.testing.assert_array_equal(ws[2, 4:], ws[0, 4:])


def test_projection_optimizes_w_and_the_noise_maps(tmp_path, capsys, net):
    G = read_generator_file(net)
    ws = G.mapping(torch.from_numpy(np.random.RandomState(9).randn(1, 64)).float(), None, 0.7, 8)
    with torch.no_grad():
        img = ((G.synthesis(ws)[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8)).numpy()
    photo = tmp_path / "t.png"
    Image.fromarray(img).save(photo)
    code, out, err = run_cli(["project", photo, "-n", net, "--steps", "30", "--perceptual", "none",
                              "--outdir", tmp_path, "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    run = _run_dir(out)
    with np.load(run / "latents.npz") as f:
        assert sorted(k for k in f.files if k.startswith("noise_")) == [f"noise_{i}" for i in range(10)]
        assert f["noise_9"].shape[-2:] == (64, 64)
        ws_p = torch.from_numpy(f["ws"])
    with torch.no_grad():
        start = G.synthesis(G.w_avg[None, None].repeat(1, 10, 1))
        target = G.synthesis(ws)
        got = G.synthesis(ws_p)
    assert float((got - target).square().mean()) < 0.8 * float((start - target).square().mean())


def test_info_shows_rows_and_what_was_made_up(capsys):
    """A lernapparat file lacks w_avg and the noise maps: ``info`` says they were made up (a format fact)."""
    net = fixture_path("sg1_lernapparat_64.pt")
    code, out, err = run_cli(["info", net, "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["kind"] == "stylegan1" and d["num_ws"] == 10 and len(d["styleblocks"]) == 10
    assert d["styleblocks"][4] == {"row": 4, "resolution": 16, "group": "middle"}
    assert "made up" in d["w_avg_origin"] and "seeded constant noise" in d["noise_origin"]
    assert d["instance_norm_eps"] == 1e-5 and d["default_truncation"] == {"psi": 0.7, "cutoff": 8}
    code, out, _ = run_cli(["info", net], capsys)
    assert "made up" in out and "psi 0.7 on rows 0-7" in out


def test_generate_uses_stylegan1_defaults_and_says_so(tmp_path, capsys, net):
    code, out, err = run_cli(["generate", "-n", net, "--seeds", "4", "--outdir", tmp_path, "--device", "cpu"], capsys)
    assert code == 0, err
    assert "StyleGAN1 network: using its documented default truncation (psi 0.7, rows 0-7)" in err
    G = read_generator_file(net)
    z = torch.from_numpy(np.random.RandomState(4).randn(1, 64)).float()
    with np.load(_run_dir(out) / "seed0004.npz") as f:
        np.testing.assert_array_equal(f["ws"], G.mapping(z, None, 0.7, 8).numpy())
    code, out, err = run_cli(["generate", "-n", net, "--seeds", "4", "--truncation", "1", "--outdir", tmp_path,
                              "--device", "cpu"], capsys)
    assert code == 0 and "default truncation" not in err
    with np.load(_run_dir(out) / "seed0004.npz") as f:
        np.testing.assert_array_equal(f["ws"], G.mapping(z, None).numpy())


def test_generate_does_not_apply_stylegan1_defaults_to_stylegan2(tmp_path, capsys):
    net = _tiny.network_file("sg2")
    code, out, err = run_cli(["generate", "-n", net, "--seeds", "4", "--outdir", tmp_path, "--device", "cpu"], capsys)
    assert code == 0 and err == ""
    G = read_generator_file(net)
    z = torch.from_numpy(np.random.RandomState(4).randn(1, G.z_dim)).float()
    with np.load(_run_dir(out) / "seed0004.npz") as f:
        np.testing.assert_array_equal(f["ws"], G.mapping(z, None).numpy())


# ---- StyleGAN3's input transform ----

def test_sg3_rotate_translate(tmp_path, capsys):
    from clipstyle.generator.stylegan3 import input_transform

    net = _tiny.network_file("sg3r")
    imgs = {}
    for name, extra in (("default", []), ("zero", ["--rotate", "0", "--translate", "0,0"]),
                        ("rot", ["--rotate", "90"]), ("shift", ["--translate", "0.25,0"])):
        code, out, err = run_cli(["generate", "-n", net, "--seeds", "2", *extra, "--outdir", tmp_path / name,
                                  "--device", "cpu"], capsys)
        assert code == 0, err
        imgs[name] = np.asarray(Image.open(_run_dir(out) / "seed0002.png")).astype(int)
        settings = json.loads((_run_dir(out) / "run.json").read_text())["settings"]
    assert settings["translate"] == [0.25, 0.0]
    stored = read_generator_file(net).synthesis.input.transform
    if torch.equal(stored, torch.eye(3)):
        assert np.array_equal(imgs["default"], imgs["zero"])
    for name in ("rot", "shift"):
        assert np.abs(imgs[name] - imgs["default"]).max() > 8, name  # deterministic: any change is the transform
    G = read_generator_file(net)  # the command's image is the network's with the inverse transform set
    G.synthesis.input.transform.copy_(input_transform(90.0, None))
    ws = G.mapping(torch.from_numpy(np.random.RandomState(2).randn(1, G.z_dim)).float(), None)
    with torch.no_grad():
        want = (G.synthesis(ws)[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    assert np.abs(want.astype(int) - imgs["rot"]).max() <= 1
    m = input_transform(30.0, (0.1, -0.2))
    a = math.radians(30)
    fwd = torch.tensor([[math.cos(a), math.sin(a), 0.1], [-math.sin(a), math.cos(a), -0.2], [0, 0, 1]])
    assert torch.allclose(m @ fwd, torch.eye(3), atol=1e-6)


@pytest.mark.parametrize("args,needle", [(["--rotate", "10"], "need a StyleGAN3 network"),
                                         (["--translate", "1"], "--translate must be X,Y")])
def test_transform_errors(tmp_path, capsys, args, needle):
    net = _tiny.network_file("sg3r" if "--translate" in args else "sg1")
    code, _, err = run_cli(["generate", "-n", net, "--seeds", "0", *args, "--outdir", tmp_path, "--device", "cpu"],
                           capsys)
    assert code == 2 and needle in err and err.count("\n") == 1


def test_invert_z_works_on_stylegan1(tmp_path, capsys, net):
    """The W→Z inversion reads the mapping's layers generically; StyleGAN1's He gain on the weight is
    expressed as our lrelu gain (exactly equivalent), so the inversion fits as well as on StyleGAN2."""
    from clipstyle.inversion.mapping_inverse import invert_mapping

    G = read_generator_file(net)
    z = torch.from_numpy(np.random.RandomState(0).randn(2, 64)).float()
    w = G.mapping(z, None)[:, 0]
    inv = invert_mapping(G, w, None)
    assert float(inv.residual.max()) < 0.05  # measured 0.028 on the lernapparat fixture; 0.24 with a misread activation
    code, out, err = run_cli(["generate", "-n", net, "--seeds", "0", "--outdir", tmp_path, "--device", "cpu"], capsys)
    lat = _run_dir(out) / "seed0000.npz"
    code, out, err = run_cli(["invert-z", lat, "-n", net, "--truncation", "0.7", "--truncation-cutoff", "8",
                              "--out", tmp_path / "z.npz"], capsys)
    assert code == 0, err
    with np.load(tmp_path / "z.npz") as f:
        assert f["z"].shape == (1, 64)
