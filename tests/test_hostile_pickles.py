"""Hostile pickles built from raw opcodes in the test (no working payload is stored anywhere).

Each case is a construction a security review used against the old unpickler (real ``numpy.dtype`` /
``ndarray`` state through BUILD, a ``__getattr__`` stand-in answering ``append``, nested-tuple hash bombs,
module DAGs, zero-stride tensors, malformed streams): every one must end in one of our errors, quickly, with
the marker file never created.
"""

from __future__ import annotations

import pickle
import struct
import time

import pytest

from clipstyle.generator import (
    CheckpointError,
    CorruptPickleError,
    UnsafePickleError,
    read_generator_file,
)
from clipstyle.generator.formats.safe_pickle import PersistentObject, safe_load_pickle

from ._fixtures import fixture_path

OURS = (UnsafePickleError, CorruptPickleError, CheckpointError)


# ---- a tiny pickle assembler ----
def s(text: str) -> bytes:
    b = text.encode()
    return b"\x8c" + bytes([len(b)]) + b if len(b) < 256 else b"X" + struct.pack("<I", len(b)) + b


def by(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data


def i(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def g(module: str, name: str) -> bytes:
    return s(module) + s(name) + b"\x93"


def tup(*parts: bytes) -> bytes:
    return b"(" + b"".join(parts) + b"t"


def prog(body: bytes) -> bytes:
    return b"\x80\x04" + body + b"."


def marker_cmd(marker) -> bytes:
    return s(f"touch {marker}")


def _refused(data: bytes, errors=OURS) -> Exception:
    t0 = time.monotonic()
    with pytest.raises(errors) as info:
        safe_load_pickle(data)
    assert time.monotonic() - t0 < 5
    assert "\n" not in str(info.value)
    return info.value


# ---- the numpy chain ----
def test_forged_dtype_state_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    dtype = g("numpy", "dtype") + tup(s("f8"), b"\x89", b"\x88") + b"R"
    forged = tup(i(3), s("|"), b"N", tup(s("a"), s("b")), b"}", i(8), i(1), i(63))  # offsets, flags
    err = _refused(prog(dtype + forged + b"b"), UnsafePickleError)
    assert "dtype" in str(err)
    assert not marker.exists()


@pytest.mark.parametrize("code", ["O", "V8", "U4", "S4", "M8[s]", "|O", "object"])
def test_non_numeric_dtypes_are_refused(code):
    _refused(prog(g("numpy", "dtype") + tup(s(code), b"\x89", b"\x88") + b"R"), UnsafePickleError)


def test_reconstructed_array_with_list_items_at_forged_offsets_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    dtype = (g("numpy", "dtype") + tup(s("i8"), b"\x89", b"\x88") + b"R"
             + tup(i(3), s("<"), b"N", b"N", b"N", i(-1), i(-1), i(0)) + b"b")
    arr = g("numpy.core.multiarray", "_reconstruct") + tup(g("numpy", "ndarray"), tup(i(0)), b"C\x01b") + b"R"
    # the state's data is a list (items written at unchecked offsets by the real ndarray) holding a command
    state = tup(i(1), tup(i(2)), dtype, b"\x89", b"]" + b"(" + marker_cmd(marker) + i(0x41414141) + b"e")
    _refused(prog(arr + state + b"b"), UnsafePickleError)
    assert not marker.exists()


def test_array_subclass_and_wrong_byte_counts_are_refused():
    dtype = (g("numpy", "dtype") + tup(s("f4"), b"\x89", b"\x88") + b"R"
             + tup(i(3), s("<"), b"N", b"N", b"N", i(-1), i(-1), i(0)) + b"b")
    recon = g("numpy.core.multiarray", "_reconstruct")
    _refused(prog(recon + tup(g("numpy", "dtype"), tup(i(0)), b"C\x01b") + b"R"), UnsafePickleError)
    ok = recon + tup(g("numpy", "ndarray"), tup(i(0)), b"C\x01b") + b"R"
    for shape, nbytes in (((2, 2), 15), ((2, 2), 17), ((1 << 40, 1 << 40), 16)):
        state = tup(i(1), tup(*(b"\x8a\x08" + struct.pack("<q", d) for d in shape)), dtype, b"\x89", by(b"\0" * nbytes))
        _refused(prog(ok + state + b"b"), CorruptPickleError)
    good = prog(ok + tup(i(1), tup(i(2), i(2)), dtype, b"\x89", by(struct.pack("<4f", 1, 2, 3, 4))) + b"b")
    arr = safe_load_pickle(good)
    assert type(arr).__name__ == "ndarray" and arr.tolist() == [[1, 2], [3, 4]] and arr.flags.writeable


def test_getattr_standin_cannot_supply_append(tmp_path):
    """An EasyDict whose item is named ``append``/``extend``: APPENDS on it must not look it up."""
    marker = tmp_path / "pwned"
    ed = g("dnnlib.util", "EasyDict") + b")\x81"
    for name in ("append", "extend"):
        body = ed + b"(" + s(name) + g("builtins", "set") + b"u" + b"(" + marker_cmd(marker) + b"e"
        _refused(prog(body), UnsafePickleError)
    assert not marker.exists()
    obj = safe_load_pickle(prog(ed + b"(" + s("a") + i(1) + b"u"))
    assert obj == {"a": 1} and not hasattr(obj, "a")  # a plain dict: no attribute access


def test_build_on_anything_but_our_placeholders_is_refused():
    for target in (b"}", b"]", g("collections", "OrderedDict") + b")R", g("dnnlib.util", "EasyDict") + b")\x81"):
        _refused(prog(target + b"}" + s("__class__") + i(1) + b"s" + b"b"), UnsafePickleError)


def test_dunder_keys_through_build_are_refused():
    net = g("dnnlib.tflib.network", "Network") + b")\x81"
    _refused(prog(net + b"}(" + s("__class__") + i(1) + s("version") + i(4) + b"u" + b"b"), UnsafePickleError)
    meta = b"}(" + s("type") + s("class") + s("class_name") + s("G") + s("state") + b"}(" + s("__dict__") + b"}u" + b"u"
    _refused(prog(g("torch_utils.persistence", "_reconstruct_persistent_obj") + tup(meta) + b"R"), UnsafePickleError)


def test_unknown_globals_and_opcodes_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    _refused(prog(g("posix", "system") + tup(marker_cmd(marker)) + b"R"), UnsafePickleError)
    _refused(prog(b"cos\nsystem\n" + tup(marker_cmd(marker)) + b"R"), UnsafePickleError)
    _refused(b"(S'x'\nios\nsystem\n.", UnsafePickleError)  # protocol-0 INST
    assert not marker.exists()


# ---- budgets in the interpreter ----
def test_nested_tuple_hash_bomb_is_refused_at_once():
    bomb = b")" + b"\x94"  # t0 = ()
    for k in range(1, 60):  # 2^60 tuple hashes for the old unpickler; within the depth limit
        bomb += b"h" + bytes([k - 1]) + b"h" + bytes([k - 1]) + b"\x86\x94" if k < 256 else b""
    for wrap in (b"}" + bomb + i(1) + b"s", b"\x8f(" + bomb + b"\x90",
                 g("collections", "OrderedDict") + b")R" + bomb + i(1) + b"s",
                 g("builtins", "set") + b"(" + bomb + b"l\x85R"):
        err = _refused(prog(wrap), UnsafePickleError)
        assert "tuple" in str(err) or "non-plain" in str(err) or "expand" in str(err)


def test_deep_nesting_is_refused():
    _refused(prog(b"]" * 100_000 + b"a" * 99_999), CorruptPickleError)
    _refused(prog(b"(" * 20_000 + b"t" * 20_000), CorruptPickleError)


def test_containers_cannot_change_once_nested():
    """A cycle (a list appended into itself, or into a child) is refused rather than built."""
    _refused(prog(b"]\x94h\x00a"), UnsafePickleError)
    _refused(prog(b"]\x94]\x94h\x00a0h\x01a"), UnsafePickleError)  # L1 holds L0; then L1 into L0


def test_zero_stride_tensor_is_refused_before_allocating():
    # a one-float storage declared as a 10^5 x 10^5 tensor with zero strides (40 GB if cloned)
    storage = _legacy_storage(b"\0\0\x80\x3f")
    t = (g("torch._utils", "_rebuild_tensor_v2")
         + tup(g("torch.storage", "_load_from_bytes") + tup(by(storage)) + b"R", i(0),
               tup(i(100_000), i(100_000)), tup(i(0), i(0)), b"\x89", g("collections", "OrderedDict") + b")R") + b"R")
    err = _refused(prog(t), CorruptPickleError)
    assert "storage" in str(err)
    ok = (g("torch._utils", "_rebuild_tensor_v2")
          + tup(g("torch.storage", "_load_from_bytes") + tup(by(storage)) + b"R", i(0), tup(i(1)), tup(i(1)),
                b"\x89", g("collections", "OrderedDict") + b")R") + b"R")
    assert safe_load_pickle(prog(ok)).tolist() == [1.0]


def _legacy_storage(raw: bytes) -> bytes:
    """A legacy torch.save stream of one float storage of ``len(raw) // 4`` elements."""
    parts = [b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b".",
             b"\x80\x02M\xe9\x03.", b"\x80\x02}.",
             b"\x80\x02" + tup(s("storage"), b"ctorch\nFloatStorage\n", s("0"), s("cpu"), i(len(raw) // 4), b"N")
             + b"Q.", b"\x80\x02]" + s("0") + b"a."]
    return b"".join(parts) + struct.pack("<q", len(raw) // 4) + raw


def test_exponential_module_dag_is_walked_once():
    child = PersistentObject("Leaf", {"_parameters": {}, "_modules": {}})
    for _ in range(40):  # 2^40 paths if every path were walked
        child = PersistentObject("Node", {"_parameters": {}, "_modules": {"a": child, "b": child}})
    t0 = time.monotonic()
    with pytest.raises(CheckpointError, match="reuses"):
        child.state_dict()
    assert time.monotonic() - t0 < 1


@pytest.mark.parametrize("data", [
    b"\x80\x04\x8b\xff\xff\xff\x7f" + b"\0" * 5 + b".",  # LONG4 of 2 GB: the old OverflowError
    b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\x7f.",  # FRAME of 2^63
    b"\x80\x04j\xff\xff\xff\xff.",  # LONG_BINGET of an entry never stored
    b"\x80\x04X\xff\xff\xff\xff",  # BINUNICODE longer than the file
    b"\x80\x04X\x02\x00\x00\x00\xff\xfe.",  # invalid UTF-8
    b"\x80\x04(.", b"\x80\x04u.", b"\x80\x04N\x85\x85R.", b"\x80\x04.", b"", b"\x80\x09N.",
    b"\x80\x04\x8c\x04evil\x8c\x04name\x93.",
])
def test_malformed_streams_give_one_of_our_errors(data):
    _refused(data)


def test_fixture_snapshot_needs_only_plain_data():
    obj = safe_load_pickle(fixture_path("sg2_skip_64.pkl").read_bytes())
    seen, todo = set(), [obj]
    allowed = {"dict", "list", "tuple", "set", "str", "int", "float", "bool", "NoneType", "OrderedDict",
               "EasyDictStandIn", "PersistentObject", "Tensor", "Parameter", "ndarray", "float32", "float64", "int64"}
    while todo:
        o = todo.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        assert type(o).__name__ in allowed, type(o)
        if isinstance(o, PersistentObject):
            todo.append(o.state)
        elif isinstance(o, dict):
            todo.extend(o.values())
        elif isinstance(o, (list, tuple, set)):
            todo.extend(o)


def test_stock_pickle_of_a_numpy_object_array_is_refused(tmp_path):
    import numpy as np

    path = tmp_path / "objarr.pkl"
    path.write_bytes(pickle.dumps({"G_ema": np.array([1, "x"], dtype=object)}, protocol=4))
    with pytest.raises(UnsafePickleError):
        read_generator_file(path)


def _forged_chain(marker) -> bytes:
    """The review's chain in opcodes: a forged dtype, an ndarray reconstructed with list items, then BUILD."""
    dtype = (g("numpy", "dtype") + tup(s("O8"), b"\x89", b"\x88") + b"R"
             + tup(i(3), s("|"), b"N", b"N", b"N", i(8), i(8), i(63)) + b"b")
    arr = g("numpy.core.multiarray", "_reconstruct") + tup(g("numpy", "ndarray"), tup(i(0)), b"C\x01b") + b"R"
    return arr + tup(i(1), tup(i(1)), dtype, b"\x89", b"](" + marker_cmd(marker) + b"e") + b"b"


def test_attack_inside_a_genuine_snapshot_is_refused_by_every_entry_point(tmp_path, capsys):
    """The chain added as one more entry of the real sg2 snapshot dict (the file otherwise renders fine)."""
    from clipstyle.generator import load_generator

    from ._cli import run_cli

    marker = tmp_path / "pwned"
    data = fixture_path("sg2_skip_64.pkl").read_bytes()
    assert data.endswith(b".")
    evil = tmp_path / "snapshot.pkl"
    evil.write_bytes(data[:-1] + s("extra") + _forged_chain(marker) + b"s.")
    for load in (read_generator_file, load_generator, safe_load_pickle):
        with pytest.raises(UnsafePickleError, match="nothing from the file ran"):
            load(evil.read_bytes() if load is safe_load_pickle else evil)
    code, _out, err = run_cli(["info", evil], capsys)
    assert code == 1 and err.startswith("error: snapshot.pkl: ") and len(err.strip().splitlines()) == 1
    assert not marker.exists()
    clean = tmp_path / "clean.pkl"  # the same splice with a harmless value loads: the splice itself is valid
    clean.write_bytes(data[:-1] + s("extra") + i(1) + b"s.")
    assert read_generator_file(clean).img_resolution == 64


def test_operation_count_is_bounded(monkeypatch):
    from clipstyle.generator.formats import pickle_vm
    from clipstyle.generator.formats.budget import Limits

    monkeypatch.setattr(pickle_vm, "limits", lambda: Limits(max_items=1000))
    start = time.monotonic()
    err = _refused(prog(b"N0" * 10_000 + b"N"), CorruptPickleError)
    assert "operations" in str(err) and time.monotonic() - start < 1
