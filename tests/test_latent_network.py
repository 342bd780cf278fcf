"""A latent file is rendered with the generator it names: a pivotal-tuning generator beside it, else its network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipstyle.generator import read_generator_file
from clipstyle.generator.formats.native import save_native
from clipstyle.latents import LatentFileError, save_latents
from clipstyle.pipelines.common import network_for_latents
from clipstyle.pipelines.creative import interpolate, render, styleblocks

from . import _tiny


def _tuned_folder(tmp_path):
    net = _tiny.network_file("sg2")
    G = read_generator_file(net)
    tuned = read_generator_file(net)
    with torch.no_grad():
        for p in tuned.synthesis.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    save_native(tuned, tmp_path / "generator.safetensors")
    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1)), None)
    save_latents(tmp_path / "latents.npz", ws, meta={"network": str(net), "generator": "generator.safetensors"})
    return net, G, tuned, ws


def _uint8(G, ws):
    with torch.no_grad():
        x = G.synthesis(ws, noise_mode="const")
    return (x * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_the_tuned_generator_a_latent_file_names_is_used_unless_told_otherwise(tmp_path):
    net, G, tuned, ws = _tuned_folder(tmp_path)
    lat = tmp_path / "latents.npz"
    assert network_for_latents(lat, None) == str(tmp_path / "generator.safetensors")
    assert network_for_latents(lat, "ffhq") == "ffhq"
    run = render(str(lat), device="cpu")
    assert np.array_equal(run.images, _uint8(tuned, ws))
    assert not np.array_equal(run.images, _uint8(G, ws))  # the tuned weights really differ
    assert np.array_equal(render(str(lat), network=str(net), device="cpu").images, _uint8(G, ws))
    (tmp_path / "generator.safetensors").unlink()  # gone: one answer everywhere, refused, naming --network
    with pytest.raises(LatentFileError, match="names the tuned generator generator.safetensors, which is missing; "
                                              "pass --network"):
        network_for_latents(lat, None)
    with pytest.raises(LatentFileError, match="which is missing"):
        render(str(lat), device="cpu")
    assert network_for_latents(lat, str(net)) == str(net)


def test_styleblocks_and_interpolate_follow_the_file_too(tmp_path):
    net, G, tuned, ws = _tuned_folder(tmp_path)
    lat = str(tmp_path / "latents.npz")
    run = styleblocks(latents=lat + "#0", blocks="0", scale="1:1", frames=1, device="cpu")
    assert np.array_equal(run.images[:1], _uint8(tuned, ws[:1]))
    run = interpolate([lat + "#0", lat + "#1"], frames=2, device="cpu")
    frame = run.images[0].astype(int)  # rendered in a batch of frames: batched convolutions round differently
    assert np.abs(frame - _uint8(tuned, ws[:1])[0]).max() <= 1
    assert np.abs(frame - _uint8(G, ws[:1])[0]).max() > 8  # and the tuned weights really differ
