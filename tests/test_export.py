"""Networks out: the format follows the extension, rosinality .pt export read back bit-exactly, file modes
like every other output, no absolute paths in the metadata."""

from __future__ import annotations

import dataclasses
import os
import stat

import pytest
import torch

from clipstyle.generator import read_generator_file
from clipstyle.generator.formats.common import CheckpointError
from clipstyle.generator.formats.native import read_native_metadata
from clipstyle.generator.formats.rosinality_writer import (
    rosinality_state,
    save_rosinality,
)
from clipstyle.generator.formats.writers import (
    UnwritableFormatError,
    output_format,
    public_source,
)
from clipstyle.io.files import atomic_write_bytes

from ._cli import run_cli
from . import _tiny
from ._fixtures import fixture_path


def _same(G, H) -> None:
    a, b = G.state_dict(), H.state_dict()
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("name", ["tiny", "sg2_skip_64.pkl", "tf_sg2_skip_64.pkl", "rosinality_64.pt"])
def test_rosinality_export_reads_back_bit_exactly(tmp_path, name):
    G = read_generator_file(_tiny.network_file("sg2") if name == "tiny" else fixture_path(name))
    path = tmp_path / "g.pt"
    notes = save_rosinality(G, path)
    data = torch.load(path, weights_only=True)
    assert set(data) == {"g_ema", "latent_avg"} and torch.equal(data["latent_avg"], G.w_avg)
    H = read_generator_file(path)
    assert H.source.format == "rosinality"
    # rosinality files carry no clamp and no fp16 setting: those two are what may differ, and the export says so
    a, b = dataclasses.asdict(G.config), dataclasses.asdict(H.config)
    assert [k for k in a if a[k] != b[k] and k != "resample_filter"] == \
        (["conv_clamp", "num_fp16_res"] if G.config.conv_clamp is not None else [])
    ta, tb = (torch.tensor(x["resample_filter"], dtype=torch.float64) for x in (a, b))
    assert torch.allclose(ta / ta.sum(), tb / tb.sum(), rtol=0, atol=1e-12)  # only the ratios are used
    clamp_note = (f"conv_clamp={G.config.conv_clamp} dropped (rosinality does not clamp; "
                  f"images differ where activations exceed it)")
    assert notes == ([clamp_note] if G.config.conv_clamp is not None else [])
    _same(G, H)
    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0)), None, truncation_psi=0.7)
    with torch.no_grad():
        same = torch.equal(G.synthesis(ws), H.synthesis(ws))
    # bit-exact images unless a clamp was dropped (this fixture's random weights do hit ±256)
    assert same == (G.config.conv_clamp is None)


def test_rosinality_export_of_a_rosinality_file_gives_back_its_tensors():
    original = torch.load(fixture_path("rosinality_64.pt"), weights_only=True)
    state, avg, notes = rosinality_state(read_generator_file(fixture_path("rosinality_64.pt")))
    assert notes == [] and set(state) == set(original["g_ema"])
    for k, v in original["g_ema"].items():
        assert state[k].shape == v.shape and torch.equal(state[k], v.float()), k
    assert torch.equal(avg, original["latent_avg"])


def test_rosinality_refuses_what_it_cannot_hold():
    with pytest.raises(CheckpointError, match="StyleGAN2 networks only; this is a stylegan3"):
        rosinality_state(read_generator_file(_tiny.network_file("sg3")))
    with pytest.raises(CheckpointError, match="stylegan1"):
        rosinality_state(read_generator_file(_tiny.network_file("sg1")))


@pytest.mark.parametrize("name,fmt", [("a.safetensors", "clipstyle"), ("a.PT", "rosinality"), ("a.pth", "rosinality")])
def test_output_format_from_extension(name, fmt):
    assert output_format(name) == fmt


@pytest.mark.parametrize("name", ["x.pkl", "x", "x.npz"])
def test_unwritable_extensions(name):
    with pytest.raises(UnwritableFormatError, match="use .safetensors"):
        output_format(name)


def test_public_source_drops_the_users_folders():
    assert public_source("/home/me/nets/ffhq.pkl") == "ffhq.pkl"
    assert public_source("file:///home/me/a.pt") == "a.pt"
    assert public_source("C:\\Users\\me\\a.pt") == "a.pt"
    assert public_source("ffhq") == "ffhq"
    assert public_source("https://host/x/ffhq.pkl") == "https://host/x/ffhq.pkl"


def test_convert_refuses_pkl_before_loading(tmp_path, capsys):
    code, _, err = run_cli(["convert", tmp_path / "does-not-exist.pkl", tmp_path / "out.pkl"], capsys)
    assert code == 2 and "cannot write a network as .pkl" in err and err.count("\n") == 1
    assert not (tmp_path / "out.pkl").exists()


def test_convert_sg3_to_pt_is_a_one_line_error(tmp_path, capsys):
    code, _, err = run_cli(["convert", _tiny.network_file("sg3"), tmp_path / "out.pt"], capsys)
    assert code == 1 and "rosinality .pt holds StyleGAN2 networks only" in err
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize("ext", [".safetensors", ".pt"])
def test_written_networks_have_the_output_mode_and_no_absolute_paths(tmp_path, capsys, ext):
    old = os.umask(0o022)
    try:
        src = _tiny.network_file("sg2")
        out = tmp_path / f"net{ext}"
        code, _, err = run_cli(["convert", src, out], capsys)
        assert code == 0, err
        ref = atomic_write_bytes(tmp_path / "other.bin", b"x")
        assert stat.S_IMODE(out.stat().st_mode) == stat.S_IMODE(ref.stat().st_mode) == 0o644
    finally:
        os.umask(old)
    if ext == ".safetensors":
        header = read_native_metadata(out)
        assert header["converted_from"] == src.name and header["source"] == src.name
        assert not any(str(src.parent) in v or str(tmp_path) in v for v in header.values())
    _same(read_generator_file(src), read_generator_file(out))


def test_blend_out_follows_the_extension(tmp_path, capsys):
    a = _tiny.network_file("sg2")
    code, _, err = run_cli(["blend", a, a, "--at", "16", "--out", tmp_path / "b.pkl"], capsys)
    assert code == 2 and "cannot write a network as .pkl" in err
    code, _, err = run_cli(["blend", a, a, "--at", "16", "--out", tmp_path / "b.pt"], capsys)
    assert code == 0, err
    _same(read_generator_file(a), read_generator_file(tmp_path / "b.pt"))
    code, _, err = run_cli(["blend", a, a, "--at", "16", "--out", tmp_path / "b.safetensors"], capsys)
    assert code == 0, err
    assert not any(str(a.parent) in v for v in read_native_metadata(tmp_path / "b.safetensors").values())
