"""e4e encoder and ArcFace IR-SE50: parity with the reference fixtures (made by the original code), the
decoder of an e4e file, widths read from shapes, and files that must be refused without running."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import _tiny
from tests._fixtures import fixture_path, reference


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


@pytest.mark.parametrize("name", ["arcface_irse50_tiny.pth", "arcface_irse50_tiny_legacy.pth"])
def test_arcface_parity(name):
    from clipstyle.encoders.arcface import crop_and_pool, load_face_identity

    ref = reference("arcface_irse50_tiny")
    model = load_face_identity(fixture_path(name))
    assert model.dim == 64
    emb = model.embed(_t(ref["x"]))
    assert float((emb - _t(ref["emb_f32"])).abs().max()) < 1e-5
    assert torch.allclose(emb.norm(dim=1), torch.ones(4), atol=1e-6)
    assert float((emb @ emb.T - _t(ref["cos_x_f32"])).abs().max()) < 1e-5
    y = _t(ref["y"])
    assert float((crop_and_pool(y) - _t(ref["y_crop_pool_f32"])).abs().max()) < 1e-6
    assert float((model.features(y) - _t(ref["y_emb_f32"])).abs().max()) < 1e-5
    perm = torch.from_numpy(ref["idloss_perm"]).long()
    sim = model.similarity(y[perm], y)
    assert float((sim.double() - _t(ref["idloss_diff_target_f64"])).abs().max()) < 1e-5
    assert abs(float((1 - sim).mean()) - float(ref["idloss_f64"])) < 1e-5


def test_arcface_any_size_and_gradients():
    from clipstyle.encoders.arcface import load_face_identity

    ref = reference("arcface_irse50_tiny")
    model = load_face_identity(fixture_path("arcface_irse50_tiny.pth"))
    y = _t(ref["y"][:1])
    big = y.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)  # 1024²: pooled back exactly
    assert float((model.features(big) - model.features(y)).abs().max()) < 1e-5
    x = y.clone().requires_grad_(True)
    (1 - model.similarity(x, _t(ref["y"][2:3]))).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match=r"\[N, 3, 112, 112\]"):
        model.embed(torch.zeros(1, 3, 100, 100))


@pytest.mark.parametrize("name", ["e4e_tiny_64.pt", "e4e_tiny_64_cudatagged.pt"])
def test_e4e_parity(name):
    from clipstyle.encoders.e4e import load_encoder

    ref = reference("e4e_tiny_64")
    enc = load_encoder(fixture_path(name))
    assert (enc.num_ws, enc.w_dim, enc.kind) == (10, 64, "e4e")
    x = _t(ref["x"])
    assert float((enc.codes_raw(x) - _t(ref["codes_raw_f32"])).abs().max()) < 1e-4
    ws = enc(x)
    assert ws.shape == (4, 10, 64)
    assert float((ws - _t(ref["codes_f32"])).abs().max()) < 1e-4
    # latent_avg is added row by row (the fixture's rows differ)
    assert float((ws - enc.codes_raw(x) - _t(ref["latent_avg"])[None]).abs().max()) < 1e-5
    _, c1, c2, c3 = enc.body.taps(x[:1])
    for tap, key in ((c1, "c1_s0_f32"), (c2, "c2_s0_f32"), (c3, "c3_s0_f32")):
        assert float((tap - _t(ref[key])).abs().max()) < 1e-4


def test_e4e_decoder_from_the_same_file():
    from clipstyle.generator import load_generator

    ref = reference("e4e_tiny_64")
    G = load_generator(str(fixture_path("e4e_tiny_64.pt")))
    assert G.source.format == "e4e-decoder" and G.num_ws == 10 and G.img_resolution == 64
    img = G.synthesis(_t(ref["codes_f32"]), noise_mode="const")
    assert float((img - _t(ref["img_full_f32"])).abs().max()) < 3e-4
    w = G.mapping(_t(ref["z"]), None)
    assert float((w[:, 0] - _t(ref["w_from_z_f32"])).abs().max()) < 1e-4
    assert float((G.synthesis(w, noise_mode="const") - _t(ref["img_from_z_f32"])).abs().max()) < 3e-4


def test_encoder_then_decoder_round_trip_and_resize():
    from clipstyle.encoders.e4e import load_encoder
    from clipstyle.generator import load_generator

    ref = reference("e4e_tiny_64")
    path = fixture_path("e4e_tiny_64.pt")
    enc, G = load_encoder(path), load_generator(str(path))
    x = _t(ref["x"][:1])
    img = G.synthesis(enc(x), noise_mode="const")
    assert float((img - _t(ref["img_full_f32"][:1])).abs().max()) < 3e-4
    small = torch.nn.functional.interpolate(x, size=(128, 128), mode="bilinear", antialias=True)
    assert enc(small).shape == (1, 10, 64)  # any size is resized to the 256² input


class _Boom:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['CLIPSTYLE_BOOM']}",))


@pytest.mark.parametrize("loader", ["encoder", "identity"])
def test_malicious_file_is_refused_without_running(tmp_path, monkeypatch, loader):
    from clipstyle.encoders.arcface import load_face_identity
    from clipstyle.encoders.e4e import load_encoder
    from clipstyle.generator.formats.safe_pickle import UnsafePickleError

    marker = tmp_path / "ran"
    monkeypatch.setenv("CLIPSTYLE_BOOM", str(marker))
    bad = tmp_path / "e4e_ffhq_encode.pt"
    torch.save({"state_dict": {"encoder.x": _Boom()}, "latent_avg": torch.zeros(18, 512)}, bad)
    with pytest.raises(UnsafePickleError, match="nothing from the file ran"):
        (load_encoder if loader == "encoder" else load_face_identity)(bad)
    assert not marker.exists()
    pkl = tmp_path / "model_ir_se50.pth"
    pkl.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(Exception) as info:
        (load_encoder if loader == "encoder" else load_face_identity)(pkl)
    assert not marker.exists()
    assert "\n" not in str(info.value)


def test_wrong_file_kinds_say_what_they_are(tmp_path):
    from clipstyle.encoders.arcface import load_face_identity
    from clipstyle.encoders.e4e import load_encoder
    from clipstyle.encoders.files import WeightsFileError

    with pytest.raises(WeightsFileError, match="pass it as --encoder"):
        load_face_identity(_tiny.e4e_file())
    with pytest.raises(WeightsFileError, match="pass it as --id-weights"):
        load_encoder(_tiny.arcface_file())
    from clipstyle.io.files import InputPathError

    with pytest.raises(InputPathError, match="no such e4e checkpoint"):
        load_encoder(tmp_path / "missing.pt")
    trunc = tmp_path / "cut.pt"
    trunc.write_bytes(_tiny.e4e_file().read_bytes()[:5000])
    with pytest.raises(Exception, match="cut.pt is a malformed torch archive"):
        load_encoder(trunc)


def test_widths_are_read_from_shapes(tmp_path):
    """Another width table (stage widths, SE ratio, embedding) than the fixture's: built from shapes alone."""
    from clipstyle.encoders.arcface import load_face_identity
    from clipstyle.encoders.irse import STAGE_UNITS, IRSEBackbone, IRSEConfig

    widths, stem, emb = (4, 12, 20, 24), 4, 40
    units, prev = [], stem
    firsts = {0, 3, 7, 21}
    k = 0
    for s, n in enumerate(STAGE_UNITS[24]):
        for _ in range(n):
            units.append((prev, widths[s], 2 if k in firsts else 1, max(1, widths[s] // 8)))
            prev = widths[s]
            k += 1
    torch.manual_seed(0)
    net = IRSEBackbone(IRSEConfig(stem, tuple(units), STAGE_UNITS[24], emb, widths[-1] * 49)).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "other.pth"
    torch.save(net.state_dict(), path)
    model = load_face_identity(path)
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    assert model.dim == emb
    assert torch.allclose(model.embed(x), net.embed(x), atol=1e-6)


def test_public_names_are_lazy():
    import subprocess
    import sys

    code = ("import sys, clipstyle; assert 'clipstyle.encoders.e4e' not in sys.modules; "
            "f = clipstyle.load_encoder; g = clipstyle.load_face_identity; "
            "print(f.__module__, g.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__('os').environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.stdout.split() == ["clipstyle.encoders.e4e", "clipstyle.encoders.arcface"]


def test_e4e_of_another_size_and_widths(tmp_path):
    """An e4e file the fixtures do not have: stylegan_size 32 (8 styles), stage widths 4/8/12/16, stem 6,
    SE width/8, heads 16 wide with a 64-d linear (the fixture's are 64→64): the loader builds it from shapes and opts alone, and its decoder loads too."""
    from clipstyle.encoders.e4e import Encoder, StyleHead, load_encoder
    from clipstyle.encoders.irse import STAGE_UNITS, IRSEBackbone, IRSEConfig
    from clipstyle.generator import load_generator
    from clipstyle.generator.formats.rosinality_writer import rosinality_state

    widths, stem, head_w, w_dim = (4, 8, 12, 16), 6, 16, 64
    units, prev, k = [], stem, 0
    for s, n in enumerate(STAGE_UNITS[24]):
        for j in range(n):
            units.append((prev, widths[s], 2 if j == 0 else 1, max(1, widths[s] // 8)))
            prev, k = widths[s], k + 1
    torch.manual_seed(5)
    body = IRSEBackbone(IRSEConfig(stem, tuple(units), STAGE_UNITS[24], None, None))
    heads = [StyleHead(head_w, head_w, 4 if i < 3 else 5 if i < 7 else 6, w_dim)
             for i in range(8)]
    ref = Encoder(body, heads, torch.nn.Conv2d(widths[2], head_w, 1), torch.nn.Conv2d(widths[1], head_w, 1),
                  torch.randn(8, w_dim), "e4e").eval()
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    enc_state = {}
    for key, v in ref.state_dict().items():
        if key == "latent_avg":
            continue
        key = key.replace("body.input_layer.", "input_layer.").replace("body.body.", "body.")
        enc_state[f"encoder.{key}"] = v
    g_ema = rosinality_state(_tiny.tiny_sg2(resolution=32))[0]  # a 32² decoder, 8 styles, w_dim 64
    state = {**enc_state, **{f"decoder.{k}": v for k, v in g_ema.items()}}
    path = tmp_path / "e4e_other.pt"
    torch.save({"state_dict": state, "opts": {"stylegan_size": 32, "encoder_type": "Encoder4Editing"},
                "latent_avg": ref.latent_avg.clone()}, path)
    enc = load_encoder(path)
    x = torch.rand(2, 3, 256, 256) * 2 - 1
    assert (enc.num_ws, enc.w_dim) == (8, 64)
    assert torch.allclose(enc(x), ref(x), atol=1e-5)
    G = load_generator(str(path))
    assert G.num_ws == 8 and G.img_resolution == 32
    assert G.synthesis(enc(x), noise_mode="const").shape == (2, 3, 32, 32)
    torch.save({"state_dict": state, "opts": {"stylegan_size": 64}, "latent_avg": ref.latent_avg}, path)
    with pytest.raises(Exception, match="stylegan_size 64"):
        load_encoder(path)
