"""Issue 18: every door of the program refuses its class of hostile file with one line, exit 1 or 2, quickly,
in bounded memory, running nothing (the files come from :mod:`tests.hostile_doors`)."""

from __future__ import annotations

import http.server
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ._cli import run_cli
from .hostile_doors import MARKER, door_cases

CASE_SECONDS = 30.0  # generous for a loaded machine; a hang or a gigabyte allocation takes far longer
ROOT = Path(__file__).resolve().parents[1]


class _Counting(http.server.BaseHTTPRequestHandler):
    hits: list = []

    def do_GET(self):
        _Counting.hits.append(self.path)
        self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)  # 127.0.0.1 only
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def cases(tmp_path_factory, server):
    folder = tmp_path_factory.mktemp("doors")
    return {c.name: c for c in door_cases(folder, server)}


def _names():
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return [c.name for c in door_cases(Path(tmp))]


NAMES = _names()


def _check_line(case, code: int, err: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code in case.codes, (case.name, code, err[-2000:])
    assert lines and lines[-1].startswith("error: "), (case.name, err[-2000:])
    assert "Traceback" not in err and "internal error" not in err, (case.name, err[-2000:])
    for word in case.expect:
        assert word in lines[-1], (case.name, word, lines[-1])


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("name", NAMES)
def test_every_door_refuses_its_hostile_file_in_one_line(name, cases, capsys, monkeypatch, server):
    case = cases[name]
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CLIPSTYLE_OFFLINE", "1")
    before = _rss_mb()
    start = time.monotonic()
    code, _out, err = run_cli(list(case.argv), capsys)
    assert time.monotonic() - start < CASE_SECONDS, (name, err)
    _check_line(case, code, err)
    assert _rss_mb() - before < 1500, f"{name}: peak memory grew by {_rss_mb() - before:.0f} MB"
    assert not MARKER.exists(), f"{name} ran code"
    assert _Counting.hits == [], f"{name} fetched {_Counting.hits}"


_CHILD = """
import json, os, resource, sys
import torch  # noqa: F401  (its address space counts before the limit is set)
import clipstyle.cli
from tests import hostile_doors
vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (3 << 30), vm + (3 << 30)))  # 3 GB more, hard
os.environ["CLIPSTYLE_OFFLINE"] = "1"
results = {}
for case in hostile_doors.door_cases(sys.argv[1]):
    saved = dict(os.environ)
    os.environ.update(case.env)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(w, 2)
        try:
            clipstyle.cli.main(list(case.argv))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        sys.stderr.flush()
        os._exit(code)
    os.close(w)
    err = b""
    while chunk := os.read(r, 65536):
        err += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    os.environ.clear(); os.environ.update(saved)
    results[case.name] = [os.waitstatus_to_exitcode(status), err.decode(errors="replace")[-3000:]]
print("DOORS " + json.dumps(results))
"""


@pytest.mark.slow
def test_every_door_under_a_memory_cap(tmp_path):
    """All cases in a child whose address space is capped at 3 GB over torch (RLIMIT_AS): a real memory bound."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "CLIPSTYLE_DOORS_MARKER": str(MARKER)}
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "doors")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=len(NAMES) * CASE_SECONDS + 120)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("DOORS ")), None)
    assert line is not None, proc.stdout[-3000:] + proc.stderr[-3000:]
    import json

    results = json.loads(line[len("DOORS "):])
    cases = {c.name: c for c in door_cases(tmp_path / "again")}
    for name, (code, err) in results.items():
        _check_line(cases[name], code, err)
    assert not MARKER.exists()
