"""Every latent and direction file in circulation, read and rendered identically to the same values in our
own format; errors that say what a file is."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from clipstyle.latents import LatentFileError, load_latents, save_latents
from clipstyle.latents.directions import DirectionError, load_direction

from ._cli import run_cli
from . import _tiny

NUM_WS, W_DIM = 10, 64  # the 64² fixtures


def _values(seed: int = 0, n: int = 1) -> np.ndarray:
    """ws [n, NUM_WS, W_DIM], exactly representable in float16 (so every dtype holds the same values)."""
    rng = np.random.RandomState(seed)
    return rng.randn(n, NUM_WS, W_DIM).astype(np.float16).astype(np.float32)


def _cuda_tagged_legacy(path, tensor) -> None:
    """A legacy ``torch.save`` whose storages say ``cuda:0``, as a file written on a GPU (no GPU needed)."""
    torch.save(tensor, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    cpu, cuda = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"
    assert data.count(cpu) == 1
    path.write_bytes(data.replace(cpu, cuda))


def _cuda_tagged_zip(path, tensor) -> None:
    torch.save(tensor, path)
    with zipfile.ZipFile(path) as zf:
        entries = [(info, zf.read(info)) for info in zf.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for info, data in entries:
            if info.filename.endswith("data.pkl"):
                assert b"X\x03\x00\x00\x00cpu" in data
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            zf.writestr(info, data)


WP = "w+"  # the file holds the full [1, NUM_WS, W_DIM] values
W = "w"    # the file holds row 0 only (one w), broadcast to every row


def _write(layout: str, path, ws: np.ndarray) -> None:
    w = ws[0, 0]
    if layout == "npz-w":
        np.savez(path, w=ws)                                    # NVIDIA projector's projected_w.npz
    elif layout == "npz-dlatents":
        np.savez(path, dlatents=ws)                             # TF StyleGAN projectors
    elif layout == "npy-wp-f16":
        np.save(path, ws[0].astype(np.float16))                 # [num_ws, w_dim] from an encoder
    elif layout == "npy-wp-f64":
        np.save(path, ws.astype(np.float64))                    # [1, num_ws, w_dim]
    elif layout == "npy-1w":
        np.save(path, w[None])                                  # [1, w_dim]
    elif layout == "npy-w":
        np.save(path, w.astype(np.float64))                     # [w_dim]
    elif layout == "pt-tensor":
        torch.save(torch.from_numpy(ws), path)
    elif layout == "pt-cuda-legacy":
        _cuda_tagged_legacy(path, torch.from_numpy(ws[0]))
    elif layout == "pt-cuda-zip":
        _cuda_tagged_zip(path, torch.from_numpy(ws))
    elif layout == "pt-dict":
        torch.save({"latent": torch.from_numpy(ws[0]).half()}, path)
    elif layout == "pt-named":
        torch.save({"img_001.png": torch.from_numpy(ws[0])}, path)  # {image name: latent}, as encoders dump them
    else:
        raise AssertionError(layout)


LAYOUTS = {"npz-w": WP, "npz-dlatents": WP, "npy-wp-f16": WP, "npy-wp-f64": WP, "npy-1w": W, "npy-w": W,
           "pt-tensor": WP, "pt-cuda-legacy": WP, "pt-cuda-zip": WP, "pt-dict": WP, "pt-named": WP}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_latent_layouts_read_as_the_same_values(tmp_path, layout):
    ws = _values()
    ext = ".npz" if layout.startswith("npz") else ".npy" if layout.startswith("npy") else ".pt"
    path = tmp_path / f"lat{ext}"
    _write(layout, path, ws)
    want = ws if LAYOUTS[layout] == WP else np.repeat(ws[:, :1], NUM_WS, axis=1)
    got = load_latents(path, NUM_WS, W_DIM)
    assert got.ws.dtype == np.float32 and got.ws.shape == (1, NUM_WS, W_DIM)
    np.testing.assert_array_equal(got.ws, want)


@pytest.mark.parametrize("layout", ["npz-dlatents", "npy-wp-f16", "pt-cuda-legacy", "npy-w"])
def test_latent_layouts_render_identically_to_our_format(tmp_path, capsys, layout):
    net = _tiny.network_file("sg1")
    ws = _values(1)
    want = ws if LAYOUTS[layout] == WP else np.repeat(ws[:, :1], NUM_WS, axis=1)
    ours = tmp_path / "ours.npz"
    save_latents(ours, want)
    ext = ".npz" if layout.startswith("npz") else ".npy" if layout.startswith("npy") else ".pt"
    theirs = tmp_path / f"theirs{ext}"
    _write(layout, theirs, ws)
    images = []
    for src in (ours, theirs):
        out = tmp_path / f"{src.stem}.png"
        code, _, err = run_cli(["render", src, "-n", net, "--out", out, "--device", "cpu"], capsys)
        assert code == 0, err
        images.append(np.asarray(Image.open(out)))
    assert np.array_equal(images[0], images[1]) and images[0].std() > 1  # identical, and not a blank image


def test_interpolate_and_mix_accept_foreign_files(tmp_path, capsys):
    net = _tiny.network_file("sg1")
    a, b = tmp_path / "a.npy", tmp_path / "b.pt"
    _write("npy-wp-f16", a, _values(2))
    _write("pt-cuda-zip", b, _values(3))
    code, out, err = run_cli(["interpolate", a, b, "-n", net, "--frames", "3", "--outdir", tmp_path / "o",
                              "--device", "cpu"], capsys)
    assert code == 0, err
    from pathlib import Path

    with np.load(Path(out.strip().splitlines()[-1]) / "latents.npz") as f:
        frames = f["ws"]
    np.testing.assert_array_equal(frames[0], _values(2)[0])
    np.testing.assert_array_equal(frames[-1], _values(3)[0])


def test_shape_mismatch_is_one_line_with_both_shapes(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros([18, 512], np.float32))
    with pytest.raises(LatentFileError) as info:
        load_latents(path, NUM_WS, W_DIM)
    msg = str(info.value)
    assert "[18, 512]" in msg and f"[N, {NUM_WS}, {W_DIM}]" in msg and "\n" not in msg


@pytest.mark.parametrize("make,needle", [
    (lambda p: torch.save({"g_ema": {}, "latent_avg": torch.zeros(3)}, p), "torch file holding a dict with keys g_ema"),
    (lambda p: np.savez(p, foo=np.zeros(3)), "NumPy .npz archive holding a dict with keys foo"),
    (lambda p: p.write_bytes(b"\x80\x04K\x01."), "plain Python pickle"),
    (lambda p: p.write_bytes(b"hello world"), "not a readable latent file"),
    (lambda p: np.save(p, np.zeros([4, 64], np.int64)), "NumPy .npy array holding an array of shape [4, 64] (int64)"),
])
def test_errors_name_what_the_file_is(tmp_path, make, needle):
    make(tmp_path / "f.bin")
    (path,) = tmp_path.iterdir()  # np.save / np.savez append .npy / .npz
    with pytest.raises(LatentFileError) as info:
        load_latents(path, NUM_WS, W_DIM)
    assert needle in str(info.value) and "\n" not in str(info.value)
    assert "an .npz archive" not in str(info.value) or "npz" in needle


def test_malicious_torch_latent_is_refused_without_running(tmp_path):
    import os

    sentinel = tmp_path / "SENTINEL"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {sentinel}",))

    path = tmp_path / "lat.pt"
    torch.save({"ws": Evil()}, path)
    with pytest.raises(LatentFileError, match="nothing from it ran"):
        load_latents(path, NUM_WS, W_DIM)
    assert not sentinel.exists()


# ---- directions ----

@pytest.mark.parametrize("layout", ["npy", "npy-f64-1xw", "pt-cuda", "npz-boundary", "pt-wp"])
def test_direction_layouts(tmp_path, layout):
    rng = np.random.RandomState(5)
    d = rng.randn(W_DIM).astype(np.float32)
    dp = rng.randn(NUM_WS, W_DIM).astype(np.float32)
    path = tmp_path / ("d.npy" if layout.startswith("npy") else "d.pt")
    want = np.repeat(d[None], NUM_WS, axis=0)
    if layout == "npy":
        np.save(path, d)
    elif layout == "npy-f64-1xw":        # InterFaceGAN boundaries: [1, 512] float64
        np.save(path, d[None].astype(np.float64))
    elif layout == "pt-cuda":            # e4e interfacegan_directions/*.pt: a [1, 512] tensor saved on a GPU
        _cuda_tagged_legacy(path, torch.from_numpy(d[None]))
    elif layout == "npz-boundary":
        path = tmp_path / "d.npz"
        np.savez(path, boundary=d[None])
    elif layout == "pt-wp":
        torch.save(torch.from_numpy(dp)[None], path)
        want = dp
    got = load_direction(path, NUM_WS, W_DIM)
    np.testing.assert_array_equal(got.numpy(), want)


@pytest.mark.parametrize("flavour", ["e4e", "ganspace"])
def test_ganspace_component_and_sigma(tmp_path, flavour):
    rng = np.random.RandomState(6)
    comp = rng.randn(8, W_DIM).astype(np.float32)
    std = np.abs(rng.randn(8)).astype(np.float32) + 0.5
    mean = rng.randn(W_DIM).astype(np.float32)
    if flavour == "e4e":  # e4e's ganspace_pca/ffhq_pca.pt
        path = tmp_path / "pca.pt"
        torch.save({"comp": torch.from_numpy(comp), "std": torch.from_numpy(std), "mean": torch.from_numpy(mean)}, path)
    else:                 # GANSpace's cache .npz
        path = tmp_path / "pca.npz"
        np.savez(path, lat_comp=comp[:, None], lat_stdev=std[:, None], lat_mean=mean[None])
    d = load_direction(path, NUM_WS, W_DIM, component=3, sigma=2.0)
    want = np.repeat((comp[3].astype(np.float64) * std[3] * 2.0).astype(np.float32)[None], NUM_WS, axis=0)
    np.testing.assert_allclose(d.numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(load_direction(path, NUM_WS, W_DIM, component=3).numpy(), want / 2, rtol=1e-6)
    with pytest.raises(DirectionError, match="GANSpace PCA file with 8 components: pass --component"):
        load_direction(path, NUM_WS, W_DIM)
    with pytest.raises(DirectionError, match="0-7, got 8"):
        load_direction(path, NUM_WS, W_DIM, component=8)


def test_component_on_a_plain_direction_is_refused(tmp_path):
    np.save(tmp_path / "d.npy", np.zeros(W_DIM, np.float32))
    with pytest.raises(DirectionError, match="need a GANSpace PCA file"):
        load_direction(tmp_path / "d.npy", NUM_WS, W_DIM, component=0)


def test_direction_apply_with_a_ganspace_component(tmp_path, capsys):
    net = _tiny.network_file("sg1")
    rng = np.random.RandomState(7)
    comp, std = rng.randn(4, W_DIM).astype(np.float32), np.ones(4, np.float32)
    path = tmp_path / "pca.pt"
    torch.save({"comp": torch.from_numpy(comp), "std": torch.from_numpy(std), "mean": torch.zeros(W_DIM)}, path)
    code, out, err = run_cli(["direction", "apply", "5", path, "--component", "2", "--sigma", "3", "--strength", "0:1",
                              "--frames", "2", "-n", net, "--outdir", tmp_path / "o", "--device", "cpu"], capsys)
    assert code == 0, err
    from pathlib import Path

    with np.load(Path(out.strip().splitlines()[-1]) / "latents.npz") as f:
        ws = f["ws"]
    np.testing.assert_allclose(ws[1] - ws[0], np.repeat(3 * comp[2][None], NUM_WS, axis=0), atol=1e-5)
    code, _, err = run_cli(["direction", "apply", "5", path, "-n", net, "--outdir", tmp_path / "o",
                            "--device", "cpu"], capsys)
    assert code == 2 and "pass --component K" in err


def test_edit_and_invert_z_read_foreign_latents(tmp_path, capsys):
    """Needs the one-line wiring in cli/photo.read_meta and inversion/noise.read_noise (separate commit)."""
    from pathlib import Path

    from ._cli import TINY_CLIP

    net = _tiny.network_file("sg1")
    npy, pt = tmp_path / "lat.npy", tmp_path / "lat.pt"
    _write("npy-wp-f16", npy, _values(4))
    _write("pt-cuda-legacy", pt, _values(4))
    code, out, err = run_cli(["invert-z", npy, "-n", net, "--out", tmp_path / "z.npz"], capsys)
    assert code == 0, err
    with np.load(tmp_path / "z.npz") as f:
        np.testing.assert_array_equal(f["ws"], _values(4))
    code, out, err = run_cli(["edit", pt, "a smile", "-n", net, "--clip-model", TINY_CLIP, "--clip-pretrained", "none",
                              "--steps", "2", "--blocks", "fine", "--outdir", tmp_path, "--device", "cpu", "--quiet"],
                             capsys)
    assert code == 0, err
    with np.load(Path(out.strip().splitlines()[-1]) / "latents.npz") as f:
        np.testing.assert_array_equal(f["ws"][:, :8], _values(4)[:, :8])  # only the fine rows were edited
