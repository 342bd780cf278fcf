"""The creative workflows as library calls: what they return, and what a latent file's meta decides."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ._cli import TINY_CLIP, run_cli
from . import _tiny


@pytest.fixture(scope="module")
def G():
    from clipstyle.generator import load_generator

    return load_generator(str(_tiny.network_file("sg2")), device="cpu")


def projected_file(G, tmp_path, with_noise=True):
    """A latent file as 'clipstyle project' writes it: the network in meta, optimized noise maps beside ws."""
    from clipstyle.inversion.files import add_arrays
    from clipstyle.inversion.noise import noise_arrays, noise_buffers
    from clipstyle.latents import save_latents, start_ws

    ws, _ = start_ws(G, seed=11)
    path = tmp_path / "face.npz"
    save_latents(path, ws, meta={"network": str(_tiny.network_file("sg2"))})
    if with_noise:
        gen = torch.Generator().manual_seed(0)
        noise = {k: torch.randn(v.shape, generator=gen) * 3 for k, v in noise_buffers(G).items()}
        arrays, names = noise_arrays(noise)
        add_arrays(path, arrays, {"noise": names})
    return path, ws


def test_render_uses_the_files_network_and_noise(G, tmp_path):
    from clipstyle.inversion.noise import SynthesisWithNoise, read_noise
    from clipstyle.latents.styleblocks import render_ws
    from clipstyle.pipelines.creative import render

    path, ws = projected_file(G, tmp_path)
    run = render(str(path), device="cpu")  # no network given: the one in the file
    assert run.network["source"] == G.describe()["source"] and run.settings["file_noise"] is True
    expected = render_ws(SynthesisWithNoise(G, read_noise(path, G, None)), ws)
    assert np.array_equal(run.images, expected)
    own = render(str(path), device="cpu", file_noise=False)
    assert np.array_equal(own.images, render_ws(G, ws)) and not np.array_equal(own.images, run.images)
    assert torch.equal(run.ws, ws)


def test_cli_render_reads_the_network_from_the_file(G, tmp_path, capsys):
    path, ws = projected_file(G, tmp_path, with_noise=False)
    code, out, err = run_cli(["render", path, "--device", "cpu", "--out", tmp_path / "r.png"], capsys)
    assert code == 0, err
    from PIL import Image

    from clipstyle.latents.styleblocks import render_ws

    assert np.array_equal(np.asarray(Image.open(tmp_path / "r.png")), render_ws(G, ws)[0])


def test_direction_apply_uses_the_files_network(G, tmp_path):
    from clipstyle.pipelines.directions import direction_apply

    path, ws = projected_file(G, tmp_path, with_noise=False)
    d = np.zeros((G.num_ws, G.w_dim), np.float32)
    d[2] = 1
    np.save(tmp_path / "d.npy", d)
    run = direction_apply(str(path), tmp_path / "d.npy", strength="-1:1", frames=3, device="cpu")
    assert run.ws.shape == (3, G.num_ws, G.w_dim) and run.network["source"] == G.describe()["source"]
    assert torch.equal(run.ws[1], ws[0]) and torch.equal(run.ws[2, 2], ws[0, 2] + 1)
    folder = run.save(tmp_path / "out")
    assert {"direction.gif", "strip.png", "result.png", "latents.npz", "run.json"} <= {p.name for p in folder.iterdir()}


def test_generate_returns_the_seeds_latents(G, tmp_path):
    from clipstyle.latents import start_ws
    from clipstyle.pipelines.creative import generate

    run = generate(G=G, seeds="3-4", truncation=0.5)
    ws3, _ = start_ws(G, seed=3, truncation_psi=0.5)
    assert run.ws.shape == (2, G.num_ws, G.w_dim) and torch.equal(run.ws[:1], ws3)
    assert run.images.shape == (2, 64, 64, 3) and run.image.size == (128, 64)
    folder = run.save(tmp_path)
    assert (folder / "seed0003.png").is_file() and (folder / "seed0004.npz").is_file()
    assert json.loads((folder / "run.json").read_text())["settings"]["seeds"] == [3, 4]


def test_interpolate_progress_and_stop(G):
    from clipstyle.pipelines.creative import interpolate

    seen = []
    run = interpolate(["1", "2"], frames=20, G=G, callback=lambda done, total: seen.append((done, total)),
                      stop=lambda: len(seen) >= 1)
    assert seen == [(8, 21)] and run.images.shape[0] == 8 and run.ws.shape[0] == 8
    full = interpolate(["1", "2"], frames=20, G=G)
    assert full.images.shape[0] == 21 and np.array_equal(full.images[:8], run.images)


def test_mix_grid_and_styleblocks_runs(G):
    from clipstyle.pipelines.creative import mix_grid, styleblocks

    mix = mix_grid(rows="1,2", cols="3", blocks="0-3", G=G)
    assert mix.ws.shape == (2, G.num_ws, G.w_dim) and mix.image.size == (2 * 64, 3 * 64)
    sb = styleblocks(seed=1, blocks="0,1", frames=3, G=G)
    assert sb.ws.shape == (6, G.num_ws, G.w_dim) and set(sb.extra_gifs) == {"block00.gif", "block01.gif"}


def test_text_direction_stops_keeping_the_best(G):
    from clipstyle.guidance import CLIPGuide, CutoutConfig, Cutouts
    from clipstyle.pipelines.directions import text_direction

    guide = CLIPGuide(TINY_CLIP, None)
    ws0 = G.mapping(torch.randn(2, 64, generator=torch.Generator().manual_seed(0)), None)
    steps = []
    res = text_direction(G, guide, "a face", "a smiling face", ws0, Cutouts(CutoutConfig(num_cutouts=2), 32),
                         rows=[3], steps=40, lr=0.05, callback=lambda info, img: steps.append(info.step),
                         stop=lambda: len(steps) >= 3)
    assert res.interrupted and len(res.history) == 3 and steps == [0, 1, 2]
    assert torch.count_nonzero(res.direction[[0, 1, 2, 4, 5, 6, 7, 8, 9]]) == 0
