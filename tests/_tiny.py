"""Tiny models built in code with seeded random weights (diffusers' "dummy components").

The workflow tests run on these, so they need nothing beside the repository: a 64² StyleGAN2 / StyleGAN3 /
StyleGAN1, an e4e checkpoint and ArcFace IR-SE50 weights in their released file layouts (with tiny widths),
and the 32-px CLIP of ``tests/data/tiny_clip.json`` (``pretrained="none"``). Random weights make noise-like
images; tests check what holds anyway (a loss falls, frozen rows stay bit-identical, round trips are exact).
Parity with the original code's outputs is the job of the tests that read ``../shared/fixtures``.

Every builder is deterministic (its own seed, ``torch.random.fork_rng`` so the caller's global generator is
untouched). The ``*_file`` functions write each model once per test process into one temp folder (removed at
exit) and return its path; ``tests/conftest.py`` hands those paths out as session fixtures, and helpers that
are plain functions (``test_creative_cli.network_path``) call them directly.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path

import torch

TINY_CLIP = str(Path(__file__).parent / "data" / "tiny_clip.json")
RESOLUTION = 64
W_DIM = 64


def _enliven_(G: torch.nn.Module, seed: int) -> None:
    """Give every all-zero parameter (biases, noise strengths, SG3's input affine) small seeded values, so a
    test that drops one of them can see it; then set ``w_avg`` to the mean of 2000 mapped z."""
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if not p.is_floating_point():
                continue
            if name.endswith("noise_strength"):
                p.copy_(0.05 + 0.1 * torch.rand(p.shape, generator=g))
            elif not bool(p.any()):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
        z = torch.randn([2000, G.z_dim], generator=g)
        c = torch.zeros([2000, G.c_dim])
        if G.c_dim:
            c[torch.arange(2000), torch.arange(2000) % G.c_dim] = 1
        G.mapping.w_avg.copy_(G.mapping(z, c)[:, 0].mean(0))


def tiny_sg2(seed: int = 0, resolution: int = RESOLUTION, c_dim: int = 0, w_dim: int = W_DIM):
    """A random StyleGAN2 (skip, 64², z = w = 64, channels 32/32/32/32/16, 4 mapping layers, noise on, no
    clamp); eval, frozen, CPU float32. ``num_ws`` = 10 at 64² (coarse, middle and fine rows all exist)."""
    from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator

    n_blocks = resolution.bit_length() - 2
    channels = tuple([32] * (n_blocks - 1) + [16])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = StyleGAN2Generator(StyleGAN2Config(z_dim=w_dim, w_dim=w_dim, c_dim=c_dim, img_resolution=resolution,
                                               img_channels=3, channels=channels, mapping_layers=4,
                                               mapping_layer_features=w_dim))
    G.eval().requires_grad_(False)
    _enliven_(G, seed)
    return G


def tiny_sg3(seed: int = 0, radial: bool = False):
    """A random StyleGAN3 (config T, or R with ``radial``), 64², z = w = 64, 6 layers (``num_ws`` = 8)."""
    from clipstyle.generator.stylegan3 import StyleGAN3Config, StyleGAN3Generator

    kw = {"conv_kernel": 1, "use_radial_filters": True} if radial else {}
    cfg = StyleGAN3Config.design(RESOLUTION, z_dim=W_DIM, w_dim=W_DIM, channel_base=1024, channel_max=32,
                                 num_layers=6, num_critical=2, margin_size=4, **kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = StyleGAN3Generator(cfg)
    G.eval().requires_grad_(False)
    _enliven_(G, seed)
    return G


def tiny_sg1(seed: int = 0):
    """A random StyleGAN1, 64², z = w = 64, channels 32/32/32/16/16, 4 mapping layers (``num_ws`` = 10)."""
    from clipstyle.generator.stylegan1 import StyleGAN1Config, StyleGAN1Generator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = StyleGAN1Generator(StyleGAN1Config(z_dim=W_DIM, w_dim=W_DIM, c_dim=0, img_resolution=RESOLUTION,
                                               img_channels=3, channels=(32, 32, 32, 16, 16), mapping_layers=4))
    G.eval().requires_grad_(False)
    _enliven_(G, seed)
    return G


def _enliven_bn_(module: torch.nn.Module, g: torch.Generator) -> None:
    """Move BatchNorm statistics/affines and PReLU slopes off their defaults (as a trained net has them)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, torch.nn.PReLU):
                m.weight.copy_(0.25 + 0.05 * torch.randn(m.weight.shape, generator=g))


def _irse_backbone(widths: tuple[int, int, int, int], embedding: int | None):
    """An IR-SE50 layout (24 units: 3/4/14/3) with tiny stage widths; SE bottleneck = width / 4."""
    from clipstyle.encoders.irse import STAGE_UNITS, IRSEBackbone, IRSEConfig

    stages = STAGE_UNITS[24]
    units, prev = [], widths[0]
    for width, count in zip(widths, stages):
        for k in range(count):
            units.append((prev, width, 2 if k == 0 else 1, max(1, width // 4)))
            prev = width
    flat = widths[-1] * 7 * 7 if embedding else None  # 112 → 56 → 28 → 14 → 7
    return IRSEBackbone(IRSEConfig(widths[0], tuple(units), stages, embedding, flat))


def arcface_state(seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """ArcFace IR-SE50 weights in the ``model_ir_se50.pth`` layout (``input_layer.*``, ``body.0-23.*``,
    ``output_layer.*``, BatchNorm counters included), stage widths 4/8/12/16, a 16-d embedding."""
    g = torch.Generator().manual_seed(seed + 100)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 100)
        net = _irse_backbone((4, 8, 12, 16), embedding=16)
    _enliven_bn_(net, g)
    return OrderedDict((k, v.clone()) for k, v in net.state_dict().items())


def e4e_checkpoint(G, seed: int = 0) -> dict:
    """An e4e checkpoint in the released layout around decoder ``G`` (a StyleGAN2 rosinality can hold):
    ``{'state_dict': {'encoder.*', 'decoder.*'}, 'latent_avg': [num_ws, w_dim] (w_avg repeated), 'opts'}``.

    The encoder is an Encoder4Editing over an IR-SE50 body of widths 4/8/12/16: heads 0–2 read the 16² map
    (4 convs), 3–6 the 32² FPN level (5), the rest the 64² level (6), as e4e splits coarse/middle/fine.
    """
    from clipstyle.encoders.e4e import Encoder, StyleHead
    from clipstyle.generator.formats.rosinality_writer import rosinality_state

    g = torch.Generator().manual_seed(seed + 200)
    width = 16
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 200)
        body = _irse_backbone((4, 8, 12, width), embedding=None)
        heads = [StyleHead(width, width, 4 if i < 3 else 5 if i < 7 else 6, G.w_dim) for i in range(G.num_ws)]
        lat1, lat2 = torch.nn.Conv2d(12, width, 1), torch.nn.Conv2d(8, width, 1)
    _enliven_bn_(body, g)
    avg = G.mapping.w_avg.detach().clone()
    enc = Encoder(body, heads, lat1, lat2, avg[None].repeat(G.num_ws, 1), "e4e", G.img_resolution)
    with torch.no_grad():
        for head in heads:  # small offsets Δᵢ: e4e is trained to keep them near zero
            head.linear.weight.mul_(0.1)
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for k, v in enc.state_dict().items():
        if k == "latent_avg":
            continue
        state["encoder." + k.removeprefix("body.")] = v.clone()
    decoder, w_avg, _ = rosinality_state(G)
    for k, v in decoder.items():
        state["decoder." + k] = v
    opts = {"exp_dir": "experiments/tiny", "dataset_type": "ffhq_encode", "encoder_type": "Encoder4Editing",
            "stylegan_size": int(G.img_resolution), "start_from_latent_avg": True, "learning_rate": 0.0001,
            "checkpoint_path": None, "device": "cuda:0"}
    return {"state_dict": state, "latent_avg": w_avg[None].repeat(G.num_ws, 1), "opts": opts}


def save_tiny_network(G, path: str | Path) -> Path:
    """Write ``G`` as clipstyle safetensors (what ``--network`` reads) and return the path."""
    from clipstyle.generator.formats.native import save_native

    return Path(save_native(G, path))


@functools.cache
def _folder() -> Path:
    path = Path(tempfile.mkdtemp(prefix="clipstyle-tiny-"))
    atexit.register(shutil.rmtree, path, True)
    return path


NETWORKS = {"sg2": lambda: tiny_sg2(), "sg3": lambda: tiny_sg3(), "sg3r": lambda: tiny_sg3(seed=1, radial=True),
            "sg1": lambda: tiny_sg1()}


@functools.cache
def network_file(kind: str = "sg2") -> Path:
    """The tiny network ``kind`` (``sg2``, ``sg3``, ``sg3r``, ``sg1``) as ``tiny_<kind>.safetensors``, written
    once per process. Read it with ``read_generator_file`` or pass it as ``--network``."""
    return save_tiny_network(NETWORKS[kind](), _folder() / f"tiny_{kind}.safetensors")


@functools.cache
def e4e_file() -> Path:
    """``tiny_e4e.pt``: :func:`e4e_checkpoint` around :func:`tiny_sg2` (torch zip container)."""
    path = _folder() / "tiny_e4e.pt"
    torch.save(e4e_checkpoint(tiny_sg2()), path)
    return path


@functools.cache
def arcface_file() -> Path:
    """``tiny_arcface.pth``: :func:`arcface_state` (torch zip container)."""
    path = _folder() / "tiny_arcface.pth"
    torch.save(arcface_state(), path)
    return path
