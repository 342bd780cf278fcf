"""The main command's constraints on the photo commands: ``edit --recipe/--mix/--blend`` and
``project --mix/--blend``, run through the real CLI on the tiny StyleGAN2 (``tests/_tiny.py``) with the tiny CLIP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipstyle.generator.blend import blend_generators
from clipstyle.guidance.recipes import get_recipe, keep_weight, recipe_rows
from clipstyle.latents import load_latents, save_latents, start_ws
from clipstyle.latents.constraints import parse_mix
from clipstyle.render.files import to_uint8

from .test_creative_cli import (
    CLIP_ARGS,
    assert_one_line_error,
    run_cli,
    run_dir_of,
    scaled_copy,
)


@pytest.fixture(scope="module")
def net(tiny_network_path) -> Path:
    return tiny_network_path


@pytest.fixture(scope="module")
def G(net):
    from clipstyle.generator import read_generator_file

    return read_generator_file(net)


@pytest.fixture(scope="module")
def files(G, tmp_path_factory):
    """A start latent (seed 1, no noise maps), a photo, and B = the network with synthesis weights ×1.1."""
    from clipstyle.generator.formats.native import save_native

    folder = tmp_path_factory.mktemp("inputs")
    ws0, _ = start_ws(G, seed=1)
    save_latents(folder / "L.npz", ws0)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(folder / "photo.png")
    b_net = save_native(scaled_copy(G), folder / "b.safetensors")
    return {"latents": folder / "L.npz", "ws0": ws0.numpy(), "photo": folder / "photo.png", "b": b_net}


def edit_args(net, outdir, *extra):
    return ["edit", *extra, "--network", net, *CLIP_ARGS, "--cutouts", 2, "--device", "cpu", "-q",
            "--outdir", outdir]


def settings_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())["settings"]


def changed_rows(ws: np.ndarray, ws0: np.ndarray) -> set[int]:
    return {r for r in range(ws.shape[1]) if not np.array_equal(ws[:, r], ws0[:, r])}


# --------------------------------------------------------------------------- edit --mix / --recipe

def test_edit_mix_rows_are_the_source_bit_exactly(G, net, files, tmp_path, capsys):
    code, out, err = run_cli(edit_args(net, tmp_path / "out", "--latents", files["latents"], "smiling",
                                       "--mix", "7:0-3", "--steps", 10), capsys)
    assert code == 0, err
    d = run_dir_of(out)
    ws = load_latents(d / "latents.npz").ws
    source, _ = start_ws(G, seed=7)
    mixed = parse_mix("7:0-3", G)
    for r in range(4):
        assert np.array_equal(ws[0, r], source[0, r].numpy()) and np.array_equal(ws[0, r], mixed[r].numpy())
    assert changed_rows(ws[:, 4:], files["ws0"][:, 4:]) == set(range(6))  # every other row moved
    s = settings_of(d)
    assert s["mix"] == ["7:0-3"] and s["mixed_rows"] == [0, 1, 2, 3] and s["blocks"] == list(range(4, 10))


def test_edit_recipe_defaults_and_explicit_options_win(G, net, files, tmp_path, capsys):
    rec = get_recipe("smile")
    rows = set(recipe_rows(rec, G.num_ws, G.block_groups()))
    code, out, err = run_cli(edit_args(net, tmp_path / "out", "--recipe", "smile", "--latents", files["latents"],
                                       "--steps", 5), capsys)
    assert code == 0, err
    d = run_dir_of(out)
    s = settings_of(d)
    assert s["recipe"] == "smile" and s["prompt"] == rec.target and s["source"] == rec.source
    assert s["strength"] == rec.strength and s["l2"] == pytest.approx(keep_weight(rec, G.num_ws, G.w_dim))
    assert set(s["blocks"]) == rows
    assert changed_rows(load_latents(d / "latents.npz").ws, files["ws0"]) == rows

    code, out, err = run_cli(edit_args(net, tmp_path / "out", "--recipe", "smile", "--latents", files["latents"],
                                       "a frowning face", "--source", "a face", "--blocks", "0-1", "--l2", 0,
                                       "--strength", 2, "--steps", 2), capsys)
    assert code == 0, err
    d = run_dir_of(out)
    s = settings_of(d)
    assert (s["prompt"], s["source"], s["blocks"], s["l2"], s["strength"]) == ("a frowning face", "a face", [0, 1],
                                                                                0.0, 2.0)
    assert changed_rows(load_latents(d / "latents.npz").ws, files["ws0"]) <= {0, 1}


# --------------------------------------------------------------------------- edit --blend

def test_edit_in_a_blend(G, net, files, tmp_path, capsys):
    spec = f"{net}@16"
    code, out, err = run_cli(edit_args(net, tmp_path / "out", "--latents", files["latents"], "smiling",
                                       "--blend", spec, "--steps", 2), capsys)
    assert code == 0, err
    d = run_dir_of(out)
    record = json.loads((d / "run.json").read_text())
    assert record["settings"]["blend"] == spec and record["network"]["format"] == "blend"
    meta = load_latents(d / "latents.npz").meta
    assert meta["network"] == str(net) and meta["blend"] == spec  # the base network A, and the blend

    spec = f"{files['b']}@16"
    code, out, err = run_cli(edit_args(net, tmp_path / "out", "--latents", files["latents"], "smiling",
                                       "--blend", spec, "--steps", 1), capsys)
    assert code == 0, err
    pair = np.asarray(Image.open(run_dir_of(out) / "before_after.png"))
    before = pair[:, : G.img_resolution]
    ws0 = torch.from_numpy(files["ws0"])
    from clipstyle.generator import read_generator_file

    blended = blend_generators(G, read_generator_file(files["b"]), 16)
    with torch.no_grad():
        expected = to_uint8(blended.synthesis(ws0, noise_mode="const"))[0]
        in_a = to_uint8(G.synthesis(ws0, noise_mode="const"))[0]
    assert np.array_equal(before, expected)
    assert not np.array_equal(before, in_a)


def test_edit_photo_projects_into_a_and_edits_in_the_blend(G, net, files, tmp_path, capsys, monkeypatch):
    import importlib

    photo = importlib.import_module("clipstyle.inversion.project")  # the pipeline calls project() from here
    edit_mod = importlib.import_module("clipstyle.inversion.edit")  # the package re-exports edit() under that name

    seen = {}
    real_projection, real_edit = photo.project, edit_mod.edit

    def spy_projection(G_, *args, **kwargs):
        seen["projected_in"] = G_.source.format
        return real_projection(G_, *args, **kwargs)

    def spy_edit(G_, *args, **kwargs):
        seen["edited_in"] = G_.source.format
        return real_edit(G_, *args, **kwargs)

    monkeypatch.setattr(photo, "project", spy_projection)
    monkeypatch.setattr(edit_mod, "edit", spy_edit)
    code, out, err = run_cli(edit_args(net, tmp_path / "out", files["photo"], "smiling", "--blend",
                                       f"{files['b']}@16", "--perceptual", "none", "--project-steps", 2,
                                       "--steps", 1, "--mix", "3:fine"), capsys)
    assert code == 0, err
    assert seen["projected_in"] != "blend" and seen["edited_in"] == "blend"
    d = run_dir_of(out)
    assert (d / "target.png").is_file() and settings_of(d)["projected_into"] == str(net)
    ws = load_latents(d / "latents.npz").ws
    fine = [i for i, g in enumerate(G.block_groups()) if g == "fine"]
    source, _ = start_ws(G, seed=3)
    assert np.array_equal(ws[0, fine], source[0, fine].numpy())


# --------------------------------------------------------------------------- project --mix / --blend

def test_project_mix_rows_are_the_source_bit_exactly(G, net, files, tmp_path, capsys):
    args = ["project", files["photo"], "--network", net, "--mix", "3:0-1", "--perceptual", "none", "--steps", 20,
            "--device", "cpu", "-q", "--outdir", tmp_path / "out"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    d = run_dir_of(out)
    ws = load_latents(d / "latents.npz").ws
    source, _ = start_ws(G, seed=3)
    assert np.array_equal(ws[0, :2], source[0, :2].numpy())
    assert np.array_equal(ws[0, 2:], np.broadcast_to(ws[0, 2:3], ws[0, 2:].shape))  # W space: one shared w
    assert not np.array_equal(ws[0, 1], ws[0, 2])
    assert settings_of(d)["mixed_rows"] == [0, 1]


def test_project_into_a_blend(G, net, files, tmp_path, capsys):
    spec = f"{files['b']}@16"
    args = ["project", files["photo"], "--network", net, "--blend", spec, "--perceptual", "none", "--steps", 2,
            "--device", "cpu", "-q", "--outdir", tmp_path / "out"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    d = run_dir_of(out)
    record = json.loads((d / "run.json").read_text())
    assert record["settings"]["blend"] == spec and record["network"]["format"] == "blend"
    meta = load_latents(d / "latents.npz").meta
    assert meta["network"] == str(net) and meta["blend"] == spec and meta["noise"]


# --------------------------------------------------------------------------- user mistakes

@pytest.mark.parametrize("args,needle", [
    (["edit", "--latents", "L", "smiling", "--mix", "7:99"], "out of range"),
    (["edit", "--latents", "L", "smiling", "--blend", "nope@16"], "unknown network"),
    (["edit", "--latents", "L", "smiling", "--blend", "nope"], "NETWORK@RES"),
    (["edit", "--latents", "L", "--recipe", "nope"], "unknown recipe"),
    (["edit", "--latents", "L"], "missing PROMPT"),
    (["edit", "--latents", "L", "smiling", "--blocks", "0-3", "--mix", "7:0-3"], "nothing left to optimize"),
    (["edit", "P", "smiling", "--mix", "7:99"], "out of range"),
    (["edit", "P", "smiling", "--blend", "nope@16"], "unknown network"),
    (["project", "P", "--mix", "7:99"], "out of range"),
    (["project", "P", "--mix", "7"], "SOURCE:BLOCKS"),
    (["project", "P", "--blend", "nope@16"], "unknown network"),
])
def test_bad_specs_exit_2_with_one_line(net, files, tmp_path, capsys, args, needle):
    args = [files["latents"] if a == "L" else files["photo"] if a == "P" else a for a in args]
    extra = ["--network", net, "--device", "cpu", "-q", "--outdir", tmp_path / "out", "--perceptual", "none"]
    if args[0] == "edit":
        extra += CLIP_ARGS
    code, out, err = run_cli([*args, *extra], capsys)  # photos would project for 1000 steps: errors come first
    assert_one_line_error(code, err, 2, needle)
    assert not (tmp_path / "out").exists()
