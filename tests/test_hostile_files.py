"""Hostile checkpoint files generated from the fixtures: every one → one line naming the file, exit 1,
nothing built beyond the budget, strings escaped; and loaded networks are validated (issue 14)."""

from __future__ import annotations

import json
import math
import pickle
import struct
import time
import zipfile

import numpy as np
import pytest
import torch

from clipstyle.generator import CheckpointError, read_generator_file
from clipstyle.generator.formats.budget import BudgetError
from clipstyle.generator.formats.nvidia import generator_from_nvidia, pick_g_ema
from clipstyle.generator.formats.nvidia_sg3 import stylegan3_config_from_nvidia
from clipstyle.generator.formats.safe_pickle import (
    PersistentObject,
    TFNetworkStandIn,
    safe_load_pickle,
)
from clipstyle.generator.formats.tensorflow import generator_from_tf

from ._cli import run_cli
from ._fixtures import fixture_path, reference


def _snapshot(name: str):
    return safe_load_pickle(fixture_path(name).read_bytes())


# ---- validation of what is loaded ----
def test_missing_sg3_output_scale_means_the_upstream_025():
    snap = _snapshot("sg3_t_64.pkl")
    syn = snap["G_ema"].child("synthesis")
    assert syn.state["output_scale"] == 0.25
    G_ref = generator_from_nvidia(snap)
    del syn.state["output_scale"]
    cfg = stylegan3_config_from_nvidia(snap["G_ema"])
    assert cfg.output_scale == 0.25  # not 1.0
    G = generator_from_nvidia(snap)
    z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(G(z, None, noise_mode="const"), G_ref(z, None, noise_mode="const"))


def test_malformed_sg3_padding_is_refused():
    snap = _snapshot("sg3_r_64.pkl")
    syn = snap["G_ema"].child("synthesis")
    layer = syn.child(syn.attr("layer_names")[-2])
    layer.state["padding"] = [int(p) - 14 if i < 2 else int(p) for i, p in enumerate(layer.state["padding"])]
    with pytest.raises(CheckpointError, match="padding .* makes x-size"):
        generator_from_nvidia(snap)
    layer.state["padding"] = [1, 2, 3]
    with pytest.raises(CheckpointError, match="padding"):
        generator_from_nvidia(snap)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(bad):
    snap = _snapshot("sg2_skip_64.pkl")
    w = snap["G_ema"].child("synthesis").child("b8").child("conv1").parameters["weight"]
    w.view(-1)[3] = bad
    with pytest.raises(CheckpointError, match=r"synthesis\.b8\.conv1\.weight holds NaN or infinite"):
        generator_from_nvidia(snap)


def test_g_ema_is_never_replaced_by_g():
    snap = _snapshot("sg2_skip_64.pkl")
    G = generator_from_nvidia(snap)
    ema = snap["G_ema"].state_dict()
    assert torch.equal(G.state_dict()["synthesis.b8.conv1.weight"], ema["synthesis.b8.conv1.weight"])
    for broken in (None, "G_ema", {"a": 1}):
        snap2 = dict(snap)
        snap2["G_ema"] = broken
        with pytest.raises(CheckpointError, match="without a G_ema"):
            pick_g_ema(snap2)
    snap3 = {k: v for k, v in snap.items() if k != "G_ema"}
    with pytest.raises(CheckpointError, match="without a G_ema"):
        generator_from_nvidia(snap3)


def test_duplicate_tf_variables_are_refused():
    gs = _snapshot("tf_sg2_skip_64.pkl")[2]
    syn = gs.components["synthesis"]
    name, value = syn.variables[5]
    dup = TFNetworkStandIn()
    with pytest.raises(Exception, match="stored twice"):
        dup.__setstate__({**vars(syn), "variables": syn.variables + [(name, value * 0)]})
    syn.variables.append((name, value * 0))  # even if Python code adds one later
    with pytest.raises(CheckpointError, match="stored twice"):
        generator_from_tf(gs)


def test_tf_standin_attributes_are_read_only():
    gs = _snapshot("tf_sg2_skip_64.pkl")[2]
    for attr in ("version", "name", "static_kwargs", "components", "build_module_src", "build_func_name", "variables"):
        with pytest.raises(AttributeError):
            setattr(gs, attr, None)
    assert not hasattr(TFNetworkStandIn, "__getattr__") and not hasattr(PersistentObject, "__getattr__")
    assert all(isinstance(n, str) and isinstance(v, np.ndarray) and v.dtype.kind == "f" for n, v in gs.variables)


# ---- budgets before allocation ----
def _save_rosinality_like(path, channels: int):
    sd = {"style.1.weight": torch.zeros(8, 8), "style.1.bias": torch.zeros(8),
          "input.input": torch.zeros(1, 4, 4, 4),
          "conv1.conv.weight": torch.zeros(1, channels, 1, 1, 1),  # declares `channels` while storing few
          "to_rgb1.conv.weight": torch.zeros(1, 3, 4, 1, 1)}
    torch.save({"g_ema": sd, "latent_avg": torch.zeros(8)}, path)


def test_rosinality_shapes_declaring_a_huge_network_are_refused_before_building(tmp_path):
    path = tmp_path / "huge.pt"
    _save_rosinality_like(path, 8000)
    t0 = time.monotonic()
    with pytest.raises(BudgetError, match="huge.pt: .*at least 576000000 weights"):
        read_generator_file(path)
    assert time.monotonic() - t0 < 5
    _save_rosinality_like(path, 100_000)
    with pytest.raises(BudgetError, match="outside 1..8192"):
        read_generator_file(path)


def test_zero_stride_tensor_in_a_torch_archive_is_refused(tmp_path):
    path = tmp_path / "expand.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(1).expand(100_000, 100_000)}}, path)
    with pytest.raises(CheckpointError, match="expand.pt: .*extends past \\(or repeats\\) its storage"):
        read_generator_file(path)


def _patched_archive(src, dst, old: bytes, new: bytes) -> None:
    """Copy a torch zip archive, replacing ``old`` by ``new`` in its data.pkl."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("data.pkl"):
                assert old in data
                data = data.replace(old, new, 1)
            zout.writestr(info, data)


def test_tuple_key_hash_bomb_in_a_torch_archive_is_refused(tmp_path):
    """A dict key made of 2^60 tuple paths (built in the file, never in this test: hashing it would hang)."""
    plain = tmp_path / "plain.pt"
    torch.save({"g_ema": {"KEYKEY": torch.zeros(1)}}, plain)
    bomb = b")r" + struct.pack("<I", 100_000)
    for k in range(1, 60):  # t_k = (t_{k-1}, t_{k-1}), by memo: linear in the file, 2^k to hash
        get = b"j" + struct.pack("<I", 100_000 + k - 1)
        bomb += b"0" + get + get + b"\x86r" + struct.pack("<I", 100_000 + k)
    path = tmp_path / "bomb.pt"
    _patched_archive(plain, path, b"X\x06\x00\x00\x00KEYKEY", bomb)
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="bomb.pt.*(dict key|expand)"):
        read_generator_file(path)
    assert time.monotonic() - start < 5


def test_zip_that_inflates_a_thousandfold_is_refused(tmp_path):
    src = fixture_path("rosinality_64.pt")
    path = tmp_path / "inflate.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
        with zout.open("rosinality_64/data/999", "w", force_zip64=True) as f:  # compresses ~1000:1
            zero = bytes(1 << 20)
            for _ in range(80):
                f.write(zero)
    assert path.stat().st_size < 2 << 20
    with pytest.raises(BudgetError, match="inflate.pt inflates to"):
        read_generator_file(path)


def _safetensors(path, header: dict, data: bytes = b""):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def test_safetensors_headers_declaring_huge_tensors_or_networks_are_refused(tmp_path):
    p = tmp_path / "big.safetensors"
    _safetensors(p, {"__metadata__": {"clipstyle_format": "1"},
                     "w": {"dtype": "F32", "shape": [1 << 20, 1 << 20], "data_offsets": [0, 4 << 40]}})
    with pytest.raises(BudgetError, match="big.safetensors"):
        read_generator_file(p)
    _safetensors(p, {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8)
    with pytest.raises(CheckpointError, match="outside the file"):
        read_generator_file(p)
    from dataclasses import asdict

    from clipstyle.generator.stylegan2 import StyleGAN2Config

    cfg = asdict(StyleGAN2Config(z_dim=8, w_dim=8, c_dim=0, img_resolution=8, img_channels=3, channels=(8, 8)))
    cfg["channels"] = [4000, 4000]
    _safetensors(p, {"__metadata__": {"clipstyle_format": "1", "kind": "stylegan2", "config": json.dumps(cfg)},
                     "w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16)
    with pytest.raises(BudgetError, match="at least 288000000 weights"):
        read_generator_file(p)


# ---- one line, exit 1, the file named, strings escaped ----
def _hostile_files(tmp_path) -> dict[str, bytes]:
    sg2 = fixture_path("sg2_skip_64.pkl").read_bytes()
    tf = fixture_path("tf_sg2_skip_64.pkl").read_bytes()
    ros = fixture_path("rosinality_64.pt").read_bytes()
    return {
        "cut.pkl": sg2[: len(sg2) // 2],
        "cut_tf.pkl": tf[:5000],
        "cut.pt": ros[: len(ros) // 2],
        "overflow.pkl": b"\x80\x04\x8b\xff\xff\xff\x7f" + b"\0" * 5,
        "garbage.pkl": b"\x80\x04" + bytes(range(256)) * 4,
        "escape.pkl": pickle.dumps({"\x1b[32mloaded OK\x1b[0m\r": 1, "[bold red]x[/]": 2}, protocol=4),
        "deep.pkl": b"\x80\x04" + b"]" * 5000 + b"a" * 4999 + b".",
    }


def test_every_hostile_file_is_one_escaped_line_and_exit_1(tmp_path, capsys):
    errs = {}
    for name, data in _hostile_files(tmp_path).items():
        path = tmp_path / name
        path.write_bytes(data)
        code, _out, err = run_cli(["info", path], capsys)
        assert code == 1, (name, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], (name, err)
        assert "Traceback" not in err and "\x1b" not in err and "\r" not in err, (name, err)
        assert "cutouts" not in err  # never the optimiser's out-of-memory hint
        errs[name] = err
    assert "\\x1b\\[32mloaded OK" in errs["escape.pkl"] and "\\[bold red]" in errs["escape.pkl"]


def test_fixture_parity_is_untouched():
    G = read_generator_file(fixture_path("sg2_skip_64.pkl"))
    ref = reference("sg2_skip_64")
    key = next(k for k in ref if k.startswith(("img", "image")))
    assert math.isfinite(float(np.abs(ref[key]).max()))
    assert G.img_resolution == 64


def test_reader_tables_take_one_line_per_format(tmp_path, monkeypatch):
    from clipstyle.generator import loader

    path = tmp_path / "other.pt"
    torch.save({"my_format_key": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="other.pt: a torch archive holding a dict with keys my_format_key"):
        read_generator_file(path)
    monkeypatch.setattr(loader, "TORCH_READERS", loader.TORCH_READERS + [
        loader.Reader("mine", lambda d: "my_format_key" in d, "tests.test_hostile_files:_build_mine")])
    with pytest.raises(CheckpointError, match="other.pt: reached the new reader"):
        read_generator_file(path)
    gs = _snapshot("tf_sg2_skip_64.pkl")[2]
    assert [r.fmt for r in loader.TF_READERS if r.matches(gs)] == ["tensorflow-stylegan2"]


def _build_mine(obj):
    assert torch.equal(obj["my_format_key"], torch.zeros(2))
    raise CheckpointError("reached the new reader")


def test_budget_helpers_refuse_implausible_configs(monkeypatch):
    from types import SimpleNamespace

    from clipstyle.generator.formats.budget import check_budget, check_shapes, limits
    from clipstyle.generator.formats.common import safe_text

    check_budget(SimpleNamespace(img_resolution=1024, channels=(512,) * 9, z_dim=512, w_dim=512, mapping_layers=8))
    for bad in ({"img_resolution": 1 << 20}, {"channels": (10**6,)}, {"mapping_layers": 10**4}, {"z_dim": "x"}):
        with pytest.raises(BudgetError, match="refused|not an integer"):
            check_budget(SimpleNamespace(**bad), what="f.pkl")
    with pytest.raises(BudgetError, match="more than 8.6 GB of tensors"):
        check_shapes([((1 << 20, 1 << 20), 4)])
    monkeypatch.setenv("CLIPSTYLE_MAX_CHECKPOINT_BYTES", "1000")
    assert limits().max_tensor_bytes == 1000
    with pytest.raises(BudgetError):
        check_shapes([((300,), 4)])
    assert safe_text("\x1b[31mred\x07 <obj at 0x7f00deadbeef>") == "\\x1b\\[31mred\\x07 <obj>"
