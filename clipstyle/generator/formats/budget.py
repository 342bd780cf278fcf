"""Resource budgets every checkpoint reader checks *before* it allocates.

A checkpoint is untrusted input: a few bytes can declare a 10⁶-channel network, a tensor of 10¹² elements
backed by one float (zero strides), a zip entry that inflates a thousandfold or a pickle whose nested
containers make hashing exponential. The readers compute what a file asks for from its declared config and
tensor shapes and refuse implausible requests with one line (:class:`BudgetError`, a ``CheckpointError``)
before building anything.

The limits are generous for every published StyleGAN (the largest, 1024² StyleGAN2/3 snapshots, need
< 1.5 GB); they can be raised for one process with ``CLIPSTYLE_MAX_CHECKPOINT_BYTES`` (bytes).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from clipstyle.generator.formats.common import CheckpointError

__all__ = ["BudgetError", "Limits", "check_budget", "check_config_numbers", "check_fits_state", "check_shapes",
           "limits", "min_parameters", "nbytes_of_shape"]


class BudgetError(CheckpointError):
    """A file asks for more memory, tensors, depth or layers than any real network needs (nothing was built)."""


@dataclass(frozen=True)
class Limits:
    """The budgets (all inclusive upper bounds)."""

    max_file_bytes: int = 8 << 30  # bytes of one checkpoint file (compressed size for zips)
    max_tensor_bytes: int = 8 << 30  # bytes of every tensor/array a file builds, together
    max_inflated_bytes: int = 8 << 30  # bytes a zip archive inflates to, together
    max_inflate_ratio: int = 50  # uncompressed / compressed bytes of a zip (beyond 64 MiB)
    max_tensors: int = 20_000  # tensors in one file
    max_ndim: int = 8  # dimensions of one tensor
    max_depth: int = 64  # nesting of containers in a pickle
    max_items: int = 4_000_000  # container entries + memo entries of one pickle
    max_resolution: int = 4096  # img_resolution
    max_channels: int = 8192  # any channel count / feature size / z_dim / w_dim / c_dim
    max_mapping_layers: int = 64
    max_layers: int = 128  # synthesis layers (StyleGAN3) or blocks


def limits() -> Limits:
    """The limits in force (``CLIPSTYLE_MAX_CHECKPOINT_BYTES`` raises the three byte budgets)."""
    env = os.environ.get("CLIPSTYLE_MAX_CHECKPOINT_BYTES", "").strip()
    if env.isdigit() and int(env) > 0:
        n = int(env)
        return Limits(max_file_bytes=n, max_tensor_bytes=n, max_inflated_bytes=n)
    return Limits()


def nbytes_of_shape(shape: Iterable[Any], itemsize: int) -> int:
    """Bytes of a dense tensor of ``shape`` (plain Python ints, so no overflow)."""
    n = int(itemsize)
    for s in shape:
        n *= int(s)
    return n


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def check_shapes(shapes: Iterable[tuple[tuple[int, ...], int]], what: str = "the file",
                 lim: Limits | None = None) -> int:
    """Refuse a set of tensors (``(shape, itemsize)`` pairs) that is too many or too large. Returns total bytes.

    Raises:
        BudgetError: more than ``max_tensors`` tensors, a negative dimension, more than ``max_ndim``
            dimensions, or more than ``max_tensor_bytes`` bytes together (of ``lim``, default :func:`limits`).
    """
    lim = lim or limits()
    total = 0
    for count, (shape, itemsize) in enumerate(shapes, 1):
        if count > lim.max_tensors:
            raise BudgetError(f"{what} holds more than {lim.max_tensors} tensors; not a generator we can read")
        shape = tuple(int(s) for s in shape)
        if len(shape) > lim.max_ndim or any(s < 0 for s in shape):
            raise BudgetError(f"{what} declares a tensor of shape {list(shape)[:10]}; refused")
        total += nbytes_of_shape(shape, itemsize)
        if total > lim.max_tensor_bytes:
            raise BudgetError(f"{what} declares more than {_gb(lim.max_tensor_bytes)} of tensors; refused "
                              f"(set CLIPSTYLE_MAX_CHECKPOINT_BYTES to raise the limit)")
    return total


def check_budget(config: Any = None, *, shapes: Iterable[tuple[tuple[int, ...], int]] | None = None,
                 what: str = "the file") -> None:
    """Refuse an implausible network config and/or tensor set before anything is built.

    Args:
        config: a ``StyleGAN2Config``/``StyleGAN3Config`` (or any object with some of ``img_resolution``,
            ``channels``, ``z_dim``, ``w_dim``, ``c_dim``, ``mapping_layers``, ``layers``,
            ``mapping_layer_features``, ``mapping_embed_features``, ``input_channels``), or ``None``.
        shapes: ``(shape, itemsize)`` of every tensor the file declares, or ``None``.
        what: how the message names the source (e.g. the file name).

    Raises:
        BudgetError: a value outside :class:`Limits` (one line naming it).
    """
    lim = limits()
    if config is not None:
        check_config_numbers(config, what)

        def bounded(name: str, value: Any, hi: int, lo: int = 0) -> None:
            try:
                v = int(value)
            except (TypeError, ValueError, OverflowError):
                raise BudgetError(f"{what}: {name} is not an integer ({str(value)[:40]!r})") from None
            if not lo <= v <= hi:
                raise BudgetError(f"{what}: {name}={v} is outside {lo}..{hi}; refused before building the network")

        res = getattr(config, "img_resolution", None)
        if res is not None:
            bounded("img_resolution", res, lim.max_resolution, 4)
        for name in ("z_dim", "w_dim", "img_channels", "input_channels", "mapping_layer_features",
                     "mapping_embed_features"):
            v = getattr(config, name, None)
            if v is not None:
                bounded(name, v, lim.max_channels, 0)
        if getattr(config, "c_dim", None) is not None:
            bounded("c_dim", config.c_dim, lim.max_channels, 0)
        if getattr(config, "mapping_layers", None) is not None:
            bounded("mapping_layers", config.mapping_layers, lim.max_mapping_layers, 0)
        chans = getattr(config, "channels", None) or ()
        if len(chans) > lim.max_layers:
            raise BudgetError(f"{what}: {len(chans)} synthesis blocks; refused")
        for c in chans:
            bounded("a channel count", c, lim.max_channels, 1)
        layers = getattr(config, "layers", None) or ()
        if len(layers) > lim.max_layers:
            raise BudgetError(f"{what}: {len(layers)} synthesis layers; refused")
        for layer in layers:
            for name in ("in_channels", "out_channels"):
                bounded(f"a layer's {name}", getattr(layer, name, 1), lim.max_channels, 1)
            for name in ("in_size", "out_size"):
                for s in getattr(layer, name, (4, 4)):
                    bounded(f"a layer's {name}", s, 4 * lim.max_resolution, 1)
    if shapes is not None:
        check_shapes(shapes, what)


#: Plausible ranges (inclusive) of the real-valued numbers of a network config, by field name. A value outside
#: (NaN and ±inf included) would not fail: it would make every image black, white or noise.
FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "mapping_lr_multiplier": (1e-6, 100.0),  # NVIDIA's bias_gain / lr multiplier (0.01 upstream)
    "conv_clamp": (1e-3, 1e6),
    "instance_norm_eps": (1e-12, 1.0),
    "input_sampling_rate": (1e-3, 1e6),  # StyleGAN3 input: sampling rate and bandwidth
    "input_bandwidth": (1e-3, 1e6),
    "output_scale": (1e-6, 16.0),
    "in_sampling_rate": (1e-3, 1e6), "out_sampling_rate": (1e-3, 1e6), "tmp_sampling_rate": (1e-3, 1e6),
    "in_cutoff": (1e-6, 1e6), "out_cutoff": (1e-6, 1e6),
    "in_half_width": (0.0, 1e6), "out_half_width": (0.0, 1e6),
}
#: Plausible ranges of the small integers of a layer (StyleGAN3).
INT_RANGES: dict[str, tuple[int, int]] = {
    "conv_kernel": (1, 15), "up_factor": (1, 16), "down_factor": (1, 16), "up_taps": (0, 1024),
    "down_taps": (0, 1024), "num_fp16_res": (0, 64), "fused_min_resolution": (0, 1 << 16),
}
#: Resampling filter taps (``resample_filter``, ``blur_filter``).
FILTER_FIELDS = ("resample_filter", "blur_filter")


def check_config_numbers(config: Any, what: str = "the file") -> None:
    """Refuse a config with a number that is not finite or not plausible, in any field, nested layers included.

    Every ``float`` field must be finite and, for the fields of :data:`FLOAT_RANGES`, inside its range;
    the fields of :data:`INT_RANGES` are bounded; filters (:data:`FILTER_FIELDS`) hold 1–64 finite taps of
    magnitude ≤ 10⁶ with a non-zero sum (they are normalised by it); paddings are bounded by the resolution
    budget. Works on any dataclass config (StyleGAN1/2/3, their layer configs).

    Raises:
        BudgetError: one line naming the field and the value (nothing was built).
    """
    import dataclasses
    import math

    lim = limits()
    todo = [(config, "")]
    while todo:
        obj, prefix = todo.pop()
        if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
            continue
        for f in dataclasses.fields(obj):
            name, value = f.name, getattr(obj, f.name, None)
            where = f"{prefix}{name}"
            if isinstance(value, bool) or value is None or isinstance(value, str):
                continue
            if isinstance(value, float) or (name in FLOAT_RANGES and isinstance(value, int)):
                v = float(value)
                if not math.isfinite(v):
                    raise BudgetError(f"{what}: {where} is {v}; every number of a network config must be finite")
                lo, hi = FLOAT_RANGES.get(name, (-1e12, 1e12))
                if not lo <= v <= hi:
                    raise BudgetError(f"{what}: {where}={v:g} is outside {lo:g}..{hi:g}; refused before building "
                                      f"the network")
            elif isinstance(value, int) and name in INT_RANGES:
                lo, hi = INT_RANGES[name]
                if not lo <= value <= hi:
                    raise BudgetError(f"{what}: {where}={value} is outside {lo}..{hi}; refused before building")
            elif isinstance(value, tuple):
                if name in FILTER_FIELDS:
                    taps = [float(t) for t in value[:65]] if all(isinstance(t, (int, float)) for t in value[:65]) \
                        else None
                    if (taps is None or not 1 <= len(value) <= 64 or not all(math.isfinite(t) and abs(t) <= 1e6
                                                                             for t in taps) or sum(taps) == 0):
                        raise BudgetError(f"{what}: {where} is not 1-64 finite filter taps with a non-zero sum")
                elif name == "padding":
                    if not all(isinstance(p, int) and abs(p) <= 4 * lim.max_resolution for p in value):
                        raise BudgetError(f"{what}: {where} {list(value)[:8]} is not a plausible padding")
                else:
                    for i, item in enumerate(value[: lim.max_layers + 1]):
                        if isinstance(item, float) and not math.isfinite(item):
                            raise BudgetError(f"{what}: {where}[{i}] is {item}; every number must be finite")
                        if dataclasses.is_dataclass(item):
                            todo.append((item, f"{where}[{i}]."))


def min_parameters(config: Any) -> int:
    """A lower bound on the number of weights a StyleGAN2/3 config needs (its conv kernels alone)."""
    layers = getattr(config, "layers", None)
    if layers:
        return sum(int(l.in_channels) * int(l.out_channels) * int(l.conv_kernel) ** 2 for l in layers)
    return sum(int(c) * int(c) * 9 for c in getattr(config, "channels", None) or ())


def check_fits_state(config: Any, state: Any, what: str = "the file") -> None:
    """Refuse a config whose network cannot be the tensors the file holds, *before* building it.

    The network would need at least :func:`min_parameters` weights; when the file's tensors hold fewer
    elements than that, loading would fail anyway after allocating the whole network (a few bytes of
    config could otherwise ask for gigabytes).

    Raises:
        BudgetError: the config is implausible (:func:`check_budget`) or larger than the file's tensors.
    """
    check_budget(config, what=what)
    have = sum(int(v.numel()) if hasattr(v, "numel") else int(getattr(v, "size", 0)) for v in state.values())
    need = min_parameters(config)
    if need > have:
        raise BudgetError(f"{what} describes a network of at least {need} weights but stores only {have}; "
                          f"refused before building it")
