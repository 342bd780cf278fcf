"""One error hierarchy (issue 17, item 4): every mistake a user can make is a ClipstyleError classified by type,
the CLI, the UI and a batch job show the same one line for it, and a bug is never dressed up as a mistake.

Each class of mistake is tried through the real entry point (``clipstyle.cli.main``) on a tiny generator built
here; nothing reads ``../shared``.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import pickle
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipstyle.errors import (
    EXIT_RUNTIME,
    EXIT_USAGE,
    BadFileError,
    ClipstyleError,
    UsageError,
    UserRuntimeError,
    bug_line,
    describe,
    error_line,
)
from clipstyle.generator.formats.native import save_native
from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from clipstyle.latents import save_latents

from ._cli import TINY_CLIP, run_cli

#: Every error class a user can cause that lives outside errors.py: (module, class) → its base.
USER_ERRORS = {
    ("clipstyle.latents.latent", "BlockSpecError"): UsageError,
    ("clipstyle.latents.latent", "LatentFileError"): BadFileError,
    ("clipstyle.latents.constraints", "SpecError"): UsageError,
    ("clipstyle.latents.directions", "DirectionError"): UsageError,
    ("clipstyle.guidance.clip", "GuidanceError"): UsageError,
    ("clipstyle.guidance.recipes", "RecipeError"): UsageError,
    ("clipstyle.io.images", "ImageError"): BadFileError,
    ("clipstyle.io.files", "OutputExistsError"): UsageError,
    ("clipstyle.io.files", "InputPathError"): UsageError,
    ("clipstyle.inversion.align", "AlignmentError"): UsageError,
    ("clipstyle.latents.labels", "LabelError"): UsageError,
    ("clipstyle.pipelines.photo_parts", "PhotoOptionError"): UsageError,
    ("clipstyle.generator.formats.writers", "UnwritableFormatError"): UsageError,
    ("clipstyle.optimize.devices", "DeviceError"): UsageError,
    ("clipstyle.batch.ray_runner", "RayMissingError"): UserRuntimeError,
    ("clipstyle.batch.jobs", "JobFileError"): BadFileError,
    ("clipstyle.batch.ray_runner", "RayError"): UserRuntimeError,
    ("clipstyle.batch.folders", "FolderTakenError"): UserRuntimeError,
    ("clipstyle.batch.manifest", "BatchLockedError"): UserRuntimeError,
    ("clipstyle.inversion.lpips", "LPIPSWeightsError"): BadFileError,
    ("clipstyle.io.cache", "DownloadError"): UserRuntimeError,
    ("clipstyle.io.offline", "OfflineError"): UserRuntimeError,
    ("clipstyle.generator.formats.common", "CheckpointError"): BadFileError,
    ("clipstyle.generator.formats.pickle_data", "UnsafePickleError"): BadFileError,
    ("clipstyle.generator.formats.pickle_data", "CorruptPickleError"): BadFileError,
    ("clipstyle.render.files", "RenderError"): UserRuntimeError,
    ("clipstyle.kernels._build", "KernelBuildError"): UserRuntimeError,
    ("clipstyle.encoders.files", "WeightsFileError"): BadFileError,
}


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> Path:
    """A tiny StyleGAN2 (32², 8 rows of w_dim 32) as a clipstyle .safetensors file."""
    torch.manual_seed(0)
    G = StyleGAN2Generator(StyleGAN2Config(z_dim=32, w_dim=32, c_dim=0, img_resolution=32, img_channels=3,
                                           channels=(32, 32, 32, 16)))
    return save_native(G, tmp_path_factory.mktemp("net") / "tiny32.safetensors")


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


def one_line_error(code: int, err: str, expected: int, needle: str) -> str:
    assert code == expected, err
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0], err
    return lines[0]


# --------------------------------------------------------------------------- the hierarchy


@pytest.mark.parametrize("where,base", list(USER_ERRORS.items()), ids=lambda v: v[1] if isinstance(v, tuple) else "")
def test_every_user_error_derives_from_the_one_base(where, base):
    cls = getattr(importlib.import_module(where[0]), where[1])
    assert issubclass(cls, base) and issubclass(cls, ClipstyleError)
    args = {"DownloadError": ("ffhq", "offline")}.get(where[1], ("one line",))
    assert describe(cls(*args))[0] == (EXIT_USAGE if base is UsageError else EXIT_RUNTIME)


def test_no_string_table_of_class_names_is_left():
    import clipstyle.errors as errors_module

    assert not hasattr(errors_module, "MAPPED")
    root = Path(errors_module.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "_error_classes" not in text and "def user_errors" not in text, path


def test_describe_classifies_by_type():
    assert describe(UsageError("bad --x")) == (2, "bad --x")
    assert describe(BadFileError("f.npz is broken")) == (1, "f.npz is broken")
    assert describe(UserRuntimeError("offline")) == (1, "offline")
    assert describe(FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/y.png")) == \
        (2, "no such file or folder: /x/y.png")
    code, line = describe(OSError(errno.ENOSPC, "No space left on device", "/runs/a/result.png"))
    assert code == 1 and "/runs/a/result.png" in line and "space" in line
    assert describe(MemoryError())[0] == 1
    for bug in (ValueError("x"), TypeError("f() missing 1 required argument"), KeyError("k"),
                FileNotFoundError("no errno: made by our code"), RuntimeError("boom")):
        assert describe(bug) is None, bug


def test_lines_are_one_line_without_control_characters():
    code, line = describe(UsageError("bad \x1b[31mred\x1b[0m\nname\x07 \x1b]0;title\x07"))
    assert "\n" not in line and "\x1b" not in line and "\x07" not in line
    assert line.startswith("bad red name\\x07")
    assert "\x1b" not in bug_line(ValueError("\x1b[2Jclear"))


def test_the_ui_and_a_batch_job_show_the_cli_line_for_the_same_exception(capsys):
    gradio = pytest.importorskip("gradio")
    from clipstyle.batch.execute import user_error
    from clipstyle.guidance.clip import GuidanceError
    from clipstyle.io.cache import DownloadError
    from clipstyle.render.files import RenderError
    from clipstyle.ui.app import ui_error

    for exc in (GuidanceError("unknown CLIP model 'ViT-X'"), DownloadError("ffhq", "offline"),
                RenderError("ffmpeg is missing"), OSError(errno.ENOSPC, "No space left on device", "/o/r.png"),
                MemoryError(), ValueError("an internal bug")):
        shown = ui_error(exc)
        assert isinstance(shown, gradio.Error)
        assert shown.message == user_error(exc) == error_line(exc)
        described = describe(exc)
        assert error_line(exc) == (described[1] if described else bug_line(exc))
    assert "this is a bug in clipstyle, please report it" in ui_error(ValueError("x")).message
    capsys.readouterr()


# --------------------------------------------------------------------------- a bug is a bug


@pytest.mark.parametrize("error", [ValueError("internal shape mismatch"), TypeError("f() got an unexpected keyword")])
def test_a_bug_shows_its_traceback_and_exits_1_never_2(error, net, tmp_path, capsys, monkeypatch):
    import clipstyle.pipelines.creative as creative

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(creative, "generate_images", broken)  # the CLI streams through it (generate_to)
    code, out, err = run_cli(["generate", "--network", net, "--seeds", "1", "--device", "cpu",
                              "--outdir", tmp_path / "o"], capsys)
    assert code == 1
    assert "internal error (this is a bug in clipstyle, please report it)" in err
    assert "Traceback" in err and type(error).__name__ in err


# --------------------------------------------------------------------------- usage errors: one line, exit 2


@pytest.mark.parametrize("args,needle", [
    (["text", "x", "--steps", "ten"], "--steps"),
    (["text", "x", "--save-every", "0"], "--save-every"),
    (["text", "x", "--l2", "nan"], "--l2"),
    (["text", "x", "--lr", "inf"], "--lr"),
    (["generate", "--truncation", "nan"], "--truncation"),
    (["direction", "apply", "1", "d.npy", "--sigma", "nan"], "--sigma"),
    (["text", "x", "--no-such-option"], "--no-such-option"),
])
def test_click_usage_errors_are_one_line_exit_2(args, needle, tmp_path, capsys):
    np.save(tmp_path / "d.npy", np.ones(32, np.float32))
    args = [str(tmp_path / a) if a == "d.npy" else a for a in args]
    code, out, err = run_cli(args, capsys)
    one_line_error(code, err, 2, needle)
    assert "╭" not in err and "Usage:" not in err


# --------------------------------------------------------------------------- any file option: what the path is


def file_options(net: Path, photo: Path, tmp: Path, bad: Path) -> list[list]:
    """One command per file option, each given ``bad``."""
    lat = tmp / "lat.npz"
    save_latents(lat, np.zeros((1, 8, 32), np.float32), meta={"network": str(net)})
    clip = ["--clip-model", TINY_CLIP]
    return [
        ["generate", "--network", bad, "--outdir", tmp / "o"],
        ["project", bad, "--network", net, "--outdir", tmp / "o"],
        ["encode", photo, "--encoder", bad, "--network", net, "--outdir", tmp / "o"],
        ["project", photo, "--network", net, "--id-weights", bad, "--outdir", tmp / "o"],
        ["render", bad, "--network", net],
        ["text", "--prompts", bad, "--network", net, *clip, "--outdir", tmp / "o"],
        ["text", "x", "--image-prompt", bad, "--network", net, *clip, "--outdir", tmp / "o"],
        ["text", "x", "--clip-pretrained", bad, "--network", net, *clip, "--outdir", tmp / "o"],
        ["batch", bad, "--outdir", tmp / "o"],
        ["direction", "apply", lat, bad, "--network", net, "--outdir", tmp / "o"],
    ]


def test_a_folder_as_any_file_option(net, photo, tmp_path, capsys):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    for args in file_options(net, photo, tmp_path, folder):
        code, out, err = run_cli(args, capsys)
        one_line_error(code, err, 2, "is a folder")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_fifo_as_any_file_option_is_named_and_never_opened(net, photo, tmp_path, capsys):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # opening it for reading would block this test forever
    for args in file_options(net, photo, tmp_path, fifo):
        code, out, err = run_cli(args, capsys)
        one_line_error(code, err, 2, "is a named pipe (FIFO)")


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="no /dev/null on this system")
def test_a_device_as_any_file_option(net, photo, tmp_path, capsys):
    for args in file_options(net, photo, tmp_path, Path("/dev/null")):
        code, out, err = run_cli(args, capsys)
        one_line_error(code, err, 2, "is a character device")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_option(net, photo, tmp_path, capsys):
    locked = tmp_path / "locked.pt"
    locked.write_bytes(b"x")
    locked.chmod(0)
    code, out, err = run_cli(["encode", photo, "--encoder", locked, "--network", net, "--outdir", tmp_path / "o"],
                             capsys)
    one_line_error(code, err, 2, "cannot be read (permission denied)")


# --------------------------------------------------------------------------- bad input files: named, exit 1


@pytest.mark.parametrize("command", [["render", "LAT"], ["direction", "apply", "LAT", "DIR"],
                                     ["styleblocks", "--latents", "LAT"], ["interpolate", "LAT", "1"],
                                     ["invert-z", "LAT"], ["edit", "a smile", "--latents", "LAT"]])
def test_a_bad_latent_file_without_network_is_named_before_any_network_loads(command, tmp_path, capsys,
                                                                            monkeypatch):
    import clipstyle.generator as generator

    def no_network(*args, **kwargs):
        raise AssertionError("a network was loaded before the latent file was read")

    monkeypatch.setattr(generator, "load_generator", no_network)
    bad = tmp_path / "bad.npz"
    save_latents(bad, np.full((1, 8, 32), np.nan, np.float32))
    np.save(tmp_path / "d.npy", np.ones(32, np.float32))
    args = [str(bad) if a == "LAT" else str(tmp_path / "d.npy") if a == "DIR" else a for a in command]
    extra = ["--clip-model", TINY_CLIP, "--clip-pretrained", "none"] if command[0] == "edit" else []
    outdir = ["--outdir", tmp_path / "o"] if command[0] not in ("render", "invert-z") else []
    code, out, err = run_cli([*args, *extra, "--device", "cpu", *outdir], capsys)
    line = one_line_error(code, err, 1, "NaN or infinite")
    assert str(bad) in line and "ffhq" not in line.lower()


def rosinality_generator_file(path: Path) -> Path:
    torch.save({"g_ema": {"style.1.weight": torch.zeros(4, 4)}, "latent_avg": torch.zeros(4)}, path)
    return path


@pytest.mark.parametrize("option", ["--encoder", "--id-weights"])
def test_a_generator_given_as_encoder_or_identity_weights_says_what_it_is(option, net, photo, tmp_path, capsys):
    for generator_file, tail in ((net, "not an e4e checkpoint" if option == "--encoder" else "not an ArcFace"),
                                 (rosinality_generator_file(tmp_path / "g.pt"), "")):
        args = ["encode", photo, "--encoder", generator_file, "--network", net] if option == "--encoder" else \
            ["project", photo, "--network", net, "--id-weights", generator_file, "--steps", "1"]
        code, out, err = run_cli([*args, "--device", "cpu", "--outdir", tmp_path / "o"], capsys)
        line = one_line_error(code, err, 1, f"{generator_file.name} is a StyleGAN generator checkpoint, not a")
        assert tail in line and "malformed" not in line and "torch archive" not in line


def test_a_pickle_given_as_encoder_is_named_a_pickle(net, photo, tmp_path, capsys):
    junk = tmp_path / "data.pkl"
    junk.write_bytes(pickle.dumps({"a": [1, 2, 3]}, protocol=4))
    code, out, err = run_cli(["encode", photo, "--encoder", junk, "--network", net, "--device", "cpu",
                              "--outdir", tmp_path / "o"], capsys)
    one_line_error(code, err, 1, "data.pkl is a Python pickle, not an e4e checkpoint")


class _NotATensor:
    pass


@pytest.mark.parametrize("content", ["png", "pickle", "torch-object"])
def test_clip_pretrained_that_is_no_clip_checkpoint(content, photo, net, tmp_path, capsys):
    path = {"png": photo, "pickle": tmp_path / "x.pt", "torch-object": tmp_path / "y.pt"}[content]
    if content == "pickle":
        path.write_bytes(pickle.dumps([1, 2], protocol=2))
    elif content == "torch-object":
        torch.save({"state_dict": _NotATensor()}, path)
    code, out, err = run_cli(["text", "x", "--network", net, "--clip-model", TINY_CLIP, "--clip-pretrained", path,
                              "--steps", "1", "--device", "cpu", "--outdir", tmp_path / "o"], capsys)
    line = one_line_error(code, err, 2, "CLIP checkpoint")
    assert "weights_only" not in err and "trust" not in err
    if content == "png":
        assert "is a PNG image, not a CLIP checkpoint" in line


# --------------------------------------------------------------------------- runtime problems: named, exit 1


def test_a_full_disk_names_the_file_being_written(tmp_path):
    from clipstyle.io.files import atomic_writer

    dest = tmp_path / "result.png"
    with pytest.raises(OSError) as info:
        with atomic_writer(dest) as f:
            f.write(b"x")
            raise OSError(errno.ENOSPC, "No space left on device")  # what a write on a full disk raises
    code, line = describe(info.value)
    assert code == 1 and str(dest) in line and "space" in line
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_ui_port_in_use_or_foreign_host(tmp_path, capsys):
    from clipstyle.cli.ui import check_serving_address

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = run_cli(["ui", "--port", port, "--outdir", tmp_path / "ui"], capsys)
        one_line_error(code, err, 1, f"port {port} on 127.0.0.1 is in use")
    with pytest.raises(UsageError, match="cannot be resolved"):
        check_serving_address("no-such-host.invalid", 7860)
    with pytest.raises(UsageError, match="not an address of this machine"):
        check_serving_address("192.0.2.1", 7860)  # TEST-NET-1: never an address of this machine


# --------------------------------------------------------------------------- the other wrong-way cases


def test_render_writes_the_format_its_extension_names(net, tmp_path, capsys):
    code, out, err = run_cli(["render", "3", "--network", net, "--out", tmp_path / "x.jpg", "--device", "cpu"],
                             capsys)
    assert code == 0, err
    with Image.open(tmp_path / "x.jpg") as img:
        assert img.format == "JPEG"
    code, out, err = run_cli(["render", "3", "--network", net, "--out", tmp_path / "x.xyz"], capsys)
    one_line_error(code, err, 2, "cannot write an image as .xyz")
    assert not (tmp_path / "x.xyz").exists()


def test_one_strength_is_one_frame(net, tmp_path, capsys):
    direction = tmp_path / "smile.npy"
    np.save(direction, np.ones(32, np.float32))
    code, out, err = run_cli(["direction", "apply", "3", direction, "--strength", "5", "--network", net,
                              "--device", "cpu", "--outdir", tmp_path / "o"], capsys)
    assert code == 0, err
    run_dir = Path(out.strip().splitlines()[-1])
    record = json.loads((run_dir / "run.json").read_text())
    assert record["settings"]["strengths"] == [5.0]


def test_direction_learn_and_from_text_write_different_default_files():
    from clipstyle.cli import click_app, walk_commands

    commands = {" ".join(p): c for p, c in walk_commands(click_app())}
    defaults = [next(p.default for p in commands[name].params if p.name == "out")
                for name in ("direction learn", "direction from-text")]
    assert defaults[0] != defaults[1]


def test_project_with_tuning_records_and_prints_the_tuned_psnr(net, photo, tmp_path, capsys):
    code, out, err = run_cli(["project", photo, "--network", net, "--perceptual", "none", "--steps", "2", "--tune",
                              "--tune-steps", "2", "--device", "cpu", "--outdir", tmp_path / "o"], capsys)
    assert code == 0, err
    record = json.loads((Path(out.strip().splitlines()[-1]) / "run.json").read_text())
    tuned = record["tune_metrics"]
    assert record["metrics"]["psnr"] == tuned["psnr_tuned"] and record["metrics"]["mse"] == tuned["mse_tuned"]
    assert record["projection_metrics"]["psnr"] == pytest.approx(tuned["psnr_pivot"])
    assert f"PSNR {tuned['psnr_tuned']:.2f} dB" in err


def test_batch_prints_each_folder_as_its_job_completes(tmp_path, capsys, monkeypatch):
    import clipstyle.batch.runner as runner

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"prompt": "a"}\n{"prompt": "b"}\n')

    def run_jobs(job_list, config, on_job=None, **kw):  # the first job completes, then Ctrl-C
        on_job(job_list[0], {"status": "done", "folder": str(tmp_path / "o" / job_list[0].id)})
        assert str(tmp_path / "o" / job_list[0].id) in capsys.readouterr().out  # printed now, not at the end
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_jobs", run_jobs)
    code, out, err = run_cli(["batch", jobs, "--outdir", tmp_path / "o", "--device", "cpu"], capsys)
    assert code == 130


def test_networks_shows_its_urls(capsys):
    code, out, err = run_cli(["networks", "--urls"], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines and all(len(line.split()) == 2 and line.split()[1].startswith("https://") for line in lines)
    code, out, err = run_cli(["networks"], capsys)
    assert code == 0 and "--urls" in out
