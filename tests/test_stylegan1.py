"""StyleGAN1: both readers against the references of ../shared/fixtures (README §11), the native round
trip, the made-up w_avg/noise of lernapparat files, and malicious files refused without running."""

from __future__ import annotations

import copy
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from clipstyle.generator import read_generator_file
from clipstyle.generator.formats.common import CheckpointError
from clipstyle.generator.formats.lernapparat import (
    W_AVG_SAMPLES,
    generator_from_lernapparat,
)
from clipstyle.generator.formats.native import load_native, save_native
from clipstyle.generator.formats.safe_pickle import UnsafePickleError
from clipstyle.generator.stylegan1 import (
    StyleGAN1Config,
    StyleGAN1Generator,
    channels_for,
    mean_w,
)

from ._fixtures import fixture_path, reference

ATOL_IMG = 1e-4   # README §11: above every rounding effect (≤ 2.7e-5), below the wrong eps (≥ 4e-4)
ATOL_W = 1e-5

FILES = {"pt": "sg1_lernapparat_{n}.pt", "zip": "sg1_lernapparat_{n}_zipformat.pt", "tf": "sg1_tf_{n}.pkl"}
CASES = [("pt", 64), ("zip", 64), ("tf", 64), ("pt", 128), ("tf", 128)]


@pytest.fixture(scope="module")
def nets():
    cache = {}

    def get(fmt: str, n: int):
        if (fmt, n) not in cache:
            cache[fmt, n] = read_generator_file(fixture_path(FILES[fmt].format(n=n)))
        return cache[fmt, n]
    return get


def _with_reference_noise(G, ref):
    """A copy of G whose constant noise maps are the npz ``noise{k}`` (lernapparat files store none)."""
    G = copy.deepcopy(G)
    with torch.no_grad():
        for i, res in enumerate(G.config.block_resolutions):
            block = getattr(G.synthesis, f"b{res}")
            block.conv0.noise_const.copy_(torch.from_numpy(ref[f"noise{2 * i}"])[0, 0])
            block.conv1.noise_const.copy_(torch.from_numpy(ref[f"noise{2 * i + 1}"])[0, 0])
        G.mapping.w_avg.copy_(torch.from_numpy(ref["dlatent_avg"]))
    return G


def _maxdiff(a, b) -> float:
    return float((a - torch.as_tensor(b)).abs().max())


@pytest.mark.parametrize("fmt,n", CASES)
def test_config_and_rows(nets, fmt, n):
    G = nets(fmt, n)
    assert G.kind == "stylegan1" and G.img_resolution == n and G.num_ws == 2 * int(np.log2(n)) - 2
    assert G.config.channels == channels_for(n, 512, 1.0, 32)
    assert G.config.instance_norm_eps == (1e-8 if fmt == "tf" else 1e-5)
    assert G.block_resolutions()[:4] == [4, 4, 8, 8] and G.block_groups()[:8] == ["coarse"] * 4 + ["middle"] * 4
    assert G.describe()["fused_upsampling"] == ([128] if n == 128 else [])


@pytest.mark.parametrize("fmt,n", CASES)
def test_mapping_and_truncation(nets, fmt, n):
    G, ref = nets(fmt, n), reference(f"sg1_lernapparat_{n}")
    G = _with_reference_noise(G, ref)
    z = torch.from_numpy(ref["z"])
    with torch.no_grad():
        assert _maxdiff(G.mapping(z, None), ref["w"]) <= ATOL_W
        assert _maxdiff(G.mapping(z, None, truncation_psi=0.7, truncation_cutoff=8), ref["dlatents_psi07"]) <= ATOL_W
        ws = G.mapping(z, None, truncation_psi=0.7, truncation_cutoff=8)
    assert torch.equal(ws[:, 8:], G.mapping(z, None)[:, 8:])  # rows past the cutoff untouched


@pytest.mark.parametrize("fmt,n", [("pt", 64), ("zip", 64), ("pt", 128)])
@pytest.mark.parametrize("key,dl,mode", [("images_psi07_noise", "dlatents_psi07", "const"),
                                         ("images_psi1_noise", "dlatents_psi1", "const"),
                                         ("images_psi07_zeronoise", "dlatents_psi07", "none"),
                                         ("images_psi1_zeronoise", "dlatents_psi1", "none"),
                                         ("images_mix_noise", "dlatents_mix", "const")])
def test_lernapparat_images_match_port(nets, fmt, n, key, dl, mode):
    ref = reference(f"sg1_lernapparat_{n}")
    G = _with_reference_noise(nets(fmt, n), ref)
    with torch.no_grad():
        img = G.synthesis(torch.from_numpy(ref[dl]), noise_mode=mode)
    assert _maxdiff(img, ref[key]) <= ATOL_IMG


@pytest.mark.parametrize("n", [64, 128])
def test_lernapparat_block_activations(nets, n):
    ref = reference(f"sg1_lernapparat_{n}")
    G = _with_reference_noise(nets("pt", n), ref)
    with torch.no_grad():
        _, acts = G.synthesis(torch.from_numpy(ref["dlatents_psi07"]), return_blocks=True)
    for res, act in acts.items():
        want = ref[f"act_{res}x{res}"]
        # activations reach |x| ≈ 25 at 128² (images only 4.5): float32 rounding scales with them
        # (measured 1.3e-4 = 5e-6 relative at 128²); 1e-5 relative still catches the eps (≈ 1e-3 relative)
        assert _maxdiff(act, want) <= max(ATOL_IMG, 1e-5 * float(np.abs(want).max())), res


@pytest.mark.parametrize("n", [64, 128])
@pytest.mark.parametrize("key,psi,mode", [("tfsem_images_psi07_noise", 0.7, "const"),
                                          ("tfsem_images_psi1_noise", 1.0, "const"),
                                          ("tfsem_images_psi07_zeronoise", 0.7, "none")])
def test_tf_pickle_matches_tf_semantics_with_stored_noise_and_avg(nets, n, key, psi, mode):
    """The pickle's own noise{k} and dlatent_avg, TF's eps 1e-8: nothing overridden."""
    G, ref = nets("tf", n), reference(f"sg1_lernapparat_{n}")
    with torch.no_grad():
        ws = G.mapping(torch.from_numpy(ref["z"]), None, truncation_psi=psi, truncation_cutoff=8)
        img = G.synthesis(ws, noise_mode=mode)
    assert _maxdiff(G.w_avg, ref["dlatent_avg"]) == 0.0
    assert _maxdiff(img, ref[key]) <= ATOL_IMG


@pytest.mark.parametrize("n", [64, 128])
def test_both_formats_hold_identical_weights(nets, n):
    a, b = nets("pt", n).state_dict(), nets("tf", n).state_dict()
    assert set(a) == set(b)
    for k in a:
        if "noise_const" in k or k == "mapping.w_avg":
            continue
        assert torch.equal(a[k], b[k]), k


def test_float64_matches_f64_reference(nets):
    ref = reference("sg1_lernapparat_64")
    G = _with_reference_noise(nets("pt", 64), ref).double()
    with torch.no_grad():
        ws = G.mapping(torch.from_numpy(ref["f64_z"]), None, truncation_psi=0.7, truncation_cutoff=8)
        img = G.synthesis(ws)
    assert _maxdiff(ws, ref["f64_dlatents_psi07"]) <= 1e-9
    assert _maxdiff(img, ref["f64_images_psi07_noise"]) <= 1e-9


def test_eps_matters(nets):
    """The TF eps on the port's weights misses the port references by more than the tolerance."""
    ref = reference("sg1_lernapparat_64")
    G = _with_reference_noise(nets("pt", 64), ref)
    for layer in G.synthesis.modules():
        if hasattr(layer, "eps"):
            layer.eps = 1e-8
    with torch.no_grad():
        img = G.synthesis(torch.from_numpy(ref["dlatents_psi07"]))
    assert _maxdiff(img, ref["images_psi07_noise"]) > 2 * ATOL_IMG


def test_lernapparat_made_up_w_avg_and_noise_are_seeded_and_recorded(nets):
    G = nets("pt", 64)
    ref = reference("sg1_lernapparat_64")
    # a 10k-sample mean from another seed than the reference's: close, not equal
    assert 0 < _maxdiff(G.w_avg, ref["dlatent_avg"]) < 0.1
    assert torch.equal(G.w_avg, mean_w(G, W_AVG_SAMPLES, 0))
    again = read_generator_file(fixture_path("sg1_lernapparat_64_zipformat.pt"))
    assert torch.equal(again.w_avg, G.w_avg)
    assert torch.equal(again.synthesis.b64.conv1.noise_const, G.synthesis.b64.conv1.noise_const)
    d = G.describe()
    assert "made up" in d["w_avg_origin"] and "10000" in d["w_avg_origin"]
    assert "seeded constant noise" in d["noise_origin"]
    assert nets("tf", 64).describe()["noise_origin"].startswith("stored")


def test_generator_forward_and_random_noise():
    from . import _tiny

    G = read_generator_file(_tiny.network_file("sg1"))
    z = torch.randn(2, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = G(z, noise_mode="random"), G(z, noise_mode="random")
        c1, c2 = G(z), G(z)
    assert torch.equal(c1, c2) and not torch.equal(a, b)
    assert a.shape == (2, 3, 64, 64)


@pytest.mark.parametrize("fmt,n", [("pt", 64), ("tf", 128)])
def test_native_round_trip_is_bit_exact(nets, tmp_path, fmt, n):
    G = nets(fmt, n)
    path = save_native(G, tmp_path / "g.safetensors")
    H = load_native(path)
    assert H.config == G.config and H.kind == "stylegan1"
    for k, v in G.state_dict().items():
        assert torch.equal(v, H.state_dict()[k]), k
    ws = G.mapping(torch.randn(2, 64, generator=torch.Generator().manual_seed(0)), None)
    with torch.no_grad():
        assert torch.equal(G.synthesis(ws), H.synthesis(ws))


def test_fused_equals_upsample_and_rotated_kernel():
    """README §11: the fused conv = nearest 2× + 3×3 conv with the kernel rotated 180°, then blur."""
    import torch.nn.functional as F

    cfg = StyleGAN1Config(z_dim=8, w_dim=8, c_dim=0, img_resolution=8, img_channels=3, channels=(4, 4),
                          fused_min_resolution=8)
    G = StyleGAN1Generator(cfg)
    layer = G.synthesis.b8.conv0
    x = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    w = layer.weight * layer.weight_gain
    up = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w.flip([2, 3]), padding=1)
    from clipstyle.generator.stylegan1 import _blur

    want = _blur(up, G.synthesis.b8.blur_filter)
    wp = F.pad(w, [1, 1, 1, 1])
    w4 = wp[:, :, 1:, 1:] + wp[:, :, :-1, 1:] + wp[:, :, 1:, :-1] + wp[:, :, :-1, :-1]
    got = _blur(F.conv_transpose2d(x, w4.transpose(0, 1), stride=2, padding=1), G.synthesis.b8.blur_filter)
    assert torch.allclose(got, want, atol=1e-5)


# ---- bad and malicious files ----

def test_bad_lernapparat_layouts_are_refused():
    state = torch.load(fixture_path("sg1_lernapparat_64.pt"), weights_only=True)
    broken = dict(state)
    broken["g_synthesis.blocks.8x8.extra"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="unexpected tensors"):
        generator_from_lernapparat(broken)
    broken = {k: v for k, v in state.items() if not k.startswith("g_mapping.")}
    with pytest.raises(CheckpointError, match="no mapping"):
        generator_from_lernapparat(broken)
    broken = dict(state)
    broken["g_synthesis.blocks.8x8.conv0_up.intermediate.kernel"] = torch.ones(1, 1, 3, 3)
    with pytest.raises(CheckpointError, match="blur") as info:
        generator_from_lernapparat(broken)
    assert "\n" not in str(info.value)


class _Evil:
    def __init__(self, sentinel) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_malicious_g_all_pt_is_refused_without_running(tmp_path, zipped):
    sentinel = tmp_path / "SENTINEL"
    path = tmp_path / "evil.for_g_all.pt"
    torch.save({"g_mapping.dense0.weight": _Evil(sentinel)}, path, _use_new_zipfile_serialization=zipped)
    with pytest.raises(UnsafePickleError, match="system"):
        read_generator_file(path)
    assert not sentinel.exists()


def test_malicious_stylegan1_tf_pickle_is_refused_without_running(tmp_path, monkeypatch):
    sentinel = tmp_path / "SENTINEL"

    class Network:
        pass

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    for name in ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["dnnlib.tflib.network"].Network = Network
    net = Network()
    net.__dict__.update({"version": 3, "name": "Gs", "static_kwargs": {}, "components": {},
                         "build_module_src": "#", "build_func_name": "G_style",
                         "variables": [("dlatent_avg", _Evil(sentinel))]})
    path = tmp_path / "karras2019stylegan-evil.pkl"
    path.write_bytes(pickle.dumps((net, net, net), protocol=4))
    with pytest.raises(UnsafePickleError, match="system"):
        read_generator_file(path)
    assert not sentinel.exists()


def test_stylegan1_discriminator_alone_is_refused():
    from clipstyle.generator.formats.safe_pickle import safe_load_pickle
    from clipstyle.generator.formats.tensorflow_sg1 import generator_from_tf_sg1

    _, D, Gs = safe_load_pickle(fixture_path("sg1_tf_64.pkl").read_bytes())
    with pytest.raises(CheckpointError, match="no synthesis/mapping"):
        generator_from_tf_sg1(D)
    from clipstyle.generator.formats.safe_pickle import TFNetworkStandIn

    at_lod1 = TFNetworkStandIn()  # the stand-in is read-only: a new one whose lod is 1
    at_lod1.__setstate__({**vars(Gs), "variables": [("lod", np.float32(1.0))]
                          + [v for v in Gs.variables if v[0] != "lod"]})
    with pytest.raises(CheckpointError, match="lod"):
        generator_from_tf_sg1(at_lod1)


def test_conditional_tf_pickle_label_concat_matches_the_tf_formula():
    """WikiArt-style conditional StyleGAN1: ``LabelConcat/weight [c_dim, z_dim]``; the mapping is checked
    against a NumPy forward written straight from the TF variables (concat, pixel norm, dense + lrelu)."""
    from clipstyle.generator.formats.safe_pickle import safe_load_pickle
    from clipstyle.generator.formats.tensorflow_sg1 import generator_from_tf_sg1

    _, _, Gs = safe_load_pickle(fixture_path("sg1_tf_64.pkl").read_bytes())
    mapn = Gs.components["mapping"]
    rng = np.random.RandomState(11)
    c_dim = 5
    label = rng.randn(c_dim, 64).astype(np.float32)
    dense0 = rng.randn(128, 64).astype(np.float32)
    from clipstyle.generator.formats.safe_pickle import TFNetworkStandIn

    def restate(net, **changes):  # the stand-ins are read-only: a new one with changed state
        new = TFNetworkStandIn()
        new.__setstate__({**vars(net), "static_kwargs": {**net.static_kwargs, "label_size": c_dim}, **changes})
        return new

    mapn = restate(mapn, variables=[("LabelConcat/weight", label)] + [
        (n, dense0 if n == "Dense0/weight" else v) for n, v in mapn.variables])
    Gs = restate(Gs, components={**Gs.components, "mapping": mapn,
                                 "synthesis": restate(Gs.components["synthesis"])})
    G = generator_from_tf_sg1(Gs)
    assert G.c_dim == c_dim and G.z_dim == 64
    z = rng.randn(3, 64).astype(np.float32)
    c = np.zeros([3, c_dim], np.float32)
    c[0, 1], c[1, [0, 4]], c[2, 2] = 1, 2, 1
    mv = dict(mapn.variables)
    x = np.concatenate([z, c @ label], axis=1).astype(np.float64)
    x = x / np.sqrt((x**2).mean(axis=1, keepdims=True) + 1e-8)
    for i in range(8):
        w = mv[f"Dense{i}/weight"].astype(np.float64)
        x = x @ (w * np.sqrt(2) / np.sqrt(w.shape[0]) * 0.01) + mv[f"Dense{i}/bias"] * 0.01
        x = np.where(x >= 0, x, 0.2 * x)
    with torch.no_grad():
        ws = G.mapping(torch.from_numpy(z), torch.from_numpy(c))
    assert ws.shape == (3, 10, 64)
    np.testing.assert_allclose(ws[:, 0].numpy(), x, atol=1e-5)
    with pytest.raises(ValueError, match="c must be"):
        G.mapping(torch.from_numpy(z), None)
