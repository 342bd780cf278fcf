"""Downloads that cannot lie: size cap, total time limit, Content-Length, early ends, leftovers, quarantine."""

from __future__ import annotations

import http.server
import os
import threading
import time
from pathlib import Path

import pytest

from clipstyle.generator import CheckpointError, CorruptPickleError, load_generator
from clipstyle.io import cache
from clipstyle.io.cache import DownloadError, cached_path_for, fetch

from ._fixtures import fixture_path


def _leftovers(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".tmp", ".lock")) or p.name.startswith("."))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"x" * 300_000
        if self.path == "/big-announced":  # Content-Length over the cap: refused before reading
            self.send_response(200)
            self.send_header("Content-Length", str(10 << 30))
            self.end_headers()
        elif self.path == "/big-unannounced":  # no Content-Length, more bytes than the cap
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
        elif self.path == "/bad-length":
            self.send_response(200)
            self.send_header("Content-Length", "12abc")
            self.end_headers()
            self.close_connection = True
        elif self.path == "/chunked-cut":  # chunked transfer that ends early (no Content-Length)
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"100000\r\n" + b"y" * 1000)
            self.wfile.flush()
            self.close_connection = True
        elif self.path == "/drip":  # a byte at a time, each read well inside the per-read timeout
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(40):
                try:
                    self.wfile.write(b"z")
                    self.wfile.flush()
                except OSError:
                    break
                time.sleep(0.1)
            self.close_connection = True
        else:
            self.send_error(404, "Not Found")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("CLIPSTYLE_CACHE", str(root))
    return root


@pytest.mark.parametrize("path, kwargs, message", [
    ("/big-announced", {}, "over the 8589934592-byte download limit"),
    ("/big-unannounced", {"max_bytes": 100_000}, "more than the 100000-byte download limit"),
    ("/bad-length", {}, "invalid Content-Length"),
    ("/chunked-cut", {}, "interrupted"),
    ("/drip", {"time_limit": 0.5}, "took longer than"),
])
def test_lying_servers_are_never_cached(server, cache_env, path, kwargs, message):
    url = server + path
    start = time.monotonic()
    with pytest.raises(DownloadError, match=message) as info:
        fetch(url, progress=False, timeout=5, **kwargs)
    assert time.monotonic() - start < 4
    assert "\n" not in str(info.value)
    assert not cached_path_for(url).exists()
    assert _leftovers(cache_env) == []


def test_size_cap_from_environment(server, cache_env, monkeypatch):
    monkeypatch.setenv("CLIPSTYLE_MAX_DOWNLOAD_BYTES", "1000")
    with pytest.raises(DownloadError, match="1000-byte download limit"):
        fetch(server + "/big-unannounced", progress=False)


def test_leftovers_of_a_killed_download_are_swept(tmp_path, cache_env):
    src = tmp_path / "net.bin"
    src.write_bytes(b"weights" * 100)
    url = src.as_uri()
    dest = cached_path_for(url)
    dest.parent.mkdir(parents=True)
    # what SIGKILL during a download leaves: the temp file and the (unheld) lock file
    (dest.parent / f".{dest.name}.abc123.tmp").write_bytes(b"partial")
    (dest.parent / f"{dest.name}.lock").write_bytes(b"")
    (dest.parent / ".other.pkl-0123456789.pkl.zz9.tmp").write_bytes(b"partial")  # another URL, lock not held
    assert fetch(url, progress=False).read_bytes() == b"weights" * 100
    assert _leftovers(cache_env) == []


def test_a_held_lock_protects_its_temp_file(tmp_path, cache_env):
    import fcntl

    src = tmp_path / "a.bin"
    src.write_bytes(b"a")
    dest = cached_path_for(src.as_uri())
    dest.parent.mkdir(parents=True)
    busy_lock = dest.parent / "busy.pkl.lock"
    busy_tmp = dest.parent / ".busy.pkl.qq1.tmp"
    busy_tmp.write_bytes(b"in progress")
    fd = os.open(busy_lock, os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        fetch(src.as_uri(), progress=False)
        assert busy_tmp.exists() and busy_lock.exists()  # a live download elsewhere is left alone
    finally:
        os.close(fd)


def test_cached_file_that_fails_to_load_is_quarantined(tmp_path, cache_env):
    data = fixture_path("sg2_skip_64.pkl").read_bytes()
    src = tmp_path / "snap.pkl"
    src.write_bytes(data[: len(data) // 3])  # what a cut download without Content-Length looks like
    url = src.as_uri()
    with pytest.raises((CorruptPickleError, CheckpointError)) as info:
        load_generator(url, progress=False)
    msg = str(info.value)
    assert "snap" in msg and "moved to" in msg and "downloads it again" in msg and "\n" not in msg
    assert not cached_path_for(url).exists()
    assert len(list((cache_env / "quarantine").iterdir())) == 1
    src.write_bytes(data)  # the next run downloads it again and loads it
    G = load_generator(url, progress=False)
    assert G.img_resolution == 64


def test_total_time_limit_default_is_finite():
    assert 0 < cache.TOTAL_TIME_LIMIT < 24 * 3600 and cache.MAX_DOWNLOAD_BYTES > 1 << 30


# ---- deadlines that hold: connection, status line, headers and chunk framing, not only body reads ----
class _DripHandler(http.server.BaseHTTPRequestHandler):
    """Answers one byte at a time, each well inside the per-read timeout, in the part of the response the
    path names: the status line, a header line, or a chunk-size line of a chunked body."""

    protocol_version = "HTTP/1.1"

    def _drip(self, data: bytes, pause: float = 0.05) -> None:
        for b in data:
            try:
                self.wfile.write(bytes([b]))
                self.wfile.flush()
            except OSError:
                return
            time.sleep(pause)

    def do_GET(self):
        if self.path.startswith("/drip-status"):
            self._drip(b"HTTP/1.1 200 OK" + b" " * 400 + b"\r\n")
        elif self.path.startswith("/drip-header"):
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            self._drip(b"X-Slow: " + b"a" * 400 + b"\r\n")
        elif self.path.startswith("/drip-chunk-size"):
            self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nq\r\n")
            self._drip(b"0" * 400 + b"1\r\n")
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def drip_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DripHandler)  # 127.0.0.1 only
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.mark.parametrize("path", ["/drip-status", "/drip-header", "/drip-chunk-size"])
def test_the_time_limit_covers_headers_and_chunk_framing(drip_server, cache_env, path):
    url = drip_server + path + "/net.pkl"
    start = time.monotonic()
    with pytest.raises(DownloadError, match="took longer than 0.6 s") as info:
        fetch(url, progress=False, time_limit=0.6, timeout=5)
    assert time.monotonic() - start < 3.0, "cut off at the deadline, not after the server gives up"
    assert "\n" not in str(info.value)
    assert not cached_path_for(url).exists() and _leftovers(cache_env) == []


def test_fetch_with_sha256_hashes_the_bytes_not_the_sidecar(tmp_path, cache_env):
    import hashlib

    src = tmp_path / "w.pkl"
    src.write_bytes(b"the real weights")
    good = hashlib.sha256(b"the real weights").hexdigest()
    cached = fetch(src.as_uri(), sha256=good, progress=False)
    cached.write_bytes(b"tampered in the cache")  # the sidecar still says `good`
    again = fetch(src.as_uri(), sha256=good, progress=False)
    assert again.read_bytes() == b"the real weights"


def test_file_url_copies_keep_the_source_mode_or_tighter(tmp_path, cache_env):
    src = tmp_path / "secret.pkl"
    src.write_bytes(b"owner only")
    os.chmod(src, 0o600)
    cached = fetch(src.as_uri(), progress=False)
    assert cached.stat().st_mode & 0o077 == 0
