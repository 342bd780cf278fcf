"""clipstyle's own safetensors format: bit-exact round trips of every reader's output, format detection,
and clear errors for foreign or damaged files."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict

import pytest
import torch

from clipstyle.generator import CheckpointError, read_generator_file
from clipstyle.generator.formats.native import (
    config_from_json,
    load_native,
    read_native_metadata,
    save_native,
)
from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator

from . import _tiny as tiny
from ._fixtures import fixture_path

SOURCES = ["tiny:sg2", "tiny:sg3r", "tiny:sg1", "sg2_skip_64.pkl", "rosinality_64.pt", "rosinality_train_32.pt", "tf_sg2_skip_64.pkl",
           "sg3_t_64.pkl", "sg3_r_64.pkl"]


def _has_sg3() -> bool:
    return all(importlib.util.find_spec(m) is not None
               for m in ("clipstyle.generator.stylegan3", "clipstyle.generator.formats.nvidia_sg3"))


@pytest.mark.parametrize("name", SOURCES)
def test_fixture_roundtrip_is_bit_exact(tmp_path, name):
    if name.startswith("sg3") and not _has_sg3():
        pytest.skip("clipstyle.generator.stylegan3 is not available yet")
    path = tiny.network_file(name[5:]) if name.startswith("tiny:") else fixture_path(name)
    G = read_generator_file(path)
    out = save_native(G, tmp_path / "net.safetensors", meta={"note": "test", "steps": 3})
    G2 = read_generator_file(out)  # detected by content, not by suffix
    assert G2.source.format == "clipstyle-safetensors"
    assert type(G2) is type(G) and G2.config == G.config and G2.kind == G.kind
    sd, sd2 = G.state_dict(), G2.state_dict()
    assert sd.keys() == sd2.keys()
    for k in sd:
        assert sd2[k].dtype == torch.float32 or not sd[k].is_floating_point()
        assert torch.equal(sd[k], sd2[k]), k
    torch.manual_seed(0)
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        ws = G.mapping(z, None, truncation_psi=0.7)
        assert torch.equal(ws, G2.mapping(z, None, truncation_psi=0.7))
        assert torch.equal(G.synthesis(ws, noise_mode="const"), G2.synthesis(ws, noise_mode="const"))
    meta = read_native_metadata(out)
    assert meta["clipstyle_format"] == "1" and meta["kind"] == G.kind
    assert meta["note"] == "test" and json.loads(meta["steps"]) == 3
    assert meta["source"].endswith(path.name) and json.loads(meta["config"]) == json.loads(json.dumps(asdict(G.config)))


def _tiny() -> StyleGAN2Generator:
    torch.manual_seed(0)
    return StyleGAN2Generator(StyleGAN2Config(z_dim=8, w_dim=8, c_dim=3, img_resolution=8, img_channels=3,
                                              channels=(4, 4), mapping_layers=2, architecture="resnet",
                                              conv_clamp=64.0)).eval()


def test_tuple_fields_and_conditional_net_roundtrip(tmp_path):
    G = _tiny()
    G2 = load_native(save_native(G, tmp_path / "x.bin"))  # any suffix
    assert G2.config == G.config and isinstance(G2.config.channels, tuple)
    assert isinstance(G2.config.resample_filter, tuple)
    for k, v in G.state_dict().items():
        assert torch.equal(v, G2.state_dict()[k])


def test_config_from_json_is_generic():
    cfg = _tiny().config
    data = json.loads(json.dumps(asdict(cfg)))
    assert isinstance(data["channels"], list) and "kind" in data
    assert config_from_json(StyleGAN2Config, data) == cfg
    with pytest.raises(CheckpointError, match="unknown fields"):
        config_from_json(StyleGAN2Config, {**data, "future_option": 1})


def test_save_is_atomic_and_replaces(tmp_path):
    path = tmp_path / "net.safetensors"
    path.write_bytes(b"old")
    save_native(_tiny(), path)
    assert load_native(path).config == _tiny().config
    assert [p.name for p in tmp_path.iterdir()] == ["net.safetensors"]  # no temp file left
    with pytest.raises(ValueError, match="reserved"):
        save_native(_tiny(), tmp_path / "other.safetensors", meta={"kind": "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.safetensors"]


def test_foreign_safetensors_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="is a safetensors file but not a clipstyle network") as info:
        read_generator_file(path)
    assert "\n" not in str(info.value)
    save_file({"weight": torch.zeros(3)}, str(path))  # no metadata at all
    with pytest.raises(CheckpointError, match="no clipstyle metadata"):
        read_generator_file(path)


def test_damaged_native_files(tmp_path):
    path = save_native(_tiny(), tmp_path / "net.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError):
        read_generator_file(path)
    from safetensors.torch import load_file, save_file

    path = save_native(_tiny(), tmp_path / "net2.safetensors")
    meta = read_native_metadata(path)
    tensors = load_file(str(path))
    del tensors["mapping.fc0.weight"]
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="missing mapping.fc0.weight"):
        read_generator_file(path)
    save_file(tensors, str(path), metadata={**meta, "kind": "stylegan9"})
    with pytest.raises(CheckpointError, match="stylegan9"):
        read_generator_file(path)
