"""The wheel ships what the code reads: the top-level prompts/*.toml as the data package clipstyle.prompts."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_the_top_level_recipes(tmp_path):
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "tests", "out", "*.egg-info", "build", "dist",
                                                              "__pycache__", ".venv", "docs"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("clipstyle-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (ROOT / "prompts").glob("*.toml")}
    assert shipped >= {"faces.toml", "templates.toml"}
    assert {f"clipstyle/prompts/{n}" for n in shipped} <= names
    assert "clipstyle/pipelines/text.py" in names
    assert any(n.startswith("clipstyle/kernels/") and n.endswith(".cu") for n in names)
