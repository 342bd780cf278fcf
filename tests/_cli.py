"""Running the real ``clipstyle`` entry point in-process from tests."""

from __future__ import annotations

from pathlib import Path

from clipstyle.cli import main

TINY_CLIP = str(Path(__file__).parent / "data" / "tiny_clip.json")


def run_cli(args: list, capsys) -> tuple[int, str, str]:
    """Run ``clipstyle ARGS`` in-process → (exit code, stdout, stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err
