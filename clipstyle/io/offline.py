"""Is the network there? One quick probe per host, so offline runs fail in a second, not after minutes of retries.

Every download (networks through :func:`clipstyle.io.cache.fetch`, LPIPS weights, CLIP weights through
open_clip/huggingface_hub, and any weights a new feature adds) asks :func:`reachable` first. Offline, the
caller raises its own one-line error naming the file and the option that takes a local copy.

Environment:

* ``CLIPSTYLE_OFFLINE=1`` (or huggingface's ``HF_HUB_OFFLINE=1``): offline, no probe at all;
* ``CLIPSTYLE_OFFLINE=0``: assume online, no probe (for proxies that block raw connections).

The probe resolves the host and opens a TCP connection to it in a daemon thread, waiting at most
:data:`PROBE_TIMEOUT` seconds in total (name resolution included, which a plain socket timeout does not
bound). Its answer is remembered for the process (``functools.lru_cache``; :func:`forget` clears it).
This module imports nothing of ours.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import urllib.parse

from clipstyle.errors import UserRuntimeError

__all__ = ["PROBE_TIMEOUT", "OfflineError", "forget", "offline_forced", "offline_reason", "reachable"]

#: Seconds the probe waits for name resolution plus the TCP connection.
PROBE_TIMEOUT = 3.0

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class OfflineError(UserRuntimeError, ConnectionError):
    """Weights must be downloaded but the network is not reachable. ``str()`` is one line saying what to do."""


def offline_forced() -> bool | None:
    """True: offline by the environment; False: online by the environment; None: probe."""
    own = os.environ.get("CLIPSTYLE_OFFLINE", "").strip().lower()
    if own in _TRUE:
        return True
    if own in _FALSE:
        return False
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return True
    return None


def _host_port(url: str) -> tuple[str, int] | None:
    parts = urllib.parse.urlparse(url if "://" in url else f"https://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


@functools.lru_cache(maxsize=64)
def _probe(host: str, port: int, timeout: float) -> bool:
    outcome: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(True)
        except OSError:
            outcome.append(False)

    worker = threading.Thread(target=connect, name=f"clipstyle-probe-{host}", daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(outcome and outcome[0])


def reachable(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether ``url``'s host answers a TCP connection (``file://`` and local paths: always True).

    Args:
        url: an ``http(s)://`` URL or a bare host name.
        timeout: seconds to wait in total for the first probe of this host.
    """
    target = _host_port(url)
    if target is None:
        return True
    forced = offline_forced()
    if forced is not None:
        return not forced
    return _probe(target[0], target[1], float(timeout))


def offline_reason(url: str) -> str:
    """The one-line reason for an offline error: which host is unreachable and why we think so."""
    target = _host_port(url)
    host = target[0] if target else url
    if offline_forced():
        return f"offline (CLIPSTYLE_OFFLINE or HF_HUB_OFFLINE is set), cannot reach {host}"
    return f"offline: no network, {host} cannot be reached"


def forget() -> None:
    """Forget the remembered probe answers (e.g. after the network came back)."""
    _probe.cache_clear()
