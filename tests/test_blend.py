"""Network blending: which synthesis tensor comes from which network, bit for bit; the smooth ramp;
architecture checks; the ``blend``/``render`` commands and ``--blend`` on the main command."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from clipstyle.generator import CheckpointError, Generator
from clipstyle.generator.base import MappingConfig, MappingNetwork
from clipstyle.generator.blend import (
    blend_generators,
    blend_weights,
    check_blendable,
    synthesis_resolutions,
)
from clipstyle.generator.formats.native import save_native
from clipstyle.latents.constraints import SpecError, blend_from_spec, parse_blend_spec

from .test_creative_cli import (  # noqa: F401
    CLIP_ARGS,
    assert_one_line_error,
    load,
    network_path,
    run_cli,
    run_dir_of,
    scaled_copy,
)


def snapshot(G) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in G.state_dict().items()}


def sg2_res(key: str) -> int | None:
    m = re.match(r"synthesis\.b(\d+)\.", key)
    return int(m.group(1)) if m else None


def check_origins(blended, A, B, from_a) -> None:
    """Every tensor equals A's exactly where ``from_a(key)``, else B's exactly (and they differ)."""
    sa, sb = A.state_dict(), B.state_dict()
    for key, value in blended.state_dict().items():
        want_a = (not key.startswith("synthesis.")) or from_a(key)
        ref, other = (sa, sb) if want_a else (sb, sa)
        assert torch.equal(value, ref[key]), f"{key} should come from {'A' if want_a else 'B'}"
        if value.is_floating_point() and not torch.equal(sa[key], sb[key]):
            assert not torch.equal(value, other[key]), key


@pytest.fixture(scope="module")
def sg2_pair():
    A = load("sg2")
    return A, scaled_copy(A)


def test_top_resolution_is_a_and_inputs_are_unchanged(sg2_pair):
    A, B = sg2_pair
    before_a, before_b = snapshot(A), snapshot(B)
    G = blend_generators(A, B, at=64)
    check_origins(G, A, B, lambda k: True)
    assert G is not A and G.source.format == "blend"
    for k, v in A.state_dict().items():  # neither input was mutated
        assert torch.equal(v, before_a[k]) and torch.equal(B.state_dict()[k], before_b[k])
    assert not any(p.requires_grad for p in G.parameters()) and not G.training
    ws = A.mapping(torch.randn(2, 64), None)
    with torch.no_grad():
        assert torch.equal(G.synthesis(ws), A.synthesis(ws))


def test_lowest_resolution_takes_only_b4_from_a(sg2_pair):
    A, B = sg2_pair
    G = blend_generators(A, B, at=4)
    check_origins(G, A, B, lambda k: sg2_res(k) == 4)  # b4: const, conv1, torgb, their noise
    assert torch.equal(G.synthesis.b4.const, A.synthesis.b4.const)
    assert torch.equal(G.synthesis.b4.torgb.weight, A.synthesis.b4.torgb.weight)
    assert torch.equal(G.synthesis.b8.conv0.weight, B.synthesis.b8.conv0.weight)
    assert torch.equal(G.mapping.w_avg, A.mapping.w_avg)


@pytest.mark.parametrize("at", [8, 16, 32])
def test_layer_by_layer_origin(sg2_pair, at):
    A, B = sg2_pair
    G = blend_generators(A, B, at=at)
    check_origins(G, A, B, lambda k: sg2_res(k) <= at)


def test_smooth_ramp(sg2_pair):
    A, B = sg2_pair
    G = blend_generators(A, B, at=8, smooth=1.0)
    # α = 1 up to 8; α = 1 − log2(res/8)/2 above: 16 → 0.5, 32 → 0, 64 → 0
    for key, value in G.state_dict().items():
        res = sg2_res(key)
        a, b = A.state_dict()[key], B.state_dict()[key]
        if res is None or res <= 8:
            assert torch.equal(value, a), key
        elif res == 16:
            torch.testing.assert_close(value, 0.5 * a + 0.5 * b)
        else:
            assert torch.equal(value, b), key
    w = blend_weights({"x": 64.0, "y": 16.0}, 16, 2.0)
    assert w == {"x": pytest.approx(1 - 2 / 3), "y": 1.0}


def test_weights_errors():
    with pytest.raises(ValueError, match="power of two"):
        blend_weights({}, 48)
    with pytest.raises(ValueError, match="smoothness"):
        blend_weights({}, 16, -1.0)


def test_different_channels_is_a_clear_error(sg2_pair):
    from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator

    A, _ = sg2_pair
    other = StyleGAN2Generator(StyleGAN2Config(**{**A.config.__dict__, "channels": (32, 32, 32, 32, 32)}))
    with pytest.raises(CheckpointError, match=r"differ in channels .*A: \(32, 32, 32, 32, 16\)") as info:
        blend_generators(A, other, 16)
    assert "\n" not in str(info.value)
    arch = StyleGAN2Generator(StyleGAN2Config(**{**A.config.__dict__, "architecture": "orig"}))
    with pytest.raises(CheckpointError, match="architecture"):
        check_blendable(A, arch)
    mapping_only = StyleGAN2Generator(StyleGAN2Config(**{**A.config.__dict__, "mapping_layers": 2}))
    check_blendable(A, mapping_only)  # B's mapping is never used: allowed


# --------------------------------------------------------------------------- StyleGAN3 layout

@dataclass(frozen=True)
class FakeSG3Config:
    w_dim: int = 8
    rates: tuple = (16, 16, 32, 64, 64)


class FakeLayer(nn.Module):
    def __init__(self, rate: float) -> None:
        super().__init__()
        self.out_sampling_rate = rate
        self.weight = nn.Parameter(torch.randn(3, 3))
        self.register_buffer("magnitude_ema", torch.ones([]))


class FakeSG3(Generator):
    """Just enough of the StyleGAN3 layout (synthesis.input, synthesis.L{i}_{size}_{ch}) for blending."""

    kind = "stylegan3"

    def __init__(self, cfg: FakeSG3Config) -> None:
        super().__init__()
        self.config = cfg
        self.z_dim = self.w_dim = cfg.w_dim
        self.c_dim, self.img_resolution, self.img_channels = 0, cfg.rates[-1], 3
        self.num_ws = len(cfg.rates) + 1
        self.mapping = MappingNetwork(MappingConfig(cfg.w_dim, 0, cfg.w_dim, self.num_ws, num_layers=2))
        self.synthesis = nn.Module()
        self.synthesis.input = FakeLayer(cfg.rates[0])
        for i, r in enumerate(cfg.rates):
            setattr(self.synthesis, f"L{i}_{r + 20}_{3 if i == len(cfg.rates) - 1 else 8}", FakeLayer(r))

    def block_resolutions(self) -> list[int]:
        return [self.config.rates[0], *self.config.rates]


def test_sg3_layout_by_output_sampling_rate():
    A = FakeSG3(FakeSG3Config())
    B = scaled_copy(A)
    res = synthesis_resolutions(A)
    assert res["synthesis.input.weight"] == 4  # the input counts as the lowest resolution
    assert res["synthesis.L2_52_8.weight"] == 32 and res["synthesis.L4_84_3.magnitude_ema"] == 64
    G = blend_generators(A, B, at=4)
    check_origins(G, A, B, lambda k: k.startswith("synthesis.input."))
    G = blend_generators(A, B, at=16)
    check_origins(G, A, B, lambda k: k.startswith(("synthesis.input.", "synthesis.L0_", "synthesis.L1_")))
    G = blend_generators(A, B, at=64)
    check_origins(G, A, B, lambda k: True)
    with pytest.raises(CheckpointError, match="rates"):
        blend_generators(A, FakeSG3(FakeSG3Config(rates=(16, 32, 32, 64, 64))), 16)


def test_sg2_with_sg3_is_a_clear_error(sg2_pair):
    A, _ = sg2_pair
    with pytest.raises(CheckpointError, match="stylegan2 network with a stylegan3 network"):
        blend_generators(A, FakeSG3(FakeSG3Config()), 16)


def test_sg2_with_a_real_sg3_is_a_clear_error(sg2_pair):
    A, _ = sg2_pair
    with pytest.raises(CheckpointError, match="stylegan2 network with a stylegan3 network"):
        blend_generators(A, load("sg3"), 16)


def test_real_sg3_blend():
    A = load("sg3")
    B = scaled_copy(A)
    res = synthesis_resolutions(A)
    G = blend_generators(A, B, at=16)
    check_origins(G, A, B, lambda k: res[k] is not None and res[k] <= 16)
    assert any(v == 4 for k, v in res.items() if k.startswith("synthesis.input."))
    check_origins(blend_generators(A, B, at=A.img_resolution), A, B, lambda k: True)
    check_origins(blend_generators(A, B, at=4), A, B, lambda k: k.startswith("synthesis.input."))


# --------------------------------------------------------------------------- specs and commands

def test_blend_spec():
    assert parse_blend_spec("toon.pkl@32") == parse_blend_spec(" toon.pkl@32 ")
    s = parse_blend_spec("https://host/x@y.pkl@16:1.5")
    assert (s.network, s.at, s.smooth) == ("https://host/x@y.pkl", 16, 1.5)
    for bad in ("toon.pkl", "toon.pkl@", "toon.pkl@24", "toon.pkl@2", "@32", "toon.pkl@32:x"):
        with pytest.raises(SpecError):
            parse_blend_spec(bad)


def test_blend_command_writes_what_blend_generators_makes(sg2_pair, tmp_path, capsys):
    from clipstyle.generator import read_generator_file

    A, B = sg2_pair
    b_path = save_native(B, tmp_path / "b.safetensors")
    out = tmp_path / "blended.safetensors"
    code, stdout, err = run_cli(["blend", network_path("sg2"), b_path, "--at", 16, "--smooth", 0.5, "--out", out], capsys)
    assert code == 0, err
    written = read_generator_file(out)
    expected = blend_generators(A, B, 16, 0.5)
    for k, v in expected.state_dict().items():
        assert torch.equal(written.state_dict()[k], v), k
    assert blend_from_spec(A, f"{b_path}@16:0.5").state_dict()["synthesis.b32.conv0.weight"].equal(
        expected.synthesis.b32.conv0.weight)


def test_photo_to_painting_flow_and_main_blend(sg2_pair, tmp_path, capsys):
    """Optimize in the blend (--blend on the main command), then render the latents again in it."""
    A, B = sg2_pair
    b_path = save_native(B, tmp_path / "b.safetensors")
    net = network_path("sg2")
    code, out, err = run_cli(["a painting", "--network", net, "--blend", f"{b_path}@8", "--steps", 3, *CLIP_ARGS,
                              "--device", "cpu", "--quiet", "--cutouts", 2, "--outdir", tmp_path / "out"], capsys)
    assert code == 0, err
    lat = run_dir_of(out) / "latents.npz"
    code, out, err = run_cli(["render", lat, "--network", net, "--blend", f"{b_path}@8", "--device", "cpu"], capsys)
    assert code == 0, err
    from PIL import Image

    png = np.asarray(Image.open(out.strip()))
    G = blend_generators(A, B, 8)
    with np.load(lat) as f:
        ws = torch.from_numpy(f["ws"])
    with torch.no_grad():
        ref = (G.synthesis(ws) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
        plain = (A.synthesis(ws) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(png, ref)
    assert not np.array_equal(png, plain)
    result = np.asarray(Image.open(lat.parent / "result.png"))
    assert np.abs(result.astype(int) - ref.astype(int)).max() <= 1  # the main command rendered in the blend


def test_mismatched_blend_on_main_command(tmp_path, capsys):
    from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator

    A = load("sg2")
    other = save_native(StyleGAN2Generator(StyleGAN2Config(**{**A.config.__dict__, "channels": (16,) * 5})),
                        tmp_path / "o.safetensors")
    code, out, err = run_cli(["x", "--network", network_path("sg2"), "--blend", f"{other}@16", *CLIP_ARGS,
                              "--device", "cpu", "--quiet", "--steps", 1, "--outdir", tmp_path], capsys)
    assert_one_line_error(code, err, 1, "channels")


def test_blend_keeps_copy_semantics():
    A = FakeSG3(FakeSG3Config())
    B = copy.deepcopy(A)
    G = blend_generators(A, B, 16)
    G.synthesis.input.weight.data.add_(1)
    assert not torch.equal(G.synthesis.input.weight, A.synthesis.input.weight)


def test_sg3_t_with_r_is_a_clear_error():
    from clipstyle.generator import read_generator_file

    from . import _tiny

    A = load("sg3")
    R = read_generator_file(_tiny.network_file("sg3r"))
    with pytest.raises(CheckpointError, match="cannot blend: the networks differ in") as info:
        blend_generators(A, R, 16)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300
