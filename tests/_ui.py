"""Serving the UI for tests on tiny models built here in code (random, seeded weights): a 32² StyleGAN2 saved
with clipstyle's safetensors writer, an e4e checkpoint and ArcFace weights in their released layouts with tiny
widths, LPIPS weights of the right shapes, and the 32-px CLIP of ``tests/data/tiny_clip.json`` (pretrained
``none``). Nothing from ``../shared`` is needed.

(The shared tiny models of ``tests/conftest.py`` replace these builders once they land.)
"""

from __future__ import annotations

import contextlib
import socket
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from ._cli import TINY_CLIP


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------------------- tiny models
def tiny_generator(seed: int = 0):
    """A random skip StyleGAN2, 32², z = w = 32, ``num_ws`` 8, with ``w_avg`` the mean of 1000 mapped z."""
    from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = StyleGAN2Generator(StyleGAN2Config(z_dim=32, w_dim=32, c_dim=0, img_resolution=32, img_channels=3,
                                               channels=(32, 32, 32, 16), mapping_layers=4))
        G.eval().requires_grad_(False)
        with torch.no_grad():
            G.mapping.w_avg.copy_(G.mapping(torch.randn(1000, 32), None)[:, 0].mean(0))
    return G


def _irse(widths: tuple[int, int, int, int], embedding: int | None):
    """An IR-SE backbone of 24 units (3/4/14/3, the IR-SE50 layout) with the given stage widths."""
    from clipstyle.encoders.irse import STAGE_UNITS, IRSEBackbone, IRSEConfig

    units, prev = [], widths[0]
    for width, count in zip(widths, STAGE_UNITS[24]):
        units += [(prev if k == 0 else width, width, 2 if k == 0 else 1, max(1, width // 4)) for k in range(count)]
        prev = width
    flat = widths[-1] * 49 if embedding else None  # 112² faces end at 7²
    return IRSEBackbone(IRSEConfig(widths[0], tuple(units), STAGE_UNITS[24], embedding, flat))


def tiny_e4e(G, seed: int = 1) -> dict:
    """An e4e checkpoint dict (``state_dict`` of ``encoder.*`` tensors, ``latent_avg``, ``opts``) for ``G``'s
    latent layout: heads 0–2 on the 16² map, 3–6 on the 32² level, the rest on 64²."""
    from clipstyle.encoders.e4e import Encoder, StyleHead

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        body = _irse((4, 8, 12, 16), None)
        heads = [StyleHead(16, 16, 4 if i < 3 else 5 if i < 7 else 6, G.w_dim) for i in range(G.num_ws)]
        enc = Encoder(body, heads, torch.nn.Conv2d(12, 16, 1), torch.nn.Conv2d(8, 16, 1),
                      G.w_avg.detach()[None].repeat(G.num_ws, 1), "e4e", G.img_resolution)
    state = OrderedDict()
    for k, v in enc.state_dict().items():
        if k != "latent_avg":
            state["encoder." + k.removeprefix("body.")] = v.clone()
    return {"state_dict": state, "latent_avg": enc.latent_avg.clone(),
            "opts": {"encoder_type": "Encoder4Editing", "stylegan_size": int(G.img_resolution)}}


def tiny_arcface(seed: int = 2) -> dict:
    """ArcFace weights in the ``model_ir_se50.pth`` layout: stage widths 4/8/12/16, a 16-d embedding."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return OrderedDict((k, v.clone()) for k, v in _irse((4, 8, 12, 16), 16).state_dict().items())


def tiny_lpips(folder: Path, seed: int = 3) -> Path:
    """A folder with random VGG16 features (``vgg16.pth``) and LPIPS linear weights (``vgg.pth``)."""
    from clipstyle.inversion.lpips import CHANNELS

    folder.mkdir(parents=True, exist_ok=True)
    # torchvision's VGG16 "features" (config D): 3×3 conv + ReLU pairs and max-pools ("M"), indexed in order
    widths = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    shapes, c_in, i = {}, 3, 0
    for w in widths:
        if w == "M":
            i += 1
            continue
        shapes[f"{i}.weight"], shapes[f"{i}.bias"], c_in = torch.Size([w, c_in, 3, 3]), torch.Size([w]), w
        i += 2
    # a cheap fixed pattern in [-0.05, 0.05] instead of 14.7 M random draws (LPIPS only has to run, not judge)
    torch.save({f"features.{k}": ((torch.arange(shape.numel()) * 7919 + seed) % 101 - 50).float().mul_(1e-3)
                .reshape(shape) for k, shape in shapes.items()}, folder / "vgg16.pth")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(CHANNELS)},
                   folder / "vgg.pth")
    return folder


@contextlib.contextmanager
def tiny_models(folder: Path):
    """Write the tiny models into ``folder``; yields a dict of their paths (network, network_b, encoder,
    id_weights, lpips_weights)."""
    from clipstyle.generator.formats.native import save_native

    folder.mkdir(parents=True, exist_ok=True)
    G = tiny_generator(0)
    paths = {"network": str(save_native(G, folder / "tiny_a.safetensors")),
             "network_b": str(save_native(tiny_generator(5), folder / "tiny_b.safetensors")),
             "encoder": str(folder / "e4e_tiny.pt"), "id_weights": str(folder / "arcface_tiny.pth"),
             "lpips_weights": str(tiny_lpips(folder / "lpips"))}
    torch.save(tiny_e4e(G), paths["encoder"])
    torch.save(tiny_arcface(), paths["id_weights"])
    yield paths


@contextlib.contextmanager
def served_ui(outdir: Path, preview_every: int = 2, *, models: dict | None = None, auth=None, **settings):
    """``(url, demo)`` of a UI launched in the background on the tiny models; closed on exit.

    ``settings``: more :class:`~clipstyle.ui.config.UIConfig` fields (``allow_dirs``, ``limits`` …).
    """
    pytest.importorskip("gradio")
    from clipstyle.ui.app import launch
    from clipstyle.ui.config import UIConfig

    with contextlib.ExitStack() as stack:
        paths = models or stack.enter_context(tiny_models(Path(outdir) / "models"))
        config = UIConfig(networks=(paths["network"], paths["network_b"]), clip_model=TINY_CLIP,
                          clip_pretrained="none", device="cpu", outdir=str(outdir), preview_every=preview_every,
                          encoder=paths["encoder"], id_weights=paths["id_weights"],
                          lpips_weights=paths["lpips_weights"], **settings)
        port = free_port()
        demo = launch(config, "127.0.0.1", port, block=False, auth=auth)
        try:
            yield f"http://127.0.0.1:{port}/", demo
        finally:
            demo.close()
            demo.clipstyle.sessions.remove_all()
