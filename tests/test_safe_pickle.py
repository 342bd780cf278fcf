"""The restricted unpickler refuses anything off its allow-list, and no payload ever runs."""

from __future__ import annotations

import os
import pickle
import sys
import types
from pathlib import Path

import pytest

from clipstyle.generator import (
    CheckpointError,
    CorruptPickleError,
    UnsafePickleError,
    read_generator_file,
)
from clipstyle.generator.formats.safe_pickle import PersistentObject, safe_load_pickle

from ._fixtures import fixture_path


class _Payload:
    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def test_os_system_payload_is_refused_and_never_runs(tmp_path):
    sentinel = tmp_path / "pwned"
    data = pickle.dumps({"G_ema": _Payload(sentinel)}, protocol=3)
    with pytest.raises(UnsafePickleError, match=r"(posix|os)\.system"):
        safe_load_pickle(data)
    assert not sentinel.exists()


def test_payload_inside_a_network_file_is_refused(tmp_path):
    sentinel = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Payload(sentinel)}, protocol=4))
    with pytest.raises(UnsafePickleError):
        read_generator_file(path)
    assert not sentinel.exists()


def test_any_unknown_global_is_refused():
    data = pickle.dumps(types.SimpleNamespace(a=1))
    with pytest.raises(UnsafePickleError, match="types.SimpleNamespace"):
        safe_load_pickle(data)


def _persistent_pickle(meta: dict) -> bytes:
    """Bytes of ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` as NVIDIA's files encode it."""
    mod = types.ModuleType("torch_utils.persistence")
    pkg = types.ModuleType("torch_utils")

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - never called
        raise AssertionError

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mod._reconstruct_persistent_obj = _reconstruct_persistent_obj

    class Obj:
        def __reduce__(self):
            return (_reconstruct_persistent_obj, (meta,))

    saved = {k: sys.modules.get(k) for k in ("torch_utils", "torch_utils.persistence")}
    sys.modules.update({"torch_utils": pkg, "torch_utils.persistence": mod})
    try:
        return pickle.dumps(Obj(), protocol=4)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def test_embedded_module_source_is_never_executed(tmp_path):
    sentinel = tmp_path / "pwned"
    src = f"import os\nos.system('touch {sentinel}')\n"
    meta = {"type": "class", "version": 6, "module_src": src, "class_name": "Generator",
            "state": {"_parameters": {}, "_buffers": {}, "_modules": {}, "z_dim": 4}}
    obj = safe_load_pickle(_persistent_pickle(meta))
    assert isinstance(obj, PersistentObject) and obj.class_name == "Generator" and obj.attr("z_dim") == 4
    assert not sentinel.exists()
    path = tmp_path / "fake.pkl"
    path.write_bytes(_persistent_pickle(meta))
    with pytest.raises(CheckpointError, match="no mapping/synthesis"):
        read_generator_file(path)
    assert not sentinel.exists()


def test_truncated_snapshot_gives_clear_error(tmp_path):
    data = fixture_path("sg2_skip_64.pkl").read_bytes()
    for cut in (len(data) // 2, 100):
        path = tmp_path / f"cut{cut}.pkl"
        path.write_bytes(data[:cut])
        with pytest.raises(CorruptPickleError, match="truncated or corrupt"):
            read_generator_file(path)


def test_unknown_file_lists_supported_formats(tmp_path):
    path = tmp_path / "notes.pkl"
    path.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match="not a checkpoint clipstyle can read.*supported"):
        read_generator_file(path)


def test_pickle_of_something_else(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(CheckpointError, match="holds a list"):
        read_generator_file(path)


def test_fixture_snapshot_objects_are_inert_standins():
    obj = safe_load_pickle(fixture_path("sg2_skip_64.pkl").read_bytes())
    assert set(obj) == {"training_set_kwargs", "G", "D", "G_ema", "augment_pipe"}
    assert isinstance(obj["G_ema"], PersistentObject)
    assert obj["G_ema"].state_dict()["mapping.w_avg"].shape == (64,)
