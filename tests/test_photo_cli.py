"""``clipstyle project``: odd photos, clear errors, and an end-to-end run on a real photo."""

from __future__ import annotations

import json
import socket
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from clipstyle.generator.formats.native import save_native
from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from clipstyle.inversion.lpips import CHANNELS, build_vgg16_features
from clipstyle.latents import load_latents

from ._cli import run_cli


@pytest.fixture(scope="module")
def tiny_net(tmp_path_factory):
    torch.manual_seed(0)
    G = StyleGAN2Generator(StyleGAN2Config(z_dim=32, w_dim=32, c_dim=0, img_resolution=32, img_channels=3,
                                           channels=(32, 32, 32, 16)))
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
    return save_native(G, tmp_path_factory.mktemp("net") / "tiny32.safetensors")


@pytest.fixture(scope="module")
def lpips_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lpips")
    torch.manual_seed(0)
    torch.save({f"features.{k}": v for k, v in build_vgg16_features().state_dict().items()},
               folder / "vgg16-397923af.pth")
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(CHANNELS)}, folder / "vgg.pth")
    return folder


def project_args(photo, net, outdir, *extra):
    return ["project", photo, "--network", net, "--perceptual", "none", "--steps", "2", "--device", "cpu",
            "--outdir", outdir, "-q", *extra]


def target_pixels(out: str) -> np.ndarray:
    run_dir = out.strip().splitlines()[-1]
    return np.asarray(Image.open(f"{run_dir}/target.png"))


def test_rgba_is_composited_on_white(tmp_path, tiny_net, capsys):
    arr = np.zeros((40, 50, 4), np.uint8)
    arr[..., 0] = 200  # red, but fully transparent
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    code, out, err = run_cli(project_args(tmp_path / "a.png", tiny_net, tmp_path / "out"), capsys)
    assert code == 0, err
    t = target_pixels(out)
    assert t.shape == (32, 32, 3) and t.min() >= 254


def test_grayscale_and_16bit(tmp_path, tiny_net, capsys):
    ramp = np.tile(np.linspace(0, 255, 48).astype(np.uint8), (48, 1))
    Image.fromarray(ramp, "L").save(tmp_path / "g.png")
    code, out, err = run_cli(project_args(tmp_path / "g.png", tiny_net, tmp_path / "out"), capsys)
    assert code == 0, err
    t = target_pixels(out).astype(int)
    assert (t[..., 0] == t[..., 1]).all() and (t[..., 1] == t[..., 2]).all() and t[:, -1, 0].mean() > 200

    deep = np.full((33, 33), 40000, np.uint16)
    Image.fromarray(deep).save(tmp_path / "d16.png")
    assert Image.open(tmp_path / "d16.png").mode.startswith("I")
    code, out, err = run_cli(project_args(tmp_path / "d16.png", tiny_net, tmp_path / "out"), capsys)
    assert code == 0, err
    assert np.abs(target_pixels(out).astype(int) - round(40000 / 65535 * 255)).max() <= 1


def test_one_pixel_image(tmp_path, tiny_net, capsys):
    Image.new("RGB", (1, 1), (10, 200, 30)).save(tmp_path / "px.png")
    code, out, err = run_cli(project_args(tmp_path / "px.png", tiny_net, tmp_path / "out"), capsys)
    assert code == 0, err
    t = target_pixels(out).astype(int)
    assert np.abs(t - np.array([10, 200, 30])).max() <= 1


@pytest.mark.parametrize("case", ["not_image", "missing", "folder"])
def test_unusable_photos_fail_cleanly(tmp_path, tiny_net, capsys, case):
    path = {"not_image": tmp_path / "notes.png", "missing": tmp_path / "nope.jpg", "folder": tmp_path}[case]
    if case == "not_image":
        path.write_text("this is not a picture\n")
    code, out, err = run_cli(project_args(path, tiny_net, tmp_path / "out"), capsys)
    assert code == (1 if case == "not_image" else 2)  # a bad input file (BadFileError) vs a path that is no file
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert str(path.name) in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra,needle", [
    (["--space", "z"], "--space"),
    (["--perceptual", "vgg"], "--perceptual"),
    (["--mse", "0"], "--mse"),
    (["--class", "3"], "unconditional"),
])
def test_bad_options_fail_cleanly(tmp_path, tiny_net, capsys, extra, needle):
    Image.new("RGB", (8, 8)).save(tmp_path / "p.png")
    code, _, err = run_cli(project_args(tmp_path / "p.png", tiny_net, tmp_path / "out", *extra), capsys)
    assert code == 2 and needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_lpips_offline_message(tmp_path, tiny_net, capsys, monkeypatch):
    import clipstyle.io.cache as cache

    def offline(url, timeout):
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(cache, "_open_url", offline)
    monkeypatch.setenv("CLIPSTYLE_CACHE", str(tmp_path / "cache"))
    Image.new("RGB", (8, 8)).save(tmp_path / "p.png")
    args = ["project", tmp_path / "p.png", "--network", tiny_net, "--steps", "2", "--device", "cpu", "-q",
            "--outdir", tmp_path / "out"]
    code, _, err = run_cli(args, capsys)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "--lpips-weights" in err and "--perceptual none" in err


def test_align_without_the_extra(tmp_path, tiny_net, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_dlib(name, *args, **kwargs):
        if name == "dlib":
            raise ImportError("No module named 'dlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dlib)
    Image.new("RGB", (8, 8)).save(tmp_path / "p.png")
    code, _, err = run_cli(project_args(tmp_path / "p.png", tiny_net, tmp_path / "out", "--align"), capsys)
    assert code == 2 and "pip install clipstyle[align]" in err and err.count("\n") == 1


def test_face_quad_geometry():
    from clipstyle.inversion.align import align_face, face_quad

    lm = np.zeros((68, 2))
    lm[36:42] = (40, 50)   # left eye
    lm[42:48] = (60, 50)   # right eye
    lm[48], lm[54] = (42, 80), (58, 80)  # mouth corners
    quad = face_quad(lm)
    centre = quad.mean(axis=0)
    assert np.allclose(centre, (50, 53))             # 10% of the way from the eyes to the mouth
    side = np.linalg.norm(quad[3] - quad[0])
    assert side == pytest.approx(2 * max(20 * 2.0, 30 * 1.8))
    assert np.allclose(quad[0], (50 - side / 2, 53 - side / 2))  # upright face: axis-aligned square
    img = Image.new("RGB", (100, 120), (0, 0, 255))
    out = align_face(img, 32, landmarks=lm)
    assert out.size == (32, 32) and np.asarray(out)[..., 2].min() == 255


def test_real_photo_end_to_end_with_lpips(tmp_path, tiny_net, lpips_dir, capsys):
    from skimage import data

    net = tiny_net
    Image.fromarray(data.astronaut()).resize((64, 64), Image.Resampling.LANCZOS).save(tmp_path / "astronaut.png")
    args = ["project", tmp_path / "astronaut.png", "--network", net, "--lpips-weights", lpips_dir, "--mse", "0.5",
            "--steps", "40", "--save-every", "10", "--device", "cpu", "--outdir", tmp_path / "out", "-q"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    run_dir = tmp_path / "out" / "proj-astronaut"
    assert out.strip() == str(run_dir) and "PSNR" in err
    for name in ("target.png", "proj.png", "result.png", "progress.gif", "latents.npz", "run.json"):
        assert (run_dir / name).is_file(), name
    record = json.loads((run_dir / "run.json").read_text())
    hist = record["loss_history"]
    assert len(hist) == 40 and {"lpips", "mse", "noise_reg"} <= set(hist[0])
    for term in ("lpips", "mse"):
        start, end = hist[0][term], np.mean([h[term] for h in hist[-5:]])
        assert end < 0.9 * start, (term, start, end)
    assert {"lpips", "mse", "psnr"} <= set(record["metrics"])
    lf = load_latents(run_dir / "latents.npz")
    assert lf.meta["network"] == str(net) and len(lf.meta["noise"]) > 0
    with np.load(run_dir / "latents.npz") as f:
        assert all(f"noise_{i}" in f.files for i in range(len(lf.meta["noise"])))
        assert np.allclose(f["ws"], f["ws"][:, :1])  # W space by default
    gif = Image.open(run_dir / "progress.gif")
    assert gif.size[0] == 2 * gif.size[1] and gif.n_frames >= 2  # target | projection
