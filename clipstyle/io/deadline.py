"""HTTP(S) connections whose whole exchange ends by a deadline: connecting, the status line, every header
line, chunk framing and the body.

``urllib`` bounds each *receive* by the socket timeout, not the exchange: http.client reads the status line, each
header line and each chunk-size line through ``readline``, one receive at a time, so a server dripping one byte
per receive (each well inside the timeout) holds the process forever. Here every receive and send first checks the
deadline and sets the socket timeout to ``min(timeout, time left)``. This module imports nothing of ours.
"""

from __future__ import annotations

import http.client
import io
import socket
import time
import urllib.request
from typing import IO, Any

__all__ = ["DeadlinePassed", "open_with_deadline"]


class DeadlinePassed(Exception):
    """The transfer's deadline passed (raised by a read, a send or a connect)."""


class _Deadline:
    """The moment (``time.monotonic()``) a whole transfer must end by; :meth:`left` raises past it."""

    def __init__(self, at: float) -> None:
        self.at = at

    def left(self) -> float:
        remaining = self.at - time.monotonic()
        if remaining <= 0:
            raise DeadlinePassed()
        return remaining


class _DeadlineRaw(io.RawIOBase):
    """The raw stream ``makefile`` returns: every read goes through :meth:`_DeadlineSocket.recv_into`."""

    def __init__(self, sock: _DeadlineSocket) -> None:
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        return self._sock.recv_into(b)

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._sock.release_file()


class _DeadlineSocket:
    """A connected socket whose every receive and send waits at most until the transfer's deadline.

    http.client reads the status line, each header line and each chunk-size line through ``readline``, a
    receive at a time; the socket ``timeout`` alone bounds only one receive, so a server dripping one byte
    per receive could hold the process forever. Here each receive first checks the deadline and sets the
    socket timeout to ``min(timeout, time left)``.
    """

    def __init__(self, sock: socket.socket, deadline: _Deadline, timeout: float) -> None:
        self._sock, self._deadline, self._timeout = sock, deadline, timeout

    def _arm(self) -> None:
        self._sock.settimeout(max(min(self._timeout, self._deadline.left()), 0.001))

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._arm()
        return self._sock.recv_into(buffer, nbytes, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._arm()
        return self._sock.recv(bufsize, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._arm()
        self._sock.sendall(data, flags)

    def makefile(self, mode: str = "rb", buffering: int | None = None, **_: Any) -> IO[bytes]:
        if "r" not in mode or "w" in mode:
            raise ValueError("only reading is supported")
        self._sock._io_refs += 1  # like socket.makefile: closing the connection waits for this reader
        return io.BufferedReader(_DeadlineRaw(self), 64 * 1024)

    def release_file(self) -> None:
        self._sock._decref_socketios()

    def __getattr__(self, name: str) -> Any:  # close, fileno, setsockopt … of the real socket
        return getattr(self._sock, name)


def _deadline_connection(base: type, deadline: _Deadline) -> type:
    """An ``http.client`` connection class whose connection (TCP, and TLS for HTTPS) and every later read
    end by ``deadline``."""

    class Connection(base):  # type: ignore[misc, valid-type]
        def connect(self) -> None:
            self.timeout = max(min(float(self.timeout or 30.0), deadline.left()), 0.001)
            super().connect()
            deadline.left()
            self.sock = _DeadlineSocket(self.sock, deadline, float(self.timeout))

    return Connection


def open_with_deadline(request: urllib.request.Request, timeout: float, deadline: float) -> Any:
    """``urllib``'s ``open`` of ``request`` with connections that end by ``deadline`` (``time.monotonic()``).

    Args:
        request: the request; timeout: the per-receive socket timeout (seconds).

    Returns:
        The response (its reads, chunked or not, end by the deadline too).

    Raises:
        DeadlinePassed: past the deadline; whatever ``urllib`` raises otherwise.
    """
    limit = _Deadline(deadline)
    http_conn = _deadline_connection(http.client.HTTPConnection, limit)
    https_conn = _deadline_connection(http.client.HTTPSConnection, limit)

    class HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req: Any) -> Any:
            return self.do_open(http_conn, req)

    class HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: Any) -> Any:
            return self.do_open(https_conn, req, context=self._context)

    opener = urllib.request.build_opener(HTTPHandler(), HTTPSHandler())
    return opener.open(request, timeout=max(min(timeout, limit.left()), 0.001))
