"""Issue 18, the mechanisms one by one: shared pickle budgets, config numbers in every format, the latent
network rule, images without full-size float copies, resource estimates."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from PIL import Image

from clipstyle.generator.formats.budget import BudgetError
from clipstyle.generator.formats.common import CheckpointError

from ._fixtures import fixture_path


# ---- the pickle interpreter: one budget per file, shared by nested payloads ----
def _storage_stream(ops: int) -> bytes:
    """A legacy one-storage stream whose first pickle spends ``ops`` operations (pushes and pops of None)."""
    magic = b"\x80\x02" + b"N0" * (ops // 2) + b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b"."
    rest = (b"\x80\x02M\xe9\x03.", b"\x80\x02}.", b"\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00"
            b"\x00\x000X\x03\x00\x00\x00cpuK\x01tQ.", b"\x80\x02]X\x01\x00\x00\x000a.")
    return magic + b"".join(rest) + struct.pack("<q", 1) + b"\0\0\x80\x3f"


def test_nested_storage_payloads_share_one_operation_budget(monkeypatch):
    from clipstyle.generator.formats import budget, pickle_vm
    from clipstyle.generator.formats.safe_pickle import (
        CorruptPickleError,
        safe_load_pickle,
    )

    tight = budget.Limits(max_items=20_000)  # 100 000 operations for the whole file
    monkeypatch.setattr(pickle_vm, "limits", lambda: tight)
    one = _storage_stream(30_000)
    call = b"ctorch.storage\n_load_from_bytes\n"
    single = b"\x80\x02" + call + b"(B" + struct.pack("<I", len(one)) + one + b"tR."
    assert torch.is_tensor(safe_load_pickle(single))  # one stream fits the file's budget
    many = b"\x80\x02](" + b"".join(call + b"(B" + struct.pack("<I", len(one)) + one + b"tR" for _ in range(6)) + b"e."
    with pytest.raises(CorruptPickleError, match="operations"):
        safe_load_pickle(many)  # six streams of 30 000 do not: the budget is the file's, not each stream's


def test_a_dag_of_shared_tuples_is_refused_before_anything_walks_it():
    from clipstyle.generator.formats.common import safe_text
    from clipstyle.generator.formats.safe_pickle import (
        UnsafePickleError,
        safe_load_pickle,
    )

    bomb = b")r" + struct.pack("<I", 0)
    for k in range(1, 60):
        get = b"j" + struct.pack("<I", k - 1)
        bomb += b"0" + get + get + b"\x86r" + struct.pack("<I", k)
    with pytest.raises(UnsafePickleError, match="expand"):
        safe_load_pickle(b"\x80\x02" + bomb + b".")
    t = ()
    for _ in range(60):
        t = (t, t)
    assert len(safe_text(t, 80)) <= 81  # messages show a bounded repr, never the whole structure


# ---- every number of every config ----
def _snapshot(name):
    from clipstyle.generator.formats.safe_pickle import safe_load_pickle

    return safe_load_pickle(fixture_path(name).read_bytes())


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0, 1e9])
def test_stylegan2_bias_gain_must_be_finite_and_plausible(bad):
    from clipstyle.generator.formats.nvidia import generator_from_nvidia

    snap = _snapshot("sg2_skip_64.pkl")
    snap["G_ema"].child("mapping").child("fc0").state["bias_gain"] = bad
    with pytest.raises(BudgetError, match="mapping_lr_multiplier"):
        generator_from_nvidia(snap)


@pytest.mark.parametrize("what, bad", [("bandwidth", float("inf")), ("sampling_rate", float("nan")),
                                       ("bandwidth", -2.0), ("output_scale", float("nan"))])
def test_stylegan3_rates_and_scales_must_be_finite_and_plausible(what, bad):
    from clipstyle.generator.formats.nvidia import generator_from_nvidia

    snap = _snapshot("sg3_t_64.pkl")
    syn = snap["G_ema"].child("synthesis")
    if what == "output_scale":
        syn.state["output_scale"] = bad
    else:
        syn.child("input").state[what] = bad
    with pytest.raises(CheckpointError):
        generator_from_nvidia(snap)


def test_tensorflow_lr_multiplier_must_be_finite():
    from clipstyle.generator.formats.tensorflow import generator_from_tf

    snap = _snapshot("tf_sg2_skip_64.pkl")
    gs = snap[2] if isinstance(snap, tuple) else snap["Gs"]
    gs.components["mapping"].static_kwargs["mapping_lrmul"] = float("nan")
    with pytest.raises(BudgetError, match="mapping_lr_multiplier is nan"):
        generator_from_tf(snap)


def test_config_numbers_are_checked_in_every_dataclass():
    from clipstyle.generator.formats.budget import check_config_numbers
    from clipstyle.generator.stylegan2 import StyleGAN2Config

    good = StyleGAN2Config(z_dim=8, w_dim=8, c_dim=0, img_resolution=8, img_channels=3, channels=(8, 8))
    check_config_numbers(good)
    for bad in ({"resample_filter": (1.0, -1.0)}, {"resample_filter": (float("nan"),)}, {"conv_clamp": float("inf")}):
        from dataclasses import replace

        with pytest.raises(BudgetError):
            check_config_numbers(replace(good, **bad))


# ---- the one rule for a latent file's network ----
def test_a_latent_file_never_chooses_what_is_fetched(tmp_path):
    from clipstyle.latents import save_latents
    from clipstyle.latents.source import (
        NetworkSourceError,
        blend_for_latents,
        network_for_latents,
    )

    lat = tmp_path / "l.npz"
    ws = np.zeros((1, 4, 8), np.float32)
    for recorded in ("https://example.com/net.pkl", "file:///etc/hostname", "ftp://x/y.pkl"):
        save_latents(lat, ws, meta={"network": recorded})
        with pytest.raises(NetworkSourceError, match="URL: networks named by a data file are never fetched"):
            network_for_latents(lat)
        assert network_for_latents(lat, recorded) == recorded  # the user may choose it
    save_latents(lat, ws, meta={"network": "metfaces"})
    assert network_for_latents(lat) == "metfaces"  # an alias
    net = tmp_path / "net.pkl"
    net.write_bytes(b"")
    save_latents(lat, ws, meta={"network": str(net)})
    assert network_for_latents(lat) == str(net)  # an existing local file
    save_latents(lat, ws, meta={"network": str(tmp_path / "gone.pkl")})
    with pytest.raises(NetworkSourceError, match="neither a built-in alias nor a local file"):
        network_for_latents(lat)
    save_latents(lat, ws, meta={"network": "ffhq", "blend": "https://example.com/toon.pkl@32"})
    with pytest.raises(NetworkSourceError, match="blend network"):
        blend_for_latents(lat)
    assert blend_for_latents(lat, "") is None
    np.save(tmp_path / "plain.npy", ws[0])
    assert network_for_latents(tmp_path / "plain.npy") == "ffhq"


# ---- images: the same numbers, without a full-size float copy ----
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "I;16", "P", "LA", "CMYK"])
def test_channelwise_conversion_gives_the_numbers_of_the_float_path(mode):
    from clipstyle.io.images import _pil_to_float_rgb, image_to_tensor

    rng = np.random.default_rng(1)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, (37, 53), dtype=np.uint16))
    else:
        img = Image.fromarray(rng.integers(0, 255, (37, 53, 4), dtype=np.uint8), "RGBA").convert(mode)
    for size, crop in ((16, True), (16, False), (None, True)):
        ours = image_to_tensor(img, size, crop=crop)
        ref = image_to_tensor(_pil_to_float_rgb(img), size, crop=crop)
        assert torch.equal(ours, ref), (mode, size, crop)


def test_image_pixels_are_budgeted_before_decoding(tmp_path, monkeypatch):
    from clipstyle.io.images import ImageError, check_image, load_image_tensor

    path = tmp_path / "wide.png"
    Image.new("L", (400, 300)).save(path)
    monkeypatch.setenv("CLIPSTYLE_MAX_IMAGE_PIXELS", "100000")
    with pytest.raises(ImageError, match="400×300 pixels, over the 0-megapixel budget"):
        check_image(path)
    monkeypatch.setenv("CLIPSTYLE_MAX_IMAGE_PIXELS", "120000")
    assert load_image_tensor(path, 8).shape == (1, 3, 8, 8)


# ---- resources ----
def test_resource_estimates_refuse_what_does_not_fit(monkeypatch):
    from clipstyle.generator import read_generator_file
    from clipstyle.optimize import resources as r

    G = read_generator_file(fixture_path("sg2_skip_64.pkl"))
    monkeypatch.setattr(r, "host_memory_available", lambda: 1 << 30)
    r.check_resources(r.estimate_frames("interpolate", 100, G))
    with pytest.raises(r.ResourceError, match=r"interpolate: 1000000 frames of 64² needs about .* GB of memory; "
                                              r"this machine has 1.1 GB available; use fewer --frames"):
        r.check_resources(r.estimate_frames("interpolate", 1_000_000, G))
    monkeypatch.setenv("CLIPSTYLE_IGNORE_RESOURCES", "1")
    r.check_resources(r.estimate_frames("interpolate", 1_000_000, G))
    from clipstyle.errors import UserRuntimeError

    assert issubclass(r.ResourceError, UserRuntimeError)
    assert r.host_memory_available() is None or r.host_memory_available() > 0
