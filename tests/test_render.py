"""Image/GIF/MP4 writing and grids (clipstyle.render.files) and atomic file writing (clipstyle.io.files)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from clipstyle.io import files as fileio
from clipstyle.io.files import (
    OutputExistsError,
    atomic_save_npz,
    atomic_write_bytes,
    atomic_write_json,
    atomic_writer,
    make_run_dir,
    refuse_overwrite,
    slugify,
)
from clipstyle.render import files as render
from clipstyle.render.files import (
    RenderError,
    make_grid,
    save_gif,
    save_mp4,
    save_png,
    side_by_side,
    to_uint8,
)


def _hidden_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp"))


# --------------------------------------------------------------------------- to_uint8


def test_to_uint8_exact_values():
    x = torch.tensor([-1.0, 0.0, 1.0, -2.0, 2.0, 0.5, -0.5, 1 / 127.5, -0.996]).view(1, 1, 1, 9)
    out = to_uint8(x)
    assert out.dtype == np.uint8 and out.shape == (1, 1, 9, 1)
    # floor(x * 127.5 + 128): 0.5 → 191.75 → 191, -0.5 → 64.25 → 64, 1/127.5 → 129, -0.996 → 1.01 → 1
    assert out[0, 0, :, 0].tolist() == [0, 128, 255, 0, 255, 191, 64, 129, 1]


def test_to_uint8_layout_and_inputs():
    x = torch.zeros(2, 3, 4, 5)
    x[1, 0] = 1.0  # second image: red
    out = to_uint8(x.requires_grad_())
    assert out.shape == (2, 4, 5, 3)
    assert out[1, 0, 0].tolist() == [255, 128, 128] and out[0, 0, 0].tolist() == [128, 128, 128]
    assert to_uint8(torch.zeros(3, 2, 2)).shape == (1, 2, 2, 3)  # [C, H, W] accepted
    assert to_uint8(torch.full((1, 1, 1, 1), float("nan")))[0, 0, 0, 0] == 0
    assert to_uint8(torch.zeros(1, 3, 2, 2, dtype=torch.float16)).dtype == np.uint8
    with pytest.raises(RenderError):
        to_uint8(torch.zeros(1, 2, 4, 4))
    with pytest.raises(RenderError):
        to_uint8(torch.zeros(4, 4))


# --------------------------------------------------------------------------- PNG


def test_png_round_trip(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    path = save_png(tmp_path / "a.png", arr, metadata={"prompt": "a café", "seed": "3"})
    with Image.open(path) as img:
        assert img.mode == "RGB" and img.format == "PNG"
        np.testing.assert_array_equal(np.asarray(img), arr)
        assert img.text["prompt"] == "a café" and img.text["seed"] == "3"
    gray = arr[:, :, :1]
    with Image.open(save_png(tmp_path / "g.png", gray)) as img:
        assert img.mode == "L"
        np.testing.assert_array_equal(np.asarray(img), gray[:, :, 0])
    assert _hidden_files(tmp_path) == []


def test_png_from_tensor(tmp_path):
    t = torch.rand(1, 3, 6, 5) * 2 - 1
    with Image.open(save_png(tmp_path / "t.png", t)) as img:
        np.testing.assert_array_equal(np.asarray(img), to_uint8(t)[0])
    with Image.open(save_png(tmp_path / "t3.png", t[0])) as img:
        assert img.size == (5, 6)


def test_png_rejects_ambiguous_input(tmp_path):
    with pytest.raises(RenderError, match="uint8"):
        save_png(tmp_path / "f.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(RenderError, match="batch"):
        save_png(tmp_path / "b.png", torch.zeros(2, 3, 4, 4))
    assert not (tmp_path / "f.png").exists()


# --------------------------------------------------------------------------- GIF / MP4


def _frames(n=5, h=24, w=32):
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 0, 0), (255, 255, 255)]
    return [np.broadcast_to(np.array(colors[i % len(colors)], np.uint8), (h, w, 3)).copy() for i in range(n)]


def test_gif_frames_size_and_timing(tmp_path):
    frames = _frames()
    path = save_gif(tmp_path / "p.gif", frames, fps=20)
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.size == (32, 24)
        assert gif.n_frames == 5 and gif.info.get("loop") == 0
        durations, colors = [], []
        for frame in ImageSequence.Iterator(gif):
            durations.append(frame.info["duration"])
            colors.append(tuple(np.asarray(frame.convert("RGB"))[12, 16]))
    assert durations == [50] * 5
    assert colors == [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 0, 0)]
    read = imageio.mimread(path)
    assert len(read) == 5 and all(f.shape[:2] == (24, 32) for f in read)
    assert _hidden_files(tmp_path) == []


def test_gif_keeps_a_gradient_close(tmp_path):
    ramp = np.tile(np.linspace(0, 255, 64).astype(np.uint8)[None, :, None], (16, 1, 3))
    frames = [ramp, ramp[:, ::-1].copy()]
    with Image.open(save_gif(tmp_path / "r.gif", frames, duration_ms=100)) as gif:
        first = np.asarray(gif.convert("RGB")).astype(int)
        assert gif.info["duration"] == 100
    assert np.abs(first - ramp).mean() < 3


def test_gif_accepts_tensors_gray_rgba_and_plays_once(tmp_path):
    frames = [torch.zeros(1, 3, 8, 8), np.zeros((8, 8, 1), np.uint8), np.zeros((8, 8, 4), np.uint8)]
    with Image.open(save_gif(tmp_path / "m.gif", frames, loop=None)) as gif:
        assert gif.n_frames == 3 and "loop" not in gif.info
        gif.seek(2)
        assert tuple(np.asarray(gif.convert("RGB"))[0, 0]) == (255, 255, 255)  # transparent → white


def test_gif_max_size_downscales(tmp_path):
    with Image.open(save_gif(tmp_path / "s.gif", _frames(3, h=60, w=100), max_size=50)) as gif:
        assert gif.size == (50, 30) and gif.n_frames == 3
    with Image.open(save_gif(tmp_path / "k.gif", _frames(2, h=20, w=10), max_size=50)) as gif:
        assert gif.size == (10, 20)  # never upscaled


def test_gif_errors(tmp_path):
    with pytest.raises(RenderError, match="same size"):
        save_gif(tmp_path / "x.gif", [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)])
    with pytest.raises(RenderError, match="no frames"):
        save_gif(tmp_path / "x.gif", [])
    with pytest.raises(RenderError, match="fps"):
        save_gif(tmp_path / "x.gif", _frames(2), fps=0)
    assert list(tmp_path.iterdir()) == []


def test_mp4_without_ffmpeg_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(render, "video_available", lambda: False)
    with pytest.raises(RenderError) as info:
        save_mp4(tmp_path / "v.mp4", _frames(3))
    assert "pip install imageio-ffmpeg" in str(info.value) and "clipstyle[video]" in str(info.value)
    assert not (tmp_path / "v.mp4").exists()


def test_mp4_when_ffmpeg_is_installed(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    path = save_mp4(tmp_path / "v.mp4", _frames(6, h=23, w=31), fps=12)  # odd sizes get padded
    reader = imageio.get_reader(path)
    try:
        assert reader.get_meta_data()["size"] == (32, 24)
        assert sum(1 for _ in reader) == 6
    finally:
        reader.close()
    assert _hidden_files(tmp_path) == []


# --------------------------------------------------------------------------- grids


def _solid(value, h=3, w=4):
    return np.full((h, w, 3), value, np.uint8)


def test_make_grid_layout():
    images = np.stack([_solid(10 * (i + 1)) for i in range(5)])
    grid = make_grid(images, pad=2, pad_value=0)
    assert grid.shape == (2 * 3 + 2, 3 * 4 + 2 * 2, 3)  # cols = ceil(sqrt(5)) = 3, rows = 2
    for i in range(5):
        r, c = divmod(i, 3)
        cell = grid[r * 5 : r * 5 + 3, c * 6 : c * 6 + 4]
        assert (cell == 10 * (i + 1)).all(), f"cell {i}"
    assert (grid[3:5] == 0).all() and (grid[:, 4:6] == 0).all()  # padding
    assert (grid[5:8, 12:16] == 0).all()  # the unused sixth cell


def test_make_grid_rows_cols_and_errors():
    images = [_solid(i) for i in range(6)]
    assert make_grid(images, rows=1).shape == (3, 24, 3)
    assert make_grid(images, cols=2).shape == (9, 8, 3)
    assert make_grid(images, rows=2, cols=3).shape == (6, 12, 3)
    assert make_grid(images, rows=2, cols=3)[3, 0, 0] == 3  # row-major
    with pytest.raises(RenderError, match="cannot hold"):
        make_grid(images, rows=2, cols=2)
    with pytest.raises(RenderError):
        make_grid([])
    with pytest.raises(RenderError):
        make_grid(images, pad=-1)


def test_make_grid_from_tensor_and_mixed_sizes():
    t = torch.zeros(4, 3, 2, 2)
    t[3] = 1
    grid = make_grid(t)
    assert grid.shape == (4, 4, 3) and grid[3, 3].tolist() == [255, 255, 255] and grid[0, 0].tolist() == [128] * 3
    gray_small = np.zeros((2, 2, 1), np.uint8)
    row = side_by_side(_solid(200, 4, 4), gray_small, pad=1)
    assert row.shape == (4, 9, 3)
    assert (row[1:3, 6:8] == 0).all() and row[0, 5].tolist() == [255] * 3  # small image centred on white
    assert (row[:, 4] == 255).all()  # 1-pixel white gap


# --------------------------------------------------------------------------- fileio


def test_atomic_writer_keeps_old_file_when_writer_raises(tmp_path):
    path = tmp_path / "result.png"
    path.write_bytes(b"old content")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_writer(path) as f:
            f.write(b"new partial")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old content"
    with pytest.raises(KeyboardInterrupt):
        with atomic_writer(path, "w") as f:
            f.write("half")
            raise KeyboardInterrupt
    assert path.read_bytes() == b"old content"
    assert _hidden_files(tmp_path) == []
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and _hidden_files(tmp_path) == []


def test_atomic_write_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        new = atomic_write_bytes(tmp_path / "n.bin", b"x")
    finally:
        os.umask(old)
    assert new.stat().st_mode & 0o777 == 0o644
    os.chmod(new, 0o600)
    atomic_write_bytes(new, b"y")
    assert new.stat().st_mode & 0o777 == 0o600  # an existing file keeps its mode


def test_save_png_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "keep.png"
    save_png(path, _solid(7))
    before = path.read_bytes()

    class Broken:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[:10])
            raise OSError("disk full")

    real = fileio.atomic_writer

    def failing_writer(p, mode="wb", encoding="utf-8"):
        cm = real(p, mode, encoding)

        class Wrapper:
            def __enter__(self):
                return Broken(cm.__enter__())

            def __exit__(self, *exc):
                return cm.__exit__(*exc)

        return Wrapper()

    monkeypatch.setattr(fileio, "atomic_writer", failing_writer)
    with pytest.raises(OSError, match="disk full"):
        save_png(path, _solid(200))
    assert path.read_bytes() == before and _hidden_files(tmp_path) == []


def test_atomic_write_json_handles_numpy_tensors_paths(tmp_path):
    obj = {
        "seed": np.int64(3),
        "lr": np.float32(0.5),
        "ws_shape": torch.Size([1, 14, 512]),
        "loss": [1.0, float("nan"), float("inf")],
        "w": np.arange(3, dtype=np.float32),
        "t": torch.tensor([1.5, 2.5]),
        "out": Path("/tmp/x"),
        "blocks": {3, 1},
        1: "int key",
    }
    path = atomic_write_json(tmp_path / "run.json", obj)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and "NaN" not in text and text.startswith("{\n  ")
    back = json.loads(text)
    assert back == {
        "seed": 3, "lr": 0.5, "ws_shape": [1, 14, 512], "loss": [1.0, None, None], "w": [0.0, 1.0, 2.0],
        "t": [1.5, 2.5], "out": "/tmp/x", "blocks": [1, 3], "1": "int key",
    }


def test_atomic_save_npz_round_trip(tmp_path):
    ws = np.random.default_rng(0).standard_normal((1, 8, 64)).astype(np.float32)
    path = atomic_save_npz(tmp_path / "latents.npz", ws=torch.from_numpy(ws), meta=json.dumps({"a": 1}))
    assert path == tmp_path / "latents.npz" and sorted(os.listdir(tmp_path)) == ["latents.npz"]
    with np.load(path) as f:
        np.testing.assert_array_equal(f["ws"], ws)
        assert json.loads(str(f["meta"])) == {"a": 1}
    odd = atomic_save_npz(tmp_path / "w.bin", path=np.zeros(2), compressed=True)  # no ".npz" appended
    assert odd.exists() and np.load(odd)["path"].shape == (2,)


def test_slugify():
    assert slugify("A photo of a smiling woman, 4K!") == "a-photo-of-a-smiling-woman-4k"
    assert slugify("Café  ünïcode") == "cafe-unicode"
    assert slugify("a:1 | b:-0.5 @img.png") == "a-1-b-0-5-img-png"
    assert slugify("!!! ???") == "run" and slugify("") == "run" and slugify("日本") == "run"
    long = slugify("word " * 40)
    assert len(long) <= 60 and not long.endswith("-") and long.endswith("word")


def test_make_run_dir_never_reuses(tmp_path):
    out = tmp_path / "out"
    a = make_run_dir(out, "A red car")
    b = make_run_dir(out, "a red car!")
    c = make_run_dir(out, "a red car")
    assert [a.name, b.name, c.name] == ["a-red-car", "a-red-car-0001", "a-red-car-0002"]
    assert all(p.is_dir() for p in (a, b, c))
    (a / "result.png").write_bytes(b"precious")
    d = make_run_dir(out, "a red car")
    assert d.name == "a-red-car-0003" and (a / "result.png").read_bytes() == b"precious"
    assert make_run_dir(out, "").name == "run"


def test_make_run_dir_is_race_safe(tmp_path):
    made: list[Path] = []
    lock = threading.Lock()

    def worker():
        p = make_run_dir(tmp_path, "same prompt")
        with lock:
            made.append(p)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 8 and len(set(made)) == 8


def test_refuse_overwrite(tmp_path):
    path = tmp_path / "result.png"
    assert refuse_overwrite(path, overwrite=False) == path
    path.write_bytes(b"x")
    with pytest.raises(OutputExistsError) as info:
        refuse_overwrite(path, overwrite=False)
    assert str(info.value) == f"{path} exists; pass --overwrite or choose another path"
    assert isinstance(info.value, ValueError) and isinstance(info.value, FileExistsError)
    assert refuse_overwrite(str(path), overwrite=True) == path


def test_atomic_temp_path(tmp_path):
    dest = tmp_path / "movie.mp4"
    dest.write_bytes(b"old")
    with pytest.raises(ValueError):
        with fileio.atomic_temp_path(dest) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".mp4" and tmp.exists()
            tmp.write_bytes(b"partial")
            raise ValueError("encoder failed")
    assert dest.read_bytes() == b"old" and _hidden_files(tmp_path) == []
    with fileio.atomic_temp_path(dest) as tmp:
        tmp.write_bytes(b"new movie")
    assert dest.read_bytes() == b"new movie" and sorted(os.listdir(tmp_path)) == ["movie.mp4"]
