"""The ``Latent``: which rows of ``ws`` are free, which are fixed, and ``.npz`` latent files.

``ws`` is the W+ latent ``[N, num_ws, w_dim]`` float32; a *styleblock* is one row. Rows are named by
index (``0-3,8``) or by group (``coarse`` 4²–8², ``middle`` 16²–32², ``fine`` 64²+, from the
resolution of the layers each row drives).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from clipstyle.errors import BadFileError, UsageError
from clipstyle.io.files import check_input_path

GROUP_NAMES = ("coarse", "middle", "fine")


class BlockSpecError(UsageError):
    """A block set such as ``0-3,8`` or ``coarse`` that does not parse or is out of range."""


class LatentFileError(BadFileError):
    """A latent file that is missing, unreadable or has the wrong shape."""


def parse_blocks(spec: str | None, num_ws: int, groups: Sequence[str] | None = None) -> tuple[int, ...]:
    """Parse a block set into sorted row indices.

    Args:
        spec: comma-separated items, each an index (``8``), an inclusive range (``0-3``), a group name
            (``coarse`` | ``middle`` | ``fine``) or ``all``. ``None``/empty = all rows.
        num_ws: number of rows of ``ws``.
        groups: the group of each row (``G.block_groups()``), needed for group names.

    Returns:
        Sorted unique row indices in ``[0, num_ws)``.

    Raises:
        BlockSpecError: malformed item, reversed range, index out of range, unknown group, empty set.
    """
    if spec is None or not str(spec).strip() or str(spec).strip().lower() == "all":
        return tuple(range(num_ws))
    rows: set[int] = set()
    for raw in str(spec).split(","):
        item = raw.strip().lower()
        if not item:
            raise BlockSpecError(f"empty item in block set {spec!r}")
        if item in GROUP_NAMES:
            if groups is None:
                raise BlockSpecError(f"group name {item!r} needs the network's block groups")
            found = [i for i, g in enumerate(groups) if g == item]
            if not found:
                raise BlockSpecError(f"this network has no {item} styleblocks")
            rows.update(found)
            continue
        if item == "all":
            rows.update(range(num_ws))
            continue
        try:
            if "-" in item[1:]:
                a, b = item.split("-", 1) if not item.startswith("-") else (None, None)
                lo, hi = int(a), int(b)
            else:
                lo = hi = int(item)
        except (TypeError, ValueError):
            raise BlockSpecError(f"bad block {raw.strip()!r} in {spec!r}: use indices like 0-3,8 or "
                                 f"coarse/middle/fine") from None
        if lo > hi:
            raise BlockSpecError(f"bad block range {raw.strip()!r}: start is after end")
        if lo < 0 or hi >= num_ws:
            raise BlockSpecError(f"block {raw.strip()!r} is out of range: this network has styleblocks 0-{num_ws - 1}")
        rows.update(range(lo, hi + 1))
    return tuple(sorted(rows))


def seed_z(seed: int, z_dim: int) -> np.ndarray:
    """``z`` for a seed exactly as NVIDIA's scripts draw it: ``RandomState(seed).randn(1, z_dim)`` → ``[1, z_dim]`` float64."""
    if seed < 0 or seed >= 2**32:
        raise UsageError(f"seed must be in [0, 2**32), got {seed}")
    return np.random.RandomState(seed).randn(1, z_dim)


@dataclass(frozen=True)
class LatentFile:
    """Contents of a latent ``.npz``: ``ws [N, num_ws, w_dim]`` float32, optional ``z``/``c``, meta dict."""

    ws: np.ndarray
    z: np.ndarray | None = None
    c: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def save_latents(path: str | Path, ws: torch.Tensor | np.ndarray, z: Any = None, c: Any = None,
                 meta: dict[str, Any] | None = None) -> None:
    """Write a latent file atomically.

    Keys: ``ws`` ``[N, num_ws, w_dim]`` float32; ``w`` (the same array: what NVIDIA's
    ``gen_images.py --projected-w`` reads); optional ``z`` ``[N, z_dim]``, ``c`` ``[N, c_dim]``; ``meta``
    (a JSON string).
    """
    from clipstyle.io.files import atomic_save_npz

    arr = ws.detach().cpu().numpy() if torch.is_tensor(ws) else np.asarray(ws)
    if arr.ndim != 3:
        raise ValueError(f"ws must be [N, num_ws, w_dim], got shape {list(arr.shape)}")
    arrays: dict[str, np.ndarray] = {"ws": arr.astype(np.float32), "w": arr.astype(np.float32)}
    for key, value in (("z", z), ("c", c)):
        if value is not None:
            arrays[key] = (value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)).astype(np.float32)
    arrays["meta"] = np.array(json.dumps(meta or {}, default=str))
    atomic_save_npz(path, **arrays)


#: Keys read as the latent in an ``.npz`` or a torch dict, in this order (``dlatents``: TF projectors).
LATENT_KEYS = ("ws", "w", "dlatents", "latents", "latent", "codes")


def read_array_file(path: str | Path, what: str = "latent") -> tuple[str, Any]:
    """Read an array file of any kind users pass around, recognised by content (never by name), running no code.

    * NumPy ``.npy`` (``allow_pickle=False``) → ``("a NumPy .npy array", ndarray)``;
    * NumPy ``.npz`` → ``("a NumPy .npz archive", {name: ndarray})``;
    * torch ``.pt`` (zip or legacy container; ``torch.load(map_location='cpu', weights_only=True)``, so
      tensors saved on a GPU load on a CPU-only machine) → ``("a torch file", tensor | dict | list …)``
      with tensors turned into float NumPy arrays.

    Args:
        what: the word for error messages (``"latent"``, ``"direction"``).

    Raises:
        LatentFileError: missing, unreadable, truncated, or a torch pickle naming a global outside
            torch's weights-only allow-list (nothing from it ran). The message names what the file is.
    """
    path = check_input_path(path, f"{what} file")  # missing, a folder, a FIFO, a device: said in one line
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:6] == b"\x93NUMPY":
        try:
            return "a NumPy .npy array", np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - any failure: a broken file
            raise LatentFileError(f"{path} is a NumPy .npy file that cannot be read as a {what} "
                                  f"({type(exc).__name__}: {_one_line(exc)})") from None
    torch_file = head[:1] == b"\x80" and head[2:3] == b"\x8a"  # legacy torch.save: pickled magic number first
    if head[:1] == b"\x80" and not torch_file:
        raise LatentFileError(f"{path} is a plain Python pickle, not a {what} file (pickles are not read: "
                              f"they can run code); use .npz, .npy or a torch .pt tensor")
    if head[:4] == b"PK\x03\x04":
        import zipfile

        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise LatentFileError(f"{path} is a truncated or corrupt zip archive ({_one_line(exc)})") from None
        torch_file = any(n.endswith("data.pkl") for n in names)
        if not torch_file:
            try:
                with np.load(path, allow_pickle=False) as data:
                    return "a NumPy .npz archive", {k: data[k] for k in data.files}
            except Exception as exc:  # noqa: BLE001
                raise LatentFileError(f"{path} is a zip archive but not a readable .npz "
                                      f"({type(exc).__name__}: {_one_line(exc)})") from None
    if torch_file:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - UnpicklingError (unsafe global), RuntimeError (corrupt) …
            raise LatentFileError(f"{path} is a torch file that cannot be read safely as a {what} "
                                  f"({type(exc).__name__}: {_one_line(exc)}); nothing from it ran") from None
        return "a torch file", _tensors_to_numpy(obj)
    raise LatentFileError(f"{path} is not a readable {what} file: not NumPy, not torch (starts with {head!r}); "
                          f"use .npz (ws/w/dlatents), .npy or a torch .pt tensor")


def _one_line(exc: object, limit: int = 160) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tensors_to_numpy(obj: Any, depth: int = 0) -> Any:
    if torch.is_tensor(obj):
        return obj.detach().to("cpu").numpy() if obj.dtype != torch.bfloat16 else obj.float().numpy()
    if depth < 3 and isinstance(obj, dict):
        return {k: _tensors_to_numpy(v, depth + 1) for k, v in obj.items()}
    if depth < 3 and isinstance(obj, (list, tuple)):
        return [_tensors_to_numpy(v, depth + 1) for v in obj]
    return obj


def describe_content(obj: Any) -> str:
    """A few words on what a file held (for error messages): ``a dict with keys a, b`` …"""
    if isinstance(obj, dict):
        keys = ", ".join(str(k) for k in list(obj)[:8])
        return f"a dict with keys {keys or '(none)'}"
    if isinstance(obj, np.ndarray):
        return f"an array of shape {list(obj.shape)} ({obj.dtype})"
    if isinstance(obj, (list, tuple)):
        return f"a {type(obj).__name__} of {len(obj)} items"
    return f"a {type(obj).__name__}"


def _float_array(arr: Any, path: Path, kind: str) -> np.ndarray:
    if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
        raise LatentFileError(f"{path} is {kind} holding {describe_content(arr)}, not a floating-point latent")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise LatentFileError(f"{path}: the latent contains NaN or infinite values")
    return arr


def _latent_array(kind: str, obj: Any, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """(the latent array, the other arrays of the file) from what :func:`read_array_file` returned."""
    if isinstance(obj, (np.ndarray, list, tuple)):
        if isinstance(obj, (list, tuple)):
            if not obj or not all(isinstance(v, np.ndarray) for v in obj):
                raise LatentFileError(f"{path} is {kind} holding {describe_content(obj)}, not a latent")
            obj = np.stack([v.reshape(v.shape[-2:]) if v.ndim == 3 and v.shape[0] == 1 else v for v in obj])
        return _float_array(obj, path, kind), {}
    if isinstance(obj, dict):
        key = next((k for k in LATENT_KEYS if k in obj), None)
        if key is not None:
            return _float_array(obj[key], path, kind), obj
        values = list(obj.values())  # e.g. {image name: latent}, as some encoders save them
        if values and all(isinstance(v, np.ndarray) and v.dtype.kind == "f" for v in values) and \
                len({v.shape for v in values}) == 1 and values[0].ndim in (2, 3) and kind == "a torch file":
            return _latent_array(kind, values, path)[0], {}
        raise LatentFileError(f"{path} is {kind} holding {describe_content(obj)}; a latent needs one of "
                              f"{', '.join(LATENT_KEYS)}")
    raise LatentFileError(f"{path} is {kind} holding {describe_content(obj)}, not a latent")


def load_latents(path: str | Path, num_ws: int | None = None, w_dim: int | None = None) -> LatentFile:
    """Read a latent file of any layout in circulation → ``ws [N, num_ws, w_dim]`` float32.

    Layouts (recognised by content): ``.npz`` with ``ws`` (ours), ``w`` (NVIDIA's ``projected_w.npz``) or
    ``dlatents`` (TF projectors); ``.npy`` in any float dtype (encoders, woctezuma); torch ``.pt``: a tensor
    (saved on a GPU or not), a dict with one of :data:`LATENT_KEYS`, or a dict/list of equal-shaped latents
    (stacked in order). Shapes: ``[N, num_ws, w_dim]``; ``[num_ws, w_dim]`` (one W+ latent); ``[1, w_dim]`` or
    ``[w_dim]`` (one W latent, copied to every row); ``[N, w_dim]`` (N W latents; 2-D arrays with exactly
    ``num_ws`` rows count as one W+ latent).

    Raises:
        LatentFileError: missing/unreadable file, nothing that is a latent (the message says what the file
            is and holds), or a shape that does not fit ``num_ws``/``w_dim`` (one line with both shapes).
    """
    path = Path(path)
    kind, obj = read_array_file(path, "latent")
    arr, others = _latent_array(kind, obj, path)
    need = f"[N, {num_ws if num_ws is not None else 'num_ws'}, {w_dim if w_dim is not None else 'w_dim'}]"
    got = list(arr.shape)
    ws = arr
    if ws.ndim == 1:
        ws = ws[None]
    if ws.ndim == 2:
        if num_ws is None:
            raise LatentFileError(f"{path}: a {got} latent needs the network's num_ws")
        if ws.shape[0] == num_ws and ws.shape[0] != 1:
            ws = ws[None]
        else:
            ws = np.repeat(ws[:, None, :], num_ws, axis=1)
    if ws.ndim == 4 and ws.shape[1] == 1:  # [N, 1, num_ws, w_dim] as some encoders keep a batch axis
        ws = ws[:, 0]
    if ws.ndim != 3 or (num_ws is not None and ws.shape[1] != num_ws) or (w_dim is not None and ws.shape[2] != w_dim):
        raise LatentFileError(f"{path}: the latent has shape {got} but this network needs ws {need} "
                              f"(or [{w_dim if w_dim is not None else 'w_dim'}] for one w)")
    meta: dict[str, Any] = {}
    raw_meta = others.get("meta") if isinstance(others, dict) else None
    if isinstance(raw_meta, np.ndarray):
        try:
            meta = json.loads(str(raw_meta))
        except ValueError:
            meta = {}
    z = others.get("z") if isinstance(others, dict) else None
    c = others.get("c") if isinstance(others, dict) else None
    z = z if isinstance(z, np.ndarray) else None
    c = c if isinstance(c, np.ndarray) else None
    return LatentFile(ws=np.ascontiguousarray(ws, dtype=np.float32), z=z, c=c, meta=meta if isinstance(meta, dict) else {})


def read_latent_meta(path: str | Path) -> dict[str, Any]:
    """The JSON ``meta`` of a latent file of any layout (``{}`` when it has none: .npy, torch, NVIDIA's).

    The file is checked as a latent on the way (a known layout of finite floats), so the commands that read
    the meta to choose a network name a bad file before any network loads.

    Raises:
        InputPathError: missing, a folder, a FIFO, a device.
        LatentFileError: unreadable, or no latent (the message says what it holds), or NaN/inf values.
    """
    kind, obj = read_array_file(path, "latent")
    _latent_array(kind, obj, Path(path))  # validated before the meta is trusted
    raw = obj.get("meta") if isinstance(obj, dict) else None
    try:
        meta = json.loads(str(raw)) if isinstance(raw, np.ndarray) else {}
    except ValueError:
        meta = {}
    return meta if isinstance(meta, dict) else {}


class Latent(nn.Module):
    """A W+ latent under constraints; the only trainable thing in an optimization.

    ``ws()`` returns ``[N, num_ws, w_dim]`` where rows in ``free_rows`` come from the parameter and
    every other row is *bit-identical* to ``fixed`` (the start, with mixed-in rows replaced).

    Args:
        start: ``[N, num_ws, w_dim]`` float32 start latent.
        free_rows: rows that may change (default: all).
        mix: ``{row: [N, w_dim] or [w_dim] tensor}`` rows fixed to another latent (style mixing as a
            constraint); a mixed row is never free.
        space: ``"w+"`` (a vector per free row) or ``"w"`` (one vector shared by every free row, started
            from the mean of the start's free rows).
        trust_radius: if set, after each step every free row is pulled back to within this L2
            distance of its start row (units of w).

    Raises:
        ValueError: bad shapes, an unknown space, or no free rows left.
    """

    def __init__(self, start: torch.Tensor, free_rows: Sequence[int] | None = None,
                 mix: dict[int, torch.Tensor] | None = None, space: str = "w+",
                 trust_radius: float | None = None) -> None:
        super().__init__()
        if start.ndim != 3:
            raise ValueError(f"start must be [N, num_ws, w_dim], got {list(start.shape)}")
        if space not in ("w", "w+"):
            raise UsageError(f"space must be 'w' or 'w+', got {space!r}")
        n, num_ws, w_dim = start.shape
        start = start.detach().to(torch.float32).clone()
        fixed = start.clone()
        free = set(range(num_ws) if free_rows is None else (int(r) for r in free_rows))
        for row, value in (mix or {}).items():
            if not 0 <= row < num_ws:
                raise UsageError(f"mixed row {row} is out of range 0-{num_ws - 1}")
            fixed[:, row] = value.to(fixed).expand(n, w_dim)
            free.discard(row)
        if not free:
            raise UsageError("no free styleblocks left to optimize")
        mask = torch.zeros(num_ws, dtype=torch.bool)
        mask[sorted(free)] = True
        self.space, self.trust_radius = space, trust_radius
        self.register_buffer("start", start)   # [N, num_ws, w_dim]
        self.register_buffer("fixed", fixed)   # [N, num_ws, w_dim]
        self.register_buffer("mask", mask)     # [num_ws]
        if space == "w":
            init = start[:, mask].mean(dim=1, keepdim=True)  # [N, 1, w_dim]
        else:
            init = start.clone()
        self.param = nn.Parameter(init)

    @property
    def free_rows(self) -> tuple[int, ...]:
        return tuple(int(i) for i in torch.nonzero(self.mask).flatten())

    def ws(self) -> torch.Tensor:
        """Current ``[N, num_ws, w_dim]``; fixed rows are exactly ``self.fixed``."""
        free = self.param.expand_as(self.fixed)
        return torch.where(self.mask[None, :, None], free, self.fixed)

    @torch.no_grad()
    def constrain_(self) -> None:
        """Apply the trust radius (call after each optimizer step)."""
        if self.trust_radius is None:
            return
        start = self.start if self.space == "w+" else self.start[:, self.mask].mean(dim=1, keepdim=True)
        delta = self.param - start
        norm = delta.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        self.param.copy_(start + delta * (self.trust_radius / norm).clamp(max=1.0))


@torch.no_grad()
def start_ws(G: Any, seed: int | None = None, truncation_psi: float = 1.0, c: torch.Tensor | None = None,
             batch: int = 1, truncation_cutoff: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The start latent of an optimization: ``w_avg`` (no seed) or ``mapping(z(seed + i), c, psi)``.

    Seeds draw ``z`` exactly as NVIDIA's ``gen_images.py`` (``RandomState(seed).randn(1, z_dim)``), so
    seed 42 starts from the same image in both. With a batch, item ``i`` uses seed ``seed + i``.

    Returns:
        ``(ws [batch, num_ws, w_dim] float32, z [batch, z_dim] or None)`` on ``G.w_avg``'s device.
    """
    device = G.w_avg.device
    if seed is None:
        ws = G.w_avg.detach().to(torch.float32)[None, None].repeat(batch, G.num_ws, 1)
        return ws, None
    z = torch.from_numpy(np.concatenate([seed_z(seed + i, G.z_dim) for i in range(batch)])).to(device, torch.float32)
    if c is None:
        c = torch.zeros([batch, G.c_dim], device=device)
    ws = G.mapping(z, c.expand(batch, -1), truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
    return ws.to(torch.float32), z
