"""Every creative command from the CLI (``clipstyle.cli.main``) on the tiny StyleGAN2 and StyleGAN3 built in
code (``tests/_tiny.py``); user mistakes → exit 2, one line.

The helpers at the top (``run_cli``, ``network_path``, ``scaled_copy``) are also
imported by the other creative test modules.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


from ._cli import run_cli
from . import _tiny

TINY_CLIP = str(Path(__file__).parent / "data" / "tiny_clip.json")
CLIP_ARGS = ["--clip-model", TINY_CLIP, "--clip-pretrained", "none"]


# --------------------------------------------------------------------------- helpers (shared)


def assert_one_line_error(code: int, err: str, expected: int = 2, needle: str | None = None) -> None:
    assert code == expected, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    if needle is not None:
        assert needle in err, err


def network_path(kind: str) -> Path:
    """The tiny network of ``kind`` (``sg2``/``sg3``, 64², w_dim 64; see ``tests/_tiny.py``)."""
    return _tiny.network_file(kind)


def load(kind: str):
    from clipstyle.generator import read_generator_file

    return read_generator_file(network_path(kind))


def scaled_copy(G, factor: float = 1.1):
    """A deep copy of G whose synthesis parameters are multiplied by ``factor`` (a 'fine-tuned' B)."""
    import copy

    B = copy.deepcopy(G)
    with torch.no_grad():
        for name, p in B.named_parameters():
            if name.startswith("synthesis."):
                p.mul_(factor)
    return B


def save_scaled_copy(kind: str, folder: Path) -> Path:
    from clipstyle.generator.formats.native import save_native

    return save_native(scaled_copy(load(kind)), folder / f"{kind}_b.safetensors")


def run_dir_of(out: str) -> Path:
    return Path(out.strip().splitlines()[-1])


# --------------------------------------------------------------------------- every command, both families

@pytest.fixture(scope="module", params=["sg2", "sg3"])
def kind(request):
    network_path(request.param)
    return request.param


def test_every_creative_command_runs(kind, tmp_path, capsys):
    net = network_path(kind)
    G = load(kind)
    b_net = save_scaled_copy(kind, tmp_path)
    common = ["--network", net, "--device", "cpu", "--outdir", tmp_path / "out"]

    code, out, err = run_cli(["styleblocks", "--seed", 1, "--blocks", "0,fine", "--scale=-1:1", "--frames", 3, *common], capsys)
    assert code == 0, err
    d = run_dir_of(out)
    assert (d / "sheet.png").is_file() and len(list(d.glob("block*.gif"))) == 1 + G.block_groups().count("fine")

    code, out, err = run_cli(["mix", "--rows", "1,2", "--cols", "3", "--blocks", "0-2", *common], capsys)
    assert code == 0, err
    assert Image.open(run_dir_of(out) / "grid.png").size == (2 * G.img_resolution, 3 * G.img_resolution)
    lat = run_dir_of(out) / "mix-seed1-seed3.npz"

    code, out, err = run_cli(["blend", net, b_net, "--at", "16", "--out", tmp_path / "blend.safetensors"], capsys)
    assert code == 0, err
    assert (tmp_path / "blend.safetensors").is_file()

    code, out, err = run_cli(["render", lat, "--network", tmp_path / "blend.safetensors", "--device", "cpu"], capsys)
    assert code == 0, err
    assert Path(out.strip()).is_file()
    code, out, err = run_cli(["render", lat, "--network", net, "--blend", f"{b_net}@16", "--device", "cpu",
                              "--out", tmp_path / "r.png"], capsys)
    assert code == 0, err

    code, out, err = run_cli(["interpolate", 1, 2, "--frames", 2, "--mode", "slerp", "--space", "z", *common], capsys)
    assert code == 0, err
    assert (run_dir_of(out) / "interpolation.gif").is_file()

    direction = tmp_path / "d.npy"
    code, out, err = run_cli(["direction", "from-text", "a face", "a smiling face", "--seeds", "0-1", "--steps", 2,
                              "--blocks", "middle", "--out", direction, *CLIP_ARGS, "--network", net,
                              "--device", "cpu", "--quiet", "--cutouts", 2], capsys)
    assert code == 0, err
    assert np.load(direction).shape == (G.num_ws, G.w_dim)
    code, out, err = run_cli(["direction", "apply", lat, direction, "--strength=-2:2", "--frames", 3, *common], capsys)
    assert code == 0, err
    assert (run_dir_of(out) / "direction.gif").is_file()

    pos, neg = tmp_path / "pos", tmp_path / "neg"
    from clipstyle.latents import save_latents

    rng = np.random.default_rng(0)
    for folder, sign in ((pos, 1), (neg, -1)):
        folder.mkdir()
        for i in range(4):
            save_latents(folder / f"{i}.npz", rng.standard_normal((1, G.num_ws, G.w_dim)) + sign)
    code, out, err = run_cli(["direction", "learn", "--positive", pos, "--negative", neg, "--out", tmp_path / "l.npy"],
                             capsys)
    assert code == 0, err
    assert "held-out accuracy" in out and np.load(tmp_path / "l.npy").shape == (G.w_dim,)

    main_args = ["--steps", 2, *CLIP_ARGS, "--quiet", "--cutouts", 2, *common]
    code, out, err = run_cli(["a red face", "--batch", 2, "--mix", "5:0", "--blend", f"{b_net}@16", *main_args], capsys)
    assert code == 0, err
    d = run_dir_of(out)
    assert np.load(d / "latents.npz")["ws"].shape == (2, G.num_ws, G.w_dim)
    assert Image.open(d / "result.png").size == (2 * G.img_resolution, G.img_resolution)  # a 2-image grid
    settings = json.loads((d / "run.json").read_text())["settings"]
    assert settings["batch"] == 2 and settings["blend"] == f"{b_net}@16" and settings["mix"] == ["5:0"]

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\n\n# skipped\na dog\n")
    code, out, err = run_cli(["--prompts", prompts, "--recipe", "smile", *main_args], capsys)
    assert code == 0, err
    dirs = [Path(line) for line in out.strip().splitlines()]
    assert [p.name for p in dirs] == ["a-cat", "a-dog"] and all((p / "result.png").is_file() for p in dirs)

    code, out, err = run_cli(["recipes"], capsys)
    assert code == 0 and "smile" in out


# --------------------------------------------------------------------------- user mistakes

@pytest.mark.parametrize("args,needle", [
    (["styleblocks", "--seed", "1", "--blocks", "0-99"], "out of range"),
    (["styleblocks", "--seed", "1", "--blocks", "nope"], "bad block"),
    (["styleblocks", "--latents", "/nonexistent/x.npz"], "no such latent file"),
    (["styleblocks"], "exactly one of --seed"),
    (["styleblocks", "--seed", "1", "--scale", "a:b"], "--scale"),
    (["mix", "--rows", "1", "--cols", "2", "--blocks", "3-1"], "start is after end"),
    (["mix", "--rows", "missing.npz", "--cols", "2"], "no such latent file"),
    (["interpolate", "1"], "at least two keyframes"),
    (["interpolate", "1", "2", "--mode", "cubic"], "--mode"),
    (["interpolate", "1", "/nonexistent/x.npz"], "no such latent file"),
    (["render", "/nonexistent/x.npz"], "no such latent file"),
    (["render", "1", "--blend", "net.pkl@33"], "power of two"),
    (["direction", "apply", "1", "/nonexistent/d.npy"], "no such direction file"),
    (["direction", "apply", "1", "D", "--blocks", "coarse,99"], "out of range"),
    (["direction", "learn", "--positive", "/nonexistent/p", "--negative", "/nonexistent/n"], "no such file"),
    (["blend", "A", "/nonexistent/b.pkl", "--out", "OUT"], "no such network checkpoint"),
    (["x", "--mix", "1:0-99"], "out of range"),
    (["x", "--mix", "1"], "SOURCE:BLOCKS"),
    (["x", "--mix", "/nonexistent/x.npz:0"], "no such latent file"),
    (["x", "--blend", "bad-spec"], "NETWORK@RES"),
    (["x", "--blocks", "0-1", "--mix", "1:0-1"], "nothing left to optimize"),
    (["x", "--prompts", "/nonexistent/prompts.txt"], "not both"),
    (["x", "--recipe", "nosuchrecipe"], "unknown recipe"),
    (["--prompts", "/nonexistent/prompts.txt"], "no such prompts file"),
])
def test_user_mistakes_exit_2_with_one_line(tmp_path, capsys, args, needle):
    net = network_path("sg2")
    d = tmp_path / "d.npy"
    np.save(d, np.ones(64, np.float32))
    args = [str(d) if a == "D" else str(net) if a == "A" else str(tmp_path / "o.safetensors") if a == "OUT" else a for a in args]
    is_main = args[0] in ("x", "--prompts")
    extra = [] if args[0] in ("blend", "direction") and args[1] != "apply" else ["--network", net, "--device", "cpu"]
    if is_main:
        extra += [*CLIP_ARGS, "--quiet", "--steps", 1]
    if args[0] not in ("render", "blend") and not (args[0] == "direction" and args[1] == "learn"):
        extra += ["--outdir", tmp_path / "out"]
    code, out, err = run_cli([*args, *extra], capsys)
    assert_one_line_error(code, err, 2, needle)


def test_blend_of_different_architectures_is_a_one_line_error(tmp_path, capsys):
    from clipstyle.generator.formats.native import save_native
    from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator

    G = load("sg2")
    other = StyleGAN2Generator(StyleGAN2Config(**{**G.config.__dict__, "channels": (32, 32, 32, 32, 32)}))
    path = save_native(other, tmp_path / "other.safetensors")
    code, out, err = run_cli(["blend", network_path("sg2"), path, "--at", "8", "--out", tmp_path / "x.safetensors"],
                             capsys)
    assert_one_line_error(code, err, 1, "channels")
    assert not (tmp_path / "x.safetensors").exists()


def test_outputs_are_never_overwritten(tmp_path, capsys):
    net = network_path("sg2")
    target = tmp_path / "exists.safetensors"
    target.write_bytes(b"keep me")
    code, out, err = run_cli(["blend", net, net, "--out", target], capsys)
    assert_one_line_error(code, err, 2, "--overwrite")
    assert target.read_bytes() == b"keep me"
    png = tmp_path / "exists.png"
    png.write_bytes(b"keep")
    code, out, err = run_cli(["render", "1", "--network", net, "--device", "cpu", "--out", png], capsys)
    assert_one_line_error(code, err, 2, "--overwrite")
    code, out, err = run_cli(["direction", "learn", "--positive", tmp_path, "--negative", tmp_path, "--out", png], capsys)
    assert_one_line_error(code, err, 2, "--overwrite")
    code, out, err = run_cli(["render", "1", "--network", net, "--device", "cpu", "--out", png, "--overwrite"], capsys)
    assert code == 0, err
    assert Image.open(png).size == (64, 64)


def test_commands_are_listed(capsys):
    code, out, err = run_cli(["commands"], capsys)
    assert code == 0
    for name in ("styleblocks", "mix", "blend", "render", "interpolate", "direction", "recipes"):
        assert name in out


def test_batch_starts():
    from clipstyle.latents import start_ws
    from clipstyle.latents.constraints import JITTER_PSI, batch_starts

    G = load("sg2")
    ws, z = batch_starts(G, 3, seed=5, truncation_psi=0.7)
    ref, zref = start_ws(G, seed=5, truncation_psi=0.7, batch=3)
    assert torch.equal(ws, ref) and torch.equal(z, zref)
    ws, z = batch_starts(G, 3)
    zs = torch.from_numpy(np.concatenate([np.random.RandomState(i).randn(1, G.z_dim) for i in range(3)])).float()
    torch.testing.assert_close(ws, G.mapping(zs, None, truncation_psi=JITTER_PSI), atol=0, rtol=0)
    spread = (ws - G.w_avg).norm(dim=-1).mean()
    full = (G.mapping(zs, None) - G.w_avg).norm(dim=-1).mean()
    assert 0 < spread < 0.3 * full and not torch.equal(ws[0], ws[1])  # near w_avg, yet distinct
    with pytest.raises(ValueError):
        batch_starts(G, 0)


def test_main_batch_with_seed_uses_consecutive_seeds(tmp_path, capsys):
    net = network_path("sg2")
    code, out, err = run_cli(["a face", "--batch", 3, "--seed", 10, "--steps", 1, *CLIP_ARGS, "--quiet", "--cutouts", 1,
                              "--network", net, "--device", "cpu", "--outdir", tmp_path], capsys)
    assert code == 0, err
    d = run_dir_of(out)
    with np.load(d / "latents.npz") as f:
        z = f["z"]
    for i in range(3):
        np.testing.assert_array_equal(z[i], np.random.RandomState(10 + i).randn(64).astype(np.float32))
    assert sorted(p.name for p in d.glob("item*.png")) == ["item0.png", "item1.png", "item2.png"]
    assert Image.open(d / "result.png").size == (128, 128)  # 3 images in a 2×2 grid


def test_mix_with_repeated_sources_keeps_every_file(tmp_path, capsys):
    net = network_path("sg2")
    code, out, err = run_cli(["mix", "--rows", "1,1", "--cols", "2", "--network", net, "--device", "cpu",
                              "--outdir", tmp_path], capsys)
    assert code == 0, err
    names = sorted(p.name for p in run_dir_of(out).glob("mix-*.png"))
    assert names == ["mix-seed1-1-seed2.png", "mix-seed1-seed2.png"]
