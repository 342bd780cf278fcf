"""The settings contract of every workflow: one frozen dataclass per workflow owns its options.

A workflow's settings class (``TextSettings``, ``ProjectSettings``…) declares each option once with
:func:`option` — its name, default, help text, CLI flag, range, choices and whether it names an input
file — and constructing it validates everything that can be checked without a model (diffusers'
``check_inputs``): a mistake raises :class:`SettingsError` (a :class:`~clipstyle.errors.UsageError`,
exit 2) *before* any network or CLIP model loads. The command line (``clipstyle.cli.derive``), the job
files of ``clipstyle batch`` (:meth:`Settings.from_mapping`) and the web UI all build the same class, so
the same mistake gets the same one line everywhere and no front end keeps its own copy of a default.

This module is torch-free and imports only :mod:`clipstyle.errors` (the CLI imports it at start-up).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import stat
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from clipstyle.errors import UsageError

__all__ = ["OptionSpec", "Settings", "SettingsError", "check_input_file", "option", "resolve_path"]

#: The largest integer a job file may give (JSON has no integer limit; budgets are checked per option).
_INT_LIMIT = 2**63 - 1


class SettingsError(UsageError):
    """A setting of the wrong type, out of range, or inconsistent with another (exit code 2)."""


@dataclass(frozen=True)
class OptionSpec:
    """What a front end needs to know about one option (stored in the dataclass field's metadata).

    Attributes:
        help: one or two sentences shown by ``--help``, the UI and the docs.
        flag: the CLI flag (default ``--name-with-dashes``); ``short`` an optional one-letter alias.
        argument: a positional CLI argument instead of an option.
        minimum, maximum: inclusive bounds for numbers (``above``: exclusive lower bound, e.g. ``0`` for > 0).
        choices: the allowed values of a string option.
        input_file: the value names an input file that must exist and be a readable regular file
            (URLs and aliases are allowed when ``aliases`` is True: networks).
        path: the value is a path, resolved against a job file's folder in batch jobs.
        check: a further check ``check(value, flag)`` raising :class:`SettingsError` (syntax of a spec…).
        resolve: ``resolve(value, base)`` makes the file names inside a job file's value absolute
            (default for ``path``/``input_file`` options: the value itself is a path).
        numbers: a string option that also takes an integer (``"class": 2`` in a job file), kept as text.
        batch: a batch job may set it.
        ui: the web UI may offer it (options naming server files are never typed in the UI).
    """

    help: str
    flag: str | None = None
    short: str | None = None
    argument: bool = False
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    choices: tuple[str, ...] | None = None
    input_file: bool = False
    aliases: bool = False
    path: bool = False
    check: Callable[[Any, str], None] | None = None
    resolve: Callable[[Any, Path], Any] | None = None
    numbers: bool = False
    batch: bool = True
    ui: bool = True


def option(default: Any = dataclasses.MISSING, *, help: str, **spec: Any) -> Any:  # noqa: A002 - the field's help
    """A settings field: ``steps: int = option(300, help="Optimization steps.", minimum=1)``.

    Mutable defaults are refused (settings are frozen: use a tuple).
    """
    if isinstance(default, (list, dict, set)):
        raise TypeError("settings defaults must be immutable (use a tuple)")
    return field(default=default, metadata={"clipstyle": OptionSpec(help=help, **spec)})


def check_input_file(value: str | os.PathLike[str], flag: str, noun: str = "file") -> Path:
    """``value`` as a Path if it names a readable regular file; else :class:`SettingsError` saying what it is.

    Never opens the file (a FIFO or a device would block or stream forever).
    """
    path = Path(os.fspath(value))
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SettingsError(f"{flag}: no such {noun}: {path}") from None
    except OSError as exc:
        raise SettingsError(f"{flag}: cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    if stat.S_ISDIR(st.st_mode):
        raise SettingsError(f"{flag}: {path} is a directory, not a {noun}")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise SettingsError(f"{flag}: {path} is {kind}, not a {noun}")
    if not os.access(path, os.R_OK):
        raise SettingsError(f"{flag}: {path} is not readable (permission denied)")
    return path


def _looks_like_url_or_alias(value: str) -> bool:
    return "://" in value or not any(sep in value for sep in ("/", "\\", ".")) or value.startswith("file:")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return tp, False


def _describe(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


@dataclass(frozen=True)
class Settings:
    """Base of the workflows' settings (see the module doc). Subclasses are frozen dataclasses.

    Class attributes:
        POSITIONAL: the field(s) given positionally by the public function (``text_to_image("a cat")``).
        COMMAND: the workflow's name, for messages.
        ALIASES: other names a job file may use for an option (``photo`` for ``photo_or_latents``).
    """

    POSITIONAL: ClassVar[str | tuple[str, ...] | None] = None
    COMMAND: ClassVar[str] = ""
    ALIASES: ClassVar[dict[str, str]] = {}

    # ------------------------------------------------------------------ construction and validation
    def __post_init__(self) -> None:
        hints = self.hints()
        for f in dataclasses.fields(self):
            if not f.init:
                continue
            value = self._coerce(f, hints[f.name], getattr(self, f.name))
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        """Cross-option checks of a subclass (after every option was checked on its own)."""

    @classmethod
    def hints(cls) -> dict[str, Any]:
        """Resolved type hints of the fields."""
        module = sys.modules.get(cls.__module__)
        return typing.get_type_hints(cls, vars(module) if module else None)

    @classmethod
    def specs(cls) -> dict[str, OptionSpec]:
        """Every option's :class:`OptionSpec`, in declaration order."""
        return {f.name: f.metadata["clipstyle"] for f in dataclasses.fields(cls) if "clipstyle" in f.metadata}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The default of each option (``MISSING`` for required ones)."""
        return {f.name: f.default for f in dataclasses.fields(cls)}

    @classmethod
    def flag(cls, name: str) -> str:
        """The CLI flag of option ``name`` (``--steps``; a positional argument's upper-case name)."""
        spec = cls.specs().get(name)
        if spec is not None and spec.argument:
            return name.upper()
        if spec is not None and spec.flag:
            return spec.flag
        return "--" + name.replace("_", "-")

    def _fail(self, name: str, expected: str, value: Any) -> SettingsError:
        return SettingsError(f"{self.flag(name)} must be {expected}, got {_describe(value)}")

    def _coerce(self, f: dataclasses.Field, tp: Any, value: Any) -> Any:  # noqa: C901 - one case per type
        spec: OptionSpec | None = f.metadata.get("clipstyle")
        flag = self.flag(f.name)
        base, optional = _unwrap_optional(tp)
        if value is None:
            if optional:
                return None
            raise SettingsError(f"{flag} is required")
        origin = typing.get_origin(base)
        if base is bool:
            if not isinstance(value, bool):
                raise self._fail(f.name, "true or false", value)
        elif base is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self._fail(f.name, "an integer", value)
            if abs(value) > _INT_LIMIT:
                raise self._fail(f.name, "an integer of at most 19 digits", value)
        elif base is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self._fail(f.name, "a number", value)
            if isinstance(value, int) and abs(value) > _INT_LIMIT:
                raise self._fail(f.name, "a finite number", value)
            value = float(value)
            if not math.isfinite(value):
                raise self._fail(f.name, "a finite number", value)
        elif base is str:
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            if spec is not None and spec.numbers and isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str):
                raise self._fail(f.name, "a string", value)
            if "\x00" in value:
                raise self._fail(f.name, "text without NUL characters", value)
        elif origin is tuple:
            item_type = typing.get_args(base)[0]
            if isinstance(value, (str, os.PathLike)):
                value = (value,)
            if not isinstance(value, (list, tuple)):
                raise self._fail(f.name, "a list", value)
            items = []
            for item in value:
                if item_type is str:
                    if isinstance(item, os.PathLike):
                        item = os.fspath(item)
                    if not isinstance(item, str) or "\x00" in item:
                        raise self._fail(f.name, "a list of strings", value)
                elif item_type is float:
                    if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
                        raise self._fail(f.name, "a list of finite numbers", value)
                    item = float(item)
                elif item_type is int:
                    if isinstance(item, bool) or not isinstance(item, int):
                        raise self._fail(f.name, "a list of integers", value)
                items.append(item)
            value = tuple(items)
        if spec is None:
            return value
        self._check_range(f.name, spec, value)
        if spec.choices is not None and value not in spec.choices:
            raise SettingsError(f"{flag} must be one of {', '.join(spec.choices)}, got {_describe(value)}")
        if spec.input_file and isinstance(value, str) and value:
            if not (spec.aliases and _looks_like_url_or_alias(value)):
                check_input_file(value, flag)
        if spec.input_file and isinstance(value, tuple):
            for item in value:
                if not (spec.aliases and _looks_like_url_or_alias(item)):
                    check_input_file(item, flag)
        if spec.check is not None:
            spec.check(value, flag)
        return value

    def _check_range(self, name: str, spec: OptionSpec, value: Any) -> None:
        numbers = value if isinstance(value, tuple) else (value,)
        for v in numbers:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if spec.minimum is not None and v < spec.minimum:
                raise SettingsError(f"{self.flag(name)} must be >= {spec.minimum:g}, got {_describe(v)}")
            if spec.maximum is not None and v > spec.maximum:
                raise SettingsError(f"{self.flag(name)} must be <= {spec.maximum:g}, got {_describe(v)}")
            if spec.above is not None and not v > spec.above:
                raise SettingsError(f"{self.flag(name)} must be > {spec.above:g}, got {_describe(v)}")

    # ------------------------------------------------------------------ other constructors
    @classmethod
    def of(cls, *args: Any, **options: Any):
        """The settings of a public call: a settings object as the only positional argument (``options``
        then replace fields), or the values of :attr:`POSITIONAL` in order (None = not given); ``options``
        are the other fields by name.

        Raises:
            SettingsError: an unknown option name (with the nearest known one), too many positional
                arguments, or any invalid value.
        """
        if args and isinstance(args[0], cls):
            if any(a is not None for a in args[1:]):
                raise SettingsError(f"{cls.COMMAND or cls.__name__}: give the settings object alone")
            return args[0].replace(**options) if options else args[0]
        names = (cls.POSITIONAL,) if isinstance(cls.POSITIONAL, str) else tuple(cls.POSITIONAL or ())
        given = [(i, a) for i, a in enumerate(args) if a is not None]
        if given and given[-1][0] >= len(names):
            raise SettingsError(f"{cls.COMMAND or cls.__name__} takes {len(names) or 'no'} positional argument(s)")
        for i, value in given:
            if names[i] in options:
                raise SettingsError(f"{names[i]!r} is given twice")
            options = {names[i]: value, **options}
        cls._check_names(options, "")
        return cls(**options)

    def replace(self, **changes: Any):
        """A copy with ``changes`` applied (validated again)."""
        self._check_names(changes, "")
        return dataclasses.replace(self, **changes)

    @classmethod
    def _check_names(cls, options: Mapping[str, Any], where: str) -> None:
        known = [f.name for f in dataclasses.fields(cls) if f.init]
        for key in options:
            if key not in known:
                near = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else f"; known: {', '.join(known)}"
                raise SettingsError(f"{where}unknown option {key!r} for {cls.COMMAND or cls.__name__}{hint}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, base: Path | None = None):
        """Settings from a job file's object: keys are option names (dashes or underscores, a leading
        ``--`` allowed, a CLI flag such as ``class`` too); relative paths resolve against ``base``.

        Raises:
            SettingsError: unknown keys, a key given twice, any invalid value.
        """
        out: dict[str, Any] = {}
        for key, value in data.items():
            if not isinstance(key, str) or not key.strip():
                raise SettingsError("empty option name")
            k = cls.canonical_name(key)
            if k in out:
                raise SettingsError(f"option {key!r} is given twice")
            out[k] = value
        cls._check_names(out, "")
        specs = cls.specs()
        for name, spec in specs.items():
            if name in out and not spec.batch:
                raise SettingsError(f"{cls.flag(name)} cannot be set in a job")
        if base is not None:
            for name, spec in specs.items():
                if name in out and out[name] is not None:
                    if spec.resolve is not None:
                        out[name] = spec.resolve(out[name], base)
                    elif spec.path or spec.input_file:
                        out[name] = resolve_path(out[name], base)
        return cls(**out)

    def model_keys(self) -> dict[str, tuple | None]:
        """The key of each model this run needs, for a :class:`~clipstyle.workflows.models.ModelCache`:
        ``G`` ← ``(network, blend)``, ``guide`` ← ``(clip_model, clip_pretrained)``, ``encoder`` ←
        ``(encoder,)``, ``identity`` ← ``(id_weights,)``, ``perceptual`` ← ``(perceptual, lpips_weights)``,
        from the options of those names. Workflows that read latent files override it to apply the one
        rule for their network (:func:`clipstyle.latents.source.network_for_latents`)."""
        keys: dict[str, tuple | None] = {}
        network = getattr(self, "network", None)
        if network:
            keys["G"] = (network, getattr(self, "blend", None) or None)
        if getattr(self, "clip_model", None):
            keys["guide"] = (self.clip_model, getattr(self, "clip_pretrained", "openai"))
        if getattr(self, "encoder", None):
            keys["encoder"] = (self.encoder,)
        if getattr(self, "id_weights", None):
            keys["identity"] = (self.id_weights,)
        if getattr(self, "perceptual", None):
            keys["perceptual"] = (self.perceptual, getattr(self, "lpips_weights", None))
        return keys

    @classmethod
    def canonical_name(cls, key: str) -> str:
        """The field name of a job file's key: dashes or underscores, a leading ``--``, the CLI flag's name
        (``class`` for ``class_idx``) or an alias (:attr:`ALIASES`). Unknown keys come back normalized."""
        flags = {cls.flag(n).lstrip("-").replace("-", "_"): n for n in cls.specs()}
        flags.update(cls.ALIASES)
        k = key.strip().lstrip("-").replace("-", "_")
        return flags.get(k, k)

    def to_dict(self) -> dict[str, Any]:
        """Every option as a JSON-able dict (tuples become lists), for ``run.json`` and job manifests."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


def resolve_path(value: Any, base: Path) -> Any:
    """A job file's relative path made absolute against ``base`` (its folder); URLs, absolute paths and
    bare names that are no file there (network aliases) are kept. Lists are resolved item by item."""
    if isinstance(value, (list, tuple)):
        return [resolve_path(v, base) for v in value]
    if isinstance(value, str) and value and "://" not in value and not Path(value).is_absolute():
        candidate = base / value
        if candidate.exists() or any(s in value for s in ("/", "\\")) or "." in Path(value).name:
            return str(candidate.resolve())
    return value
