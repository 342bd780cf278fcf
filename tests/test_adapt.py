"""Generator adaptation (StyleGAN-NADA) on tiny random networks and a tiny random CLIP: what holds anyway."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from clipstyle.adapt.layers import layer_map, select_rows
from clipstyle.adapt.losses import AdaptLoss, text_critic
from clipstyle.adapt.trainer import AdaptConfig, FamilyError, adapt_generator
from clipstyle.errors import UsageError
from clipstyle.generator.formats.native import read_provenance, save_native
from clipstyle.generator.stylegan1 import StyleGAN1Config, StyleGAN1Generator
from clipstyle.generator.stylegan2 import (
    StyleGAN2Config,
    StyleGAN2Generator,
    channels_for,
)
from clipstyle.generator.stylegan3 import StyleGAN3Config, StyleGAN3Generator
from clipstyle.guidance import CLIPGuide
from clipstyle.pipelines.adapt import ADAPTED_GENERATOR, adapt
from clipstyle.workflows.adapt import AdaptSettings

from ._cli import TINY_CLIP, run_cli


def tiny_sg2(seed: int = 0, c_dim: int = 0) -> StyleGAN2Generator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cfg = StyleGAN2Config(z_dim=8, w_dim=8, c_dim=c_dim, img_resolution=32, img_channels=3,
                              channels=channels_for(32, 256, 16), mapping_layers=2)
        G = StyleGAN2Generator(cfg)
        with torch.no_grad():
            for name, buf in G.named_buffers():
                if name.endswith("noise_const"):
                    buf.normal_()
    return G.eval().requires_grad_(False)


def tiny_sg3() -> StyleGAN3Generator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cfg = StyleGAN3Config.design(16, z_dim=8, w_dim=8, channel_base=128, channel_max=8, num_layers=4,
                                     num_critical=1, margin_size=2, use_radial_filters=True, conv_kernel=1)
        return StyleGAN3Generator(cfg).eval().requires_grad_(False)


def tiny_sg1() -> StyleGAN1Generator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cfg = StyleGAN1Config(z_dim=8, w_dim=8, c_dim=0, img_resolution=16, img_channels=3, channels=(8, 8, 8),
                              mapping_layers=2)
        return StyleGAN1Generator(cfg).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def guide():
    return CLIPGuide(TINY_CLIP, None)


def _loss(guide) -> AdaptLoss:
    return AdaptLoss([text_critic(guide, 1.0, "photo", "pencil sketch", None)])


def _eval_loss(loss: AdaptLoss, G0, G1, n: int = 6) -> float:
    z = torch.randn([n, G0.z_dim], generator=torch.Generator().manual_seed(1234))
    with torch.no_grad():
        ws = G0.mapping(z, None)
        return float(loss(G1.synthesis(ws), G0.synthesis(ws))[0])


def test_the_directional_loss_falls_on_unseen_latents(guide):
    G = tiny_sg2()
    loss = _loss(guide)
    result = adapt_generator(G, loss, AdaptConfig(steps=40, lr=0.01, preview_every=0))
    assert _eval_loss(loss, G, G) == pytest.approx(1.0)  # the start: the images have not changed (ΔI = 0)
    assert _eval_loss(loss, G, result.G) < 0.75
    assert result.run.steps_done == 40 and not result.run.interrupted
    assert len(result.rows_trained) == 40 and all(len(r) == 5 for r in result.rows_trained)  # k = 2/3 of 8 rows


def _state(G) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in G.state_dict().items()}


@pytest.mark.parametrize("make", [tiny_sg2, tiny_sg3, tiny_sg1], ids=["sg2", "sg3", "sg1"])
def test_only_the_chosen_layers_change_mapping_and_torgb_stay_bit_identical(guide, make):
    G = make()
    before = _state(G)
    lmap = layer_map(G)
    rows = (1, 2)
    result = adapt_generator(G, _loss(guide), AdaptConfig(steps=4, lr=0.01, rows=rows, preview_every=0))
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())  # the base is untouched
    trained = lmap.layers_of(rows)
    assert trained and not any(name in lmap.torgb for name in trained)
    changed = {k for k, v in result.G.state_dict().items() if not torch.equal(before[k], v)}
    assert changed, "nothing trained"
    for k in changed:
        layer = k.removeprefix("synthesis.").rsplit(".", 1)[0].removesuffix(".affine")
        assert layer in trained, k
    assert not any(k.startswith("mapping.") for k in changed)
    assert not any(t in k for k in changed for t in lmap.torgb)
    assert not any(p.requires_grad for p in result.G.parameters())


def test_the_layer_map_of_each_family():
    assert layer_map(tiny_sg2()).rows == (("b4.conv1",), ("b8.conv0",), ("b8.conv1",), ("b16.conv0",),
                                          ("b16.conv1",), ("b32.conv0",), ("b32.conv1",), ())
    assert layer_map(tiny_sg2()).torgb == ("b4.torgb", "b8.torgb", "b16.torgb", "b32.torgb")
    assert layer_map(tiny_sg2(), torgb=True).rows[-1] == ("b32.torgb",)
    g3 = tiny_sg3()
    m3 = layer_map(g3)
    assert m3.rows[0] == ("input",) and m3.rows[-1] == () and len(m3.torgb) == 1
    assert [r[0] for r in m3.rows[1:-1]] == g3.synthesis.layer_names[:-1]
    m1 = layer_map(tiny_sg1())
    assert m1.rows[:2] == (("b4.conv0",), ("b4.conv1",)) and all(len(r) == 1 for r in m1.rows)


class _RowWeighted(nn.Module):
    """A stand-in generator whose image is Σ_i c_i·sum(ws_i): row i's gradient has size ∝ |c_i|."""

    def __init__(self, coefs: list[float]) -> None:
        super().__init__()
        self.num_ws, self.w_dim = len(coefs), 4
        self.coefs = nn.Parameter(torch.tensor(coefs))
        self.synthesis = self

    def forward(self, ws, noise_mode="const"):  # [N, num_ws, w_dim] → [N, 3, 2, 2]
        v = (ws * self.coefs[None, :, None]).sum(dim=(1, 2))
        return v[:, None, None, None].expand(-1, 3, 2, 2)


def test_adaptive_selection_picks_the_rows_that_move_most():
    G = _RowWeighted([0.1, 3.0, 0.0, -2.0, 0.5, 1.0])
    G.coefs.requires_grad_(True)
    ws = torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(0))
    rows, change = select_rows(G, ws, lambda x: x.square().mean(), k=3, steps=2, lr=0.001)
    assert rows == [1, 3, 5]
    assert int(change.argmax()) == 1 and float(change[2]) == 0.0
    assert G.coefs.requires_grad and G.coefs.grad is None  # flags restored, no weight gradient
    assert select_rows(G, ws, lambda x: x.square().mean(), k=2, candidates=[0, 2, 4, 5])[0] == [4, 5]


def test_stop_keeps_the_best_generator_so_far(guide):
    G = tiny_sg2()
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 7

    cfg = AdaptConfig(steps=30, lr=0.01, seed=3, preview_every=0)
    stopped = adapt_generator(G, _loss(guide), cfg, stop=stop)
    assert stopped.run.interrupted and stopped.run.steps_done == 7
    best = stopped.run.best_step
    assert 0 <= best < 7
    history = [h["loss"] for h in stopped.run.history]
    assert history[best] == min(history)
    if best == 0:  # the best is the start: the base's own weights
        expected = G
    else:  # a fresh run of `best` steps (same seed, constant lr) ends with the weights the stopped run kept
        expected = adapt_generator(G, _loss(guide), AdaptConfig(steps=best, lr=0.01, seed=3, preview_every=0)).G
    for (k, a), b in zip(stopped.G.state_dict().items(), expected.state_dict().values()):
        assert torch.equal(a, b), k


def test_conditional_networks_are_refused_clearly(guide):
    with pytest.raises(FamilyError, match="unconditional"):
        adapt_generator(tiny_sg2(c_dim=3), _loss(guide), AdaptConfig(steps=1))
    assert issubclass(FamilyError, UsageError)


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    """One adaptation through the pipeline: (folder, base file, run)."""
    root = tmp_path_factory.mktemp("adapt")
    base = root / "base.safetensors"
    save_native(tiny_sg2(), base)
    settings = AdaptSettings(network=str(base), target="pencil sketch", steps=6, lr=0.01, clip_model=TINY_CLIP,
                             clip_pretrained="none", seeds="0-2", preview_every=2)
    run = adapt(settings, device="cpu")
    return run.save(root / "out"), base, run


def test_the_run_folder_and_the_adapted_network_round_trip_bit_exactly(adapted):
    from clipstyle.generator import load_generator
    from clipstyle.io.cache import sha256_file

    folder, base, run = adapted
    assert {p.name for p in folder.iterdir()} >= {"result.png", "progress.gif", "latents.npz", "run.json",
                                                  "before.png", "after.png", ADAPTED_GENERATOR}
    H = load_generator(str(folder / ADAPTED_GENERATOR))
    for (k, a), b in zip(run.generator.state_dict().items(), H.state_dict().values()):
        assert torch.equal(a, b), k
    prov = read_provenance(folder / ADAPTED_GENERATOR)
    assert prov["base"] == "base.safetensors" and prov["base_sha256"] == sha256_file(base)
    assert prov["target"] == "pencil sketch" and prov["steps"] == 6 and prov["layers"] == "auto"
    assert len(run.frames) == 4 and run.images.shape == (3, 32, 32, 3)  # before, steps 2 and 4, after


def test_the_adapted_network_exports_to_rosinality_and_reads_back(adapted, tmp_path):
    from clipstyle.generator import read_generator_file
    from clipstyle.generator.formats.writers import save_network

    folder, _, run = adapted
    save_network(read_generator_file(folder / ADAPTED_GENERATOR), tmp_path / "g.pt")
    H = read_generator_file(tmp_path / "g.pt")
    assert H.source.format == "rosinality"
    ws = run.generator.mapping(torch.randn(2, 8, generator=torch.Generator().manual_seed(0)), None)
    with torch.no_grad():
        assert torch.equal(run.generator.synthesis(ws), H.synthesis(ws))


def test_a_projected_latent_renders_on_the_adapted_network_without_a_warning(adapted, tmp_path):
    from PIL import Image

    from clipstyle.latents.context import read_context
    from clipstyle.pipelines.creative import render
    from clipstyle.pipelines.photo import project

    folder, base, run = adapted
    photo = tmp_path / "me.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(photo)
    proj = project(photo, network=str(base), steps=3, perceptual="none", device="cpu")
    latents = proj.save(tmp_path) / "latents.npz"
    child = folder / ADAPTED_GENERATOR
    ctx = read_context(latents)
    assert ctx.relation(str(child), read_provenance(child)) == "child"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = render(str(latents), network=str(child), device="cpu")
    from clipstyle.inversion.noise import SynthesisWithNoise, read_noise

    noise = read_noise(latents, run.generator, ctx.meta.get("noise"))
    assert noise, "the projection stored its noise maps; the child has the same buffers"
    with torch.no_grad():
        expected = SynthesisWithNoise(run.generator, noise).synthesis(proj.ws.to(torch.float32), noise_mode="const")
    assert np.array_equal(out.images, (expected * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
                          .numpy())
    assert not np.array_equal(out.images, render(str(latents), network=str(base), device="cpu").images)
    # an unrelated network of the same shape is not mistaken for a child
    other = tmp_path / "other.safetensors"
    save_native(tiny_sg2(seed=5), other)
    assert ctx.relation(str(other), read_provenance(other)) == "other"
    assert ctx.relation(str(base)) == "same"


@pytest.mark.parametrize("bad, match", [
    (dict(target="photo"), "same text"),
    (dict(target=None), "say what to adapt to"),
    (dict(target="sketch", layers="sideways"), "--layers"),
    (dict(target="sketch", clip_weights="1,2"), "2 weights for 1"),
    (dict(target="sketch", steps=0), "--steps"),
    (dict(target="sketch", style_images=(__file__,)), "not both"),
    (dict(style_images=("missing.png",)), "no such file"),
    (dict(target="sketch", show=("3", "nowhere.npz#1")), "no such latent file"),
    (dict(target="sketch", seeds="3-1"), "seed"),
    (dict(target="sketch", layers="0-3", auto_k=2), "auto-k"),
])
def test_bad_settings_are_refused_before_any_model_loads(bad, match, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("clipstyle.generator.load_generator", boom)
    monkeypatch.setattr("clipstyle.guidance.CLIPGuide", boom)
    with pytest.raises(UsageError, match=match):
        adapt(network="ffhq", clip_model="ViT-B-32", **bad)


def test_the_cli_refuses_bad_settings_with_exit_2_before_loading(monkeypatch, capsys):
    monkeypatch.setattr("clipstyle.generator.load_generator", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    code, _, err = run_cli(["adapt", "--source", "photo", "--target", "Photo"], capsys)
    assert code == 2 and "same text" in err and len(err.strip().splitlines()) == 1


def test_the_cli_gives_the_same_generator_as_the_api(adapted, tmp_path, capsys):
    from clipstyle.generator import read_generator_file

    folder, base, run = adapted
    code, out, err = run_cli(["adapt", "--network", base, "--target", "pencil sketch", "--steps", 6, "--lr", 0.01,
                              "--clip-model", TINY_CLIP, "--clip-pretrained", "none", "--seeds", "0-2",
                              "--preview-every", 2, "--device", "cpu", "--outdir", tmp_path, "-q"], capsys)
    assert code == 0, err
    H = read_generator_file(Path(out.strip()) / ADAPTED_GENERATOR)
    for (k, a), b in zip(run.generator.state_dict().items(), H.state_dict().values()):
        assert torch.equal(a, b), k


def test_the_ui_endpoint_gives_the_same_generator_as_the_api(adapted, tmp_path):
    pytest.importorskip("gradio")
    from clipstyle.generator import read_generator_file
    from clipstyle.ui.tabs.adapt import adapt_stream
    from clipstyle.ui.runner import Models, UIConfig

    folder, base, _ = adapted
    models = Models(UIConfig(networks=(str(base),), clip_model=TINY_CLIP, clip_pretrained="none", device="cpu"))
    events = list(adapt_stream(models, "photo", "pencil sketch", 4, "auto", 2, outdir=tmp_path, preview_every=2))
    assert [k for k, _ in events] == ["progress"] * 3 + ["done"]  # steps 1, 3 and the last, 4
    run, ui_folder = events[-1][1]
    api = adapt(AdaptSettings(network=str(base), target="pencil sketch", steps=4, seed=2, clip_model=TINY_CLIP,
                              clip_pretrained="none"), device="cpu")
    H = read_generator_file(ui_folder / ADAPTED_GENERATOR)
    for (k, a), b in zip(api.generator.state_dict().items(), H.state_dict().values()):
        assert torch.equal(a, b), k


def test_generate_and_blend_read_the_adapted_network(adapted):
    from clipstyle.pipelines.creative import blend, generate

    folder, base, run = adapted
    child = str(folder / ADAPTED_GENERATOR)
    gen = generate(network=child, seeds="0", device="cpu")
    with torch.no_grad():
        ws = run.generator.mapping(torch.from_numpy(np.random.RandomState(0).randn(1, 8)).float(), None)
        expected = (run.generator.synthesis(ws) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    assert np.array_equal(gen.images[0], expected[0].permute(1, 2, 0).numpy())
    mixed = blend(str(base), child, at=8, device="cpu")  # coarse layers of the base, the rest adapted
    assert mixed.num_ws == run.generator.num_ws


def test_a_batch_job_gives_the_same_generator_as_the_api(adapted, tmp_path, capsys):
    import json

    from clipstyle.generator import read_generator_file

    folder, base, run = adapted
    job = {"command": "adapt", "id": "sketch", "network": str(base), "target": "pencil sketch", "steps": 6,
           "lr": 0.01, "clip_model": TINY_CLIP, "clip_pretrained": "none", "seeds": "0-2", "preview_every": 2}
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps(job) + "\n")
    code, out, err = run_cli(["batch", jobs, "--outdir", tmp_path / "out", "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    H = read_generator_file(tmp_path / "out" / "sketch" / ADAPTED_GENERATOR)
    for (k, a), b in zip(run.generator.state_dict().items(), H.state_dict().values()):
        assert torch.equal(a, b), k
