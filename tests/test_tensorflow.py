"""TensorFlow-era StyleGAN2 pickles: parity with the converted reference (fixtures README §9), the other
architectures / state versions via synthetic pickles, unsupported layouts, and unsafe pickles."""

from __future__ import annotations

import math
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from clipstyle.generator import CheckpointError, UnsafePickleError, read_generator_file
from clipstyle.generator.formats.safe_pickle import TFNetworkStandIn, safe_load_pickle
from clipstyle.generator.formats.tensorflow import generator_from_tf
from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator

from ._fixtures import fixture_path, reference

ATOL = 1e-4  # README §6 / §9.7


def _err(a: torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    b = torch.from_numpy(b) if isinstance(b, np.ndarray) else b
    return float((a.detach().double() - b.double()).abs().max())


@pytest.fixture(scope="module")
def tf_net():
    path = fixture_path("tf_sg2_skip_64.pkl")
    return read_generator_file(path), reference("tf_sg2_skip_64"), safe_load_pickle(path.read_bytes())


def test_config_read_from_pickle(tf_net):
    G, ref, _ = tf_net
    assert G.source.format == "tensorflow-stylegan2" and G.kind == "stylegan2"
    assert (G.z_dim, G.w_dim, G.c_dim, G.num_ws, G.img_resolution) == (64, 64, 0, 10, 64)
    assert G.config.channels == (32, 32, 32, 32, 16)
    assert G.config.architecture == "skip" and G.config.conv_clamp is None and G.config.num_fp16_res == 0
    assert G.num_params() == 132_968  # README §9.6
    assert torch.equal(G.w_avg, torch.from_numpy(ref["w_avg"]))  # dlatent_avg, as is


@pytest.mark.parametrize("psi,key", [(1.0, "psi1"), (0.7, "psi07")])
def test_mapping_matches_reference(tf_net, psi, key):
    G, ref, _ = tf_net
    with torch.no_grad():
        ws = G.mapping(torch.from_numpy(ref["z"]), torch.from_numpy(ref["c"]), truncation_psi=psi)
    assert _err(ws, ref[f"ws_{key}"]) <= ATOL


@pytest.mark.parametrize("key", ["psi1", "psi07", "mix", "rand"])
def test_synthesis_matches_reference(tf_net, key):
    G, ref, _ = tf_net
    with torch.no_grad():
        img = G.synthesis(torch.from_numpy(ref[f"ws_{key}"]), noise_mode="const")
    assert _err(img, ref[f"img_{key}"]) <= ATOL


def test_float64_matches_reference(tf_net):
    _, ref, obj = tf_net
    G64 = generator_from_tf(obj).double()
    with torch.no_grad():
        ws = G64.mapping(torch.from_numpy(ref["z"]).double(), None)
        img = G64.synthesis(torch.from_numpy(ref["ws_psi1_f64"]))
    assert ws.dtype == img.dtype == torch.float64
    assert _err(ws, ref["ws_psi1_f64"]) <= 1e-8
    assert _err(img, ref["img_psi1_f64"]) <= 1e-8


def test_gs_is_used_not_g(tf_net):
    G, ref, obj = tf_net
    G_train = generator_from_tf(obj[0])  # the raw training generator, passed as a single Network
    with torch.no_grad():
        img = G_train.synthesis(torch.from_numpy(ref["ws_psi1"]))
    assert _err(img, ref["img_psi1"]) > 1.0  # README: 38.9


# ---- synthetic pickles: our generator written in the TF layout (the inverse of README §9.4) ----

def _export_tf(G: StyleGAN2Generator, version: int = 4, extra_kwargs: dict | None = None) -> tuple:
    """(G, D, Gs) of TFNetworkStandIn holding ``G`` in NVlabs' TF layout."""
    cfg, sd = G.config, {k: v.numpy() for k, v in G.state_dict().items()}
    f32 = np.float32

    def kern(w, mirror=False):  # [O, I, k, k] -> [k, k, I, O]
        w = w.transpose(2, 3, 1, 0)
        return np.ascontiguousarray(w[::-1, ::-1] if mirror else w)

    mvars = []
    if cfg.c_dim:
        mvars += [("LabelEmbed/weight", sd["mapping.embed.weight"].T.copy()), ("LabelEmbed/bias", sd["mapping.embed.bias"])]
    for i in range(cfg.mapping_layers):
        mvars += [(f"Dense{i}/weight", sd[f"mapping.fc{i}.weight"].T.copy()), (f"Dense{i}/bias", sd[f"mapping.fc{i}.bias"])]
    svars, layers = [], []

    def layer(tf, ours, k=None, mirror=False):
        layers.extend([(f"{tf}/weight", kern(sd[f"{ours}.weight"], mirror)), (f"{tf}/mod_weight", sd[f"{ours}.affine.weight"].T.copy()),
                       (f"{tf}/mod_bias", sd[f"{ours}.affine.bias"] - f32(1))])
        if k is not None:
            layers.append((f"{tf}/noise_strength", f32(sd[f"{ours}.noise_strength"])))
            svars.append((f"noise{k}", sd[f"{ours}.noise_const"][None, None].copy()))
        layers.append((f"{tf}/bias", sd[f"{ours}.bias"]))

    layers.append(("4x4/Const/const", sd["synthesis.b4.const"][None].copy()))
    layer("4x4/Conv", "synthesis.b4.conv1", 0)
    for res in cfg.block_resolutions:
        j = int(math.log2(res))
        if res > 4:
            layer(f"{res}x{res}/Conv0_up", f"synthesis.b{res}.conv0", 2 * j - 5, mirror=True)
            layer(f"{res}x{res}/Conv1", f"synthesis.b{res}.conv1", 2 * j - 4)
            if cfg.architecture == "resnet":
                layers.append((f"{res}x{res}/Skip/weight", kern(sd[f"synthesis.b{res}.skip.weight"], True)))
        if cfg.architecture == "skip" or res == cfg.img_resolution:
            layer(f"{res}x{res}/ToRGB", f"synthesis.b{res}.torgb")
    svars.sort(key=lambda nv: int(nv[0][5:]))
    kw = {"num_channels": cfg.img_channels, "resolution": cfg.img_resolution, "label_size": cfg.c_dim,
          "latent_size": cfg.z_dim, "dlatent_size": cfg.w_dim, **(extra_kwargs or {})}
    if cfg.architecture != "skip":
        kw["architecture"] = cfg.architecture

    def net(name, func, variables, comps=None, static=kw):
        n = TFNetworkStandIn()
        n.__setstate__({"version": version, "name": name, "static_kwargs": dict(static), "components": comps or {},
                        "build_module_src": "# omitted", "build_func_name": func, "variables": variables})
        return n

    syn = net("G_synthesis", "G_synthesis_stylegan2", svars + layers)
    mapn = net("G_mapping", "G_mapping", mvars, static={"dlatent_broadcast": cfg.num_ws, **kw})
    top = ([("lod", f32(0))] if version == 4 else []) + [("dlatent_avg", sd["mapping.w_avg"])]
    gs = net("Gs", "G_main", top, {"synthesis": syn, "mapping": mapn})
    d = net("D", "D_stylegan2", [("Output/weight", np.zeros([4, 1], f32))])
    return gs, d, gs


def _random_generator(seed: int, **overrides) -> StyleGAN2Generator:
    torch.manual_seed(seed)
    cfg = StyleGAN2Config(**{"z_dim": 16, "w_dim": 12, "c_dim": 0, "img_resolution": 16, "img_channels": 3,
                             "channels": (8, 6, 4), "mapping_layers": 3, "mapping_layer_features": 10, **overrides})
    G = StyleGAN2Generator(cfg)
    with torch.no_grad():
        for name, p in G.state_dict().items():
            if name.endswith("affine.bias"):
                p.add_(torch.rand_like(p) * 0.5 - 0.25)  # stays in [0.5, 2]: "−1 then +1" is exact
            elif name.endswith(("bias", "noise_strength", "w_avg")):
                p.add_(torch.randn_like(p) * 0.3)
    return G.eval()


@pytest.mark.parametrize("arch,c_dim,version", [("skip", 0, 4), ("resnet", 0, 4), ("orig", 0, 5), ("skip", 5, 5)])
def test_synthetic_pickles_roundtrip(tmp_path, monkeypatch, arch, c_dim, version):
    extra = {"conv_clamp": 256, "num_fp16_res": 2} if version == 5 else {}
    G = _random_generator(1, architecture=arch, c_dim=c_dim, mapping_embed_features=7 if c_dim else None,
                          conv_clamp=256.0 if version == 5 else None, num_fp16_res=2 if version == 5 else 0)
    path = tmp_path / "net.pkl"
    _write_tf_pickle(monkeypatch, path, _export_tf(G, version, extra))
    G2 = read_generator_file(path)
    assert G2.config == G.config
    for k, v in G.state_dict().items():
        assert torch.equal(v, G2.state_dict()[k]), k
    z, c = torch.randn(3, 16), torch.eye(max(c_dim, 1))[:3, :c_dim]
    with torch.no_grad():
        assert torch.equal(G(z, c if c_dim else None, truncation_psi=0.7), G2(z, c if c_dim else None, truncation_psi=0.7))


def test_unsupported_layouts_are_refused():
    gs, d, _ = _export_tf(_random_generator(2))
    with pytest.raises(CheckpointError, match="not a generator"):
        generator_from_tf(d)
    syn = gs.components["synthesis"]
    syn.variables.append(("ToRGB_lod0/weight", np.zeros([1, 1, 4, 3], np.float32)))
    with pytest.raises(CheckpointError, match="ToRGB_lod0") as info:
        generator_from_tf((gs, d, gs))
    assert "\n" not in str(info.value)
    syn.variables.pop()
    syn.variables.append(("16x16/Extra/weight", np.zeros([3], np.float32)))
    with pytest.raises(CheckpointError, match="Extra"):
        generator_from_tf(gs)
    syn.variables.pop()
    old = TFNetworkStandIn()  # the stand-in's attributes are read-only: a new one with state version 3
    old.__setstate__({**vars(gs), "version": 3})
    with pytest.raises(CheckpointError, match="version"):
        generator_from_tf(old)
    with pytest.raises(CheckpointError, match="tuple"):
        generator_from_tf([gs])


# ---- writing TF-style pickles without NVIDIA code: a stand-in class registered as dnnlib.tflib.network ----

def _fake_dnnlib(monkeypatch) -> type:
    class Network:  # pickled as NEWOBJ + BUILD of its __dict__, as in real files
        pass

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    for name in ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["dnnlib.tflib.network"].Network = Network
    return Network


def _write_tf_pickle(monkeypatch, path, nets: tuple) -> None:
    Network = _fake_dnnlib(monkeypatch)
    memo: dict[int, object] = {}

    def conv(n):
        if id(n) not in memo:
            out = Network()
            out.__dict__.update({k: ({c: conv(v) for c, v in n.components.items()} if k == "components" else v)
                                 for k, v in vars(n).items()})
            memo[id(n)] = out
        return memo[id(n)]

    path.write_bytes(pickle.dumps(tuple(conv(n) for n in nets), protocol=4))


class _Evil:
    def __init__(self, sentinel) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def test_tf_pickle_calling_os_system_is_refused(tmp_path, monkeypatch):
    sentinel = tmp_path / "SENTINEL"
    Network = _fake_dnnlib(monkeypatch)
    net = Network()
    net.__dict__.update({"version": 4, "name": "Gs", "static_kwargs": {}, "components": {},
                         "build_module_src": "# omitted", "build_func_name": "G_main",
                         "variables": [("dlatent_avg", _Evil(sentinel))]})
    data = pickle.dumps((net, net, net), protocol=4)
    assert b"posix" in data or b"nt\n" in data
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    with pytest.raises(UnsafePickleError, match="system"):
        read_generator_file(path)
    assert not sentinel.exists()
