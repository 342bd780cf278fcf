"""StyleGAN2 parity with NVIDIA's stylegan2-ada-pytorch reference outputs (fixtures README §4, §6)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipstyle.generator import read_generator_file
from clipstyle.generator.stylegan2 import (
    StyleGAN2Config,
    StyleGAN2Generator,
    channels_for,
)

from ._fixtures import fixture_path, reference

ATOL = 1e-4  # ≈ 20× the largest legitimate float32 spread of the reference itself (README §6)


@pytest.fixture(scope="module")
def sg2():
    return read_generator_file(fixture_path("sg2_skip_64.pkl")), reference("sg2_skip_64")


@pytest.fixture(scope="module")
def tiny2():
    """The tiny StyleGAN2 built in code (``tests/_tiny.py``) and inputs like the reference's (``z``, ``ws_psi1``):
    for the behaviour that holds for any weights."""
    from . import _tiny

    G = read_generator_file(_tiny.network_file("sg2"))
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ws = G.mapping(z, None)
    return G, {"z": z.numpy(), "ws_psi1": ws.numpy()}


def _err(a: torch.Tensor, b: np.ndarray) -> float:
    return float((a.detach().double() - torch.from_numpy(b).double()).abs().max())


def test_config_read_from_snapshot(sg2):
    G, _ = sg2
    assert G.kind == "stylegan2" and G.source.format == "nvidia-stylegan2"
    assert (G.z_dim, G.w_dim, G.c_dim, G.num_ws, G.img_resolution) == (64, 64, 0, 10, 64)
    assert G.config.channels == (32, 32, 32, 32, 16)
    assert G.config.architecture == "skip" and G.config.conv_clamp == 256
    assert G.num_params() == 132_968  # README §1
    assert G.block_resolutions() == [4, 8, 8, 16, 16, 32, 32, 64, 64, 64]
    assert not any(p.requires_grad for p in G.parameters())


@pytest.mark.parametrize("psi,key", [(1.0, "psi1"), (0.7, "psi07")])
def test_mapping_and_synthesis_match_reference(sg2, psi, key):
    G, ref = sg2
    z, c = torch.from_numpy(ref["z"]), torch.from_numpy(ref["c"])
    with torch.no_grad():
        ws = G.mapping(z, c, truncation_psi=psi)
        assert _err(ws, ref[f"ws_{key}"]) <= ATOL
        img = G.synthesis(torch.from_numpy(ref[f"ws_{key}"]), noise_mode="const")
    assert img.shape == (4, 3, 64, 64) and img.dtype == torch.float32
    assert _err(img, ref[f"img_{key}"]) <= ATOL


@pytest.mark.parametrize("key", ["mix", "rand"])
def test_mixed_and_per_row_ws_match_reference(sg2, key):
    G, ref = sg2
    with torch.no_grad():
        img = G.synthesis(torch.from_numpy(ref[f"ws_{key}"]))
    assert _err(img, ref[f"img_{key}"]) <= ATOL


def test_mix_rows_are_the_two_sources(sg2):
    _, ref = sg2
    k = int(ref["k_mix"])
    np.testing.assert_array_equal(ref["ws_mix"][0, :k], ref["ws_psi1"][0, :k])
    np.testing.assert_array_equal(ref["ws_mix"][0, k:], ref["ws_psi1"][1, k:])


def test_float64_matches_float64_reference(sg2):
    G, ref = sg2
    G64 = read_generator_file(fixture_path("sg2_skip_64.pkl")).double()
    with torch.no_grad():
        ws = G64.mapping(torch.from_numpy(ref["z"]).double(), None)
        img = G64.synthesis(torch.from_numpy(ref["ws_psi1_f64"]))
    assert _err(ws, ref["ws_psi1_f64"]) <= 1e-8
    assert _err(img, ref["img_psi1_f64"]) <= 1e-8


def test_noise_modes(tiny2):
    G, ref = tiny2
    ws = torch.from_numpy(ref["ws_psi1"][:1])
    with torch.no_grad():
        const = G.synthesis(ws, noise_mode="const")
        none = G.synthesis(ws, noise_mode="none")
        torch.manual_seed(0)
        r1 = G.synthesis(ws, noise_mode="random")
        torch.manual_seed(1)
        r2 = G.synthesis(ws, noise_mode="random")
    assert (const - none).abs().max() > 1e-2  # the noise inputs matter
    assert (r1 - r2).abs().max() > 1e-3
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="bogus")


def test_gradient_reaches_ws(tiny2):
    G, ref = tiny2
    ws = torch.from_numpy(ref["ws_psi1"][:1]).clone().requires_grad_(True)
    G.synthesis(ws).square().mean().backward()
    assert ws.grad is not None and torch.isfinite(ws.grad).all() and ws.grad.abs().sum() > 0
    assert all(p.grad is None for p in G.parameters())


@pytest.mark.parametrize("arch", ["orig", "skip", "resnet"])
def test_architectures_build_and_run(arch):
    cfg = StyleGAN2Config(z_dim=16, w_dim=8, c_dim=3, img_resolution=16, img_channels=3,
                          channels=channels_for(16, 256, 16), mapping_layers=2, architecture=arch, conv_clamp=256)
    G = StyleGAN2Generator(cfg).eval()
    assert G.num_ws == 6
    z, c = torch.randn(2, 16), torch.eye(3)[:2]
    img = G(z, c, truncation_psi=0.5, truncation_cutoff=2)
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
    if arch == "orig":
        assert not hasattr(G.synthesis.b8, "torgb") and hasattr(G.synthesis.b16, "torgb")
    if arch == "resnet":
        assert hasattr(G.synthesis.b8, "skip")


def test_truncation_cutoff_only_first_rows(tiny2):
    G, ref = tiny2
    z = torch.from_numpy(ref["z"][:2])
    with torch.no_grad():
        full = G.mapping(z, None, truncation_psi=1.0)
        cut = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=3)
    assert torch.equal(cut[:, 3:], full[:, 3:])
    expected = G.w_avg.lerp(full[:, :3], 0.5)
    assert torch.allclose(cut[:, :3], expected, atol=1e-6)
