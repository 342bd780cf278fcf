"""The UI shared with a network: probed over HTTP (gradio_client and raw requests) on 127.0.0.1.

Nothing a browser sends names a server file or a URL (typed paths, ``@path`` prompts, crafted file payloads),
hostile uploads end in one line, the operator's caps hold, the login holds, and after every probe the server
still answers ``GET /config`` within a few seconds.
"""

from __future__ import annotations

import http.server
import pickle
import struct
import threading
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from ._ui import served_ui, tiny_models

SECRET = "clipstyle-secret-6d1f"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("gradio_client")
    from gradio_client import Client

    from clipstyle.ui.config import Limits

    root = tmp_path_factory.mktemp("sec")
    (root / "secret.txt").write_text(SECRET)
    limits = Limits(max_steps=20, max_frames=20, max_batch=2, max_resolution=256, max_seconds=60, max_upload_mb=1)
    with tiny_models(root / "models") as models, \
            served_ui(root / "out", models=models, limits=limits) as (url, demo):
        yield Client(url, verbose=False), url, root


@pytest.fixture()
def web_server():
    """A local HTTP server that counts requests (an internal service the UI must never be made to fetch)."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(SECRET.encode())

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", hits
    srv.shutdown()


def alive(url: str) -> None:
    """The server answers ``GET /config`` within 5 s."""
    r = httpx.get(url + "config", timeout=5)
    assert r.status_code == 200 and "components" in r.text


def one_line_error(client, *args, api_name: str) -> str:
    """Call an endpoint that must fail; return its message after checking it is one line without secrets."""
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as err:
        client.predict(*args, api_name=api_name)
    text = str(err.value)
    assert "\n" not in text.strip() and SECRET not in text and "Traceback" not in text
    assert len(text) <= 400
    return text


def text_args(prompt="a face", steps=2, batch=1, upload=None, choice=""):
    return [prompt, steps, -1, [], -1, [], "", batch, upload, choice]


def photo_args(upload=None, choice="", project_steps=2):
    return [upload, choice, False, "a face", 2, project_steps, "w", "none", False, False, 2, False, 0.1, 0]


@pytest.mark.parametrize("where", ["/etc/hostname", "secret.txt", "../secret.txt", "file:///etc/hostname"])
def test_typed_paths_name_nothing(server, where):
    client, url, root = server
    target = str(root / where) if where.endswith("secret.txt") and not where.startswith("..") else where
    assert "not one this server offers" in one_line_error(client, target, "16", 0, 1, api_name="/blend")
    assert "neither seeds nor a latent file" in one_line_error(client, f"1,{target}", 2, "lerp", False, [],
                                                               api_name="/interpolate")
    assert "not one this server offers" in one_line_error(client, *photo_args(choice=target), api_name="/photo_project")
    assert "not one this server offers" in one_line_error(client, *text_args(choice=target),
                                                          api_name="/text_generate")
    alive(url)


def test_an_at_path_prompt_reads_no_server_file(server):
    client, url, root = server
    for prompt in ("@/etc/hostname", f"a face | @{root / 'secret.txt'}:0.5"):
        assert "cannot name server files" in one_line_error(client, *text_args(prompt), api_name="/text_generate")
        assert "cannot name server files" in one_line_error(client, prompt, 2, api_name="/text_to_image")
    alive(url)


def test_urls_are_never_fetched(server, web_server):
    client, url, _ = server
    base, hits = web_server
    one_line_error(client, f"{base}/net.pkl", "16", 0, 1, api_name="/blend")
    one_line_error(client, f"1,{base}/k.npz", 2, "lerp", False, [], api_name="/interpolate")
    one_line_error(client, *photo_args(choice=f"{base}/me.png"), api_name="/photo_project")
    one_line_error(client, *text_args(f"@{base}/p.png"), api_name="/text_generate")
    assert hits == []
    alive(url)


def test_a_crafted_file_payload_cannot_point_at_a_server_path(server):
    """Raw HTTP: a FileData whose path is a server file (never uploaded) is refused by the server."""
    _, url, root = server
    payload = {"data": [{"path": str(root / "secret.txt"), "meta": {"_type": "gradio.FileData"}}, "", False,
                        "a face", 2, 2, "w", "none", False, False, 2, False, 0.1, 0]}
    r = httpx.post(url + "gradio_api/call/photo_project", json=payload, timeout=10)
    assert r.status_code == 200, r.text
    event = r.json()["event_id"]
    body = httpx.get(url + f"gradio_api/call/photo_project/{event}", timeout=30).text
    assert "event: error" in body and SECRET not in body
    alive(url)


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width × height`` pixels but carries a tiny (truncated) image stream."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + \
        chunk(b"IEND", b"")


def test_hostile_pictures_are_one_line(server, tmp_path):
    from gradio_client import handle_file

    client, url, _ = server
    cases = {"bomb.png": png_header(30000, 30000), "big.png": png_header(5000, 4000),
             "fake.png": b"<html>not a picture</html>", "huge.png": b"\0" * (2 * 2**20)}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert "over the size limit" in one_line_error(client, *photo_args(handle_file(str(tmp_path / "bomb.png"))),
                                                   api_name="/photo_project")
    assert "limit of 256 pixels" in one_line_error(client, *photo_args(handle_file(str(tmp_path / "big.png"))),
                                                   api_name="/photo_project")
    assert "not a picture" in one_line_error(client, *text_args(upload=handle_file(str(tmp_path / "fake.png"))),
                                             api_name="/text_generate")
    with pytest.raises(Exception, match="(?i)too large|size|limit"):  # refused at Gradio's upload route
        client.predict(*photo_args(handle_file(str(tmp_path / "huge.png"))), api_name="/photo_project")
    alive(url)


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_hostile_latent_uploads_are_one_line_and_run_nothing(server, tmp_path):
    import torch
    from gradio_client import handle_file

    client, url, _ = server
    dag = ()
    for _ in range(90):  # a shared-tuple DAG: 1.6 KB on disk, 2**90 nodes when walked
        dag = (dag, dag)
    torch.save(dag, tmp_path / "dag.pt")
    marker = tmp_path / "ran"
    (tmp_path / "code.pt").write_bytes(pickle.dumps(_Marker(marker)))
    np.savez(tmp_path / "text.npz", ws=np.array(["a"] * 4))
    for name in ("dag.pt", "code.pt", "text.npz"):
        started = time.monotonic()
        text = one_line_error(client, f"1, {name}", 2, "lerp", False, [handle_file(str(tmp_path / name))],
                              api_name="/interpolate")
        assert time.monotonic() - started < 60 and name in text
        alive(url)
    assert not marker.exists()


def test_hash_bomb_upload_does_not_stop_other_requests(server, tmp_path):
    """While a hostile latent is being read, ``GET /config`` keeps answering."""
    import torch
    from gradio_client import handle_file

    client, url, _ = server
    dag = ()
    for _ in range(120):
        dag = (dag, dag)
    torch.save(dag, tmp_path / "bomb.pt")
    job = client.submit("1, bomb.pt", 2, "lerp", False, [handle_file(str(tmp_path / "bomb.pt"))],
                        api_name="/interpolate")
    for _ in range(5):
        alive(url)
        time.sleep(0.1)
    with pytest.raises(Exception):
        job.result(timeout=60)
    alive(url)


def test_caps_are_one_line(server):
    """Over a cap: one line (Gradio's slider range says it for the tab's sliders, ours names the option)."""
    import re

    client, url, _ = server
    over = re.compile(r"limit of 20 \(--max-steps\)|greater than maximum value 20")
    assert over.search(one_line_error(client, *text_args(steps=21), api_name="/text_generate"))
    assert "limit of 20 (--max-steps)" in one_line_error(client, "a face", 10**8, api_name="/text_to_image")
    assert re.search(r"--max-batch|maximum value 2\b", one_line_error(client, *text_args(batch=3),
                                                                      api_name="/text_generate"))
    assert "(--max-frames)" in one_line_error(client, "1,2,3", 15, "lerp", False, [], api_name="/interpolate")
    assert re.search(r"--max-steps|maximum value 20", one_line_error(client, *photo_args(project_steps=500),
                                                                    api_name="/photo_project"))
    alive(url)


def test_a_bug_shows_one_line_saying_so(server, monkeypatch):
    import clipstyle.pipelines.creative as creative

    client, url, _ = server

    def broken(*args, **kwargs):
        raise KeyError("internal detail")

    monkeypatch.setattr(creative, "mix_grid", broken)
    text = one_line_error(client, 1, 2, [0], api_name="/mix")
    assert "this is a bug in clipstyle" in text and "KeyError" in text  # the CLI's line; the traceback: server log
    alive(url)


def test_login_is_required_when_configured(tmp_path):
    pytest.importorskip("gradio_client")
    from gradio_client import Client

    from clipstyle.ui.config import Limits

    with tiny_models(tmp_path / "models") as models, \
            served_ui(tmp_path / "out", models=models, auth=[("ann", "s3cret")],
                      limits=Limits(max_seconds=2)) as (url, _):
        assert httpx.get(url + "config", timeout=5).status_code in (401, 403)
        with pytest.raises(Exception):
            Client(url, verbose=False)
        client = Client(url, auth=("ann", "s3cret"), verbose=False)
        status = client.predict("a face", 500, -1, [], -1, [], "", 1, None, "", api_name="/text_generate")[1]
        assert "by the time limit of 2 s (--max-seconds)" in status and "kept the best" in status


@pytest.mark.parametrize("args, message", [
    (["--host", "0.0.0.0"], "give --auth USER:PASS or --auth-file, or --no-auth"),
    (["--host", "0.0.0.0", "--auth", "nopassword"], "expected USER:PASS"),
    (["--auth", "ann:pw", "--no-auth"], "--no-auth contradicts"),
    (["--allow-dir", "/nonexistent/folder"], "not a folder"),
    (["--encoder", "/nonexistent/e4e.pt"], "/nonexistent/e4e.pt"),
])
def test_clipstyle_ui_refuses_unsafe_or_wrong_starts(args, message, capsys):
    pytest.importorskip("gradio")
    from ._cli import run_cli

    code, _, err = run_cli(["ui", "--device", "cpu", *args], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_auth_file_lines(tmp_path):
    from clipstyle.cli.ui import read_auth
    from clipstyle.errors import UsageError

    f = tmp_path / "users"
    f.write_text("# who may log in\nann:pw:with:colons\n\nbob:x\n")
    assert read_auth(["cy:z"], f) == [("cy", "z"), ("ann", "pw:with:colons"), ("bob", "x")]
    f.write_text("# nobody\n")
    with pytest.raises(UsageError, match="no USER:PASS line"):
        read_auth([], f)
