"""Projection of images into W / W+ (StyleGAN2 projector) and the LPIPS distance."""

from __future__ import annotations

import json
import math
import socket
import urllib.error

import numpy as np
import pytest
import torch

from clipstyle.generator import read_generator_file
from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from clipstyle.inversion.lpips import (
    CHANNELS,
    LPIPS_VGG_URL,
    VGG16_URL,
    LPIPSWeightsError,
    build_vgg16_features,
    downsample_for_lpips,
    load_lpips,
)
from clipstyle.inversion.noise import (
    SynthesisWithNoise,
    noise_buffers,
    noise_regularization,
    normalize_noise_,
)
from clipstyle.inversion.project import ProjectConfig, project, w_statistics
from clipstyle.io.cache import DownloadError
from clipstyle.latents import start_ws

from ._fixtures import FIXTURES


def tiny_sg2(c_dim: int = 0, use_noise: bool = True, seed: int = 0) -> StyleGAN2Generator:
    """A random 32² StyleGAN2 (noise strengths non-zero, w_avg set to the mapped mean)."""
    torch.manual_seed(seed)
    G = StyleGAN2Generator(StyleGAN2Config(z_dim=32, w_dim=32, c_dim=c_dim, img_resolution=32, img_channels=3,
                                           channels=(32, 32, 32, 16), use_noise=use_noise))
    G.eval().requires_grad_(False)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
        c = torch.zeros([2000, c_dim])
        if c_dim:
            c[:, 0] = 1
        G.mapping.w_avg.copy_(G.mapping(torch.randn(2000, 32), c)[:, 0].mean(0))
    return G


def sg2_or_tiny():
    path = FIXTURES / "sg2_skip_64.pkl"
    if path.is_file():
        return read_generator_file(path), 300
    return tiny_sg2(), 600


def raw_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of the raw (unclamped) images, peak-to-peak 2."""
    return 10 * math.log10(4.0 / float((a.double() - b.double()).square().mean()))


# ---------------------------------------------------------------------------------------------- projection
def test_projection_reaches_30db_in_wplus_with_pixel_loss():
    G, steps = sg2_or_tiny()
    ws_true, _ = start_ws(G, seed=3, truncation_psi=0.6)
    with torch.no_grad():
        target = G.synthesis(ws_true, noise_mode="const")
    # The target was made with G's own noise maps, so they are kept (not optimized) here.
    cfg = ProjectConfig(steps=steps, space="w+", mse=1.0, optimize_noise=False, w_avg_samples=2000)
    res = project(G, target, cfg)
    assert res.ws.shape == (1, G.num_ws, G.w_dim)
    assert raw_psnr(res.image, target) >= 30.0
    assert res.metrics["psnr"] >= 30.0
    assert res.run.history[-1]["mse"] < 0.1 * res.run.history[0]["mse"]


@pytest.mark.slow
@pytest.mark.parametrize("seed,widths", [(7, (64, 64, 32, 32, 16)), (9, (48, 32, 32, 24, 16))])
def test_wplus_projection_holds_on_unseen_networks_with_the_cli_defaults(seed, widths):
    """W+ pixel-loss projection with the command's defaults (noise maps optimized, 300 steps) on random 64²
    networks no other test uses: W first, then every row (the 'w_warmup'), and slow noise maps."""
    torch.manual_seed(seed)
    G = StyleGAN2Generator(StyleGAN2Config(z_dim=widths[0], w_dim=widths[0], c_dim=0, img_resolution=64,
                                           img_channels=3, channels=widths)).eval().requires_grad_(False)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
        G.mapping.w_avg.copy_(G.mapping(torch.randn(2000, widths[0]), None)[:, 0].mean(0))
    ws_true, _ = start_ws(G, seed=3, truncation_psi=0.6)
    with torch.no_grad():
        target = G.synthesis(ws_true, noise_mode="const")
    res = project(G, target, ProjectConfig(steps=300, space="w+", mse=1.0, w_avg_samples=2000))
    assert res.metrics["psnr"] >= 30.0, res.metrics
    assert len(res.run.history) == 300 and res.noise  # one history over both phases; maps optimized
    assert not np.allclose(res.ws[0, 0].numpy(), res.ws[0, -1].numpy())  # the W+ phase moved rows apart
    nvidia = project(G, target, ProjectConfig(steps=300, space="w+", mse=1.0, w_avg_samples=2000, w_warmup=0.0,
                                              wplus_lr=None, noise_lr=1.0))
    assert res.metrics["psnr"] > nvidia.metrics["psnr"] + 3  # what W+ with NVIDIA's W settings reached


def test_projection_in_w_space_optimizes_copies_of_the_noise():
    G = tiny_sg2()
    before = {k: v.clone() for k, v in noise_buffers(G).items()}
    assert len(before) == 7
    target = torch.rand(1, 3, 32, 32) * 2 - 1
    res = project(G, target, ProjectConfig(steps=12, mse=1.0, w_avg_samples=500))
    # W space: every row is the same vector.
    assert torch.equal(res.ws, res.ws[:, :1].expand_as(res.ws))
    # The generator's buffers are untouched; the optimized maps are returned, normalized, and differ.
    for name, buf in noise_buffers(G).items():
        assert torch.equal(buf, before[name])
        n = res.noise[name]
        assert abs(float(n.mean())) < 1e-5 and abs(float(n.square().mean()) - 1) < 1e-4
    assert any(not torch.allclose(res.noise[k], (before[k] - before[k].mean()) / before[k].std(unbiased=False))
               for k in before)
    assert {"mse", "noise_reg"} <= set(res.run.history[0])
    # The result image is what G makes with the returned ws and noise.
    with torch.no_grad():
        again = SynthesisWithNoise(G, res.noise).synthesis(res.ws)
    assert torch.allclose(again, res.image, atol=1e-6)


def test_projection_without_noise_inputs_and_conditional():
    G = tiny_sg2(c_dim=3, use_noise=False)  # like StyleGAN3: no noise buffers
    assert noise_buffers(G) == {}
    c = torch.tensor([[0.0, 1.0, 0.0]])
    res = project(G, torch.zeros(1, 3, 32, 32), ProjectConfig(steps=3, mse=1.0, w_avg_samples=200), c=c)
    assert res.noise == {}
    mean_c, _ = w_statistics(G, 200, 0, c)
    assert torch.allclose(res.w_mean, mean_c)
    with pytest.raises(ValueError, match="conditional"):
        project(G, torch.zeros(1, 3, 32, 32), ProjectConfig(steps=1, mse=1.0, w_avg_samples=200))


def test_projection_stylegan3():
    from . import _tiny

    G = read_generator_file(_tiny.network_file("sg3"))
    ws_true, _ = start_ws(G, seed=5, truncation_psi=0.6)
    with torch.no_grad():
        target = G.synthesis(ws_true)
    res = project(G, target, ProjectConfig(steps=10, space="w+", mse=1.0, w_avg_samples=500, w_warmup=0.0))
    assert res.noise == {} and res.image.shape == (1, 3, 64, 64)
    assert res.metrics["mse"] < 0.5 * res.run.history[0]["mse"]


def test_projection_rejects_bad_input():
    G = tiny_sg2()
    with pytest.raises(ValueError, match="32, 32"):
        project(G, torch.zeros(1, 3, 16, 16), ProjectConfig(steps=1, mse=1.0))
    with pytest.raises(ValueError, match="nothing to project by"):
        project(G, torch.zeros(1, 3, 32, 32), ProjectConfig(steps=1, mse=0.0))
    with pytest.raises(ValueError, match="space"):
        ProjectConfig(space="z")


def test_w_noise_ramp_and_lr_schedule_follow_the_paper():
    cfg = ProjectConfig(steps=1000)
    assert cfg.w_noise_std(0, 2.0) == pytest.approx(0.1)           # 0.05 · σ_w
    assert cfg.w_noise_std(375, 2.0) == pytest.approx(0.1 * 0.25)  # (1 − 0.5)²
    assert cfg.w_noise_std(750, 2.0) == 0.0 and cfg.w_noise_std(999, 2.0) == 0.0


def test_noise_regularization_values():
    # A constant map of ones: level 16² has products 1 → 1² + 1² = 2; level 8² holds 2s (pooled ×2), products
    # 4 → 4² + 4² = 32; the pyramid stops at 8².
    ones16 = torch.ones(16, 16)
    assert float(noise_regularization([ones16])) == pytest.approx(2 + 32)
    assert float(noise_regularization([torch.ones(4, 4)])) == pytest.approx(2)
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None]) % 2 * 2.0 - 1  # neighbours anti-correlated
    assert float(noise_regularization([checker])) == pytest.approx(2)
    white = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    assert float(noise_regularization([white])) < 0.2  # ≈ Σ_levels 2/pixels, far below the checkerboard
    maps = [torch.randn(8, 8) * 3 + 2]
    normalize_noise_(maps)
    assert abs(float(maps[0].mean())) < 1e-6 and float(maps[0].square().mean()) == pytest.approx(1, abs=1e-5)


# ---------------------------------------------------------------------------------------------- LPIPS
@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory):
    """Random VGG16 + LPIPS linear weights saved as plain state dicts, the published files' layout."""
    folder = tmp_path_factory.mktemp("lpips")
    torch.manual_seed(0)
    features = build_vgg16_features()
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, folder / "vgg16-397923af.pth")
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(CHANNELS)}, folder / "vgg.pth")
    return folder


def test_lpips_properties(lpips_files):
    lp = load_lpips(str(lpips_files))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    y = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    d_same = lp(x, x)
    assert d_same.shape == (2,) and float(d_same.abs().max()) == 0.0
    d_xy, d_yx = lp(x, y), lp(y, x)
    assert torch.allclose(d_xy, d_yx, rtol=1e-5, atol=1e-7)
    assert bool((d_xy > 0).all())
    near = lp(x, (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(-1, 1))
    assert bool((near < d_xy).all())
    xg = x.clone().requires_grad_(True)
    lp(xg, y).sum().backward()
    assert xg.grad is not None and float(xg.grad.abs().sum()) > 0
    assert not any(p.requires_grad for p in lp.parameters())


def test_lpips_loads_files_in_any_order(lpips_files):
    a = load_lpips(f"{lpips_files / 'vgg.pth'},{lpips_files / 'vgg16-397923af.pth'}")
    b = load_lpips([lpips_files / "vgg16-397923af.pth", lpips_files / "vgg.pth"])
    x, y = torch.zeros(1, 3, 16, 16), torch.ones(1, 3, 16, 16) * 0.5
    assert torch.equal(a(x, y), b(x, y))


def test_lpips_weight_errors(tmp_path, lpips_files):
    with pytest.raises(LPIPSWeightsError, match="no such LPIPS weight file"):
        load_lpips(str(tmp_path / "missing.pth") + "," + str(lpips_files / "vgg.pth"))
    with pytest.raises(LPIPSWeightsError, match="must hold"):
        load_lpips(str(tmp_path))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(LPIPSWeightsError, match="not a readable"):
        load_lpips([bad, lpips_files / "vgg.pth"])
    wrong = tmp_path / "wrong.pth"
    torch.save({"lin0.model.1.weight": torch.rand(1, 3, 1, 1)}, wrong)
    with pytest.raises(LPIPSWeightsError):
        load_lpips([lpips_files / "vgg16-397923af.pth", wrong])


def test_lpips_offline_download_error(tmp_path, monkeypatch):
    # A dead file:// URL goes through the same fetch path as the published https URLs.
    with pytest.raises(DownloadError) as info:
        load_lpips(None, cache_dir=tmp_path, progress=False,
                   urls=((tmp_path / "nope" / "vgg16.pth").as_uri(), LPIPS_VGG_URL))
    msg = str(info.value)
    assert "\n" not in msg and "--lpips-weights" in msg and "--perceptual none" in msg

    # The published URLs, with the network unreachable.
    from clipstyle.io import cache

    def offline(url, timeout, *rest):
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(cache, "_open_url", offline)
    with pytest.raises(DownloadError) as info:
        load_lpips(None, cache_dir=tmp_path, progress=False)
    msg = str(info.value)
    assert VGG16_URL in msg and "offline" in msg and "--lpips-weights" in msg


def test_downsample_for_lpips():
    x = torch.rand(1, 3, 1024, 1024)
    assert downsample_for_lpips(x).shape[-1] == 256
    assert downsample_for_lpips(x[..., :64, :64]).shape[-1] == 64


def test_projection_with_lpips_loss_falls(lpips_files):
    G = tiny_sg2()
    lp = load_lpips(str(lpips_files))
    target = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32))
    res = project(G, target, ProjectConfig(steps=15, lr=0.05, w_avg_samples=500), perceptual=lp)
    first, last = res.run.history[0]["lpips"], min(h["lpips"] for h in res.run.history[-5:])
    assert last < first and "lpips" in res.metrics
    json.dumps(res.metrics)
