"""StyleCLIP global directions (Patashnik et al. 2021, §6) on a tiny random StyleGAN2 and a tiny random CLIP:
Δi_c against a brute-force recomputation, resuming, β and α edge cases, the edit moving towards the text,
S direction files read back by ``direction apply``, and published-layout files of the wrong size refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from clipstyle.generator.stylespace import (
    flatten_styles,
    style_layers,
    unflatten_styles,
)
from clipstyle.guidance.global_directions import (
    RelevanceConfig,
    RelevanceFileError,
    compute_relevance,
    read_published,
    read_relevance,
)
from clipstyle.latents.directions import text_delta
from clipstyle.latents.stylespace import (
    edit_flat,
    global_direction,
    load_s_direction,
    render_flat,
    save_s_direction,
    style_statistics,
)

TINY_CLIP = str(Path(__file__).parent / "data" / "tiny_clip.json")
CFG = RelevanceConfig(samples=2, k=1.0, batch=8, stat_samples=500)


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    G = StyleGAN2Generator(StyleGAN2Config(z_dim=16, w_dim=16, c_dim=0, img_resolution=32, img_channels=3,
                                           channels=(8, 8, 8, 8), mapping_layers=2))
    return G.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def guide():
    from clipstyle.guidance import CLIPGuide

    return CLIPGuide(TINY_CLIP, None)


@pytest.fixture(scope="module")
def relevance(G, guide, tmp_path_factory):
    return compute_relevance(G, guide, CFG, cache_dir=tmp_path_factory.mktemp("cache"))


def test_delta_i_equals_a_brute_force_recomputation(G, guide, relevance):
    assert relevance.complete and relevance.delta_i.shape == (sum(l.width for l in style_layers(G, False)), 32)
    std = style_statistics(G, CFG.stat_samples, CFG.seed, CFG.truncation).std
    assert torch.equal(std, relevance.std)
    z = torch.randn(CFG.samples, G.z_dim, generator=torch.Generator().manual_seed(CFG.seed + 1))
    ws = G.mapping(z, None)
    layers = style_layers(G)
    conv = style_layers(G, False)
    for layer, i in [(conv[0], 0), (conv[2], 5), (conv[-1], 7)]:  # a few channels, first to last layer
        flat_c = layer.offset + i
        full_c = next(l for l in layers if l.name == layer.name).offset + i
        total = torch.zeros(32, dtype=torch.float64)
        for n in range(CFG.samples):  # one image at a time, the definition written out
            s = flatten_styles(G.styles(ws[n:n + 1]), layers)
            plus, minus = s.clone(), s.clone()
            plus[0, full_c] += CFG.k * std[full_c]
            minus[0, full_c] -= CFG.k * std[full_c]
            e_plus = guide.encode_image(G.synthesis_styles(ws[n:n + 1], unflatten_styles(plus, layers)))[0]
            e_minus = guide.encode_image(G.synthesis_styles(ws[n:n + 1], unflatten_styles(minus, layers)))[0]
            total += (e_plus - e_minus).double()
        expect = (total / total.norm()).float()
        assert torch.allclose(relevance.delta_i[flat_c], expect, atol=2e-5), (layer.name, i)


def test_an_interrupted_computation_resumes_to_the_same_result(G, guide, relevance, tmp_path):
    calls = []
    part = compute_relevance(G, guide, CFG, cache_dir=tmp_path, stop=lambda: len(calls) > 2,
                             progress=lambda d, t: calls.append(d))
    assert not part.complete and Path(part.source).is_file()
    seen = []
    full = compute_relevance(G, guide, CFG, cache_dir=tmp_path, progress=lambda d, t: seen.append(d))
    assert full.complete and full.source == part.source
    assert seen[0] > 0  # resumed, not restarted
    assert torch.allclose(full.delta_i, relevance.delta_i, atol=1e-6)


def _edit(G, guide, relevance, beta, alphas, seed=3):
    full, covered = relevance.full(G)
    dt = text_delta(guide, "a photo", "a photo of a smiling face")
    gd = global_direction(full, dt, relevance.std, beta, covered)
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(seed)), None)
    s0 = flatten_styles(G.styles(ws), style_layers(G))
    return gd, dt, ws, render_flat(G, ws, edit_flat(s0, gd.direction, alphas))


def test_beta_above_the_largest_relevance_and_alpha_zero_leave_the_image_bit_identical(G, guide, relevance):
    gd, _, ws, imgs = _edit(G, guide, relevance, 0.0, [0.0])
    ref = G.synthesis(ws)
    assert torch.equal(imgs, ref)
    assert not torch.equal(_edit(G, guide, relevance, 0.0, [2.0])[3], ref)
    top = float(gd.relevance.abs().max())
    gd2, _, _, imgs2 = _edit(G, guide, relevance, top + 1e-3, [3.0])
    assert gd2.channels == () and bool((gd2.direction == 0).all())
    assert torch.equal(imgs2, ref)


def test_beta_keeps_only_the_relevant_channels(G, guide, relevance):
    gd, *_ = _edit(G, guide, relevance, 0.1, [1.0])
    kept = gd.direction != 0
    assert bool((gd.relevance[kept].abs() >= 0.1).all()) and bool((gd.relevance[~kept].abs() < 0.1).all())
    assert [abs(float(gd.relevance[c])) for c in gd.channels] == sorted((abs(float(gd.relevance[c])) for c in gd.channels),
                                                                      reverse=True)


def test_the_edit_moves_the_clip_embedding_towards_the_text_as_alpha_grows(G, guide, relevance):
    # Constructed case: an image the relevance was measured on, small α (the first-order regime of the ±kσ probe).
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    gd, dt, _, _ = _edit(G, guide, relevance, 0.0, alphas)
    ws = G.mapping(torch.randn(CFG.samples, G.z_dim, generator=torch.Generator().manual_seed(CFG.seed + 1)), None)[:1]
    s0 = flatten_styles(G.styles(ws), style_layers(G))
    imgs = render_flat(G, ws, edit_flat(s0, gd.direction, alphas))
    sims = (guide.encode_image(imgs) @ dt).tolist()
    assert all(b > a for a, b in zip(sims, sims[1:])), sims


def test_s_direction_file_round_trip_and_refusal(G, tmp_path):
    d = torch.zeros(sum(l.width for l in style_layers(G)))
    d[3] = 1.5
    p = save_s_direction(tmp_path / "d.npz", G, d, relevance=np.zeros(3))
    assert torch.equal(load_s_direction(p, G), d)
    from clipstyle.latents.stylespace import SDirectionError

    torch.manual_seed(1)
    other = StyleGAN2Generator(StyleGAN2Config(z_dim=16, w_dim=16, c_dim=0, img_resolution=16, img_channels=3,
                                               channels=(8, 8, 8), mapping_layers=2))
    with pytest.raises(SDirectionError) as err:
        load_s_direction(p, other)
    assert "\n" not in str(err.value)


def test_published_layout_files_are_read_and_a_wrong_size_is_refused_in_one_line(G, guide, relevance, tmp_path):
    conv = sum(l.width for l in style_layers(G, False))
    good = tmp_path / "fs3.npy"
    rows = np.random.default_rng(0).standard_normal((conv, 32)).astype(np.float32)
    np.save(good, rows)
    rel = read_published(good, G, 32, std=relevance.std)
    assert rel.complete and torch.allclose(rel.delta_i[0], torch.from_numpy(rows[0] / np.linalg.norm(rows[0])))
    assert read_relevance(good, G, 32).delta_i.shape == (conv, 32)
    for shape in [(conv + 1, 32), (6048, 512), (conv,)]:
        bad = tmp_path / "delta_i_c.npy"
        np.save(bad, np.zeros(shape, np.float32))
        with pytest.raises(RelevanceFileError) as err:
            read_relevance(bad, G, 32)
        from clipstyle.errors import BadFileError

        assert isinstance(err.value, BadFileError) and "\n" not in str(err.value) and str(conv) in str(err.value)


def test_ui_tab_renders_on_slider_moves_after_prepare(G, guide, tmp_path):
    import threading
    from types import SimpleNamespace

    import gradio as gr

    from clipstyle.ui.global_edit import GlobalEditTab, build_tab

    models = SimpleNamespace(G=G, guide=guide, lock=threading.Lock(), device="cpu")
    tab = GlobalEditTab(models, samples=1, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="Prepare"):
        tab.render(0, "a face", "a smiling face", 3.0, 0.1)
    assert "ready" in tab.prepare()
    img0, _ = tab.render(0, "a face", "a smiling face", 0.0, 0.1)
    img3, status = tab.render(0, "a face", "a smiling face", 3.0, 0.1)
    assert img0.shape == (32, 32, 3) and img0.dtype == np.uint8 and "channels" in status
    assert not np.array_equal(img0, img3)
    with gr.Blocks():
        assert isinstance(build_tab(models, samples=1), GlobalEditTab)


def test_global_edit_pipeline_writes_an_s_direction_that_direction_apply_reads(G, guide, tmp_path):
    from clipstyle.pipelines.directions import direction_apply
    from clipstyle.pipelines.global_edit import global_edit
    from clipstyle.workflows.global_edit import GlobalEditSettings

    s = GlobalEditSettings(latents="0-1", source="a photo", target="a photo of a smiling face", samples=1,
                           stat_samples=200, frames=3, beta=0.05, alpha=2.0, network="unused",
                           clip_model=TINY_CLIP, clip_pretrained="none", report_channels=4)
    run = global_edit(s, G=G, guide=guide, device="cpu", cache_dir=tmp_path / "cache")
    folder = run.save(tmp_path / "runs")
    assert run.images.shape == (2, 32, 32, 3) and len(run.extra_json["channels"]) == 4
    assert (folder / "strip.png").is_file() and (folder / "strip.gif").is_file()
    d = load_s_direction(folder / "latents.npz", G)
    assert int((d != 0).sum()) == run.extra_json["channels_used"]
    walked = direction_apply("0", folder / "latents.npz", strength="0:2", frames=2, G=G, device="cpu",
                             truncation=0.7)
    # strength 2 along the saved direction is the pipeline's alpha-2 edit of the same seed
    assert np.array_equal(walked.images[1], run.images[0])
    with pytest.raises(ValueError, match="StyleSpace"):
        direction_apply("0", folder / "latents.npz", component=1, G=G, device="cpu")


@pytest.mark.parametrize("kind", ["sg1", "sg3"])
def test_relevance_and_edit_work_for_the_other_families(kind, guide, tmp_path):
    from .test_stylespace import tiny

    G = tiny(kind)
    cfg = RelevanceConfig(samples=1, k=1.0, batch=64, stat_samples=100)
    rel = compute_relevance(G, guide, cfg, cache_dir=tmp_path)
    conv = style_layers(G, False)
    assert rel.complete and rel.delta_i.shape == (sum(l.width for l in conv), 32)
    norms = rel.delta_i.norm(dim=1)
    assert bool(((norms - 1).abs() < 1e-5).logical_or(norms == 0).all())
    full, covered = rel.full(G)
    gd = global_direction(full, text_delta(guide, "a photo", "a red photo"), rel.std, 0.0, covered)
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(5)), None)
    s0 = flatten_styles(G.styles(ws), style_layers(G))
    assert torch.equal(render_flat(G, ws, edit_flat(s0, gd.direction, [0.0])), G.synthesis(ws))
    assert not torch.equal(render_flat(G, ws, edit_flat(s0, gd.direction, [2.0])), G.synthesis(ws))
