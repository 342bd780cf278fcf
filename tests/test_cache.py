"""Download cache (clipstyle.io.cache) and pretrained aliases (clipstyle.generator.registry). Offline only."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import socket
import threading
import time
from pathlib import Path

import pytest

from clipstyle.generator.registry import (
    PRETRAINED,
    Pretrained,
    get_pretrained,
    list_pretrained,
    resolve_network,
)
from clipstyle.io import cache
from clipstyle.io.cache import DownloadError, cached_path_for, fetch

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB + a few bytes: several chunks


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("CLIPSTYLE_CACHE", str(root))
    return root


@pytest.fixture
def count_opens(monkeypatch):
    """Wrap cache._open_url and record every URL it opens."""
    calls: list[str] = []
    real = cache._open_url

    def counting(url, timeout, *rest):
        calls.append(url)
        return real(url, timeout, *rest)

    monkeypatch.setattr(cache, "_open_url", counting)
    return calls


def _leftovers(folder: Path) -> list[str]:
    """Anything in the cache folder that is not a finished file or its checksum sidecar."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".tmp", ".lock")) or p.name.startswith("."))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- local paths and file:// URLs


def test_local_path_is_returned_as_is(tmp_path, cache_env):
    src = tmp_path / "net.pkl"
    src.write_bytes(b"abc")
    before = src.stat()
    out = fetch(str(src))
    assert out == src
    assert src.stat().st_mtime_ns == before.st_mtime_ns and src.read_bytes() == b"abc"
    assert not cache_env.exists(), "a local file must not be copied into the cache"


def test_missing_local_path(tmp_path, cache_env):
    missing = tmp_path / "nope.pkl"
    with pytest.raises(DownloadError) as info:
        fetch(str(missing))
    assert str(info.value) == f"no such file: {missing}"
    assert isinstance(info.value, FileNotFoundError)


def test_file_url_is_downloaded_exactly_once(tmp_path, cache_env, count_opens):
    src = tmp_path / "weights.pkl"
    src.write_bytes(PAYLOAD)
    url = src.as_uri()
    first = fetch(url, progress=False)
    assert count_opens == [url]
    assert first.read_bytes() == PAYLOAD
    assert first.parent == cache_env / "downloads" and first.suffix == ".pkl" and first.name.startswith("weights-")
    assert first != src
    stat1 = first.stat()
    sidecar = first.with_name(first.name + ".sha256")
    assert sidecar.read_text().split()[0] == hashlib.sha256(PAYLOAD).hexdigest()

    src.write_bytes(b"changed upstream")  # a second call must not even look at the source
    second = fetch(url, progress=False)
    assert second == first and count_opens == [url]
    assert (second.stat().st_ino, second.stat().st_mtime_ns) == (stat1.st_ino, stat1.st_mtime_ns)
    assert second.read_bytes() == PAYLOAD
    assert src.read_bytes() == b"changed upstream"
    assert _leftovers(cache_env) == []


def test_explicit_cache_dir_and_subdir(tmp_path, cache_env):
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 10)
    out = fetch(src.as_uri(), cache_dir=tmp_path / "other", subdir="lpips", progress=False)
    assert out.parent == tmp_path / "other" / "lpips" and out.read_bytes() == b"x" * 10
    assert not cache_env.exists()


def test_same_basename_different_urls_do_not_collide(cache_env):
    a = cached_path_for("https://example.com/stylegan2/ffhq.pkl")
    b = cached_path_for("https://example.com/stylegan3/ffhq.pkl")
    assert a != b and a.suffix == b.suffix == ".pkl" and a.parent == cache_env / "downloads"
    assert cached_path_for("https://example.com/") .name.startswith("download-")


def test_sha256_match_and_mismatch(tmp_path, cache_env, count_opens):
    src = tmp_path / "w.pkl"
    src.write_bytes(PAYLOAD)
    good = hashlib.sha256(PAYLOAD).hexdigest()
    with pytest.raises(DownloadError) as info:
        fetch(src.as_uri(), sha256="0" * 64, progress=False)
    msg = str(info.value)
    assert "checksum mismatch" in msg and good in msg and src.as_uri() in msg and "\n" not in msg
    assert not cached_path_for(src.as_uri()).exists()
    assert sorted(p.name for p in (cache_env / "downloads").iterdir()) == [], "nothing may be left behind"
    out = fetch(src.as_uri(), sha256=good.upper(), progress=False)
    assert out.read_bytes() == PAYLOAD
    assert len(count_opens) == 2


def test_cached_file_with_other_checksum_is_downloaded_again(tmp_path, cache_env, count_opens):
    src = tmp_path / "w.pkl"
    src.write_bytes(b"version one")
    fetch(src.as_uri(), progress=False)
    src.write_bytes(b"version two")
    out = fetch(src.as_uri(), sha256=hashlib.sha256(b"version two").hexdigest(), progress=False)
    assert out.read_bytes() == b"version two" and len(count_opens) == 2


def test_missing_file_url(tmp_path, cache_env):
    url = (tmp_path / "gone.pkl").as_uri()
    with pytest.raises(DownloadError) as info:
        fetch(url, progress=False)
    msg = str(info.value)
    assert url in msg and "no such file" in msg and "--network PATH" in msg and "\n" not in msg
    assert _leftovers(cache_env) == []


def test_unsupported_scheme(cache_env):
    with pytest.raises(DownloadError, match="unsupported URL scheme 'ftp'"):
        fetch("ftp://example.com/x.pkl")


def test_custom_hint(tmp_path, cache_env):
    with pytest.raises(DownloadError) as info:
        fetch((tmp_path / "none.pth").as_uri(), hint="pass --lpips-weights PATH")
    assert str(info.value).endswith("pass --lpips-weights PATH") and "--network" not in str(info.value)


# --------------------------------------------------------------------------- http


def test_closed_port_gives_one_line_error(cache_env):
    url = f"http://127.0.0.1:{_closed_port()}/x.pkl"
    with pytest.raises(DownloadError) as info:
        fetch(url, progress=False, timeout=5)
    msg = str(info.value)
    assert url in msg and "--network" in msg and "\n" not in msg
    assert info.value.url == url
    assert _leftovers(cache_env) == [] and not cached_path_for(url).exists()


def test_discard_port_url_from_the_brief(cache_env):
    url = "http://127.0.0.1:9/x.pkl"
    with pytest.raises(DownloadError) as info:
        fetch(url, progress=False, timeout=2)
    assert url in str(info.value) and "--network" in str(info.value)


def test_server_that_never_answers_times_out(cache_env):
    with socket.socket() as listener:  # accepts TCP connections (backlog) but never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/slow.pkl"
        start = time.monotonic()
        with pytest.raises(DownloadError, match="timed out"):
            fetch(url, progress=False, timeout=0.5)
        assert time.monotonic() - start < 10
    assert _leftovers(cache_env) == []


class _Handler(http.server.BaseHTTPRequestHandler):
    requests: list[str]  # set per server below
    delay = 0.0

    def do_GET(self):  # noqa: N802
        self.requests.append(self.path)
        if self.delay:
            time.sleep(self.delay)
        if self.path == "/net.pkl":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            for i in range(0, len(PAYLOAD), 100_000):
                self.wfile.write(PAYLOAD[i : i + 100_000])
        elif self.path == "/short.pkl":  # promises 1000 bytes, sends 10, hangs up
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True
        else:
            self.send_error(404, "Not Found")

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def http_server():
    """A real HTTP server on 127.0.0.1 in a daemon thread; shut down after the test."""
    handler = type("Handler", (_Handler,), {"requests": [], "delay": 0.0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_http_download_streams_once_with_progress_line(http_server, cache_env, capsys):
    base, handler = http_server
    out = fetch(f"{base}/net.pkl", progress=True)
    assert out.read_bytes() == PAYLOAD
    assert fetch(f"{base}/net.pkl", progress=True) == out
    assert handler.requests == ["/net.pkl"]
    err = capsys.readouterr().err
    assert "downloading net.pkl" in err  # not a terminal under pytest: one plain line, no bar


def test_http_404(http_server, cache_env):
    base, _ = http_server
    with pytest.raises(DownloadError) as info:
        fetch(f"{base}/missing.pkl", progress=False)
    msg = str(info.value)
    assert "HTTP 404" in msg and f"{base}/missing.pkl" in msg and "--network" in msg and "\n" not in msg
    assert _leftovers(cache_env) == []


def test_http_truncated_transfer_leaves_nothing(http_server, cache_env):
    base, _ = http_server
    url = f"{base}/short.pkl"
    with pytest.raises(DownloadError, match="incomplete download|interrupted"):
        fetch(url, progress=False, timeout=5)
    assert not cached_path_for(url).exists()
    assert _leftovers(cache_env) == []


def test_concurrent_fetches_download_once(http_server, cache_env):
    base, handler = http_server
    handler.delay = 0.3
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker():
        try:
            results.append(fetch(f"{base}/net.pkl", progress=False, timeout=10))
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and len(results) == 3 and len(set(results)) == 1
    assert handler.requests == ["/net.pkl"], "the lock must serialise concurrent downloads"
    assert results[0].read_bytes() == PAYLOAD
    assert _leftovers(cache_env) == []


def test_cache_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPSTYLE_CACHE", str(tmp_path / "env"))
    assert cache.cache_root() == tmp_path / "env"
    assert cache.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("CLIPSTYLE_CACHE")
    assert "clipstyle" in str(cache.cache_root())


# --------------------------------------------------------------------------- registry


def test_every_alias_is_an_https_pickle():
    assert len(PRETRAINED) >= 7 + 12
    for alias, entry in PRETRAINED.items():
        assert entry.alias == alias == alias.lower()
        assert entry.url.startswith("https://") and entry.url.endswith(".pkl")
        assert entry.family in ("stylegan2", "stylegan3-t", "stylegan3-r")
        assert entry.resolution in (32, 256, 512, 1024)
        assert resolve_network(alias) == (entry.url, alias)


def test_known_urls():
    assert PRETRAINED["ffhq"].url == "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl"
    for name in ("metfaces", "afhqdog", "afhqcat", "afhqwild", "brecahad", "cifar10"):
        assert PRETRAINED[name].url.endswith(f"/stylegan2-ada-pytorch/pretrained/{name}.pkl")
    sg3 = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/"
    assert PRETRAINED["sg3-ffhq-t"].url == sg3 + "stylegan3-t-ffhq-1024x1024.pkl"
    assert PRETRAINED["sg3-ffhqu256-r"].url == sg3 + "stylegan3-r-ffhqu-256x256.pkl"
    assert PRETRAINED["sg3-metfacesu-t"].url == sg3 + "stylegan3-t-metfacesu-1024x1024.pkl"
    assert PRETRAINED["sg3-afhqv2-r"].url == sg3 + "stylegan3-r-afhqv2-512x512.pkl"
    assert PRETRAINED["sg3-afhqv2-r"].resolution == 512
    sg3_files = {p.url.rsplit("/", 1)[1] for p in PRETRAINED.values() if p.family.startswith("stylegan3")}
    assert len(sg3_files) == 12


def test_registry_is_immutable():
    with pytest.raises(TypeError):
        PRETRAINED["mine"] = PRETRAINED["ffhq"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRETRAINED["ffhq"].url = "http://evil"  # type: ignore[misc]
    assert Pretrained("a", "https://x/a.pkl", "stylegan2", 64, "d").sha256 is None


def test_aliases_are_case_insensitive_and_listed():
    assert resolve_network(" FFHQ ")[1] == "ffhq"
    assert get_pretrained("Sg3-FFHQ-R") is PRETRAINED["sg3-ffhq-r"]
    listed = list_pretrained()
    assert {p.alias for p in listed} == set(PRETRAINED) and listed[0].family == "stylegan2"


def test_unknown_alias_lists_aliases(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as info:
        resolve_network("ffhqq")
    msg = str(info.value)
    assert "\n" not in msg and "did you mean 'ffhq'" in msg
    assert all(alias in msg for alias in PRETRAINED)
    with pytest.raises(ValueError, match="empty"):
        resolve_network("  ")


def test_paths_and_urls_pass_through(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mynet").write_bytes(b"x")
    assert resolve_network("mynet") == ("mynet", "mynet")  # an existing bare file name
    assert resolve_network("nets/x.pkl") == ("nets/x.pkl", "nets/x.pkl")  # existence is fetch's job
    assert resolve_network("model.pkl") == ("model.pkl", "model.pkl")
    url = "https://example.com/my.pkl"
    assert resolve_network(url) == (url, url)
    file_url = (tmp_path / "mynet").as_uri()
    assert resolve_network(file_url) == (file_url, file_url)
    assert fetch(resolve_network("mynet")[0]) == Path("mynet")
