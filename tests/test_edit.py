"""``clipstyle edit`` and the edit API: only the chosen styleblocks change, the directional loss falls."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipstyle.cli import main
from clipstyle.generator import read_generator_file
from clipstyle.generator.formats.native import save_native
from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from clipstyle.guidance import CLIPGuide, CutoutConfig, Cutouts, GuidanceError, PixelMSE
from clipstyle.inversion import EditConfig, edit
from clipstyle.latents import load_latents, save_latents, start_ws

from ._cli import run_cli

TINY_CLIP = str(Path(__file__).parent / "data" / "tiny_clip.json")


def clip_args(*extra):
    return ["--clip-model", TINY_CLIP, "--clip-pretrained", "none", "--device", "cpu", "-q", *extra]


@pytest.fixture(scope="module")
def projected(tmp_path_factory, tiny_network_path):
    """A short projection of a photo with the tiny 64² StyleGAN2 (10 styleblocks): its latents.npz has noise maps."""
    folder = tmp_path_factory.mktemp("proj")
    net = tiny_network_path
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "photo.png")
    try:
        main(["project", str(folder / "photo.png"), "--network", str(net), "--perceptual", "none", "--steps", "3",
              "--device", "cpu", "--outdir", str(folder), "-q"])
    except SystemExit as e:
        assert e.code == 0
    return net, folder / "proj-photo"


def test_edit_changes_only_the_chosen_blocks(projected, tmp_path, capsys):
    net, proj_dir = projected
    src = proj_dir / "latents.npz"
    code, out, err = run_cli(["edit", "--latents", src, "a smiling face", "--blocks", "8-9", "--steps", "30",
                              "--cutouts", "4", "--save-every", "5", "--outdir", tmp_path, *clip_args()], capsys)
    assert code == 0, err
    run_dir = Path(out.strip())
    for name in ("result.png", "before_after.png", "progress.gif", "latents.npz", "run.json"):
        assert (run_dir / name).is_file(), name
    before, after = load_latents(src).ws, load_latents(run_dir / "latents.npz").ws
    assert before.shape[:2] == (1, 10)
    np.testing.assert_array_equal(after[:, :8], before[:, :8])  # bit-identical
    assert (after[:, 8:] != before[:, 8:]).any(axis=2).all()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["settings"]["blocks"] == [8, 9]
    directional = [h["directional"] for h in record["loss_history"]]
    assert directional[0] == pytest.approx(1.0, abs=1e-4)          # no change yet: cos = 0
    assert np.mean(directional[-10:]) < directional[0] - 0.05
    # The edit starts from exactly the projection's image (its noise maps are used).
    pair = np.asarray(Image.open(run_dir / "before_after.png"))
    assert pair.shape == (64, 128, 3)
    np.testing.assert_array_equal(pair[:, :64], np.asarray(Image.open(proj_dir / "proj.png")))
    with np.load(run_dir / "latents.npz") as f:
        assert "noise_0" in f.files


def test_edit_from_a_photo_and_from_nvidia_latents(projected, tmp_path, capsys):
    net, proj_dir = projected
    code, out, err = run_cli(["edit", proj_dir / "target.png", "a red face", "--network", net, "--project-steps", "2",
                              "--perceptual", "none", "--steps", "2", "--blocks", "fine", "--outdir", tmp_path,
                              *clip_args()], capsys)
    assert code == 0, err
    run_dir = Path(out.strip())
    record = json.loads((run_dir / "run.json").read_text())
    assert record["settings"]["input_kind"] == "photo" and "projection_metrics" in record
    assert (run_dir / "target.png").is_file()
    G = read_generator_file(net)
    fine = [i for i, g in enumerate(G.block_groups()) if g == "fine"]
    assert record["settings"]["blocks"] == fine

    nv = tmp_path / "projected_w.npz"
    np.savez(nv, w=load_latents(proj_dir / "latents.npz").ws)  # NVIDIA's projector output: key w only
    code, out, err = run_cli(["edit", nv, "a face with glasses", "--network", net, "--steps", "2", "--outdir",
                              tmp_path, *clip_args()], capsys)
    assert code == 0, err


@pytest.mark.parametrize("args,needle", [
    (["{lat}", ""], "prompt is empty"),
    (["{photo}", "x", "--latents", "{lat}"], "not both"),
    (["{photo}"], "missing PROMPT"),
    (["--latents", "{lat}", "smile", "--blocks", "12"], "out of range"),
    (["--latents", "{lat}", "a face"], "same CLIP embedding"),
    (["--latents", "{missing}", "smile"], "no such latent file"),
])
def test_edit_usage_errors(projected, tmp_path, capsys, args, needle):
    net, proj_dir = projected
    subs = {"lat": proj_dir / "latents.npz", "photo": proj_dir / "target.png", "missing": tmp_path / "none.npz"}
    args = [a.format(**subs) for a in args]
    code, _, err = run_cli(["edit", *args, "--network", net, "--steps", "1", "--outdir", tmp_path, *clip_args()],
                           capsys)
    assert code == 2, err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_edit_api_with_extra_terms():
    torch.manual_seed(0)
    G = StyleGAN2Generator(StyleGAN2Config(z_dim=32, w_dim=32, c_dim=0, img_resolution=32, img_channels=3,
                                           channels=(16, 16, 16, 16))).eval().requires_grad_(False)
    ws0, _ = start_ws(G, seed=1)
    guide = CLIPGuide(TINY_CLIP, None)
    cut = Cutouts(CutoutConfig(num_cutouts=2), guide.input_size)
    target = torch.zeros(1, 3, 32, 32)
    res = edit(G, ws0, "a blue square", guide, cut, EditConfig(steps=5, free_rows=(0, 1), keep=0.5),
               extra_terms=[(PixelMSE(target), 0.1)])
    assert torch.equal(res.ws[:, 2:], ws0[:, 2:]) and not torch.equal(res.ws[:, :2], ws0[:, :2])
    assert {"directional", "l2", "keep", "mse"} <= set(res.run.history[0])
    assert res.before.shape == res.after.shape == (1, 3, 32, 32)
    with pytest.raises(GuidanceError):
        edit(G, ws0, "   ", guide, cut, EditConfig(steps=1))
    with pytest.raises(ValueError):
        EditConfig(l2=-1)


def test_edit_keeps_a_file_network_in_the_meta(tmp_path, capsys):
    torch.manual_seed(0)
    G = StyleGAN2Generator(StyleGAN2Config(z_dim=32, w_dim=32, c_dim=0, img_resolution=16, img_channels=3,
                                           channels=(16, 16, 16)))
    net = save_native(G, tmp_path / "g.safetensors")
    ws0, _ = start_ws(G.eval(), seed=2)
    lat = tmp_path / "start.npz"
    save_latents(lat, ws0, meta={"network": str(net)})
    code, out, err = run_cli(["edit", "--latents", lat, "a cat", "--steps", "2", "--outdir", tmp_path, *clip_args()],
                             capsys)
    assert code == 0, err  # the network came from the latent file's meta
    assert load_latents(Path(out.strip()) / "latents.npz").meta["network"] == str(net)
