"""Directions without labels: SeFa (Shen & Zhou 2021) against numpy.linalg.eigh of the same matrix, GANSpace's PCA
against an SVD of the same samples, and the GANSpace-layout files read back by ``direction apply``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from clipstyle.latents.directions import load_direction
from clipstyle.latents.factorization import (
    fix_signs,
    pca_w,
    sample_w,
    sefa,
    sefa_matrix,
)
from clipstyle.workflows.global_edit import PcaSettings, SefaSettings


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    G = StyleGAN2Generator(StyleGAN2Config(z_dim=16, w_dim=16, c_dim=0, img_resolution=16, img_channels=3,
                                           channels=(8, 8, 8), mapping_layers=2))
    return G.eval().requires_grad_(False)


@pytest.mark.parametrize("rows", [None, (0, 1)])
def test_sefa_vectors_are_the_eigenvectors_of_the_same_matrix_in_eigenvalue_order(G, rows):
    c = sefa(G, top=6, rows=rows, std_samples=200)
    sites = [s for s in G.style_sites() if rows is None or s.ws_index in rows]
    a = np.concatenate([s.affine.weight.detach().double().numpy() * s.affine.weight_gain for s in sites])
    assert np.allclose(sefa_matrix(G, rows), a.T @ a)
    vals, vecs = np.linalg.eigh(a.T @ a)
    order = np.argsort(vals)[::-1][:6]
    assert np.allclose(c.values, vals[order])
    assert np.all(np.diff(c.values) <= 0)
    assert np.allclose(c.comp, fix_signs(vecs[:, order].T), atol=1e-10)
    assert np.allclose(c.comp @ c.comp.T, np.eye(6), atol=1e-10)
    # each is an eigenvector: A^T A v = lambda v
    assert np.allclose((a.T @ a) @ c.comp.T, c.comp.T * c.values, atol=1e-8)


def test_pca_components_equal_an_svd_of_the_same_samples(G):
    w = sample_w(G, 500, seed=1)
    c = pca_w(w, 5)
    centred = w - w.mean(0)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    assert np.allclose(np.abs(c.comp), np.abs(vt[:5]), atol=1e-10)
    assert np.allclose(np.abs((c.comp * vt[:5]).sum(1)), 1, atol=1e-10)
    assert np.allclose(c.std, sv[:5] / np.sqrt(499))
    assert np.allclose(c.std, (centred @ c.comp.T).std(0, ddof=1))


@pytest.mark.parametrize("kind", ["sefa", "pca"])
def test_written_files_are_read_back_by_direction_apply(G, tmp_path, kind):
    from clipstyle.pipelines.directions import direction_apply
    from clipstyle.pipelines.directions_unsupervised import (
        pca_directions,
        sefa_directions,
    )

    out = tmp_path / f"{kind}.npz"
    if kind == "sefa":
        run = sefa_directions(SefaSettings(blocks="0-1", top=4, out=str(out), std_samples=100, sheet=2, frames=3), G=G)
    else:
        run = pca_directions(PcaSettings(samples=300, components=4, out=str(out), sheet=2, frames=3), G=G)
    assert run.result_image.shape == (2 * 16, 3 * 16, 3)  # 2 components × 3 strengths
    folder = run.save(tmp_path / "runs")
    std = run.extra_json["std"]
    for path in (out, folder / "latents.npz"):
        d = load_direction(path, G.num_ws, G.w_dim, component=1, sigma=2.0)
        with np.load(out) as f:
            expect = f["lat_comp"][1, 0] * f["lat_stdev"][1] * 2.0
        assert np.allclose(d[0].numpy(), expect, atol=1e-6) and np.isclose(float(d[0].norm()), 2 * std[1], rtol=1e-5)
        walked = direction_apply("3", path, strength="-1:1", frames=3, component=1, sigma=2.0, G=G, device="cpu")
        assert walked.images.shape == (3, 16, 16, 3)
    with pytest.raises(Exception) as err:  # an existing --out is refused, not overwritten
        sefa_directions(SefaSettings(top=2, out=str(out), sheet=0), G=G)
    assert "exists" in str(err.value)


@pytest.mark.slow  # four CLI runs with model loading: ~20 s on an idle 2-core machine
def test_cli_direction_commands(G, tmp_path, capsys, monkeypatch):
    from clipstyle.generator.formats.native import save_native

    from ._cli import TINY_CLIP, run_cli

    net = tmp_path / "tiny.safetensors"
    save_native(G, net)
    monkeypatch.setenv("CLIPSTYLE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    clip = ["--clip-model", TINY_CLIP, "--clip-pretrained", "none"]
    code, out, err = run_cli(["direction", "global", "0", "a face", "a smiling face", "-n", net, *clip, "--samples", 1,
                              "--stat-samples", 100, "--relevance-batch", 80, "--beta", 0.05, "--frames", 3,
                              "--report", "--out", "s.npz", "--quiet", "--device", "cpu"], capsys)
    assert code == 0, err
    assert "channels used" in err and (tmp_path / "s.npz").is_file()
    code, out, err = run_cli(["direction", "apply", "1", "s.npz", "-n", net, "--frames", 2, "--device", "cpu"], capsys)
    assert code == 0, err
    code, out, err = run_cli(["direction", "sefa", "-n", net, "--blocks", "coarse", "--top", 3, "--sheet", 2,
                              "--frames", 3, "--std-samples", 100, "--device", "cpu"], capsys)
    assert code == 0 and (tmp_path / "sefa.npz").is_file(), err
    code, out, err = run_cli(["direction", "apply", "1", "sefa.npz", "-n", net, "--component", 2, "--sigma", 1,
                              "--blocks", "coarse", "--frames", 2, "--device", "cpu"], capsys)
    assert code == 0, err
    # a published-layout file of the wrong size: one line, exit 1, nothing computed
    np.save(tmp_path / "fs3.npy", np.zeros((6048, 512), np.float32))
    code, out, err = run_cli(["direction", "global", "0", "a face", "a smiling face", "-n", net, *clip,
                              "--relevance", "fs3.npy", "--device", "cpu"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "6048" in err, err
    code, out, err = run_cli(["direction", "pca", "-n", net, "--samples", 10, "--components", 20], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
