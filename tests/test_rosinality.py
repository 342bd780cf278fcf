"""rosinality/stylegan2-pytorch checkpoints: parity with their reference outputs (fixtures README §4, §7, §10),
the training-checkpoint layout, and refusal of unsafe archives."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from clipstyle.generator import CheckpointError, UnsafePickleError, read_generator_file
from clipstyle.generator.formats.rosinality import (
    generator_from_rosinality,
    load_rosinality_checkpoint,
    mean_latent,
)

from ._fixtures import fixture_path, reference

ATOL = 1e-4  # README §6
FIXTURES = ("rosinality_64", "rosinality_train_32")


def _err(a: torch.Tensor, b: np.ndarray) -> float:
    return float((a.detach().double() - torch.from_numpy(b).double()).abs().max())


@pytest.fixture(scope="module", params=FIXTURES)
def ros(request):
    name = request.param
    G = read_generator_file(fixture_path(f"{name}.pt"))
    ref = reference(name)
    # The training checkpoint has no latent_avg; its reference used one particular draw (README §10.3).
    G.mapping.w_avg.copy_(torch.from_numpy(ref["latent_avg"]))
    return name, G, ref


def test_config_inferred_from_shapes(ros):
    name, G, ref = ros
    assert G.source.format == "rosinality" and G.kind == "stylegan2"
    res = 64 if name == "rosinality_64" else 32
    assert (G.z_dim, G.w_dim, G.c_dim, G.img_resolution, G.num_ws) == (64, 64, 0, res, ref["ws_psi1"].shape[1])
    assert G.config.channels == ((32, 32, 24, 24, 16) if res == 64 else (32, 32, 24, 16))
    assert G.config.mapping_layers == 8 and G.config.architecture == "skip" and G.config.conv_clamp is None
    assert G.config.resample_filter == (1.0, 3.0, 3.0, 1.0)
    n_params = 114_216 if res == 64 else 99_043  # README §1 / §10 (rosinality's count)
    # Ours has no rosinality 'noise.weight' [1] but a noise_strength [] per layer: same count.
    assert G.num_params() == n_params
    assert not any(p.requires_grad for p in G.parameters())


@pytest.mark.parametrize("psi,key", [(1.0, "psi1"), (0.7, "psi07")])
def test_mapping_matches_reference(ros, psi, key):
    _, G, ref = ros
    with torch.no_grad():
        ws = G.mapping(torch.from_numpy(ref["z"]), None, truncation_psi=psi)
    assert _err(ws, ref[f"ws_{key}"]) <= ATOL


@pytest.mark.parametrize("key", ["psi1", "psi07", "mix", "rand"])
def test_synthesis_matches_reference(ros, key):
    _, G, ref = ros
    with torch.no_grad():
        img = G.synthesis(torch.from_numpy(ref[f"ws_{key}"]), noise_mode="const")
    assert img.dtype == torch.float32 and img.shape == ref[f"img_{key}"].shape
    assert _err(img, ref[f"img_{key}"]) <= ATOL


def test_full_forward_matches_reference(ros):
    _, G, ref = ros
    with torch.no_grad():
        img = G(torch.from_numpy(ref["z"]), None, truncation_psi=0.7)
    assert _err(img, ref["img_psi07"]) <= ATOL


def test_float64_mapping(ros):
    _, G, ref = ros
    G64 = generator_from_rosinality(load_rosinality_checkpoint(fixture_path(f"{ros[0]}.pt"))).double()
    with torch.no_grad():
        ws = G64.mapping(torch.from_numpy(ref["z"]).double(), None)
    assert ws.dtype == torch.float64 and _err(ws, ref["ws_psi1_f64"]) <= 1e-8


def test_float64_synthesis(ros):
    """float64 vs the reference's float64 run. The only residual is where the demodulation epsilon
    sits: rosinality adds 1e-8 to Σ(w·s/√fan_in)², we (like NVIDIA) to Σ(w·s)², i.e. theirs is
    1e-8·fan_in in our units. ≈2e-8 in images; storing the weights pre-scaled by 1/√fan_in removes it."""
    name, _, ref = ros
    G64 = generator_from_rosinality(load_rosinality_checkpoint(fixture_path(f"{name}.pt"))).double()
    ws = torch.from_numpy(ref["ws_psi1_f64"])
    with torch.no_grad():
        img = G64.synthesis(ws)
        assert img.dtype == torch.float64
        assert _err(img, ref["img_psi1_f64"]) <= 5e-8
        for m in G64.modules():
            if hasattr(m, "noise_const"):  # the modulated 3x3 convs (demodulated)
                m.weight.mul_(m.weight[0].numel() ** -0.5)
        assert _err(G64.synthesis(ws), ref["img_psi1_f64"]) <= 1e-12


def test_upsampling_kernel_is_not_mirrored(ros):
    """rosinality runs the up-conv as conv_transpose2d with the stored kernel, like our up=2 path:
    mirroring it (as the TF reader must) breaks parity, so the parity tests above have teeth."""
    _, G, ref = ros
    sd = {k: v.clone() for k, v in G.state_dict().items()}
    for k in sd:
        if k.endswith("conv0.weight"):
            sd[k] = sd[k].flip([2, 3])
    G2 = type(G)(G.config)
    G2.load_state_dict(sd)
    with torch.no_grad():
        img = G2.synthesis(torch.from_numpy(ref["ws_psi1"]))
    assert _err(img, ref["img_psi1"]) > 0.1


# ---- training checkpoint (README §10) ----

@pytest.fixture(scope="module")
def train_ckpt():
    return load_rosinality_checkpoint(fixture_path("rosinality_train_32.pt"))


def test_training_checkpoint_layout(train_ckpt):
    assert {"g", "d", "g_ema", "g_optim", "d_optim", "args", "ada_aug_p"} <= set(train_ckpt)
    assert train_ckpt["args"].latent == 64 and "latent_avg" not in train_ckpt


def test_training_checkpoint_uses_g_ema(train_ckpt):
    ref = reference("rosinality_train_32")
    ws = torch.from_numpy(ref["ws_psi1"])
    G = generator_from_rosinality(train_ckpt)
    G_train = generator_from_rosinality({"g_ema": train_ckpt["g"]})  # what using 'g' would give
    with torch.no_grad():
        img, img_g = G.synthesis(ws), G_train.synthesis(ws)
    assert _err(img, ref["img_psi1"]) <= ATOL
    assert _err(img_g, ref["img_psi1"]) > 1.0  # README: up to 9.1


def test_training_checkpoint_computes_w_avg(train_ckpt):
    ref = reference("rosinality_train_32")
    G = generator_from_rosinality(train_ckpt)
    assert _err(G.w_avg, ref["latent_avg"]) < 0.1  # another draw moves it by ~0.04 (README §10.3)
    assert torch.equal(G.w_avg, mean_latent(G))  # deterministic: seeded, global RNG untouched
    state = torch.random.get_rng_state()
    mean_latent(G, samples=100)
    assert torch.equal(state, torch.random.get_rng_state())


def _ckpt(name: str) -> dict:
    """The fixture's checkpoint, or (``tiny``) the tiny StyleGAN2 written in rosinality's layout by our writer."""
    if name != "tiny":
        return load_rosinality_checkpoint(fixture_path(name))
    from clipstyle.generator.formats.rosinality_writer import rosinality_state

    from . import _tiny

    state, avg, _ = rosinality_state(_tiny.tiny_sg2())
    return {"g_ema": state, "latent_avg": avg}


@pytest.mark.parametrize("name", ["tiny", "rosinality_64.pt"])
def test_bare_state_dict_and_latent_avg_shapes(name):
    ckpt = _ckpt(name)
    G = generator_from_rosinality(ckpt)
    assert torch.equal(G.w_avg, ckpt["latent_avg"])
    G2 = generator_from_rosinality({"g_ema": ckpt["g_ema"], "latent_avg": ckpt["latent_avg"][None]})  # [1, D]
    bare = generator_from_rosinality(ckpt["g_ema"])
    for k, v in G.state_dict().items():
        assert torch.equal(v, G2.state_dict()[k])
        assert k == "mapping.w_avg" or torch.equal(v, bare.state_dict()[k])


@pytest.mark.parametrize("name", ["tiny", "rosinality_64.pt"])
def test_bad_layouts_are_refused(name):
    ckpt = _ckpt(name)
    with pytest.raises(CheckpointError, match="g_ema"):
        generator_from_rosinality({"g": ckpt["g_ema"]})
    with pytest.raises(CheckpointError, match="unexpected"):
        generator_from_rosinality({"g_ema": {**ckpt["g_ema"], "extra.weight": torch.zeros(3)}})
    bad = dict(ckpt["g_ema"])
    bad["convs.2.conv.blur.kernel"] = torch.ones(4, 4) / 4
    with pytest.raises(CheckpointError, match="filter"):
        generator_from_rosinality({"g_ema": bad})
    missing = {k: v for k, v in ckpt["g_ema"].items() if k != "noises.noise_3"}
    with pytest.raises(CheckpointError, match="noise_3"):
        generator_from_rosinality({"g_ema": missing})


# ---- safety (no fixtures needed) ----

class _Evil:
    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_torch_archive_calling_os_system_is_refused(tmp_path, zipped):
    sentinel = tmp_path / "SENTINEL"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": _Evil(sentinel), "latent_avg": torch.zeros(4)}, path,
               _use_new_zipfile_serialization=zipped)
    with pytest.raises(UnsafePickleError, match="system") as info:
        read_generator_file(path)
    assert "\n" not in str(info.value)
    assert not sentinel.exists()


def test_corrupt_archive_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "trunc.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(4, 4)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        read_generator_file(path)
    assert "\n" not in str(info.value)
