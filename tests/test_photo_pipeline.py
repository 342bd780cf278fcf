"""The real-photo path through the CLI and the pipelines: encode, project --init e4e, the one edit command
with every stage, fallbacks without the optional weights, and weights files that are missing or unsafe."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests._cli import run_cli
from tests import _tiny

TINY_CLIP = str(Path(__file__).parent / "data" / "tiny_clip.json")
CLIP = ["--clip-model", TINY_CLIP, "--clip-pretrained", "none", "--cutouts", "0"]


@pytest.fixture()
def photo(tmp_path):
    skimage = pytest.importorskip("skimage")
    path = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(path)
    return path


def test_encode_writes_a_run_folder_with_the_e4e_codes(tmp_path, photo, capsys):
    from clipstyle.encoders.e4e import load_encoder
    from clipstyle.io.images import image_to_tensor, load_image
    from clipstyle.latents import load_latents

    e4e = _tiny.e4e_file()
    code, out, err = run_cli(["encode", photo, "--encoder", e4e, "--id-weights", _tiny.arcface_file(),
                              "--device", "cpu", "-q", "--outdir", tmp_path / "out"], capsys)
    assert code == 0, err
    run_dir = tmp_path / "out" / "enc-astronaut"
    assert out.strip() == str(run_dir) and "PSNR" in err and "identity similarity" in err
    for name in ("target.png", "proj.png", "result.png", "latents.npz", "run.json"):
        assert (run_dir / name).is_file(), name
    rec = json.loads((run_dir / "run.json").read_text())
    assert -1 <= rec["identity_similarity"] <= 1 and rec["metrics"]["psnr"] > 0
    lf = load_latents(run_dir / "latents.npz")
    with torch.no_grad():
        expected = load_encoder(e4e)(image_to_tensor(load_image(photo), 256))
    assert lf.ws.shape == (1, 10, 64)
    assert np.abs(lf.ws - expected.numpy()).max() < 1e-5


def test_project_starts_from_the_e4e_encoding(tmp_path, photo, capsys):
    from clipstyle.pipelines.photo import encode, project

    e4e = _tiny.e4e_file()
    enc = encode(photo, encoder=e4e)
    run = project(photo, encoder=e4e, init="e4e", space="w+", perceptual="none", steps=20, save_every=20)
    first = run.history[0]["mse"]
    assert first == pytest.approx(enc.extra_json["metrics"]["mse"], rel=0.05)  # step 0 is the encoding
    assert run.history[-1]["mse"] < first  # and the optimizer improves on it
    assert run.settings["init"] == "e4e"
    mean = project(photo, encoder=e4e, init="mean", space="w+", perceptual="none", steps=1, save_every=1)
    assert mean.history[0]["mse"] != pytest.approx(first, rel=1e-3)


def test_the_one_edit_command_runs_every_stage(tmp_path, photo, capsys):
    pytest.importorskip("dlib")
    args = ["edit", photo, "a smiling face", "--align", "--encoder", _tiny.e4e_file(), "--tune",
            "--tune-steps", "3", "--id-weights", _tiny.arcface_file(), "--perceptual", "none",
            "--project-steps", "3", "--steps", "2", *CLIP, "--device", "cpu", "--outdir", tmp_path / "out"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    for stage_name in ("projecting", "tuning", "editing"):
        assert stage_name in err, stage_name  # each stage on the progress display
    run_dir = Path(out.strip().splitlines()[-1])
    rec = json.loads((run_dir / "run.json").read_text())
    assert rec["settings"]["align"] and rec["settings"]["tune"] and rec["settings"]["encoder"]
    assert {"psnr_pivot", "psnr_tuned", "locality_psnr_random"} <= set(rec["tune_metrics"])
    assert -1 <= rec["identity_similarity"] <= 1 and "identity" in rec["loss_history"][0]
    assert "identity similarity" in err
    for name in ("before_after.png", "target.png", "generator.safetensors", "latents.npz"):
        assert (run_dir / name).is_file(), name


def test_without_the_optional_weights_each_stage_falls_back_once(tmp_path, photo, capsys):
    args = ["edit", photo, "a smiling face", "--network", _tiny.network_file("sg2"), "--tune",
            "--tune-steps", "2", "--perceptual", "none", "--project-steps", "2", "--steps", "2", *CLIP,
            "--device", "cpu", "-q", "--outdir", tmp_path / "out"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert err.count("no --encoder given") == 1 and err.count("no --id-weights given") == 1


@pytest.mark.parametrize("option,cmd", [("--encoder", "encode"), ("--id-weights", "edit"), ("--encoder", "project")])
def test_missing_weights_name_the_option(tmp_path, photo, capsys, option, cmd):
    missing = tmp_path / "nope.pt"
    args = {"encode": ["encode", photo, option, missing],
            "edit": ["edit", photo, "smiling", option, missing, *CLIP],
            "project": ["project", photo, "--init", "e4e", option, missing]}[cmd]
    code, _, err = run_cli([*args, "--device", "cpu", "-q", "--outdir", tmp_path / "out"], capsys)
    assert code == 2 and err.count("\n") == 1 and option in err and "Traceback" not in err


class _Boom:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['CLIPSTYLE_BOOM']}",))


@pytest.mark.parametrize("option", ["--encoder", "--id-weights"])
def test_malicious_weights_are_refused_by_the_commands(tmp_path, photo, capsys, monkeypatch, option):
    marker = tmp_path / "ran"
    monkeypatch.setenv("CLIPSTYLE_BOOM", str(marker))
    bad = tmp_path / "weights.pt"
    torch.save({"state_dict": _Boom()}, bad)
    args = ["encode", photo, "--encoder", _tiny.e4e_file(), option, bad] if option == "--id-weights" \
        else ["encode", photo, option, bad]
    code, _, err = run_cli([*args, "--device", "cpu", "-q", "--outdir", tmp_path / "out"], capsys)
    assert code == 1 and "nothing from the file ran" in err and err.count("\n") == 1
    assert not marker.exists()


def test_wrong_kind_of_weights_is_one_line(tmp_path, photo, capsys):
    code, _, err = run_cli(["encode", photo, "--encoder", _tiny.arcface_file(), "--device", "cpu",
                            "-q", "--outdir", tmp_path / "out"], capsys)
    assert code == 1 and "--id-weights" in err and err.count("\n") == 1
