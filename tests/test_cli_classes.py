"""Issue 13, a newcomer's first hour: each class of behaviour tried on EVERY registered command.

The commands are collected from the CLI itself (:func:`clipstyle.cli.walk_commands`), and
:data:`MINIMAL_ARGS` must name each one: a new command fails ``test_every_command_has_minimal_args`` until it
is added here, and then gets every walk below.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipstyle.cli import click_app, walk_commands

from ._cli import TINY_CLIP, run_cli
from . import _tiny

COMMANDS = {" ".join(path): cmd for path, cmd in walk_commands(click_app())}


def params_of(name: str) -> set[str]:
    return {p.name for p in COMMANDS[name].params}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Inputs every command can parse: a network, a photo, a latent file, a direction, two latent folders."""
    root = tmp_path_factory.mktemp("inputs")
    from clipstyle.latents import save_latents

    net = _tiny.network_file("sg2")
    photo = root / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(photo)
    lat = root / "lat.npz"
    save_latents(lat, np.zeros((1, 10, 64), np.float32), meta={"network": str(net)})
    direction = root / "d.npy"
    np.save(direction, np.ones(64, np.float32))
    pos, neg = root / "pos", root / "neg"
    for folder, value in ((pos, 1.0), (neg, -1.0)):
        folder.mkdir()
        for i in range(3):
            save_latents(folder / f"{i}.npz", np.full((1, 10, 64), value * (i + 1), np.float32))
    jobs = root / "jobs.jsonl"
    jobs.write_text('{"prompt": "x", "steps": 1}\n')
    return {"NET": str(net), "PHOTO": str(photo), "LAT": str(lat), "DIR": str(direction), "POS": str(pos),
            "NEG": str(neg), "JOBS": str(jobs), "E4E": str(_tiny.e4e_file()), "root": root}


#: The least each command needs to get past argument parsing (placeholders filled from ``files``).
MINIMAL_ARGS: dict[str, list[str]] = {
    "text": ["text", "x"],
    "info": ["info", "NET"],
    "networks": ["networks"],
    "convert": ["convert", "NET", "OUT"],
    "generate": ["generate"],
    "project": ["project", "PHOTO"],
    "invert-z": ["invert-z", "LAT"],
    "edit": ["edit", "PHOTO", "a smile"],
    "styleblocks": ["styleblocks"],
    "mix": ["mix", "--rows", "1", "--cols", "2"],
    "blend": ["blend", "NET", "NET"],
    "render": ["render", "1"],
    "interpolate": ["interpolate", "1", "2"],
    "recipes": ["recipes"],
    "commands": ["commands"],
    "direction apply": ["direction", "apply", "1", "DIR"],
    "direction learn": ["direction", "learn", "--positive", "POS", "--negative", "NEG"],
    "direction from-text": ["direction", "from-text", "a face", "a smiling face"],
    "direction global": ["direction", "global", "1", "a face", "a smiling face", "--samples", "1",
                         "--stat-samples", "100", "--relevance-batch", "512"],
    "direction sefa": ["direction", "sefa", "--out", "OUT", "--std-samples", "100"],
    "direction pca": ["direction", "pca", "--out", "OUT", "--samples", "500"],
    "kernels check": ["kernels", "check"],
    "align": ["align", "PHOTO"],
    "encode": ["encode", "PHOTO", "--encoder", "E4E"],
    "batch": ["batch", "JOBS"],
    "ui": ["ui"],
    "adapt": ["adapt", "--target", "pencil sketch", "--steps", "1", "--seeds", "0"],
}


def argv(name: str, files: dict, tmp_path: Path, *extra: str, network: bool = True) -> list[str]:
    out = [files.get(a, a) if a != "OUT" else str(tmp_path / "o.safetensors") for a in MINIMAL_ARGS[name]]
    ps = params_of(name)
    if network and any(p.name == "network" and p.param_type_name == "option" for p in COMMANDS[name].params):
        out += ["--network", files["NET"]]
    if "clip_model" in ps:
        out += ["--clip-model", TINY_CLIP, "--clip-pretrained", "none"]
    if "device" in ps:
        out += ["--device", "cpu"]
    return [*out, *extra]


def one_line_error(code: int, err: str, expected: int, needle: str) -> None:
    assert code == expected, err
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert needle in lines[0], err


def with_param(name: str) -> list[str]:
    return sorted(c for c in COMMANDS if name in params_of(c))


# --------------------------------------------------------------------------- every command is covered


def test_every_command_has_minimal_args():
    assert set(COMMANDS) == set(MINIMAL_ARGS), "add the new command to MINIMAL_ARGS"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_is_guarded(name):
    from clipstyle.cli.common import _guarded

    assert _guarded(COMMANDS[name].callback)


# --------------------------------------------------------------------------- 1. check before you work


@pytest.mark.parametrize("name", with_param("outdir"))
def test_outdir_that_is_a_file_fails_before_work(name, files, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    t0 = time.perf_counter()
    code, out, err = run_cli(argv(name, files, tmp_path, "--outdir", blocker), capsys)
    one_line_error(code, err, 2, "is a file, not a folder")
    assert time.perf_counter() - t0 < 5  # nothing was loaded or optimized
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.parametrize("name", with_param("outdir"))
def test_outdir_below_a_file_fails_before_work(name, files, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, out, err = run_cli(argv(name, files, tmp_path, "--outdir", blocker / "sub"), capsys)
    one_line_error(code, err, 2, "cannot be created")


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root can write anywhere")
@pytest.mark.parametrize("name", with_param("outdir"))
def test_outdir_not_writable(name, files, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, out, err = run_cli(argv(name, files, tmp_path, "--outdir", locked), capsys)
    one_line_error(code, err, 2, "not writable")


@pytest.mark.parametrize("name", with_param("out"))
def test_out_that_is_a_folder(name, files, tmp_path, capsys):
    args = argv(name, files, tmp_path)
    if name == "convert":
        args[2] = str(tmp_path)
    else:
        args += ["--out", str(tmp_path)]
    code, out, err = run_cli(args, capsys)
    one_line_error(code, err, 2, "is a folder")


@pytest.mark.parametrize("name", with_param("out"))
def test_out_in_a_missing_folder(name, files, tmp_path, capsys):
    target = tmp_path / "missing" / "o.bin"
    args = argv(name, files, tmp_path)
    if name == "convert":
        args[2] = str(target)
    else:
        args += ["--out", str(target)]
    code, out, err = run_cli(args, capsys)
    one_line_error(code, err, 2, "does not exist")
    assert not (tmp_path / "missing").exists()


FILE_INPUTS = ("photo", "photo_or_latents", "image_prompt", "direction", "latents", "prompts")


@pytest.mark.parametrize("name,param", [(c, p) for p in FILE_INPUTS for c in with_param(p)])
def test_a_folder_given_as_a_file_says_so(name, param, files, tmp_path, capsys):
    args = argv(name, files, tmp_path)
    arguments = [p.name for p in COMMANDS[name].params if p.param_type_name == "argument"]
    if param in arguments:
        args[len(name.split()) + arguments.index(param)] = str(tmp_path)
    else:
        args += [f"--{param.replace('_', '-')}", str(tmp_path)]
    if param == "prompts":
        del args[1]  # no PROMPT with --prompts
    code, out, err = run_cli(args, capsys)
    one_line_error(code, err, 2, "is a folder")


@pytest.mark.parametrize("name", with_param("network"))
def test_an_npz_given_as_a_network_is_named_a_latent_file(name, files, tmp_path, capsys):
    args = argv(name, files, tmp_path, network=False)
    arguments = [p.name for p in COMMANDS[name].params if p.param_type_name == "argument"]
    if "network" in arguments:
        args[len(name.split()) + arguments.index("network")] = files["LAT"]
    else:
        args += ["--network", files["LAT"]]
    code, out, err = run_cli(args, capsys)
    one_line_error(code, err, 2, "is a latent file (.npz), not a network")


def test_prompts_file_is_parsed_whole_before_the_first_run(files, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a castle\n# comment\nfog:1 | :2\n")
    args = argv("text", files, tmp_path, "--prompts", prompts, "--outdir", tmp_path / "o")
    del args[1]  # no PROMPT with --prompts
    code, out, err = run_cli(args, capsys)
    one_line_error(code, err, 2, "line 3")
    assert not (tmp_path / "o").exists()  # the first prompt did not run


@pytest.mark.parametrize("name", with_param("outdir"))
def test_no_empty_run_folder_after_a_failure(name, files, tmp_path, capsys, monkeypatch):
    import clipstyle.cli.checks as checks

    outdir = tmp_path / "runs"

    def claim_then_fail(func, kwargs):
        (outdir / "claimed-run").mkdir(parents=True)  # as make_run_dir does before the work
        raise RuntimeError("something broke during the work")

    monkeypatch.setattr(checks, "check_arguments", claim_then_fail)
    code, out, err = run_cli(argv(name, files, tmp_path, "--outdir", outdir), capsys)
    assert code == 1, err
    assert not outdir.exists()  # neither the run folder nor the outdir it created is left behind


def test_a_failure_never_removes_what_was_there(files, tmp_path, capsys, monkeypatch):
    import clipstyle.cli.checks as checks

    (tmp_path / "old-run").mkdir()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "result.png").write_bytes(b"x")

    def fail(func, kwargs):
        (tmp_path / "half").mkdir()
        (tmp_path / "half" / "part.png").write_bytes(b"x")
        raise RuntimeError("boom")

    monkeypatch.setattr(checks, "check_arguments", fail)
    code, out, err = run_cli(argv("text", files, tmp_path, "--outdir", tmp_path), capsys)
    assert code == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half", "kept", "old-run"]


def test_prompts_file_with_a_missing_image_prompt(files, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a castle\n@/nonexistent/face.png | a smile\n")
    args = argv("text", files, tmp_path, "--prompts", prompts, "--outdir", tmp_path / "o")
    del args[1]  # no PROMPT with --prompts
    code, out, err = run_cli(args, capsys)
    one_line_error(code, err, 2, "line 2: no such image prompt file")


# --------------------------------------------------------------------------- errors by type


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_an_internal_bug_is_exit_1_with_its_traceback_never_exit_2(name, files, tmp_path, capsys, monkeypatch):
    import clipstyle.cli.checks as checks

    def bug(func, kwargs):
        raise ValueError("an internal bug")  # a ValueError that is not a UsageError: not the user's mistake

    monkeypatch.setattr(checks, "check_arguments", bug)
    code, out, err = run_cli(argv(name, files, tmp_path), capsys)
    assert code == 1, err
    assert "internal error" in err and "Traceback" in err and "an internal bug" in err


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_ctrl_c_anywhere_in_a_command_exits_130_with_one_line(name, files, tmp_path, capsys, monkeypatch):
    import clipstyle.cli.checks as checks

    def interrupt(func, kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(checks, "check_arguments", interrupt)
    code, out, err = run_cli(argv(name, files, tmp_path), capsys)
    assert code == 130, err
    assert err.strip() == "interrupted"


def test_debug_shows_the_traceback_of_a_user_error(files, tmp_path, capsys):
    code, out, err = run_cli(["--debug", *argv("text", files, tmp_path, "--blocks", "3-1")], capsys)
    assert code == 2 and "Traceback" in err and "start is after end" in err.strip().splitlines()[-1]
    assert "CLIPSTYLE_DEBUG" not in os.environ


def test_usage_error_is_the_exit_2_path():
    from clipstyle.cli.common import UsageError as from_cli
    from clipstyle.errors import UsageError, exit_code_for
    from clipstyle.latents import BlockSpecError

    assert from_cli is UsageError
    assert exit_code_for(UsageError("x")) == 2 and exit_code_for(BlockSpecError("x")) == 2
    assert exit_code_for(ValueError("x")) is None and exit_code_for(KeyError("x")) is None
    assert exit_code_for(PermissionError(13, "Permission denied", "/x")) == 1


def test_messages_never_name_our_temp_files():
    from clipstyle.cli.common import one_line

    msg = one_line("[Errno 28] No space left on device: '/runs/a/.result.png.k2j3h4g5.tmp.png'\n  more")
    assert msg == "[Errno 28] No space left on device: '/runs/a/result.png' more"
    assert one_line("\x1b[31mred\x1b[0m advice") == "red advice"


# --------------------------------------------------------------------------- 5. the command line behaves like a CLI


def test_root_help_lists_commands_and_names_the_default(capsys):
    code, out, err = run_cli(["--help"], capsys)
    assert code == 0
    for name in {path.split()[0] for path in COMMANDS}:
        assert name in out
    assert "default command" in out and "--network" in out  # the default command's options follow


def test_version(capsys):
    from clipstyle import __version__

    code, out, err = run_cli(["--version"], capsys)
    assert code == 0 and out.strip() == f"clipstyle {__version__}"


@pytest.mark.parametrize("typo,command", [("generat", "generate"), ("projct", "project"), ("interpolat", "interpolate"),
                                          ("styleblock", "styleblocks")])
def test_a_near_miss_of_a_command_is_an_error_not_a_prompt(typo, command, tmp_path, capsys):
    code, out, err = run_cli([typo, "--outdir", tmp_path], capsys)
    one_line_error(code, err, 2, f"did you mean {command!r}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("word", ["cat", "blond", "a castle", "sunset"])
def test_ordinary_prompts_are_not_taken_for_typos(word):
    from clipstyle.cli import _near_miss

    assert _near_miss(word, {p.split()[0] for p in COMMANDS}) is None


def test_truncation_without_seed_warns(files, tmp_path, capsys):
    code, out, err = run_cli(argv("text", files, tmp_path, "--truncation", "0.5", "--outdir", tmp_path / "o",
                                  "--steps", "1", "--quiet"), capsys)
    assert code == 0, err
    assert "warning: --truncation 0.5 has no effect without --seed" in err


def test_zero_direction_warns(files, tmp_path, capsys):
    zero = tmp_path / "zero.npy"
    np.save(zero, np.zeros(64, np.float32))
    code, out, err = run_cli(["direction", "apply", "1", zero, "--network", files["NET"], "--device", "cpu",
                              "--frames", "2", "--outdir", tmp_path / "o"], capsys)
    assert code == 0, err
    assert "is all zeros" in err


def test_direction_learn_with_identical_folders_is_an_error(files, tmp_path, capsys):
    code, out, err = run_cli(["direction", "learn", "--positive", files["POS"], "--negative", files["POS"],
                              "--out", tmp_path / "d.npy"], capsys)
    one_line_error(code, err, 2, "the same latents")


def test_mp4_without_ffmpeg_warns_and_writes_the_gif(files, tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("imageio_ffmpeg") is not None:
        pytest.skip("imageio-ffmpeg is installed")
    code, out, err = run_cli(argv("interpolate", files, tmp_path, "--mp4", "--frames", "2", "--outdir", tmp_path / "o"),
                             capsys)
    assert code == 0, err
    assert "imageio-ffmpeg" in err and len(err.strip().splitlines()) == 1
    assert len(list((tmp_path / "o").glob("*/interpolation.gif"))) == 1


@pytest.mark.parametrize("args", [["render", "1", "--blend", "NET@64", "--out", "OUTPNG"], ["blend", "NET", "NET", "--at", "64",
                                                                                       "--out", "OUT"]])
def test_a_blend_at_a_resolution_the_network_lacks_is_an_error(args, files, tmp_path, capsys):
    subst = {"OUT": str(tmp_path / "b.safetensors"), "OUTPNG": str(tmp_path / "r.png"), "NET@64": files["NET"] + "@64"}
    full = [subst.get(a, files.get(a, a)) for a in args]
    if args[0] == "render":
        full += ["--network", files["NET"], "--device", "cpu"]
    code, out, err = run_cli(full, capsys)
    one_line_error(code, err, 2, "is not below the network's resolution 64")
    assert list(tmp_path.iterdir()) == []


def test_a_prompt_longer_than_77_tokens_warns(capsys):
    from clipstyle.cli.checks import warn_long_prompt

    warn_long_prompt("a photo of a castle")
    assert capsys.readouterr().err == ""
    warn_long_prompt(" ".join(["supercalifragilistic"] * 30))
    assert "CLIP reads only the first 77" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_options_are_usage_errors(value, files, tmp_path, capsys):
    code, out, err = run_cli(argv("text", files, tmp_path, "--seed", "1", "--truncation", value), capsys)
    one_line_error(code, err, 2, "--truncation must be a finite number")


# --------------------------------------------------------------------------- 6. numbers that blow up


def test_a_nan_latent_file_is_named_as_the_cause_before_any_work(files, tmp_path, capsys):
    from clipstyle.latents import save_latents

    bad = tmp_path / "nan.npz"
    save_latents(bad, np.full((1, 10, 64), np.nan, np.float32), meta={"network": files["NET"]})
    code, out, err = run_cli(["edit", "a smile", "--latents", bad, "--network", files["NET"], "--clip-model",
                              TINY_CLIP, "--clip-pretrained", "none", "--device", "cpu", "--steps", "3",
                              "--cutouts", "0", "--quiet", "--outdir", tmp_path / "o"], capsys)
    one_line_error(code, err, 1, "the latent contains NaN or infinite values")  # a bad input file (BadFileError)
    assert "smaller --lr" not in err and not (tmp_path / "o").exists()  # before any work


def test_a_loss_that_blows_up_mid_run_keeps_the_best(files):
    import torch

    from clipstyle.errors import NonFiniteLossWarning
    from clipstyle.generator import read_generator_file
    from clipstyle.latents import Latent
    from clipstyle.optimize.loop import Schedule, run

    G = read_generator_file(files["NET"])
    latent = Latent(G.w_avg[None, None].repeat(1, G.num_ws, 1))
    calls = []

    def loss(images, ws):
        calls.append(1)
        value = images.square().mean() if len(calls) < 4 else images.sum() * float("inf")
        return value, {"mse": value.detach()}

    with pytest.warns(NonFiniteLossWarning, match="'mse' became"):
        result = run(G, latent, loss, Schedule(steps=10, lr=0.01))
    assert result.interrupted and result.steps_done == 3 and 0 <= result.best_step < 3
    assert torch.isfinite(result.ws).all()
    assert "'mse'" in result.extra["stop_reason"]


def test_an_absurd_lr_is_a_usage_error(files, tmp_path, capsys):
    code, out, err = run_cli(argv("text", files, tmp_path, "--lr", "1e38"), capsys)
    one_line_error(code, err, 2, "--lr 1e+38 is too large")


# --------------------------------------------------------------------------- 7. concurrent writers, one mode


def test_of_two_writers_of_one_new_path_one_wins(tmp_path):
    from clipstyle.io.files import OutputExistsError, atomic_writer

    dest = tmp_path / "out.bin"
    with pytest.raises(OutputExistsError):
        with atomic_writer(dest) as f:
            f.write(b"second")
            dest.write_bytes(b"first")  # the other process published while we were writing
    assert dest.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temp file left


def test_a_claimed_output_is_created_not_replaced(tmp_path):
    from clipstyle.io.files import OutputExistsError, atomic_write_bytes, exclusive_outputs

    dest = tmp_path / "out.bin"
    with exclusive_outputs([dest]):
        dest.write_bytes(b"other process")  # appeared after the command checked --out
        with pytest.raises(OutputExistsError):
            atomic_write_bytes(dest, b"ours")
    assert dest.read_bytes() == b"other process"
    with exclusive_outputs([dest]):
        dest.unlink()
        atomic_write_bytes(dest, b"ours")
        atomic_write_bytes(dest, b"ours, amended")  # the block's own file: replaced as usual
    assert dest.read_bytes() == b"ours, amended"


def test_replacing_an_existing_file_still_works(tmp_path):
    from clipstyle.io.files import atomic_write_bytes

    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    atomic_write_bytes(dest, b"new")
    assert dest.read_bytes() == b"new"


def test_every_output_has_one_mode(files, tmp_path, capsys):
    from clipstyle.io.files import _umask
    from clipstyle.render.files import save_png

    net_out = tmp_path / "net.safetensors"
    code, out, err = run_cli(["convert", files["NET"], net_out], capsys)
    assert code == 0, err
    png = tmp_path / "x.png"
    save_png(png, np.zeros((4, 4, 3), np.uint8))
    expected = 0o666 & ~_umask()
    assert net_out.stat().st_mode & 0o777 == expected == png.stat().st_mode & 0o777


def test_two_converts_to_one_path_one_fails_cleanly(files, tmp_path):
    import subprocess
    import sys

    target = tmp_path / "same.safetensors"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [subprocess.Popen([sys.executable, "-m", "clipstyle", "convert", files["NET"], str(target)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(120), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in results)
    assert codes == [0, 2], results
    loser = next(e for c, e in results if c == 2)
    assert "exists; pass --overwrite" in loser and "Traceback" not in loser and ".tmp" not in loser
    assert [p.name for p in tmp_path.iterdir()] == ["same.safetensors"]


# --------------------------------------------------------------------------- 5. tables fit 80 columns


@pytest.mark.parametrize("args", [["networks"], ["recipes"], ["info", "NET"], ["kernels", "check"]])
def test_tables_fit_80_columns_without_cutting_names(args, files, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run_cli([files.get(a, a) for a in args], capsys)
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert "…" not in out, out
