"""A restricted unpickler for network pickles: no code from a file ever runs, only plain data is built.

NVIDIA's stylegan2-ada-pytorch and stylegan3 snapshots and the TensorFlow-era StyleGAN pickles are plain
pickles whose objects are rebuilt by calling globals named in the file. They are interpreted here by our own
pickle machine (:mod:`.pickle_vm`), never by ``pickle.Unpickler``: every global the file names maps to an
inert placeholder of this module whose arguments and state are validated, and the result contains only
``dict``/``list``/``tuple``/``set``/``str``/numbers, float/int ``torch.Tensor`` and numeric ``np.ndarray``
copies, and the stand-ins below (:class:`PersistentObject`, :class:`TFNetworkStandIn`, which have no
``__getattr__`` and are built from validated dicts). In particular:

* NumPy arrays are made only from the standard ``(1, shape, dtype, fortran, bytes)`` state of a numeric
  dtype with exactly ``prod(shape) × itemsize`` bytes, as ``frombuffer(...).reshape(...).copy()``; dtypes
  only from a whitelist of numeric type strings with the standard state. The real ``numpy.ndarray``
  class, object dtypes and ``__setstate__`` of NumPy objects are never reached.
* Tensors come from a flat storage copy; a tensor larger than its storage (zero strides) is refused.
* The embedded module source of NVIDIA's persistent objects is kept as text and never run.
* Sizes are budgeted (:mod:`.budget`) before anything is allocated.
"""

from __future__ import annotations

import collections
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from clipstyle.generator.formats.budget import BudgetError, limits
from clipstyle.generator.formats.common import CheckpointError, safe_text
from clipstyle.generator.formats.pickle_data import (
    _NDARRAY,
    CorruptPickleError,
    UnsafePickleError,
    _Charge,
    _load_storage_from_bytes,
    _numpy_dtype,
    _numpy_reconstruct,
    _numpy_scalar,
    _rebuild_parameter,
    _rebuild_tensor,
)
from clipstyle.generator.formats.pickle_vm import (
    Global,
    Pending,
    PickleVMError,
    PickleVMUnsafe,
    register_dict_type,
    run_pickle,
)

__all__ = ["ALLOWED_GLOBALS", "CorruptPickleError", "EasyDictStandIn", "PersistentObject", "TFNetworkStandIn",
           "UnsafePickleError", "safe_load_pickle"]


def _plain_dict(value: Any, what: str) -> dict:
    if not isinstance(value, dict) or not all(type(k) is str for k in value):
        raise CorruptPickleError(f"{what} is not a dict with string keys")
    bad = [k for k in value if k.startswith("__")]
    if bad:
        raise UnsafePickleError(f"{what} has the reserved key {safe_text(bad[0])}")
    return value


@dataclass
class PersistentObject:
    """Stand-in for an object NVIDIA's ``torch_utils.persistence`` pickled.

    Attributes:
        class_name: bare class name (``'SynthesisLayer'``…), without a module path.
        state: the module's attribute dict (``_parameters``, ``_buffers``, ``_modules``, plain attributes);
            keys are strings, never dunders; ``_parameters``/``_buffers`` hold tensors or ``None``,
            ``_modules`` holds :class:`PersistentObject` or ``None`` (validated when read).
    """

    class_name: str
    state: dict[str, Any]

    # ---- the parts of an nn.Module's __dict__ a converter needs ----
    @property
    def parameters(self) -> dict[str, torch.Tensor | None]:
        return dict(self.state.get("_parameters") or {})

    @property
    def buffers(self) -> dict[str, torch.Tensor | None]:
        return dict(self.state.get("_buffers") or {})

    @property
    def modules(self) -> dict[str, PersistentObject | None]:
        return dict(self.state.get("_modules") or {})

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return dict(self.state.get("_init_kwargs") or {})

    def attr(self, name: str, default: Any = None) -> Any:
        """A plain attribute, a parameter, a buffer or a child module, by name."""
        for key in ("_parameters", "_buffers", "_modules"):
            table = self.state.get(key) or {}
            if name in table:
                return table[name]
        return self.state.get(name, default)

    def child(self, name: str) -> PersistentObject:
        mod = self.modules.get(name)
        if not isinstance(mod, PersistentObject):
            raise CheckpointError(f"{safe_text(self.class_name)} has no sub-module {safe_text(name)}")
        return mod

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Every parameter and buffer below this object, named like ``nn.Module.state_dict()``.

        The module tree is walked once per node (iteratively); a sub-module reached twice (a shared
        module, which would make the walk exponential on a crafted DAG) is refused.

        Raises:
            CheckpointError: a sub-module shared between two places in the tree.
        """
        out: dict[str, torch.Tensor] = {}
        seen: set[int] = set()
        todo: list[tuple[str, PersistentObject]] = [(prefix, self)]
        while todo:
            pre, obj = todo.pop()
            if id(obj) in seen:
                raise CheckpointError(f"the module tree reuses {safe_text(obj.class_name)} at {safe_text(pre)}; "
                                      f"not a network we can read")
            seen.add(id(obj))
            for table in (obj.parameters, obj.buffers):
                for name, value in table.items():
                    if torch.is_tensor(value):
                        out[pre + name] = value
            for name, mod in reversed(list(obj.modules.items())):
                if isinstance(mod, PersistentObject):
                    todo.append((pre + name + ".", mod))
        return out


class EasyDictStandIn(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict (no attribute access, no hooks)."""

    __slots__ = ()


register_dict_type(EasyDictStandIn)

_TF_KEYS = ("version", "name", "static_kwargs", "components", "build_module_src", "build_func_name", "variables")


class TFNetworkStandIn(Pending):
    """Stand-in for ``dnnlib.tflib.network.Network`` (state v3/v4/v5); read-only, nothing executed.

    Attributes (read-only): ``version`` (int), ``name`` (str), ``static_kwargs`` (dict), ``components``
    (dict of ``TFNetworkStandIn``), ``build_module_src`` (str, never executed), ``build_func_name`` (str),
    ``variables`` (list of ``(name, float ndarray)``; 0-d arrays for scalars; names unique).
    """

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state: dict[str, Any] | None = None

    def __setstate__(self, state: Any) -> None:
        """Validate and keep a Network's state dict (done once).

        Raises:
            CorruptPickleError: not a dict, a field of the wrong type, a non-float variable, a duplicate
                variable name, or a second BUILD.
        """
        if getattr(self, "_state", None) is not None:
            raise UnsafePickleError("a TensorFlow Network's state is set twice")
        state = _plain_dict(state, "a TensorFlow Network's state")
        out: dict[str, Any] = {}
        for key, kinds in (("version", (int,)), ("name", (str,)), ("build_module_src", (str,)),
                           ("build_func_name", (str,))):
            v = state.get(key)
            if v is not None and (type(v) not in kinds):
                raise CorruptPickleError(f"a TensorFlow Network's {key} is a {type(v).__name__}")
            out[key] = v
        out["static_kwargs"] = dict(_plain_dict(state.get("static_kwargs") or {}, "static_kwargs"))
        comps = _plain_dict(state.get("components") or {}, "a TensorFlow Network's components")
        if not all(isinstance(c, TFNetworkStandIn) for c in comps.values()):
            raise CorruptPickleError("a TensorFlow Network component is not a Network")
        out["components"] = dict(comps)
        items = state.get("variables") or []
        if not isinstance(items, list):
            raise CorruptPickleError("a TensorFlow Network's variables are not a list")
        variables, seen = [], set()
        for item in items:
            if not (isinstance(item, tuple) and len(item) == 2 and type(item[0]) is str):
                raise CorruptPickleError("a TensorFlow network variable is not a (name, value) pair")
            name, value = item
            if isinstance(value, (np.floating, float)):
                value = np.asarray(value, dtype=np.asarray(value).dtype)
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                raise CorruptPickleError(f"TensorFlow variable {safe_text(name)} is not a float array")
            if name in seen:
                raise CorruptPickleError(f"TensorFlow variable {safe_text(name)} is stored twice "
                                         f"in network {safe_text(out['name'])}")
            seen.add(name)
            variables.append((name, value))
        out["variables"] = variables
        self._state = out

    _vm_build = __setstate__

    def _vm_value(self) -> TFNetworkStandIn:
        if self._state is None:
            raise CorruptPickleError("a TensorFlow Network without its state")
        return self

    def _get(self, key: str) -> Any:
        return None if self._state is None else self._state.get(key)

    version = property(lambda self: self._get("version"))
    name = property(lambda self: self._get("name"))
    static_kwargs = property(lambda self: self._get("static_kwargs"))
    components = property(lambda self: self._get("components"))
    build_module_src = property(lambda self: self._get("build_module_src"))
    build_func_name = property(lambda self: self._get("build_func_name"))
    variables = property(lambda self: self._get("variables"))  # the validated list itself

    @property
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
        """A copy of the validated state (so ``vars(net)`` works); writing to it changes nothing."""
        return {key: self._get(key) for key in _TF_KEYS} if self._state is not None else {}

    def __repr__(self) -> str:
        return f"TFNetworkStandIn(name={self.name!r}, version={self.version!r})"


# ---------------------------------------------------------------- containers and NVIDIA objects

def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    meta = _plain_dict(meta, "a persistent-object record")
    if meta.get("type") != "class" or "state" not in meta:
        raise CorruptPickleError("unexpected persistent-object record (only classes are supported)")
    name = meta.get("class_name")
    if type(name) is not str or (meta.get("module_src") is not None and type(meta["module_src"]) is not str):
        raise CorruptPickleError("a persistent object's class name or source is not text")
    state = _plain_dict(meta["state"], f"the state of {safe_text(name)}")
    for key, ok in (("_parameters", torch.is_tensor), ("_buffers", torch.is_tensor),
                    ("_modules", lambda v: isinstance(v, PersistentObject))):
        table = state.get(key)
        if table is None:
            continue
        table = _plain_dict(table, f"{key} of {safe_text(name)}")
        if not all(v is None or ok(v) for v in table.values()):
            raise CorruptPickleError(f"{key} of {safe_text(name)} holds something else than "
                                     f"{'tensors' if key != '_modules' else 'modules'}")
    if state.get("_init_kwargs") is not None:
        _plain_dict(state["_init_kwargs"], f"_init_kwargs of {safe_text(name)}")
    return PersistentObject(class_name=name, state=state)


def _ordered_dict(*args: Any) -> collections.OrderedDict:
    if args:
        raise UnsafePickleError("refusing an OrderedDict built from arguments")
    return collections.OrderedDict()


def _set(*args: Any) -> set:
    if len(args) > 1 or (args and not isinstance(args[0], (list, tuple))):
        raise CorruptPickleError("invalid set arguments")
    items = args[0] if args else ()
    if not all(type(x) in (str, bytes, int, float, bool, type(None)) for x in items):
        raise UnsafePickleError("refusing a set of non-plain items")
    return set(items)


def _easydict(*args: Any) -> EasyDictStandIn:
    if args:
        raise UnsafePickleError("refusing an EasyDict built from arguments")
    return EasyDictStandIn()


def _tf_network(*args: Any) -> TFNetworkStandIn:
    if args:
        raise UnsafePickleError("refusing a TensorFlow Network built from arguments")
    return TFNetworkStandIn()


def _table(charge: _Charge) -> dict[tuple[str, str], Global]:
    scalar = Global("numpy.core.multiarray.scalar", reduce=_numpy_scalar)
    recon = Global("numpy.core.multiarray._reconstruct", reduce=_numpy_reconstruct(charge))
    setg = Global("builtins.set", reduce=_set)
    return {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"):
            Global("_reconstruct_persistent_obj", reduce=_reconstruct_persistent_obj),
        ("dnnlib.util", "EasyDict"): Global("dnnlib.util.EasyDict", newobj=_easydict),
        ("dnnlib.tflib.network", "Network"): Global("dnnlib.tflib.network.Network", newobj=_tf_network),
        ("torch._utils", "_rebuild_parameter"): Global("_rebuild_parameter", reduce=_rebuild_parameter),
        ("torch._utils", "_rebuild_parameter_with_state"): Global("_rebuild_parameter_with_state",
                                                                  reduce=_rebuild_parameter),
        ("torch._utils", "_rebuild_tensor_v2"): Global("_rebuild_tensor_v2", reduce=_rebuild_tensor(charge)),
        ("torch.storage", "_load_from_bytes"): Global("_load_from_bytes", reduce=_load_storage_from_bytes(charge)),
        ("collections", "OrderedDict"): Global("collections.OrderedDict", reduce=_ordered_dict),
        ("builtins", "set"): setg, ("__builtin__", "set"): setg,
        ("numpy", "dtype"): Global("numpy.dtype", reduce=_numpy_dtype),
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy.core.multiarray", "scalar"): scalar, ("numpy._core.multiarray", "scalar"): scalar,
        ("numpy.core.multiarray", "_reconstruct"): recon, ("numpy._core.multiarray", "_reconstruct"): recon,
    }


#: The globals a network pickle may name (module, name); each maps to an inert placeholder of ours.
ALLOWED_GLOBALS = frozenset(_table(_Charge()))


def safe_load_pickle(data: bytes | bytearray | memoryview | io.BufferedIOBase) -> Any:
    """Interpret a network pickle (bytes or a binary file) into plain validated data; nothing from it runs.

    Raises:
        UnsafePickleError: a global outside :data:`ALLOWED_GLOBALS`, an unsupported opcode or construction
            (nothing from the file ran).
        CorruptPickleError: the stream is truncated or malformed, or an object's state is invalid.
        BudgetError: (a ``CheckpointError``) the file asks for more memory/depth/objects than allowed.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        data = data.read()
    lim = limits()
    if len(data) > lim.max_file_bytes:
        raise BudgetError(f"the pickle is {len(data) / 1e9:.1f} GB, over the {lim.max_file_bytes / 1e9:.1f} GB limit")
    charge = _Charge()
    try:
        value, _ = run_pickle(bytes(data), _table(charge), budget=charge.budget)
        return value
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{exc} (nothing from the file ran)") from None
    except (CorruptPickleError, CheckpointError):
        raise
    except PickleVMUnsafe as exc:
        raise UnsafePickleError(f"{exc} (nothing from the file ran)") from None
    except PickleVMError as exc:
        raise CorruptPickleError(f"the pickle is truncated or corrupt ({exc})") from None
    except MemoryError:
        raise BudgetError("the pickle needs more memory than is available; refused") from None
    except RecursionError:
        raise CorruptPickleError("the pickle is truncated or corrupt (structure nested too deeply)") from None
    except (ValueError, TypeError, OverflowError, IndexError, KeyError, AttributeError, RuntimeError) as exc:
        raise CorruptPickleError(f"the pickle is truncated or corrupt ({type(exc).__name__}: "
                                 f"{safe_text(exc, 120)})") from None
