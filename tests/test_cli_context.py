"""Issue 13 class 4: latent files carry their context (clipstyle.latents.context), and invert-z uses the
recorded truncation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipstyle.io.files import InputPathError
from clipstyle.latents import LatentFileError, save_latents
from clipstyle.latents.context import read_context

from ._cli import run_cli
from . import _tiny


def test_read_context_returns_what_the_file_records(tmp_path):
    from clipstyle.inversion.files import add_arrays

    path = tmp_path / "proj.npz"
    toon = tmp_path / "toon.pkl"
    toon.write_bytes(b"")  # a recorded blend network is used only when it is a local file (or an alias)
    save_latents(path, np.zeros((1, 10, 64), np.float32),
                 meta={"network": "ffhq", "blend": f"{toon}@32", "truncation_psi": 0.7, "truncation_cutoff": 8})
    noise = {"b4.conv1.noise": np.full((1, 1, 4, 4), 0.5, np.float32), "b8.conv0.noise": np.ones((1, 1, 8, 8))}
    add_arrays(path, {f"noise_{i}": a for i, a in enumerate(noise.values())}, {"noise": list(noise)})
    ctx = read_context(f"{path}#0")
    assert (ctx.network, ctx.blend, ctx.truncation_psi, ctx.truncation_cutoff) == ("ffhq", f"{toon}@32", 0.7, 8)
    assert ctx.noise_names == tuple(noise)
    arrays = ctx.noise_arrays()
    assert list(arrays) == list(noise) and arrays["b4.conv1.noise"].dtype == np.float32
    np.testing.assert_array_equal(arrays["b8.conv0.noise"], noise["b8.conv0.noise"])
    # options win when given; the file fills in otherwise
    assert ctx.network_or(None) == "ffhq" and ctx.network_or("metfaces") == "metfaces"
    assert ctx.blend_or(None) == f"{toon}@32" and ctx.blend_or("") is None
    assert ctx.truncation_or(None) == 0.7 and ctx.truncation_or(1.0) == 1.0 and ctx.cutoff_or(None) == 8
    notes = ctx.notes()
    assert len(notes) == 4 and "ffhq" in notes[0] and "--network overrides" in notes[0]
    assert ctx.notes(network="x", blend="y", truncation=1.0) == [notes[3]]


def test_a_file_without_meta_has_an_empty_context(tmp_path):
    path = tmp_path / "projected_w.npz"
    np.savez(path, w=np.zeros((1, 10, 64), np.float32))  # NVIDIA's projector output
    ctx = read_context(path)
    assert (ctx.network, ctx.blend, ctx.truncation_psi, ctx.noise_names) == (None, None, None, ())
    assert ctx.network_or(None) == "ffhq" and ctx.truncation_or(None) == 1.0 and ctx.noise_arrays() == {}


def test_read_context_errors(tmp_path):
    with pytest.raises(InputPathError, match="is a folder"):  # the one input-path check (a usage error)
        read_context(tmp_path)
    with pytest.raises(InputPathError, match="no such latent file"):
        read_context(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(LatentFileError, match="not a readable"):
        read_context(tmp_path / "bad.npz")


def test_invert_z_uses_the_recorded_truncation(tmp_path, capsys):
    net = _tiny.network_file("sg2")
    code, out, err = run_cli(["generate", "--network", net, "--seeds", "3", "--truncation", "0.5", "--device", "cpu",
                              "--outdir", tmp_path], capsys)
    assert code == 0, err
    latent = next(Path(out.strip().splitlines()[-1]).glob("seed0003.npz"))
    assert read_context(latent).truncation_psi == 0.5
    code, out, err = run_cli(["invert-z", latent, "--network", net, "--out", tmp_path / "z.npz"], capsys)
    assert code == 0, err
    ctx = read_context(tmp_path / "z.npz")
    assert ctx.truncation_psi == 0.5  # undone with the file's psi, not the default 1
    code, out, err = run_cli(["invert-z", latent, "--network", net, "--out", tmp_path / "z1.npz", "--truncation", "1"],
                             capsys)
    assert code == 0, err
    recorded, told = ctx.meta["residual"][0], read_context(tmp_path / "z1.npz").meta["residual"][0]
    assert recorded < 0.05 and told > 3 * recorded, (recorded, told)  # the recorded psi is the right one
