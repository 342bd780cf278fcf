"""Access to ``../shared/fixtures`` (reference checkpoints + outputs made by the original code).

Only parity tests (our readers and generators against the original code's outputs, and format facts of
those files) read them; they skip with a clear reason when the folder is absent (a user's clone). Workflow
tests run on the tiny models built in code (``tests/_tiny.py``, fixtures in ``tests/conftest.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def fixture_path(name: str) -> Path:
    """Path of a fixture file; skips the calling test when it is absent."""
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"{path} is absent: the reference fixtures ship beside the repo in ../shared/fixtures")
    return path


def reference(name: str) -> dict[str, np.ndarray]:
    """The arrays of a fixture's ``.npz`` (``sg2_skip_64`` → ``sg2_skip_64.npz``)."""
    with np.load(fixture_path(f"{name}.npz")) as data:
        return {k: data[k] for k in data.files}
