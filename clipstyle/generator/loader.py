"""``load_generator``: one call for every checkpoint a user has, recognised by content.

Supported (detected from the bytes, never from the file name):

* clipstyle's own ``.safetensors`` (weights + architecture JSON in the header) — fastest, safest;
* NVIDIA stylegan2-ada-pytorch / stylegan3 pickles (``G_ema`` of a snapshot);
* the original TensorFlow StyleGAN2 pickles (``Gs`` of a ``(G, D, Gs)`` tuple), read without TensorFlow;
* rosinality ``.pt`` files (``g_ema`` + ``latent_avg``, or a training checkpoint), as used by e4e,
  StyleCLIP and StyleGAN-NADA.

Pickles are read with an allow-list (:mod:`.safe_pickle`), torch archives with
``torch.load(weights_only=True)``: no code from a file ever runs.
"""

from __future__ import annotations

import importlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from clipstyle.generator.base import Generator, SourceInfo
from clipstyle.generator.formats.budget import BudgetError, check_budget, limits  # noqa: F401 (re-exported)
from clipstyle.generator.formats.common import CheckpointError, safe_text
from clipstyle.generator.formats.nvidia import generator_from_nvidia
from clipstyle.generator.formats.safe_pickle import (
    CorruptPickleError,
    TFNetworkStandIn,
    UnsafePickleError,
    safe_load_pickle,
)

SUPPORTED = (
    "clipstyle .safetensors, NVIDIA stylegan2-ada-pytorch/stylegan3 .pkl, "
    "TensorFlow StyleGAN2 .pkl, rosinality stylegan2-pytorch .pt, "
    "e4e .pt (its decoder), StyleGAN1: NVlabs/stylegan TensorFlow .pkl and lernapparat g_all .pt"
)
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass(frozen=True)
class Reader:
    """One entry of a dispatch table: ``matches(obj)`` decides, ``build`` (``"module:function"``, imported
    only when used) turns the object into a generator, ``fmt`` is recorded in ``G.source.format``."""

    fmt: str
    matches: Callable[[Any], bool]
    build: str

    def __call__(self, obj: Any) -> Generator:
        module, func = self.build.split(":")
        return getattr(importlib.import_module(module), func)(obj)


def _call(target: str, obj: Any) -> Any:
    """``module:function`` imported on first use, applied to ``obj`` (keeps readers out of import time)."""
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)(obj)


def _tf_main(obj: Any) -> TFNetworkStandIn | None:
    if isinstance(obj, TFNetworkStandIn):
        return obj
    if isinstance(obj, tuple) and obj and all(isinstance(o, TFNetworkStandIn) for o in obj):
        return obj[-1]
    return None


def _tf_synthesis_func(gs: TFNetworkStandIn) -> str:
    syn = (gs.components or {}).get("synthesis")
    return str(getattr(syn, "build_func_name", "") or "")


#: torch archives (``torch.load(weights_only=True)`` result, a dict), recognised by their top-level keys.
#: Add a format with one line; the first match wins.
TORCH_READERS: list[Reader] = [
    Reader("e4e-decoder", lambda d: _call("clipstyle.generator.formats.e4e:is_e4e_checkpoint", d),
           "clipstyle.generator.formats.e4e:generator_from_e4e"),
    Reader("lernapparat-stylegan1", lambda d: _call("clipstyle.generator.formats.lernapparat:is_lernapparat_state", d),
           "clipstyle.generator.formats.lernapparat:generator_from_lernapparat"),
    Reader("rosinality", lambda d: "g_ema" in d or "style.1.weight" in d,
           "clipstyle.generator.formats.rosinality:generator_from_rosinality"),
]

#: TensorFlow network pickles (the ``Gs`` stand-in), recognised by ``build_func_name`` / variable names.
#: Add a format with one line; the first match wins; unmatched ones go to the StyleGAN2 reader, whose
#: errors explain what was found.
TF_READERS: list[Reader] = [
    Reader("tensorflow-stylegan1", lambda gs: _call("clipstyle.generator.formats.tensorflow_sg1:is_stylegan1_tf", gs),
           "clipstyle.generator.formats.tensorflow_sg1:generator_from_tf_sg1"),
    Reader("tensorflow-stylegan2", lambda gs: "stylegan2" in _tf_synthesis_func(gs),
           "clipstyle.generator.formats.tensorflow:generator_from_tf"),
]
_TF_FALLBACK = Reader("tensorflow-stylegan2", lambda gs: True, "clipstyle.generator.formats.tensorflow:generator_from_tf")

# What a converter may raise on a validated but malformed structure (a file problem, never a usage one).
_MALFORMED = (KeyError, TypeError, IndexError, AttributeError, ValueError, OverflowError, RecursionError,
              ZeroDivisionError, RuntimeError)


def sniff_format(head: bytes) -> str:
    """Guess a checkpoint's container from its first bytes: ``safetensors`` | ``zip`` | ``pickle`` | ``unknown``."""
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    return "unknown"


def _describe(obj: Any) -> str:
    if isinstance(obj, dict):
        keys = ", ".join(safe_text(str(k), 40) for k in sorted(obj, key=str)[:8])
        return f"a dict with keys {keys or '(none)'}"
    return f"a {type(obj).__name__}"


def read_generator_file(path: str | Path) -> Generator:
    """Read a local checkpoint file into a float32 CPU generator in eval mode, weights frozen.

    Every failure caused by the file's content is one line naming the file and what is wrong; strings
    from the file are escaped (:func:`~clipstyle.generator.formats.common.safe_text`).

    Raises:
        CheckpointError: the file is not a network we know (the message says what was found and
            lists the supported formats), is truncated/corrupt/malformed, over a budget
            (:class:`~clipstyle.generator.formats.budget.BudgetError`), or holds non-finite weights.
        UnsafePickleError: the pickle names a global or a construction outside the allow-list (nothing ran).
        CorruptPickleError: the pickle stream itself is truncated or invalid.
        InputPathError: missing, a folder, a FIFO, a device or unreadable (a usage error).
    """
    from clipstyle.io.files import check_input_path

    path = check_input_path(path, "network checkpoint")  # missing, a folder, a FIFO, a device: one line
    name = safe_text(path.name)
    # Building a network draws its initial weights from torch's global RNG before the checkpoint's
    # replace them; loading must not move the caller's random state.
    try:
        with torch.random.fork_rng(devices=[]):
            return _read_generator_file(path)
    except (UnsafePickleError, CorruptPickleError, CheckpointError) as exc:
        msg = str(exc)
        if msg.startswith(name):
            raise
        raise type(exc)(f"{name}: {msg}") from None
    except MemoryError:
        raise BudgetError(f"{name}: the network it describes does not fit in memory; refused") from None
    except _MALFORMED as exc:
        if isinstance(exc, RuntimeError) and "allocate" in str(exc):  # torch's allocator failing
            raise BudgetError(f"{name}: the network it describes does not fit in memory; refused") from None
        raise CheckpointError(f"{name}: malformed network structure ({type(exc).__name__}: "
                              f"{safe_text(exc, 120)})") from None


def _read_generator_file(path: Path) -> Generator:
    lim = limits()
    size = path.stat().st_size
    if size > lim.max_file_bytes:
        raise BudgetError(f"the file is {size / 1e9:.1f} GB, over the {lim.max_file_bytes / 1e9:.1f} GB limit "
                          f"(set CLIPSTYLE_MAX_CHECKPOINT_BYTES to raise it)")
    with open(path, "rb") as f:
        head = f.read(16)
    kind = sniff_format(head)
    if kind == "safetensors":
        from clipstyle.generator.formats.native import load_native

        G, fmt = load_native(path), "clipstyle-safetensors"
    elif kind == "zip" or (kind == "pickle" and _is_legacy_torch(path)):
        G, fmt = _read_torch_archive(path)
    elif kind == "pickle":
        obj = safe_load_pickle(path.read_bytes())
        gs = _tf_main(obj)
        if gs is not None:
            reader = next((r for r in TF_READERS if r.matches(gs)), _TF_FALLBACK)
            G, fmt = reader(obj), reader.fmt
        else:
            try:
                G = generator_from_nvidia(obj)
            except CheckpointError as exc:
                raise CheckpointError(f"{exc}; supported: {SUPPORTED}") from None
            fmt = "nvidia-" + G.kind
    else:
        raise CheckpointError(f"not a checkpoint clipstyle can read (starts with {safe_text(head[:8])}); "
                              f"supported: {SUPPORTED}")
    G.source = SourceInfo(str(path), str(path), fmt)
    return G


def _is_legacy_torch(path: Path) -> bool:
    """A legacy (pre-zip) ``torch.save`` stream starts with a pickled magic long."""
    with open(path, "rb") as f:
        head = f.read(16)
    return head[2:3] == b"\x8a" and head[3:4] == b"\x0a" and int.from_bytes(head[4:14], "little") == _LEGACY_TORCH_MAGIC


def _read_torch_archive(path: Path) -> tuple[Generator, str]:
    from clipstyle.generator.formats.torch_archive import load_torch_archive

    data = load_torch_archive(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"holds a {type(data).__name__}, not a checkpoint dict; supported: {SUPPORTED}")
    for reader in TORCH_READERS:
        if reader.matches(data):
            return reader(data), reader.fmt
    raise CheckpointError(f"a torch archive holding {_describe(data)}: not a generator clipstyle knows; "
                          f"supported: {SUPPORTED}")


def load_generator(source: str | Path, device: str | torch.device = "cpu", *, cache_dir: str | Path | None = None,
                   progress: bool = True) -> Generator:
    """Load a pretrained generator from an alias, a path, a ``file://`` or an ``https://`` URL.

    Args:
        source: alias (``ffhq``, ``metfaces``, ``sg3-ffhq-r``… see ``clipstyle networks``), a local path, or a URL.
            URLs are downloaded once into the cache (``$CLIPSTYLE_CACHE`` or the platform cache dir).
        device: where to put the generator.
        cache_dir: override the cache directory.
        progress: show a download progress bar.

    Returns:
        A :class:`~clipstyle.generator.base.Generator` in eval mode with ``requires_grad=False`` on every
        parameter; float32; ``G.source`` records where it came from.

    Raises:
        clipstyle.io.cache.DownloadError: offline or a dead URL (the message names the URL and ``--network PATH``).
        CheckpointError / UnsafePickleError: see :func:`read_generator_file`. A downloaded file that fails
            to load is moved out of the cache (``<cache>/quarantine/``) and the message says so.
        ValueError: an unknown alias that is not a file either.
    """
    from clipstyle.generator.registry import resolve_network
    from clipstyle.io.cache import fetch, is_url, quarantine

    source = str(source)
    location, display = resolve_network(source)
    path = fetch(location, cache_dir=cache_dir, progress=progress)
    try:
        G = read_generator_file(path)
    except (CheckpointError, UnsafePickleError, CorruptPickleError) as exc:
        if not is_url(location):
            raise
        moved = quarantine(path)  # a cached download that does not load is never reused
        note = f" (the cached download was moved to {safe_text(str(moved), 200)}; the next run downloads it again)"
        raise type(exc)(str(exc) + note) from None
    G.source = SourceInfo(display, str(path), G.source.format)
    return G.to(device)


def generator_meta(G: Generator) -> dict[str, Any]:
    """JSON-able description of a generator's architecture (for headers and ``run.json``)."""
    from dataclasses import asdict

    cfg = asdict(G.config)
    return json.loads(json.dumps(cfg))
