"""The one rule for "which network renders this latent file" (every command that reads latents uses it).

A latent file is data, and data never chooses what is fetched. The network it records is used only when
it is a local file that exists or a built-in alias; a recorded URL (``http``, ``https``, ``file`` …) is
named in the message, never fetched or copied. In order:

1. ``network`` given by the user (``--network``): that, always (the user chose it, URLs included);
2. the pivotal-tuning generator the file names (``meta["generator"]``, a path relative to the file or
   absolute): used when that local file exists; when it is missing the command stops with one line
   suggesting ``--network`` (rendering with the untuned network instead would silently change the image);
3. the recorded network (``meta["network"]``): a built-in alias, or a local file that exists;
4. ``ffhq`` when the file records nothing (NVIDIA's ``projected_w.npz``, ``.npy``, torch tensors).

The same rule checks the network part of a recorded blend (``meta["blend"]`` ``NETWORK@RES[:SMOOTH]``):
:func:`blend_for_latents`.

This module imports no torch itself (reading the meta goes through :func:`clipstyle.latents.latent.read_latent_meta`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from clipstyle.latents.latent import LatentFileError

__all__ = ["NetworkSourceError", "blend_for_latents", "checked_recorded_network", "network_for_latents",
           "tuned_generator_path"]

#: The network used when neither the user nor the file names one.
DEFAULT_NETWORK = "ffhq"


class NetworkSourceError(LatentFileError):
    """A latent file names a network that cannot be used without the user saying so (one line, naming
    the file, what it records and the option to pass)."""


def _short(text: Any, limit: int = 120) -> str:
    s = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in str(text)[:limit])
    return s + ("…" if len(str(text)) > limit else "")


def _is_url(text: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]+://", text) is not None


def _is_alias(text: str) -> bool:
    from clipstyle.generator.registry import get_pretrained

    return get_pretrained(text) is not None


def _meta(path: Path, meta: dict | None) -> dict:
    if meta is not None:
        return meta
    from clipstyle.latents.latent import read_latent_meta

    return read_latent_meta(path)


def tuned_generator_path(path: str | Path, meta: dict | None = None) -> Path | None:
    """The pivotal-tuning generator a latent file names (``meta["generator"]``), or None when it names none.

    Raises:
        NetworkSourceError: it names a URL, or a file that does not exist (the message suggests ``--network``).
        LatentFileError: the latent file itself is missing or unreadable.
    """
    path = Path(path)
    name = _meta(path, meta).get("generator")
    if not name:
        return None
    name = str(name)
    if _is_url(name):
        raise NetworkSourceError(f"{path} names the tuned generator {_short(name)}, a URL: networks named by a data "
                                 f"file are never fetched; pass --network to choose the network yourself")
    tuned = Path(name) if Path(name).is_absolute() else path.parent / name
    if not tuned.is_file():
        raise NetworkSourceError(f"{path} names the tuned generator {_short(name)}, which is missing; pass --network "
                                 f"NETWORK to render it with another network")
    return tuned


def checked_recorded_network(source: str, path: str | Path, what: str = "network", option: str = "--network") -> str:
    """A network a data file records, if it may be used: a built-in alias or a local file that exists.

    Raises:
        NetworkSourceError: a URL, or a path that is not an existing file (one line, naming both and ``--network``).
    """
    text = str(source).strip()
    if _is_url(text):
        raise NetworkSourceError(f"{path} records the {what} {_short(text)}, a URL: networks named by a data file "
                                 f"are never fetched; if you trust it, pass it yourself with {option}")
    if _is_alias(text):
        return text
    if Path(text).expanduser().is_file():
        return text
    raise NetworkSourceError(f"{path} records the {what} {_short(text)}, which is neither a built-in alias nor a "
                             f"local file; pass {option}")


def network_for_latents(path: str | Path | None, network: str | None = None, meta: dict | None = None) -> str:
    """The network a latent file is rendered with (the module's rule). Returns a ``--network`` value. The file is
    read first, also when ``network`` is given, so a bad latent file is named before any network loads.

    Args:
        path: the latent file (``None``: no file, e.g. seeds: ``network`` or ``ffhq``).
        network: the user's ``--network`` (wins when given).
        meta: the file's meta when already read (else it is read here).

    Raises:
        NetworkSourceError: the file names a missing tuned generator, a URL, or a network that is neither an
            alias nor an existing local file.
        LatentFileError: the latent file is missing or unreadable.
    """
    if path is None:
        return str(network) if network else DEFAULT_NETWORK
    path = Path(path)
    meta = _meta(path, meta)  # read (and checked as a latent) first: a bad file is named before any network loads
    if network:
        return str(network)
    tuned = tuned_generator_path(path, meta)
    if tuned is not None:
        return str(tuned)
    recorded = meta.get("network")
    if recorded:
        return checked_recorded_network(str(recorded), path)
    return DEFAULT_NETWORK


def blend_for_latents(path: str | Path | None, blend: str | None = None, meta: dict | None = None) -> str | None:
    """The blend a latent file is rendered in: ``blend`` when given (``""``: explicitly none), else the
    recorded one (``meta["blend"]`` or ``meta["settings"]["blend"]``) with its network checked by the rule.

    Raises:
        NetworkSourceError: the recorded blend's network is a URL or not an alias/existing file.
    """
    if blend is not None:
        return blend or None
    if path is None:
        return None
    path = Path(path)
    meta = _meta(path, meta)
    settings = meta.get("settings") if isinstance(meta.get("settings"), dict) else {}
    recorded = meta.get("blend") or settings.get("blend")
    if not recorded:
        return None
    recorded = str(recorded)
    network = recorded.rsplit("@", 1)[0] if "@" in recorded else recorded
    checked_recorded_network(network, path, "blend network", "--blend NETWORK@RES (or --blend '' for none)")
    return recorded
