"""W → Z inversion of the mapping network (API and ``clipstyle invert-z``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipstyle.generator import read_generator_file
from clipstyle.generator.formats.native import save_native
from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from clipstyle.inversion import invert_mapping, mapping_residual
from clipstyle.latents import load_latents, save_latents

from ._cli import run_cli
from . import _tiny
from ._fixtures import fixture_path


def tiny_sg2(c_dim: int = 0, layers: int = 4, hidden: int | None = None, seed: int = 0) -> StyleGAN2Generator:
    torch.manual_seed(seed)
    G = StyleGAN2Generator(StyleGAN2Config(z_dim=32, w_dim=32, c_dim=c_dim, img_resolution=16, img_channels=3,
                                           channels=(16, 16, 16), mapping_layers=layers,
                                           mapping_layer_features=hidden))
    G.eval().requires_grad_(False)
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn(32) * 0.3)
    return G


def sg3_generator():
    return read_generator_file(_tiny.network_file("sg3"))


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=1)


@pytest.mark.parametrize("psi", [1.0, 0.7])
@pytest.mark.parametrize("net", ["sg2_skip_64", "sg3_t_64"])
def test_inverts_mapping_of_random_z(net, psi):
    G = read_generator_file(_tiny.network_file("sg2")) if net == "sg2_skip_64" else sg3_generator()
    z = torch.randn(16, G.z_dim, generator=torch.Generator().manual_seed(1))
    c = torch.zeros(16, 0, dtype=torch.float64)
    # w in float64 from G's own weights: the 8-layer random sg2 mapping crushes some directions of z below
    # float32 precision (see mapping_inverse's docstring), so a float32 w would not determine z.
    w = G.mapping(z.double(), c, truncation_psi=psi)[:, 0]
    inv = invert_mapping(G, w, truncation_psi=psi)
    assert inv.z.shape == (16, G.z_dim) and inv.z.dtype == torch.float32
    assert float(inv.residual.max()) <= 1e-4
    assert float(_cos(inv.z, z).min()) > 0.999
    assert torch.allclose(inv.z.norm(dim=1), torch.full([16], G.z_dim ** 0.5), rtol=1e-5)
    # The reported residual is what the float32 generator itself gives.
    with torch.no_grad():
        again = G.mapping(inv.z, None, truncation_psi=psi)[:, 0].double()
    rel = (again - w).norm(dim=1) / w.norm(dim=1)
    assert float(rel.max()) <= 1e-4


def test_float32_w_on_a_shallow_mapping():
    G = sg3_generator()  # 2 mapping layers: well conditioned, float32 w is enough
    z = torch.randn(16, G.z_dim, generator=torch.Generator().manual_seed(2))
    w = G.mapping(z, None, truncation_psi=0.7)
    inv = invert_mapping(G, w, truncation_psi=0.7)  # W+ input whose rows are all equal
    assert float(inv.residual.max()) <= 1e-4 and float(_cos(inv.z, z).min()) > 0.999
    assert inv.row_z.shape == (16, G.num_ws, G.z_dim)


def test_conditional_network():
    G = tiny_sg2(c_dim=5)
    z = torch.randn(6, 32, generator=torch.Generator().manual_seed(3))
    c = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3, 4, 0]), 5).double()
    w = G.mapping(z.double(), c, truncation_psi=0.8)[:, 0]
    inv = invert_mapping(G, w, c=c, truncation_psi=0.8)
    assert float(inv.residual.max()) <= 1e-4 and float(_cos(inv.z, z).min()) > 0.999
    with pytest.raises(ValueError, match="conditional"):
        invert_mapping(G, w)


def test_non_square_layers_use_least_squares_and_say_so():
    G = tiny_sg2(layers=3, hidden=48)  # 32 → 48 → 48 → 32
    z = torch.randn(8, 32, generator=torch.Generator().manual_seed(4))
    w = G.mapping(z.double(), None)[:, 0]
    inv = invert_mapping(G, w)
    assert inv.least_squares_layers == (0, 2)
    assert any("least squares" in n and "not unique" in n for n in inv.notes)
    # Not exactly invertible: the result is approximate, but honest and better than the algebraic start.
    assert torch.allclose(inv.residual, mapping_residual(G, inv.z, w), rtol=1e-6)
    assert bool((inv.residual <= inv.algebraic_residual).all()) and float(inv.residual.max()) < 0.1


def test_wplus_rows_and_best_single_z():
    G = tiny_sg2()
    za, zb = torch.randn(2, 32, generator=torch.Generator().manual_seed(5)).double().chunk(2)
    wa, wb = G.mapping(za, None), G.mapping(zb, None)
    ws = torch.cat([wa[:, :3], wb[:, 3:]], dim=1)  # style mixing: rows 0-2 from a, 3- from b
    inv = invert_mapping(G, ws)
    assert inv.row_z.shape == (1, G.num_ws, 32)
    assert float(inv.row_residual.max()) <= 1e-4
    assert float(_cos(inv.row_z[0, :3], za.expand(3, -1)).min()) > 0.999
    assert float(_cos(inv.row_z[0, 3:], zb.expand(G.num_ws - 3, -1)).min()) > 0.999
    # No single z explains both halves: the best one is reported with its (large) residual.
    assert 1e-3 < float(inv.residual[0]) < 1.0
    assert float(inv.residual[0]) == pytest.approx(float(mapping_residual(G, inv.z, ws)[0]), rel=1e-6)
    # It is at least as good as either source z.
    for zz in (za, zb):
        assert float(inv.residual[0]) <= float(mapping_residual(G, zz.float(), ws)[0]) + 1e-9


def test_truncation_cutoff_rows():
    G = tiny_sg2()
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(6)).double()
    ws = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2)
    inv = invert_mapping(G, ws, truncation_psi=0.5, truncation_cutoff=2)
    assert float(inv.residual.max()) <= 1e-4 and float(_cos(inv.z, z).min()) > 0.999


def test_bad_arguments():
    G = tiny_sg2()
    with pytest.raises(ValueError, match="w_dim"):
        invert_mapping(G, torch.zeros(2, 7))
    with pytest.raises(ValueError, match="psi"):
        invert_mapping(G, torch.zeros(2, 32), truncation_psi=0)


# ---------------------------------------------------------------------------------------------- CLI
@pytest.fixture()
def net_and_latents(tmp_path):
    G = tiny_sg2(layers=2)
    net = save_native(G, tmp_path / "tiny.safetensors")
    z = torch.randn(1, 32, generator=torch.Generator().manual_seed(7))
    ws = G.mapping(z, None)
    lat = tmp_path / "proj" / "latents.npz"
    lat.parent.mkdir()
    save_latents(lat, ws, meta={"network": str(net)})
    return G, net, lat, z


def test_invert_z_cli_writes_a_new_file(net_and_latents, capsys):
    G, net, lat, z = net_and_latents
    original = lat.read_bytes()
    code, out, err = run_cli(["invert-z", lat, "-q"], capsys)
    assert code == 0, err
    new = lat.with_name("latents_z.npz")
    assert new.is_file() and lat.read_bytes() == original
    assert "relative residual" in out and str(new) in out
    residual = float(out.split("=")[1].split()[0])
    assert residual <= 1e-4
    lf = load_latents(new)
    assert lf.z.shape == (1, 32) and float(_cos(torch.from_numpy(lf.z), z)[0]) > 0.999
    np.testing.assert_array_equal(lf.ws, load_latents(lat).ws)
    assert lf.meta["residual"][0] == pytest.approx(residual, rel=1e-2)
    # Running it again refuses to replace the earlier output; --out naming the input is refused as well.
    code, _, err = run_cli(["invert-z", lat, "-q"], capsys)
    assert code == 2 and "exists" in err and "Traceback" not in err
    code, _, err = run_cli(["invert-z", lat, "--out", lat, "--overwrite", "-q"], capsys)
    assert code == 2 and "input" in err and lat.read_bytes() == original
    code, _, err = run_cli(["invert-z", lat, "-q", "--overwrite", "--network", net], capsys)
    assert code == 0, err


def test_invert_z_cli_wplus_and_errors(net_and_latents, tmp_path, capsys, monkeypatch):
    import socket
    import urllib.error

    from clipstyle.io import cache

    def offline(url, timeout, *rest):
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(cache, "_open_url", offline)
    monkeypatch.setenv("CLIPSTYLE_CACHE", str(tmp_path / "cache"))
    G, net, lat, _ = net_and_latents
    ws = torch.from_numpy(load_latents(lat).ws).clone()
    ws[:, 4:] = G.mapping(torch.randn(1, 32, generator=torch.Generator().manual_seed(8)), None)[:, 4:]
    mixed = tmp_path / "projected_w.npz"
    np.savez(mixed, w=ws.numpy())  # NVIDIA's layout: key w, no meta → needs --network
    code, _, err = run_cli(["invert-z", mixed, "-q"], capsys)  # falls back to ffhq: offline here
    assert code == 1 and err.count("\n") == 1 and "--network" in err and "Traceback" not in err
    out_path = tmp_path / "z.npz"
    code, out, err = run_cli(["invert-z", mixed, "--network", net, "--out", out_path, "-q"], capsys)
    assert code == 0, err
    assert "best single z" in out and "one z per styleblock" in out
    with np.load(out_path) as data:
        assert data["row_z"].shape == (1, G.num_ws, 32) and data["z"].shape == (1, 32)
        assert float(data["row_residual"].max()) <= 1e-4
    code, _, err = run_cli(["invert-z", tmp_path / "missing.npz", "--network", net], capsys)
    assert code == 2 and err.count("\n") == 1 and "no such latent file" in err


def test_float32_w_on_a_badly_conditioned_8_layer_mapping():
    """From float32 w, the random 8-layer mapping traps Levenberg–Marquardt (~0.1 residual): restarts and
    basin hops bring it to <= 1e-2, and the note says they ran."""
    G = read_generator_file(fixture_path("sg2_skip_64.pkl"))
    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(1))
    w = G.mapping(z, None)[:, 0]  # float32
    plain = invert_mapping(G, w, starts=0, hops=0)
    assert float(plain.residual.max()) > 5e-2  # a local minimum
    inv = invert_mapping(G, w)
    assert float(inv.residual.max()) <= 1e-2
    assert any("random restarts" in n for n in inv.notes)
    assert torch.allclose(inv.residual, mapping_residual(G, inv.z, w), rtol=1e-6)
