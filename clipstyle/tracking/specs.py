"""``--log`` specs: ``tensorboard``, ``tensorboard:DIR``, ``mlflow``, ``mlflow:URI`` (repeatable).

Parsing and the check that the tracker's extra is installed are torch-free and import neither
TensorBoard nor MLflow (:func:`importlib.util.find_spec` only), so a command can refuse a bad
``--log`` in milliseconds, before any model loads.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Iterable

from clipstyle.errors import UsageError

__all__ = ["KINDS", "LogSpec", "LogSpecError", "MissingExtraError", "check_log_specs", "parse_log_spec",
           "parse_log_specs"]

#: Tracker kind → (the module its extra provides, the extra's name).
KINDS: dict[str, tuple[str, str]] = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}

#: Where ``--log tensorboard`` writes without a DIR (torch's SummaryWriter convention).
DEFAULT_TENSORBOARD_DIR = "runs"
#: The MLflow store of ``--log mlflow`` without a URI when ``MLFLOW_TRACKING_URI`` is unset.
DEFAULT_MLFLOW_DIR = "mlruns"


class LogSpecError(UsageError):
    """A ``--log`` value that is not ``tensorboard[:DIR]`` or ``mlflow[:URI]`` (exit code 2)."""


class MissingExtraError(UsageError):
    """``--log KIND`` without KIND's extra installed (exit code 2); ``str()`` says what to install."""


@dataclass(frozen=True)
class LogSpec:
    """One parsed ``--log`` value.

    Attributes:
        kind: ``"tensorboard"`` or ``"mlflow"``.
        target: TensorBoard: the log folder (runs go into sub-folders); MLflow: the tracking URI
            (``file:///abs/mlruns``, ``http://host:5000``, ``sqlite:///mlflow.db``…). ``""`` = the default
            (``./runs``; ``$MLFLOW_TRACKING_URI``, else ``./mlruns``).
    """

    kind: str
    target: str = ""

    def __str__(self) -> str:
        return self.kind + (f":{self.target}" if self.target else "")

    def resolved_target(self) -> str:
        """The folder or URI this spec writes to, defaults filled in (a TensorBoard folder made absolute)."""
        if self.kind == "tensorboard":
            return os.path.abspath(os.path.expanduser(self.target or DEFAULT_TENSORBOARD_DIR))
        if self.target:
            return self.target
        return os.environ.get("MLFLOW_TRACKING_URI") or os.path.abspath(DEFAULT_MLFLOW_DIR)


def parse_log_spec(text: str | LogSpec) -> LogSpec:
    """Parse ``tensorboard``, ``tensorboard:DIR``, ``mlflow`` or ``mlflow:URI`` (kind case-insensitive).

    Raises:
        LogSpecError: an unknown kind or an empty target after the colon.
    """
    if isinstance(text, LogSpec):
        return text
    if not isinstance(text, str):
        raise LogSpecError(f"--log takes tensorboard[:DIR] or mlflow[:URI], got {type(text).__name__}")
    kind, sep, target = text.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise LogSpecError(f"--log {text!r}: unknown tracker {kind!r}; use tensorboard[:DIR] or mlflow[:URI]")
    if sep and not target.strip():
        raise LogSpecError(f"--log {text!r}: nothing after the colon; write {kind} or {kind}:"
                           + ("DIR" if kind == "tensorboard" else "URI"))
    return LogSpec(kind, target.strip())


def parse_log_specs(texts: Iterable[str | LogSpec] | str | None) -> tuple[LogSpec, ...]:
    """Parse every ``--log`` value (``None`` or empty = no tracking); duplicates are dropped, order kept.

    Raises:
        LogSpecError: see :func:`parse_log_spec`.
    """
    if texts is None:
        return ()
    if isinstance(texts, (str, LogSpec)):
        texts = [texts]
    out: list[LogSpec] = []
    for t in texts:
        spec = parse_log_spec(t)
        if spec not in out:
            out.append(spec)
    return tuple(out)


def check_log_specs(texts: Iterable[str | LogSpec] | str | None) -> tuple[LogSpec, ...]:
    """Parse the specs and check that each tracker's extra is importable — before any work starts.

    Imports nothing (``importlib.util.find_spec``), so it costs milliseconds.

    Returns:
        The parsed specs.

    Raises:
        LogSpecError: a malformed spec. MissingExtraError: the extra is not installed; the one-line
            message names the ``pip install`` that fixes it.
    """
    specs = parse_log_specs(texts)
    for spec in specs:
        module, extra = KINDS[spec.kind]
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(f"--log {spec.kind} needs the {extra} extra: pip install 'clipstyle[{extra}]'")
    return specs
