"""The hostile-file generator for every door of issue 18: each class is a crafted file and the command that reads it.

:func:`door_cases` writes the files into a folder and returns one :class:`Case` per class: the ``clipstyle``
arguments, the exit codes allowed (1 or 2, never 0, never an internal error), words the one line must hold,
and the environment the case runs in. ``tests/test_hostile_doors.py`` runs every case in-process (fast) and, under
``-m slow``, all of them in one child process whose address space is capped (``RLIMIT_AS``). A case never
creates :data:`MARKER` (files that would run code name it).

The classes, not examples: a torch zip whose ``data.pkl`` has a case twin or a duplicate; a legacy torch file
whose storage-keys pickle is hostile; a tiny torch latent declaring gigabytes of storage; a DAG of shared tuples
in a latent; a code-running global in every torch door (latent, direction, LPIPS, CLIP checkpoint); an ``.npz``
member in bzip2, one that inflates past its declared size, one declaring more than the budget; an ``.npy``
header declaring a huge array; an image whose header declares too many pixels; a CLIP config asking for a
giant model or holding NaN; job files with NaN, deep nesting or too many bytes; latent files whose recorded
network is a URL (never fetched) or whose tuned generator is gone; a safetensors network with a NaN config
literal; frames, seeds and batches beyond the machine.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ._cli import TINY_CLIP
from ._fixtures import fixture_path

#: Created only if code from a hostile file ran (a child process inherits the parent's through the environment).
MARKER = Path(os.environ.get("CLIPSTYLE_DOORS_MARKER")
              or Path(tempfile.gettempdir()) / f"clipstyle-doors-marker-{os.getpid()}")


@dataclass(frozen=True)
class Case:
    """One hostile input: ``argv`` for ``clipstyle``, allowed exit ``codes``, words ``expect``ed in the line."""

    name: str
    argv: tuple
    codes: tuple = (1, 2)
    expect: tuple = ()
    env: dict = field(default_factory=dict)


def _dag_bomb(memo_base: int = 100_000, levels: int = 60) -> bytes:
    """Pickle ops pushing t_k = (t_{k-1}, t_{k-1}): linear in the file, 2^k to walk, hash or convert."""
    out = b")r" + struct.pack("<I", memo_base)
    for k in range(1, levels):
        get = b"j" + struct.pack("<I", memo_base + k - 1)
        out += b"0" + get + get + b"\x86r" + struct.pack("<I", memo_base + k)
    return out


def _marker_global() -> bytes:
    """Pickle ops that would create MARKER if a global ran: ``builtins.open(MARKER, 'w')``."""
    return b"cbuiltins\nopen\n(X" + struct.pack("<I", len(str(MARKER))) + str(MARKER).encode() + b"X\x01\x00\x00\x00wtR"


def _torch_zip(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _rewrite_zip(data: bytes, edit) -> bytes:
    """A copy of a zip archive whose entries pass through ``edit(name, bytes) -> [(name, bytes), ...]``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w") as zout, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are the point of some cases
        for info in zin.infolist():
            for name, blob in edit(info.filename, zin.read(info)):
                zout.writestr(zipfile.ZipInfo(name, info.date_time), blob)
    return out.getvalue()


def _replace_pkl(data: bytes, old: bytes, new: bytes) -> bytes:
    def edit(name, blob):
        if name.lower().endswith("data.pkl"):
            assert old in blob, (old, blob[:200])
            blob = blob.replace(old, new, 1)
        return [(name, blob)]
    return _rewrite_zip(data, edit)


def _legacy(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


def _legacy_with_keys(keys_pickle: bytes) -> bytes:
    """A legacy torch file whose storage-keys pickle (the fifth) is replaced."""
    from clipstyle.generator.formats.pickle_vm import Global, Pending, run_pickle

    data = _legacy(torch.zeros(4))

    class _Any(Pending):
        def _vm_build(self, state):
            return None

    class _Table(dict):
        def get(self, key, default=None):
            return Global(".".join(key), reduce=lambda *a: _Any(), newobj=lambda *a: _Any())

    pos = 0
    for _ in range(4):
        _, pos = run_pickle(data, _Table(), pos=pos, persistent_load=lambda pid: _Any())
    _, end = run_pickle(data, {}, pos=pos)
    return data[:pos] + keys_pickle + data[end:]


def _patch_declared_size(data: bytes, name: str, size: int) -> bytes:
    """Zip bytes whose entry ``name`` declares ``size`` inflated bytes (local and central headers)."""
    raw = bytearray(data)
    nb = name.encode()
    for sig, size_at, name_len_at, name_at in ((b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46)):
        i = raw.find(sig)
        while i >= 0:
            n = struct.unpack_from("<H", raw, i + name_len_at)[0]
            if bytes(raw[i + name_at:i + name_at + n]) == nb:
                struct.pack_into("<I", raw, i + size_at, size)
            i = raw.find(sig, i + 4)
    return bytes(raw)


def _npz(arrays: dict, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as z:
        for k, v in arrays.items():
            buf = io.BytesIO()
            np.save(buf, v)
            z.writestr(f"{k}.npy", buf.getvalue())
    return out.getvalue()


def _huge_npy_header() -> bytes:
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }"
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0" * 8


def _png_header_bomb(path: Path, side: int = 13000) -> None:
    from PIL import Image

    Image.new("1", (side, side)).save(path)  # bilevel: a few MB here, a 170 M-pixel image when read as a photo


def _native_with_nan(path: Path) -> None:
    from clipstyle.generator import read_generator_file
    from clipstyle.generator.formats.native import save_native

    G = read_generator_file(fixture_path("sg2_skip_64.pkl"))
    tmp = path.with_suffix(".tmp.safetensors")
    save_native(G, tmp)
    data = tmp.read_bytes()
    tmp.unlink()
    n = int.from_bytes(data[:8], "little")
    head = data[8:8 + n].decode()
    assert '\\"mapping_lr_multiplier\\": 0.01' in head
    head = head.replace('\\"mapping_lr_multiplier\\": 0.01', '\\"mapping_lr_multiplier\\": NaN')
    new = head.encode()
    new += b" " * ((8 - len(new) % 8) % 8)
    path.write_bytes(len(new).to_bytes(8, "little") + new + data[8 + n:])


def door_cases(folder: Path, url_base: str = "http://127.0.0.1:9/") -> list[Case]:
    """Write every hostile file into ``folder``; return the cases (see the module doc).

    ``url_base``: where a recorded URL points (a local server that counts requests, in the tests).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    net = str(fixture_path("sg2_skip_64.pkl"))
    out = str(folder / "out")
    cases: list[Case] = []

    def add(name, argv, codes=(1, 2), expect=(), env=None):
        cases.append(Case(name, tuple(str(a) for a in argv), codes, tuple(expect), dict(env or {})))

    def render(path, *more, **kw):
        add(Path(path).name, ["render", path, "--network", net, "--device", "cpu", "--out",
                              folder / f"{Path(path).stem}-out.png", *more], **kw)

    # ---- torch zip archives: names matched the way torch matches them ----
    ws = torch.zeros(1, 10, 64)
    benign = _torch_zip(ws)
    twin = folder / "case_twin.pt"
    twin.write_bytes(_rewrite_zip(benign, lambda n, b: [(n, b)] + (
        [(n[: -len("data.pkl")] + "DATA.PKL", b"\x80\x02" + _dag_bomb() + b".")] if n.endswith("data.pkl") else [])))
    render(twin, expect=("case_twin.pt", "ignoring case"))
    dup = folder / "duplicate.pt"
    dup.write_bytes(_rewrite_zip(benign, lambda n, b: [(n, b)] * (2 if n.endswith("data.pkl") else 1)))
    render(dup, expect=("duplicate.pt",))
    upper = folder / "upper_bomb.pt"
    upper.write_bytes(_rewrite_zip(benign, lambda n, b: [(n[: -len("data.pkl")] + "Data.Pkl" if n.endswith("data.pkl")
                                                          else n, b"\x80\x02" + _dag_bomb() + b"." if
                                                          n.endswith("data.pkl") else b)]))
    render(upper, expect=("upper_bomb.pt",))

    # ---- legacy torch files: the storage-keys pickle torch reads after the object ----
    keys = folder / "legacy_keys.pt"
    keys.write_bytes(_legacy_with_keys(b"\x80\x02]" + _dag_bomb() + b"a."))
    render(keys, expect=("legacy_keys.pt",))
    keys_global = folder / "legacy_keys_global.pt"
    keys_global.write_bytes(_legacy_with_keys(b"\x80\x02" + _marker_global() + b"."))
    render(keys_global, expect=("legacy_keys_global.pt",))

    # ---- a tiny torch latent declaring gigabytes of storage; a DAG inside a latent ----
    alloc = folder / "alloc.pt"
    small = torch.zeros(1, 18, 512)
    alloc.write_bytes(_replace_pkl(_torch_zip(small), b"M\x00\x24", b"J" + struct.pack("<i", 1_350_000_000)))
    render(alloc, expect=("alloc.pt",))
    dag = folder / "dag.pt"
    dag.write_bytes(_replace_pkl(_torch_zip({"ws": ws, "x": 7}), b"K\x07", _dag_bomb()))
    render(dag, expect=("dag.pt",))

    # ---- code-running globals at every torch door ----
    runs = _replace_pkl(_torch_zip({"ws": ws, "x": 7}), b"K\x07", _marker_global())
    (folder / "run_latent.pt").write_bytes(runs)
    render(folder / "run_latent.pt", expect=("run_latent.pt",))
    (folder / "run_direction.pt").write_bytes(runs)
    add("run_direction.pt", ["direction", "apply", "0", folder / "run_direction.pt", "--network", net,
                             "--device", "cpu", "--outdir", out], expect=("run_direction.pt",))
    (folder / "run_clip.pt").write_bytes(runs)
    add("run_clip.pt", ["x", "--network", net, "--clip-model", TINY_CLIP, "--clip-pretrained", folder / "run_clip.pt",
                        "--steps", "1", "--cutouts", "0", "--device", "cpu", "--outdir", out], expect=("run_clip.pt",))
    photo = folder / "photo.png"
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(photo)
    (folder / "vgg16.pth").write_bytes(runs)
    (folder / "vgg.pth").write_bytes(runs)
    add("run_lpips.pth", ["project", photo, "--network", net, "--lpips-weights",
                          f"{folder / 'vgg16.pth'},{folder / 'vgg.pth'}", "--steps", "1", "--device", "cpu",
                          "--outdir", out], expect=("vgg",))
    alloc_clip = folder / "alloc_clip.pt"
    alloc_clip.write_bytes(alloc.read_bytes())
    add("alloc_clip.pt", ["x", "--network", net, "--clip-model", TINY_CLIP, "--clip-pretrained", alloc_clip,
                          "--steps", "1", "--cutouts", "0", "--device", "cpu", "--outdir", out], expect=("alloc_clip.pt",))

    # ---- .npz / .npy: members checked before inflation ----
    good = np.zeros((1, 10, 64), np.float32)
    bz = folder / "bzip2.npz"
    bz.write_bytes(_npz({"ws": good}, zipfile.ZIP_BZIP2))
    render(bz, expect=("bzip2.npz", "compression"))
    zeros = np.zeros((5 << 20,), np.float32)  # 20 MB of zeros: deflates a thousandfold
    lying = folder / "lying.npz"
    lying.write_bytes(_patch_declared_size(_npz({"ws": good, "noise": zeros}), "noise.npy", 1024))
    render(lying, expect=("lying.npz",))
    over = folder / "over_budget.npz"
    over.write_bytes(_npz({"ws": good, "noise": zeros}))
    render(over, expect=("over_budget.npz", "budget"), env={"CLIPSTYLE_MAX_ARRAY_BYTES": str(4 << 20)})
    huge = folder / "huge.npy"
    huge.write_bytes(_huge_npy_header())
    render(huge, expect=("huge.npy",))

    # ---- images: pixels budgeted from the header ----
    bomb = folder / "pixels.png"
    _png_header_bomb(bomb)
    add("pixels.png", ["project", bomb, "--network", net, "--perceptual", "none", "--steps", "1", "--device", "cpu",
                       "--outdir", out], expect=("pixels.png", "megapixel"))

    # ---- CLIP configs ----
    giant = folder / "giant_clip.json"
    giant.write_text(json.dumps({"embed_dim": 512, "vision_cfg": {"width": 16384, "layers": 256, "patch_size": 32,
                                                                  "image_size": 224},
                                 "text_cfg": {"width": 512, "layers": 1}}))
    nan_cfg = folder / "nan_clip.json"
    nan_cfg.write_text('{"embed_dim": 512, "vision_cfg": {"width": NaN, "layers": 1, "patch_size": 32, '
                       '"image_size": 224}, "text_cfg": {"width": 64, "layers": 1}}')
    for cfg in (giant, nan_cfg):
        add(cfg.name, ["x", "--network", net, "--clip-model", cfg, "--clip-pretrained", "none", "--steps", "1",
                       "--cutouts", "0", "--device", "cpu", "--outdir", out], expect=(cfg.name,))

    # ---- job files ----
    for name, text in (("nan_job.jsonl", '{"prompt": "a", "truncation": NaN}\n'),  # refused by validation
                       ("deep_job.jsonl", '{"prompt": ' + "[" * 5000 + "]" * 5000 + "}\n"),
                       ("big_job.jsonl", '{"prompt": "' + "a" * (33 << 20) + '"}\n')):
        (folder / name).write_text(text)
        add(name, ["batch", folder / name, "--outdir", out], codes=(1, 2), expect=(name,))

    # ---- data never chooses what to fetch ----
    from clipstyle.latents import save_latents

    for name, recorded in (("records_url.npz", url_base + "net.pkl"), ("records_file_url.npz", Path(net).as_uri())):
        save_latents(folder / name, good, meta={"network": recorded})
        add(name, ["render", folder / name, "--device", "cpu", "--out", folder / f"{name}.png"],
            expect=(recorded, "--network"))
    save_latents(folder / "tuned_gone.npz", good, meta={"network": net, "generator": "generator.safetensors"})
    add("tuned_gone.npz", ["render", folder / "tuned_gone.npz", "--device", "cpu", "--out", folder / "tuned.png"],
        expect=("generator.safetensors", "--network"))

    # ---- every number of a config: NaN literal in a safetensors network ----
    _native_with_nan(folder / "nan_config.safetensors")
    add("nan_config.safetensors", ["info", folder / "nan_config.safetensors"], codes=(1,),
        expect=("nan_config.safetensors",))

    # ---- resources before work ----
    add("frames", ["interpolate", "1", "2", "--frames", "100000000", "--network", net, "--device", "cpu",
                   "--outdir", out], codes=(1, 2), expect=("frames",))
    add("frames_memory", ["interpolate", "0-200", "--frames", "100000", "--network", net, "--device", "cpu",
                          "--outdir", out], codes=(1,), expect=("frames", "memory"))
    add("seeds", ["generate", "--seeds", "0-100000000", "--network", net, "--device", "cpu", "--outdir", out],
        codes=(1,), expect=("--seeds",))
    add("seeds_grid", ["generate", "--seeds", "0-9000000", "--grid", "--network", net, "--device", "cpu",
                       "--outdir", out], codes=(1,), expect=("seeds",))
    add("batch", ["x", "--batch", "100000", "--network", net, "--clip-model", TINY_CLIP, "--clip-pretrained", "none",
                  "--steps", "1", "--cutouts", "0", "--device", "cpu", "--outdir", out], codes=(1, 2),
        expect=("batch",))
    add("batch_memory", ["x", "--batch", "4000", "--network", net, "--clip-model", TINY_CLIP, "--clip-pretrained",
                         "none", "--steps", "1", "--cutouts", "8", "--device", "cpu", "--outdir", out], codes=(1,),
        expect=("batch of 4000", "memory"))
    return cases
