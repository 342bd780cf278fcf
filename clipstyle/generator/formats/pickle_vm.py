"""A pickle interpreter of our own that builds nothing but plain, validated data.

Python's ``pickle.Unpickler`` (and any subclass of it) hands the file's objects to real classes: BUILD
calls their ``__setstate__`` or fills their ``__dict__``, APPENDS looks up ``.append`` on whatever object the
stack holds, SETITEM hashes any key (nested tuples make that exponential). A file that names only
harmless-looking globals can turn those hooks into code execution (a forged ``numpy.dtype`` state, raw
bytes reinterpreted as object pointers by a real ``ndarray``). This interpreter never does any of that:

* every global the file names is looked up in a table supplied by the caller, whose entries are
  :class:`Global` records of *our* functions; the file's objects are never imported or called;
* REDUCE / NEWOBJ call those functions with already-validated plain arguments; BUILD is accepted only on
  a :class:`Pending` placeholder of ours, which validates the state and produces a plain value;
* containers are real ``list``/``dict``/``OrderedDict``/``set``/``tuple`` objects, filled only by the
  interpreter; dict keys and set items must be ``str``, ``bytes``, ``int``, ``float``, ``bool`` or
  ``None`` (hashing is linear in the key); a container cannot be changed once it sits inside another
  one (so there are no cycles and every nesting depth is known when the container is built);
* depth, number of entries, memo size and integer length are bounded (:mod:`.budget`); every failure is
  one :class:`PickleVMError` line.
"""

from __future__ import annotations

import collections
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from clipstyle.generator.formats.budget import Limits, limits

__all__ = ["Global", "Pending", "PickleBudget", "PickleVMError", "PickleVMUnsafe", "run_pickle"]

_PLAIN_KEYS = (str, bytes, int, float, bool, type(None))
_MAX_LONG_BYTES = 64
_MAX_MARK_DEPTH = 10_000


class PickleVMError(Exception):
    """The stream is malformed or breaks a limit (one line)."""


class PickleVMUnsafe(PickleVMError):
    """The stream names a global, an opcode or a construction that is not allowed."""


@dataclass(frozen=True)
class Global:
    """An allowed global: ``name`` (for messages) and what REDUCE / NEWOBJ on it do (``None``: refused)."""

    name: str
    reduce: Callable[..., Any] | None = None
    newobj: Callable[..., Any] | None = None

    def __repr__(self) -> str:  # never the file's text verbatim
        return f"<global {self.name}>"


class Pending:
    """Base of placeholders that accept one BUILD and then stand for a plain value.

    Subclasses implement ``_vm_build(state)`` (validate; raise ``PickleVMError`` on anything unexpected)
    and ``_vm_value()`` (the plain value a container or a call receives; raise if incomplete).
    """

    __slots__ = ()

    def _vm_build(self, state: Any) -> None:  # pragma: no cover - interface
        raise PickleVMUnsafe(f"BUILD is not allowed on {type(self).__name__}")

    def _vm_value(self) -> Any:  # pragma: no cover - interface
        return self

    def __repr__(self) -> str:  # no heap address in any message
        return f"<{type(self).__name__}>"


class PickleBudget:
    """What one *file* may spend in the interpreter, shared by every pickle read from it.

    A file can hold several pickles (a legacy torch file has five; a NVIDIA snapshot nests one legacy
    storage stream per tensor): each :func:`run_pickle` call given the same budget draws from the same
    counters, so splitting work across nested payloads buys nothing.

    Attributes:
        ops_left: interpreter operations left (each opcode is one; the interpreter is Python code, so
            Ctrl-C interrupts it, and the count bounds its time).
        items_left: container entries, memo entries and calls left (bounds memory).
        bytes_left: bytes of strings/bytes values the interpreter may copy out of the streams.
        expanded_limit: the largest a value may be when shared sub-structures are counted every time they
            are reached (a DAG of shared tuples is tiny in memory but exponential to walk: ``repr``,
            ``np.asarray`` or a recursive converter would never finish).
    """

    __slots__ = ("bytes_left", "expanded_limit", "items_left", "max_items", "max_ops", "ops_left")

    def __init__(self, lim: Limits | None = None) -> None:
        lim = lim or limits()
        self.max_items = self.items_left = int(lim.max_items)
        self.max_ops = self.ops_left = 5 * int(lim.max_items)
        self.bytes_left = int(lim.max_inflated_bytes)
        self.expanded_limit = int(lim.max_items)

    def op(self) -> None:
        self.ops_left -= 1
        if self.ops_left < 0:
            raise PickleVMError(f"the file's pickles run more than {self.max_ops} operations; refused")

    def items(self, n: int) -> None:
        self.items_left -= n
        if self.items_left < 0:
            raise PickleVMError(f"the file's pickles hold more than {self.max_items} objects; refused")

    def take_bytes(self, n: int) -> None:
        self.bytes_left -= n
        if self.bytes_left < 0:
            raise PickleVMError("the file's pickles copy out more bytes than the budget allows; refused")


class _Mark:
    __slots__ = ()


_MARK = _Mark()


class _VM:
    def __init__(self, data: bytes | memoryview, pos: int, table: Mapping[tuple[str, str], Global],
                 persistent_load: Callable[[Any], Any] | None, lim: Limits, budget: PickleBudget) -> None:
        self.data = memoryview(data)
        self.pos = pos
        self.table = table
        self.persistent_load = persistent_load
        self.lim = lim
        self.stack: list[Any] = []
        self.marks: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.depth: dict[int, int] = {}  # id(container) -> nesting depth (1 = holds only scalars)
        self.frozen: set[int] = set()  # ids of containers that sit inside another container
        self.keep: list[Any] = []  # keeps every tracked container alive, so ids stay unique
        self.size: dict[int, int] = {}  # id(container) -> size with shared parts counted each time reached
        self.budget = budget

    # ---- reading ----
    def read(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise PickleVMError("the pickle is truncated")
        out = self.data[self.pos:self.pos + n].tobytes()
        self.pos += n
        return out

    def readline(self) -> str:
        end = bytes(self.data[self.pos:self.pos + 512]).find(b"\n")
        if end < 0:
            raise PickleVMError("the pickle is truncated (an unterminated name)")
        line = self.read(end + 1)[:-1]
        try:
            return line.decode("ascii")
        except UnicodeDecodeError:
            raise PickleVMError("a global name is not ASCII") from None

    def u(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.read(size))[0]

    # ---- bookkeeping ----
    def count(self, n: int = 1) -> None:
        self.budget.items(n)

    def use(self, v: Any) -> Any:
        """The plain value of a stack entry about to go into a container or a call."""
        if isinstance(v, Pending):
            v = v._vm_value()
        if isinstance(v, _Mark):
            raise PickleVMError("a MARK used as a value")
        return v

    def depth_of(self, v: Any) -> int:
        return self.depth.get(id(v), 0)

    def track(self, container: Any, children_depth: int) -> Any:
        d = children_depth + 1
        if d > self.lim.max_depth:
            raise PickleVMError(f"containers nested deeper than {self.lim.max_depth} levels; refused")
        if id(container) not in self.depth:
            self.keep.append(container)
        self.depth[id(container)] = max(self.depth.get(id(container), 1), d)
        return container

    def adopt(self, parent: Any, child: Any) -> None:
        """``child`` goes inside ``parent``: freeze it, deepen the parent and grow its expanded size."""
        if id(child) in self.depth:
            self.frozen.add(id(child))
            self.track(parent, self.depth[id(child)])
        if id(parent) in self.depth:
            grown = self.size.get(id(parent), 1) + self.size.get(id(child), 1)
            if grown > self.budget.expanded_limit:
                raise PickleVMUnsafe(f"shared sub-structures (tuples, lists) expand to more than {self.budget.expanded_limit} "
                                    f"objects when walked; refused")
            self.size[id(parent)] = grown

    def mutable(self, target: Any, kinds: tuple[type, ...], what: str) -> Any:
        target = self.use(target)
        if type(target) not in kinds:
            raise PickleVMUnsafe(f"{what} on a {type(target).__name__} is not allowed")
        if id(target) in self.frozen:
            raise PickleVMUnsafe(f"{what} on a container that already sits inside another one (a cycle?)")
        return target

    def key(self, k: Any) -> Any:
        k = self.use(k)
        if type(k) not in _PLAIN_KEYS:
            raise PickleVMUnsafe(f"a dict key or set item of type {type(k).__name__} (only strings and numbers)")
        return k

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise PickleVMError("the pickle pops a MARK that is not there")
        items = self.stack
        self.stack = self.marks.pop()
        return items

    def pop(self) -> Any:
        if not self.stack:
            raise PickleVMError("the pickle pops an empty stack")
        return self.stack.pop()

    def make_tuple(self, items: list[Any]) -> tuple:
        vals = tuple(self.use(x) for x in items)
        self.count(len(vals) + 1)
        t = self.track(vals, max((self.depth_of(x) for x in vals), default=0))
        for x in vals:
            self.adopt(t, x)
        return t

    def put(self, idx: int) -> None:
        if not self.stack:
            raise PickleVMError("memoizing an empty stack")
        self.count()
        self.memo[idx] = self.stack[-1]

    def get(self, idx: int) -> None:
        if idx not in self.memo:
            raise PickleVMError(f"the pickle refers to memo entry {idx}, which was never stored")
        self.stack.append(self.memo[idx])

    def lookup(self, module: str, name: str) -> Global:
        g = self.table.get((module, name))
        if g is None:
            raise PickleVMUnsafe(f"refusing to load global {module}.{name}: it is not on the allow-list")
        return g

    def call(self, func: Any, args: Any, how: str) -> Any:
        func = self.use(func)
        if not isinstance(func, Global):
            raise PickleVMUnsafe(f"{how} of a {type(func).__name__}, not of an allowed global")
        fn = func.reduce if how == "REDUCE" else func.newobj
        if fn is None:
            raise PickleVMUnsafe(f"{how} of {func.name} is not allowed")
        args = self.use(args)
        if type(args) is not tuple:
            raise PickleVMError(f"{how} arguments of {func.name} are not a tuple")
        self.count()
        out = fn(*args)
        if not isinstance(out, _PLAIN_KEYS) and not isinstance(out, Global):
            self.track(out, self.depth_of(args))
            self.size[id(out)] = max(self.size.get(id(out), 1), self.size.get(id(args), 1))
        return out

    # ---- the loop ----
    def run(self) -> Any:
        st = self.stack
        op_budget = self.budget  # one budget per file bounds the time of every stream (Ctrl-C works)
        while True:
            op_budget.op()
            op = self.read(1)
            st = self.stack
            if op == b"\x80":  # PROTO
                if self.read(1)[0] > 5:
                    raise PickleVMError("unsupported pickle protocol")
            elif op == b"\x95":  # FRAME: framing is only a read hint
                self.u("<Q")
            elif op == b".":  # STOP
                if len(st) != 1 or self.marks:
                    raise PickleVMError("the pickle ends with a malformed stack")
                return self.use(st[0])
            elif op == b"(":
                if len(self.marks) >= _MAX_MARK_DEPTH:
                    raise PickleVMError("too many nested MARKs")
                self.marks.append(st)
                self.stack = []
            elif op == b"0":
                self.pop()
            elif op == b"1":
                self.pop_mark()
            elif op == b"2":
                if not st:
                    raise PickleVMError("DUP of an empty stack")
                st.append(st[-1])
            elif op == b"N":
                st.append(None)
            elif op == b"\x88":
                st.append(True)
            elif op == b"\x89":
                st.append(False)
            elif op == b"J":
                st.append(self.u("<i"))
            elif op == b"K":
                st.append(self.u("<B"))
            elif op == b"M":
                st.append(self.u("<H"))
            elif op in (b"\x8a", b"\x8b"):  # LONG1, LONG4
                n = self.u("<B") if op == b"\x8a" else self.u("<i")
                if not 0 <= n <= _MAX_LONG_BYTES:
                    raise PickleVMError(f"an integer of {n} bytes; refused")
                st.append(int.from_bytes(self.read(n), "little", signed=True))
            elif op == b"G":
                st.append(self.u(">d"))
            elif op in (b"C", b"B", b"\x8e", b"U", b"T", b"\x96"):  # bytes (py2 str as bytes)
                n = self.u({b"C": "<B", b"U": "<B", b"B": "<I", b"T": "<i", b"\x8e": "<Q", b"\x96": "<Q"}[op])
                self.budget.take_bytes(max(n, 0))
                st.append(self.read(n))
            elif op in (b"\x8c", b"X", b"\x8d"):  # SHORT_BINUNICODE, BINUNICODE, BINUNICODE8
                n = self.u({b"\x8c": "<B", b"X": "<I", b"\x8d": "<Q"}[op])
                self.budget.take_bytes(n)
                try:
                    st.append(self.read(n).decode("utf-8", "surrogatepass"))
                except UnicodeDecodeError:
                    raise PickleVMError("a string is not valid UTF-8") from None
            elif op == b")":
                st.append(())
            elif op in (b"\x85", b"\x86", b"\x87"):
                n = op[0] - 0x84
                if len(st) < n:
                    raise PickleVMError("TUPLE of a too short stack")
                items = st[-n:]
                del st[-n:]
                st.append(self.make_tuple(items))
            elif op == b"t":
                t = self.make_tuple(self.pop_mark())
                self.stack.append(t)
            elif op == b"]":
                st.append(self.track([], 0))
            elif op == b"l":
                items = self.pop_mark()
                lst = self.track([], 0)
                self._extend(lst, items)
                self.stack.append(lst)
            elif op in (b"a", b"e"):
                items = [self.pop()] if op == b"a" else self.pop_mark()
                if not self.stack:
                    raise PickleVMError("APPEND without a list")
                self._extend(self.mutable(self.stack[-1], (list,), "APPEND"), items)
            elif op == b"}":
                st.append(self.track({}, 0))
            elif op == b"d":
                items = self.pop_mark()
                d = self.track({}, 0)
                self._setitems(d, items)
                self.stack.append(d)
            elif op in (b"s", b"u"):
                if op == b"s":
                    v, k = self.pop(), self.pop()
                    items = [k, v]
                else:
                    items = self.pop_mark()
                if not self.stack:
                    raise PickleVMError("SETITEM without a dict")
                self._setitems(self.mutable(self.stack[-1], _DICTS, "SETITEM"), items)
            elif op == b"\x8f":
                st.append(self.track(set(), 0))
            elif op == b"\x90":
                items = self.pop_mark()
                if not self.stack:
                    raise PickleVMError("ADDITEMS without a set")
                target = self.mutable(self.stack[-1], (set,), "ADDITEMS")
                self.count(len(items))
                target.update(self.key(x) for x in items)
            elif op == b"\x91":
                items = self.pop_mark()
                self.count(len(items) + 1)
                fs = self.track(frozenset(self.key(x) for x in items), 0)
                self.stack.append(fs)
            elif op == b"c":
                module, name = self.readline(), self.readline()
                st.append(self.lookup(module, name))
            elif op == b"\x93":
                name, module = self.pop(), self.pop()
                if type(module) is not str or type(name) is not str:
                    raise PickleVMError("STACK_GLOBAL of non-strings")
                self.stack.append(self.lookup(module, name))
            elif op == b"R":
                args, func = self.pop(), self.pop()
                self.stack.append(self.call(func, args, "REDUCE"))
            elif op == b"\x81":
                args, cls = self.pop(), self.pop()
                self.stack.append(self.call(cls, args, "NEWOBJ"))
            elif op == b"\x92":
                kwargs, args, cls = self.pop(), self.pop(), self.pop()
                if self.use(kwargs) not in ({},):
                    raise PickleVMUnsafe("NEWOBJ_EX with keyword arguments is not allowed")
                self.stack.append(self.call(cls, args, "NEWOBJ"))
            elif op == b"b":
                state = self.use(self.pop())
                if not self.stack:
                    raise PickleVMError("BUILD without an object")
                target = self.stack[-1]
                if not isinstance(target, Pending):
                    raise PickleVMUnsafe(f"BUILD on a {type(target).__name__} is not allowed")
                self.count()
                target._vm_build(state)
                self.track(target, self.depth_of(state))
                self.adopt(target, state)
            elif op == b"q":
                self.put(self.u("<B"))
            elif op == b"r":
                self.put(self.u("<I"))
            elif op == b"\x94":
                self.put(len(self.memo))
            elif op == b"h":
                self.get(self.u("<B"))
            elif op == b"j":
                self.get(self.u("<I"))
            elif op == b"Q":  # BINPERSID
                pid = self.use(self.pop())
                if self.persistent_load is None:
                    raise PickleVMUnsafe("refusing a persistent id in a plain pickle")
                self.count()
                self.stack.append(self.persistent_load(pid))
            else:
                raise PickleVMUnsafe(f"unsupported pickle opcode {op!r} at byte {self.pos - 1}")

    def _extend(self, lst: list, items: list[Any]) -> None:
        self.count(len(items))
        for x in items:
            x = self.use(x)
            if x is lst:
                raise PickleVMUnsafe("a list that contains itself")
            lst.append(x)
            self.adopt(lst, x)

    def _setitems(self, d: dict, items: list[Any]) -> None:
        if len(items) % 2:
            raise PickleVMError("SETITEMS with an odd number of entries")
        self.count(len(items) // 2)
        for i in range(0, len(items), 2):
            k, v = self.key(items[i]), self.use(items[i + 1])
            if v is d:
                raise PickleVMUnsafe("a dict that contains itself")
            d[k] = v
            self.adopt(d, v)


_DICTS: tuple[type, ...] = (dict, collections.OrderedDict)


def register_dict_type(cls: type) -> None:
    """Let SETITEM fill instances of ``cls`` (a ``dict`` subclass of ours without hooks)."""
    global _DICTS
    if cls not in _DICTS:
        _DICTS = _DICTS + (cls,)


def run_pickle(data: bytes | memoryview, table: Mapping[tuple[str, str], Global], *, pos: int = 0,
               persistent_load: Callable[[Any], Any] | None = None, lim: Limits | None = None,
               budget: PickleBudget | None = None) -> tuple[Any, int]:
    """Interpret one pickle starting at byte ``pos`` of ``data``; returns ``(value, end position)``.

    ``budget``: the file's :class:`PickleBudget`; pass the same one to every pickle of one file (nested
    payloads included), so the limits hold for the file as a whole. ``None``: a fresh one (one pickle).

    Raises:
        PickleVMUnsafe: a global outside ``table``, an unsupported opcode, BUILD on anything but a
            :class:`Pending`, a non-plain dict key/set item, or mutation of a nested container.
        PickleVMError: truncated/malformed stream or a broken limit.
        Whatever the ``table``'s functions raise for invalid arguments.
    """
    lim = lim or limits()
    vm = _VM(data, pos, table, persistent_load, lim, budget if budget is not None else PickleBudget(lim))
    value = vm.run()
    return value, vm.pos
