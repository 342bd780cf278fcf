"""Pretrained network aliases: short names for the authors' published StyleGAN2-ADA / StyleGAN3 pickles.

``clipstyle --network ffhq`` and ``--network sg3-afhqv2-r`` look the alias up here; the URL is
then downloaded once by :func:`clipstyle.io.cache.fetch`. URLs, ``file://`` URLs and local paths
pass through :func:`resolve_network` untouched.

Alias scheme:

* StyleGAN2-ADA (``nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/<name>.pkl``):
  ``ffhq``, ``metfaces``, ``afhqdog``, ``afhqcat``, ``afhqwild``, ``brecahad``, ``cifar10``.
* StyleGAN3 (NVIDIA NGC, ``stylegan3-<t|r>-<dataset>-<res>x<res>.pkl``):
  ``sg3-<dataset>-<t|r>`` with dataset one of ``ffhq``, ``ffhqu``, ``ffhqu256``, ``metfaces``,
  ``metfacesu``, ``afhqv2`` (``-u`` = unaligned variants; ``ffhqu256`` = the 256² FFHQ-U model).

Aliases are case-insensitive. No checksums are recorded (the authors publish none), so
``Pretrained.sha256`` is ``None`` for every entry.
"""

from __future__ import annotations

import difflib
import os
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from clipstyle.io.cache import is_url
from clipstyle.errors import UsageError

__all__ = ["PRETRAINED", "Pretrained", "get_pretrained", "list_pretrained", "resolve_network"]

SG2_ADA_BASE = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"
SG3_BASE = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/"


@dataclass(frozen=True)
class Pretrained:
    """One published network.

    Attributes:
        alias: the short name users type (lower case).
        url: the authors' download URL (``https``, ends in ``.pkl``).
        family: ``"stylegan2"`` (stylegan2-ada-pytorch), ``"stylegan3-t"`` or ``"stylegan3-r"``.
        resolution: output image side in pixels.
        description: one line for ``clipstyle networks``.
        sha256: expected SHA-256 of the file, or ``None`` if unknown.
    """

    alias: str
    url: str
    family: str
    resolution: int
    description: str
    sha256: str | None = None


# (alias, file stem, resolution, description) for stylegan2-ada-pytorch's official pickles.
_SG2_ADA = (
    ("ffhq", "ffhq", 1024, "FFHQ faces"),
    ("metfaces", "metfaces", 1024, "MetFaces: faces in art (transfer from FFHQ)"),
    ("afhqdog", "afhqdog", 512, "AFHQ dogs"),
    ("afhqcat", "afhqcat", 512, "AFHQ cats"),
    ("afhqwild", "afhqwild", 512, "AFHQ wild animals"),
    ("brecahad", "brecahad", 512, "BreCaHAD histology (breast cancer tissue)"),
    ("cifar10", "cifar10", 32, "CIFAR-10, class-conditional (c_dim=10)"),
)

# (alias dataset, file dataset, resolution, description) for StyleGAN3; each comes as T and R.
_SG3 = (
    ("ffhq", "ffhq", 1024, "FFHQ faces, aligned"),
    ("ffhqu", "ffhqu", 1024, "FFHQ-U faces, unaligned"),
    ("ffhqu256", "ffhqu", 256, "FFHQ-U faces, unaligned"),
    ("metfaces", "metfaces", 1024, "MetFaces, aligned"),
    ("metfacesu", "metfacesu", 1024, "MetFaces-U, unaligned"),
    ("afhqv2", "afhqv2", 512, "AFHQv2 animal faces (cats, dogs, wild)"),
)

_SG3_CONFIG_NAME = {"t": "translation-equivariant", "r": "rotation-equivariant"}


def _build() -> Mapping[str, Pretrained]:
    entries: dict[str, Pretrained] = {}
    for alias, stem, res, desc in _SG2_ADA:
        text = f"StyleGAN2-ADA {desc}, {res}²"
        entries[alias] = Pretrained(alias, f"{SG2_ADA_BASE}{stem}.pkl", "stylegan2", res, text)
    for config in ("t", "r"):
        for dataset, file_dataset, res, desc in _SG3:
            alias = f"sg3-{dataset}-{config}"
            url = f"{SG3_BASE}stylegan3-{config}-{file_dataset}-{res}x{res}.pkl"
            text = f"StyleGAN3-{config.upper()} ({_SG3_CONFIG_NAME[config]}) {desc}, {res}²"
            entries[alias] = Pretrained(alias, url, f"stylegan3-{config}", res, text)
    return types.MappingProxyType(entries)


#: alias → :class:`Pretrained`; read-only.
PRETRAINED: Mapping[str, Pretrained] = _build()


def list_pretrained() -> list[Pretrained]:
    """All pretrained entries, StyleGAN2-ADA first, then StyleGAN3-T, then StyleGAN3-R, in table order."""
    order = {"stylegan2": 0, "stylegan3-t": 1, "stylegan3-r": 2}
    return sorted(PRETRAINED.values(), key=lambda p: order.get(p.family, 9))


def get_pretrained(alias: str) -> Pretrained | None:
    """The entry for ``alias`` (case-insensitive, surrounding spaces ignored), or ``None``."""
    return PRETRAINED.get(alias.strip().lower())


def _looks_like_path(source: str) -> bool:
    """Contains a folder separator, a ``~``, or a file extension: the user meant a file."""
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return any(s in source for s in seps) or source.startswith("~") or bool(Path(source).suffix)


def resolve_network(source: str) -> tuple[str, str]:
    """Map a ``--network`` value to ``(url_or_path, display)``.

    Resolution order:

    1. a URL (``scheme://…``) passes through: ``(url, url)``;
    2. a pretrained alias (case-insensitive) becomes its URL: ``(url, alias)``;
       an alias always wins over a same-named file in the current folder (write ``./ffhq`` for the file);
    3. an existing path, or anything that looks like a path (has a separator, ``~`` or an
       extension), passes through: ``(source, source)`` — whether it exists is checked later by
       :func:`clipstyle.io.cache.fetch`.

    Args:
        source: what the user typed.

    Returns:
        ``(url_or_path, display)``: the first goes to :func:`clipstyle.io.cache.fetch`, the second is
        a short name for logs and ``run.json``.

    Raises:
        ValueError: ``source`` is empty, or a bare word that is neither an alias nor an existing
            file. The message is one line listing every alias (with a "did you mean" when close).
    """
    text = source.strip()
    if not text:
        raise UsageError("empty --network; give a pretrained alias, a URL or a path to a network file")
    if is_url(text):
        return text, text
    entry = get_pretrained(text)
    if entry is not None:
        return entry.url, entry.alias
    if Path(text).expanduser().exists() or _looks_like_path(text):
        return text, text
    close = difflib.get_close_matches(text.lower(), list(PRETRAINED), n=1, cutoff=0.6)
    suggestion = f" (did you mean {close[0]!r}?)" if close else ""
    raise UsageError(
        f"unknown network {text!r}: not a file, a URL or a pretrained alias{suggestion}; "
        f"aliases: {', '.join(PRETRAINED)}"
    )
