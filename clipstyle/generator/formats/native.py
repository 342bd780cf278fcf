"""clipstyle's own network format: one ``.safetensors`` file (weights + architecture JSON in the header).

Safetensors holds raw tensors and a ``str → str`` metadata header only, so loading runs no code and
needs no unpickling; it is also the fastest format to read. Layout:

* tensors: every entry of ``G.state_dict()`` under its own name, contiguous; floating-point tensors
  as float32, other dtypes kept;
* ``__metadata__``: ``clipstyle_format`` (``"1"``), ``kind`` (``"stylegan2"`` | ``"stylegan3"``),
  ``config`` (JSON of ``dataclasses.asdict(G.config)``; tuples become lists and are turned back into
  tuples from the dataclass field types), ``source`` / ``source_format`` (where the network was
  converted from), plus any caller-given string entries.

The round trip ``load_native(save_native(G))`` is bit-exact (state dict and images).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any

import torch

from clipstyle.generator.base import Generator
from clipstyle.generator.formats.budget import (
    BudgetError,
    check_budget,
    check_shapes,
    min_parameters,
)
from clipstyle.generator.formats.common import (
    CheckpointError,
    load_state_exact,
    public_source,
    safe_text,
)

FORMAT_VERSION = "1"
_RESERVED = ("clipstyle_format", "kind", "config", "source", "source_format")


def save_native(G: Generator, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write ``G`` to ``path`` as clipstyle safetensors, atomically (temp file + ``os.replace``).

    Args:
        G: a StyleGAN2 or StyleGAN3 generator (any device; written as CPU tensors).
        path: destination file; an existing file is replaced only once the new one is complete.
        meta: extra header entries; non-string values are stored as JSON. Keys may not be one of
            ``clipstyle_format, kind, config, source, source_format``.

    Returns:
        The path written.

    Raises:
        ValueError: ``meta`` uses a reserved key, or ``G`` has no dataclass ``config``.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if not dataclasses.is_dataclass(getattr(G, "config", None)):
        raise ValueError(f"{type(G).__name__} has no dataclass config; cannot be saved in the clipstyle format")
    header = {
        "clipstyle_format": FORMAT_VERSION,
        "kind": str(G.kind),
        "config": json.dumps(dataclasses.asdict(G.config)),
        "source": public_source(getattr(G.source, "source", "") or getattr(G.source, "path", "")),
        "source_format": str(getattr(G.source, "format", "")),
    }
    for key, value in (meta or {}).items():
        if key in _RESERVED:
            raise ValueError(f"meta key {key!r} is reserved by the clipstyle format")
        header[str(key)] = value if isinstance(value, str) else json.dumps(value)
    tensors = {}
    for name, t in G.state_dict().items():
        t = t.detach().to("cpu")
        t = t.to(torch.float32) if t.is_floating_point() else t
        tensors[name] = t.contiguous().clone()  # clone: safetensors refuses tensors that share memory
    from clipstyle.io.files import atomic_temp_path

    with atomic_temp_path(path) as tmp:  # one file mode for every output; one of two writers wins
        save_file(tensors, str(tmp), metadata=header)
    return path


def read_native_metadata(path: str | Path) -> dict[str, str]:
    """The ``__metadata__`` header of a safetensors file (``{}`` if it has none).

    Raises:
        CheckpointError: the file is not a readable safetensors file.
    """
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises its own SafetensorError for bad headers
        raise CheckpointError(f"{path.name} is a corrupt safetensors file ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:160]})") from None


_ST_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "U16": 2, "U32": 4, "U64": 8}
_MAX_HEADER = 100_000_000


def check_safetensors_header(path: str | Path) -> int:
    """Validate a safetensors header before anything is read: sizes, dtypes, offsets inside the file,
    byte counts matching the shapes, and the tensor budget. Returns the number of tensor elements.

    Raises:
        CheckpointError: a malformed header; BudgetError: over the tensor budget.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise CheckpointError(f"{safe_text(path.name)} is a truncated safetensors file")
        n = int.from_bytes(head, "little")
        if not 2 <= n <= min(_MAX_HEADER, size - 8):
            raise CheckpointError(f"{safe_text(path.name)}: safetensors header length {n} does not fit the file")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise CheckpointError(f"{safe_text(path.name)}: the safetensors header is not valid JSON") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{safe_text(path.name)}: the safetensors header is not a JSON object")
    data_len = size - 8 - n
    shapes, elements = [], 0
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise CheckpointError(f"{safe_text(path.name)}: the safetensors metadata is not str -> str")
            continue
        ok = (isinstance(entry, dict) and entry.get("dtype") in _ST_ITEMSIZE and isinstance(entry.get("shape"), list)
              and all(type(d) is int and d >= 0 for d in entry["shape"]) and isinstance(entry.get("data_offsets"), list)
              and len(entry["data_offsets"]) == 2 and all(type(o) is int for o in entry["data_offsets"]))
        if not ok:
            raise CheckpointError(f"{safe_text(path.name)}: malformed safetensors entry {safe_text(name)}")
        shape, (b, e) = tuple(entry["shape"]), entry["data_offsets"]
        itemsize = _ST_ITEMSIZE[entry["dtype"]]
        shapes.append((shape, itemsize))
        check_shapes(shapes[-1:], safe_text(path.name))
        numel = 1
        for d in shape:
            numel *= d
        if not 0 <= b <= e <= data_len or e - b != numel * itemsize:
            raise CheckpointError(f"{safe_text(path.name)}: tensor {safe_text(name)} lies outside the file "
                                  f"or has the wrong byte count")
        elements += numel
    check_shapes(shapes, safe_text(path.name))
    return elements


def _mentions_tuple(tp: Any) -> bool:
    if isinstance(tp, str):
        return "tuple" in tp.lower()
    if tp is tuple or typing.get_origin(tp) is tuple:
        return True
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_mentions_tuple(a) for a in typing.get_args(tp))
    return False


def _deep_tuple(v: Any) -> Any:
    return tuple(_deep_tuple(x) for x in v) if isinstance(v, list) else v


def config_from_json(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild the frozen dataclass ``cls`` from its ``asdict`` JSON (lists → tuples for tuple fields).

    Fields with ``init=False`` (e.g. ``kind``) are skipped. Works for any config dataclass.

    Raises:
        CheckpointError: unknown fields (a file from a newer clipstyle) or values the config rejects.
    """
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolved forward references: fall back to the annotation strings
        hints = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(k for k in data if k not in fields)
    if unknown:
        raise CheckpointError(f"the {cls.__name__} in this file has unknown fields "
                              f"({', '.join(safe_text(k, 40) for k in unknown[:6])}); "
                              f"written by a newer clipstyle?")
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        if not f.init:
            continue
        kwargs[name] = _deep_tuple(value) if _mentions_tuple(hints.get(name, f.type)) else value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"invalid {cls.__name__} in the file header: {safe_text(exc, 160)}") from None


def _classes_for(kind: str) -> tuple[type, type]:
    if kind == "stylegan2":
        from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator

        return StyleGAN2Generator, StyleGAN2Config
    if kind == "stylegan1":
        from clipstyle.generator.stylegan1 import StyleGAN1Config, StyleGAN1Generator

        return StyleGAN1Generator, StyleGAN1Config
    if kind == "stylegan3":
        try:
            from clipstyle.generator.stylegan3 import (
                StyleGAN3Config,
                StyleGAN3Generator,
            )
        except ImportError as exc:
            raise CheckpointError(f"this clipstyle cannot build StyleGAN3 networks ({exc})") from None
        return StyleGAN3Generator, StyleGAN3Config
    raise CheckpointError(f"unknown network kind {safe_text(kind)} in the clipstyle header")


def load_native(path: str | Path) -> Generator:
    """Read a clipstyle ``.safetensors`` network → float32 CPU generator, eval mode, frozen.

    Raises:
        CheckpointError: a safetensors file without clipstyle metadata, an unknown format version or
            kind, a bad config, or tensors that do not fit the config (names them).
    """
    from safetensors.torch import load_file

    path = Path(path)
    elements = check_safetensors_header(path)
    header = read_native_metadata(path)
    if "clipstyle_format" not in header:
        raise CheckpointError(f"{path.name} is a safetensors file but not a clipstyle network (no clipstyle metadata)")
    if header["clipstyle_format"] != FORMAT_VERSION:
        raise CheckpointError(f"{safe_text(path.name)} uses clipstyle format {safe_text(header['clipstyle_format'])}; "
                              f"this version reads {FORMAT_VERSION!r}")
    gen_cls, cfg_cls = _classes_for(header.get("kind", ""))
    try:
        cfg_data = json.loads(header.get("config", ""))
    except json.JSONDecodeError:
        raise CheckpointError(f"{path.name}: the clipstyle config header is not valid JSON") from None
    if not isinstance(cfg_data, dict):
        raise CheckpointError(f"{path.name}: the clipstyle config header is not a JSON object")
    cfg = config_from_json(cfg_cls, cfg_data)
    check_budget(cfg, what=safe_text(path.name))
    if min_parameters(cfg) > elements:
        raise BudgetError(f"{safe_text(path.name)}: its config needs at least {min_parameters(cfg)} weights but the "
                          f"file stores {elements}; refused before building the network")
    G = gen_cls(cfg)
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:
        raise CheckpointError(f"{path.name}: cannot read its tensors ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:160]})") from None
    load_state_exact(G, state)
    return G
