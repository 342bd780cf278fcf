"""keep_freed_memory (clipstyle.optimize.allocator): the glibc setting takes, in a child process (it is
process-wide), and only the console script's own process sets it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import ctypes, sys
    from clipstyle.optimize.allocator import keep_freed_memory

    print(keep_freed_memory(), keep_freed_memory())  # idempotent
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_the_setting_takes_on_glibc_in_its_own_process():
    """(Its effect — fewer page faults, faster steps — is measured in benchmarks/, not timed here.)"""
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


def test_the_console_script_sets_it_and_in_process_calls_do_not(monkeypatch):
    import clipstyle.optimize.allocator as allocator
    from clipstyle.cli import main

    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    with pytest.raises(SystemExit):
        main(["--help"])  # an in-process call (tests, notebooks): the process is not ours to configure
    assert calls == []
    monkeypatch.setattr(sys, "argv", ["clipstyle", "--help"])
    with pytest.raises(SystemExit):
        main()
    assert calls == [1]
