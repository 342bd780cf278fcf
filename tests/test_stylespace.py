"""StyleSpace S (Wu et al. 2021): styles of every modulated layer, the channel table, the flat view, and
rendering from styles bit-identically to ``G.synthesis(ws)`` for every generator family and fixture."""

from __future__ import annotations

import pytest
import torch

from clipstyle.generator.stylegan1 import StyleGAN1Config, StyleGAN1Generator
from clipstyle.generator.stylegan2 import (
    StyleGAN2Config,
    StyleGAN2Generator,
    channels_for,
)
from clipstyle.generator.stylegan3 import StyleGAN3Config, StyleGAN3Generator
from clipstyle.generator.stylespace import (
    channel_table,
    flatten_styles,
    num_channels,
    unflatten_styles,
)

from ._fixtures import fixture_path

FIXTURES = ["sg2_skip_64.pkl", "tf_sg2_skip_64.pkl", "rosinality_64.pt", "sg3_t_64.pkl", "sg3_r_64.pkl",
            "sg1_tf_64.pkl", "sg1_lernapparat_64.pt", "e4e_tiny_64.pt"]


def tiny(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    if kind == "sg1":
        G = StyleGAN1Generator(StyleGAN1Config(z_dim=16, w_dim=16, c_dim=0, img_resolution=16, img_channels=3,
                                               channels=(8, 8, 8), mapping_layers=2))
    elif kind == "sg2":
        G = StyleGAN2Generator(StyleGAN2Config(z_dim=16, w_dim=16, c_dim=0, img_resolution=16, img_channels=3,
                                               channels=(8, 8, 8), mapping_layers=2))
    elif kind == "sg2-resnet":
        G = StyleGAN2Generator(StyleGAN2Config(z_dim=16, w_dim=16, c_dim=0, img_resolution=16, img_channels=3,
                                               channels=(8, 8, 8), mapping_layers=2, architecture="resnet"))
    else:
        G = StyleGAN3Generator(StyleGAN3Config.design(16, z_dim=16, w_dim=16, channel_base=256, channel_max=16,
                                                      num_layers=4))
    return G.eval().requires_grad_(False)


def _ws(G, n: int = 3, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ws = G.mapping(torch.randn(n, G.z_dim, generator=g), None)
    return ws + 0.3 * torch.randn(ws.shape, generator=g)  # rows differ (W+), as after an edit


def _round_trip(G, n: int = 3) -> None:
    ws = _ws(G, n)
    for mode in ("const", "none") if G.kind != "stylegan3" else ("const",):  # StyleGAN3 has no noise inputs
        ref = G.synthesis(ws, noise_mode=mode)
        styles = G.styles(ws)
        assert torch.equal(G.synthesis_styles(ws, styles, noise_mode=mode), ref)
        layers = G.style_layers()
        flat = flatten_styles(styles, layers)
        assert flat.shape == (ws.shape[0], num_channels(G))
        back = unflatten_styles(flat.clone(), layers)
        assert all(torch.equal(back[k], styles[k]) for k in styles)
        assert torch.equal(G.synthesis_styles(ws, back, noise_mode=mode), ref)
    # and a style really drives the image: moving one channel changes it
    moved = dict(styles)
    name = list(moved)[-1]  # (StyleGAN1's first AdaIN scale multiplies a normalized constant: zero)
    moved[name] = moved[name].clone()
    moved[name][:, 0] += 5.0
    assert not torch.equal(G.synthesis_styles(ws, moved, noise_mode="none"), G.synthesis(ws, noise_mode="none"))


@pytest.mark.parametrize("kind", ["sg1", "sg2", "sg2-resnet", "sg3"])
def test_round_trip_is_bit_identical_for_every_family(kind):
    _round_trip(tiny(kind))


@pytest.mark.parametrize("name", FIXTURES)
def test_round_trip_is_bit_identical_for_every_fixture(name):
    from clipstyle.generator import read_generator_file

    G = read_generator_file(fixture_path(name)).eval()
    _round_trip(G, n=2)


def test_ffhq_1024_stylegan2_has_the_known_stylespace_sizes():
    # the FFHQ-1024 configuration (Karras et al. 2020, config F): StyleSpace paper Table 1 / StyleCLIP: 9088, 6048
    G = StyleGAN2Generator(StyleGAN2Config(z_dim=512, w_dim=512, c_dim=0, img_resolution=1024, img_channels=3,
                                           channels=channels_for(1024)))
    assert num_channels(G) == 9088
    assert num_channels(G, include_torgb=False) == 6048
    layers = G.style_layers(include_torgb=False)
    assert len(layers) == 17 and len(G.style_layers()) == 26
    assert [l.width for l in layers][-4:] == [128, 64, 64, 32]


def test_channel_table_names_layer_kind_resolution_and_index():
    G = tiny("sg2")
    table = channel_table(G)
    assert [c.flat for c in table] == list(range(num_channels(G)))
    assert table[0].layer == "b4.conv1" and table[0].kind == "conv" and table[0].resolution == 4
    assert table[8].layer == "b4.torgb" and table[8].kind == "torgb" and table[8].index == 0
    assert {c.kind for c in channel_table(G, include_torgb=False)} == {"conv"}
    sg1 = channel_table(tiny("sg1"))
    assert (sg1[0].part, sg1[0].index, sg1[8].part, sg1[8].index) == ("scale", 0, "bias", 0)


def test_styles_carry_gradients_to_the_image():
    G = tiny("sg2")
    ws = _ws(G, 1)
    flat = flatten_styles(G.styles(ws), G.style_layers()).clone().requires_grad_(True)
    img = G.synthesis_styles(ws, unflatten_styles(flat, G.style_layers()))
    img.square().mean().backward()
    assert flat.grad is not None and bool(flat.grad.abs().sum() > 0)


def test_style_latent_optimizes_s_through_the_one_loop():
    from clipstyle.latents.stylespace import StyleLatent
    from clipstyle.optimize.loop import Schedule, run

    G = tiny("sg2")
    ws = _ws(G, 1)
    layers = G.style_layers()
    s0 = flatten_styles(G.styles(ws), layers)
    goal = s0.clone()
    goal[0, :8] += 1.0  # the target image moves the first layer's styles
    target = G.synthesis_styles(ws, unflatten_styles(goal, layers))
    latent = StyleLatent(G, ws, channels=range(8))
    stand_in = latent.generator()

    def loss(images, _ws):
        value = (images - target).square().mean()
        return value, {"mse": value.detach()}

    res = run(stand_in, latent, loss, Schedule(lr=0.1, steps=20), callbacks=[stand_in.callback])
    hist = [h["loss"] for h in res.history]
    assert hist[-1] < 0.2 * hist[0]
    best = latent.best_styles
    assert torch.equal(best[:, 8:], s0[:, 8:])          # channels outside the mask: bit-identical
    assert not torch.equal(best[:, :8], s0[:, :8])
    assert torch.equal(res.ws, ws)                       # the loop's ws is the fixed start; S carries the edit
