"""Experiment tracking: ``--log tensorboard[:DIR]`` and ``--log mlflow[:URI]`` (``log=`` in the pipelines).

Torch-free at import; TensorBoard and MLflow are imported when a tracker starts (on its own thread).

The spine's entry points:

* :func:`check_log_specs` — parse ``--log`` values and check the extras, raising
  :class:`MissingExtraError` (a :class:`~clipstyle.errors.UsageError`) before any work;
* :func:`open_trackers` — ``open_trackers(log, name, settings=…) -> Trackers``: a context manager whose
  ``.callback(info, images)`` goes into the loop's callbacks and whose ``.finish(run, folder)`` logs the
  end (final image, metrics, settings, MLflow artifacts) and closes;
* :func:`tracking` — what a pipeline function does with its ``log=`` argument: open trackers for specs
  (and finish them itself), or borrow a :class:`Trackers` the caller opened (the CLI, to finish it with the
  saved folder), or do nothing for ``None``.

Logged per run: ``loss/total``, ``loss/<term>`` and ``lr`` every step (the same numbers as ``run.json``'s
``loss_history``), the step's images every ``preview_every`` steps (``preview``), the final image
(``result``), ``loss/best`` and the numbers of ``run.json``'s extra keys (``metrics/…``), every setting as a
hyper-parameter, and for MLflow the run folder as artifacts. See docs/tracking.md.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Mapping, Sequence

from clipstyle.tracking.base import Tracker, TrackerWarning, Trackers, flat_metrics, param_value, scalar_tag
from clipstyle.tracking.specs import (
    LogSpec,
    LogSpecError,
    MissingExtraError,
    check_log_specs,
    parse_log_spec,
    parse_log_specs,
)

__all__ = ["LogSpec", "LogSpecError", "MissingExtraError", "Tracker", "TrackerWarning", "Trackers", "check_log",
           "check_log_specs", "flat_metrics", "make_tracker", "open_trackers", "param_value", "parse_log_spec",
           "parse_log_specs", "scalar_tag", "tracking", "with_phase"]

LogArg = "Sequence[str | LogSpec | Tracker] | str | Trackers | None"


def check_log(log: Any) -> None:
    """Check a pipeline's ``log=`` argument before any work: its specs parse and their extras are installed
    (tracker objects and an opened :class:`Trackers` pass as they are).

    Raises:
        LogSpecError / MissingExtraError: see :func:`check_log_specs`.
    """
    if log is None or isinstance(log, Trackers):
        return
    items = [log] if isinstance(log, (str, LogSpec)) else list(log)
    check_log_specs([x for x in items if isinstance(x, (str, LogSpec))])


def make_tracker(spec: str | LogSpec) -> Tracker:
    """The tracker object of one spec (not started: :class:`Trackers` starts it on its thread).

    Raises:
        LogSpecError: a malformed spec. MissingExtraError: its extra is not installed.
    """
    (spec,) = check_log_specs([spec])
    if spec.kind == "tensorboard":
        from clipstyle.tracking.tensorboard_tracker import TensorBoardTracker

        return TensorBoardTracker(spec.resolved_target())
    from clipstyle.tracking.mlflow_tracker import MlflowTracker

    return MlflowTracker(spec.resolved_target())


def open_trackers(log: Sequence[str | LogSpec | Tracker] | str | None, name: str, *,
                  settings: Mapping[str, Any] | None = None, group: str | None = None,
                  preview_every: int = 10, warn: Callable[[str], None] | None = None) -> Trackers:
    """Start one tracker run per ``log`` entry for the run ``name``.

    Args:
        log: ``--log`` specs (``"tensorboard"``, ``"tensorboard:DIR"``, ``"mlflow"``, ``"mlflow:URI"``),
            :class:`LogSpec` objects or your own :class:`Tracker` objects; ``None``/empty = no tracking
            (the returned :class:`Trackers` is falsy and does nothing).
        name: the run's name (prompt, photo stem). group: a batch's name (its jobs are grouped).
        settings: settings to log at once (more are logged by :meth:`Trackers.finish`).
        preview_every: log the images every this many steps (the run's ``save_every``; 0 = never).
        warn: reports a tracker failure (one line); default :func:`warnings.warn` with :class:`TrackerWarning`.

    Returns:
        :class:`Trackers` (a context manager; :meth:`Trackers.finish` or leaving the ``with`` closes it).

    Raises:
        LogSpecError / MissingExtraError: a bad spec or a missing extra (checked for every spec first).
    """
    if isinstance(log, (str, LogSpec)):
        log = [log]
    items = list(log or ())
    check_log_specs([x for x in items if isinstance(x, (str, LogSpec))])
    trackers = [make_tracker(x) if isinstance(x, (str, LogSpec)) else x for x in items]
    return Trackers(trackers, name, group=group, preview_every=preview_every, settings=settings, warn=warn)


class _Borrowed:
    """A caller's :class:`Trackers` lent to a pipeline: its callbacks, but finishing stays with the caller."""

    def __init__(self, trackers: Trackers) -> None:
        self.trackers = trackers
        self.callback = trackers.callback
        self.phase_callback = trackers.phase_callback
        self.log_settings = trackers.log_settings
        self.log_scalars = trackers.log_scalars

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def finish(self, run: Any, folder: Any = None) -> None:
        """Nothing: the owner finishes (with the saved folder)."""


@contextlib.contextmanager
def tracking(log: Any, name: str, *, settings: Mapping[str, Any] | None = None, group: str | None = None,
             preview_every: int = 10) -> Iterator[Any]:
    """A pipeline's ``log=`` argument as trackers for the duration of the pipeline.

    ``log`` is ``None`` (no tracking), a :class:`Trackers` the caller opened (lent: the pipeline's
    ``finish`` does nothing, the caller finishes it after :meth:`Run.save` with the folder), or specs /
    tracker objects (opened here; the pipeline calls ``finish(run)`` before returning, and a run that
    raises closes them as ``failed``).

    Yields:
        An object with ``callback(info, images)``, ``phase_callback(phase)``, ``log_settings``,
        ``log_scalars`` and ``finish(run, folder=None)``; falsy when nothing is tracked.

    Raises:
        LogSpecError / MissingExtraError: see :func:`open_trackers`.
    """
    if isinstance(log, Trackers):
        yield _Borrowed(log)
        return
    with open_trackers(log, name, settings=settings, group=group, preview_every=preview_every) as trackers:
        yield trackers


def with_phase(callback: Callable[[Any, Any], None] | None, trackers: Any,
               phase: str = "") -> Callable[[Any, Any], None] | None:
    """One loop callback: ``callback`` (may be None) and, when ``trackers`` track anything, their callback for
    ``phase`` (tags ``phase/…``; ``""`` = the workflow's main loop). None when there is nothing to call."""
    track = trackers.phase_callback(phase) if trackers else None
    if track is None:
        return callback
    if callback is None:
        return track

    def both(info: Any, images: Any) -> None:
        callback(info, images)
        track(info, images)

    return both
