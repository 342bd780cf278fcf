"""The error types every layer may raise, and how the command line turns them into exit codes.

This module imports nothing of ours and nothing heavy, so any package (io, latents, generator,
pipelines, the UI) can import it without importing the CLI, and the CLI can classify an exception
while another import (torch's, say) is half done — the cause of the old Ctrl-C segfaults was an
``except`` clause that imported modules to find the classes to match.

Exit codes (documented in docs/newcomer.md):

* ``0`` success;
* ``1`` a runtime problem or a bad input file (:class:`UserRuntimeError`, :class:`BadFileError`,
  offline, a download, a corrupt checkpoint, a non-finite loss) — and internal errors (bugs), which
  additionally print their traceback;
* ``2`` a mistake in the command line: :class:`UsageError` and the classes mapped to it below —
  never any other exception;
* ``130`` interrupted (Ctrl-C); the best result so far is kept where the command has one.
"""

from __future__ import annotations

import signal
import sys
from typing import Optional

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_RUNTIME",
    "EXIT_USAGE",
    "BadFileError",
    "ClipstyleError",
    "NonFiniteLossError",
    "NonFiniteLossWarning",
    "UsageError",
    "UserRuntimeError",
    "exit_code_for",
    "interrupt_requested",
]

EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class ClipstyleError(Exception):
    """Base of the errors meant for a user: ``str()`` is one line; ``exit_code`` is what the CLI returns."""

    exit_code = EXIT_RUNTIME


class UsageError(ClipstyleError, ValueError):
    """A mistake in the command line or in the arguments of a public function (exit code 2)."""

    exit_code = EXIT_USAGE


class BadFileError(ClipstyleError, ValueError):
    """An input file that exists but cannot be used as what it was given as (exit code 1).

    Subclass this for file-format errors (checkpoints, latent files, images) in new code.
    """

    exit_code = EXIT_RUNTIME


class UserRuntimeError(ClipstyleError, RuntimeError):
    """The command line was fine but the work cannot be done: offline, a failed render… (exit code 1)."""

    exit_code = EXIT_RUNTIME


class NonFiniteLossError(UserRuntimeError, FloatingPointError):
    """The optimization produced NaN or infinity; ``str()`` names the cause (exit code 1)."""


class NonFiniteLossWarning(RuntimeWarning):
    """Issued by the optimization loop when it stops on a non-finite value and returns the best so far.

    The CLI turns it into a :class:`NonFiniteLossError` line (exit 1) after the command saved its result.
    """


# Classes defined elsewhere that predate this module, mapped explicitly: (module, class) → exit code.
# They are looked up in ``sys.modules`` only — never imported here: an exception of a class whose module
# was never imported cannot have been raised.
MAPPED: dict[tuple[str, str], int] = {
    ("clipstyle.latents.latent", "BlockSpecError"): EXIT_USAGE,
    ("clipstyle.latents.latent", "LatentFileError"): EXIT_USAGE,
    ("clipstyle.latents.constraints", "SpecError"): EXIT_USAGE,
    ("clipstyle.latents.directions", "DirectionError"): EXIT_USAGE,
    ("clipstyle.guidance.clip", "GuidanceError"): EXIT_USAGE,
    ("clipstyle.guidance.recipes", "RecipeError"): EXIT_USAGE,
    ("clipstyle.io.images", "ImageError"): EXIT_USAGE,
    ("clipstyle.io.files", "OutputExistsError"): EXIT_USAGE,
    ("clipstyle.inversion.align", "AlignmentError"): EXIT_USAGE,
    ("clipstyle.latents.labels", "LabelError"): EXIT_USAGE,
    ("clipstyle.pipelines.photo_parts", "PhotoOptionError"): EXIT_USAGE,
    ("clipstyle.generator.formats.writers", "UnwritableFormatError"): EXIT_USAGE,
    ("clipstyle.optimize.devices", "DeviceError"): EXIT_USAGE,
    ("clipstyle.batch.ray_runner", "RayMissingError"): EXIT_USAGE,
    ("clipstyle.batch.jobs", "JobFileError"): EXIT_RUNTIME,
    ("clipstyle.batch.ray_runner", "RayError"): EXIT_RUNTIME,
    ("clipstyle.batch.folders", "FolderTakenError"): EXIT_RUNTIME,
    ("clipstyle.batch.manifest", "BatchLockedError"): EXIT_RUNTIME,
    ("clipstyle.batch.execute", "PipelineMissingError"): EXIT_RUNTIME,
    ("clipstyle.inversion.lpips", "LPIPSWeightsError"): EXIT_RUNTIME,
    ("clipstyle.io.cache", "DownloadError"): EXIT_RUNTIME,
    ("clipstyle.io.offline", "OfflineError"): EXIT_RUNTIME,
    ("clipstyle.generator.formats.common", "CheckpointError"): EXIT_RUNTIME,
    ("clipstyle.generator.formats.safe_pickle", "UnsafePickleError"): EXIT_RUNTIME,
    ("clipstyle.generator.formats.safe_pickle", "CorruptPickleError"): EXIT_RUNTIME,
    ("clipstyle.render.files", "RenderError"): EXIT_RUNTIME,
    ("clipstyle.kernels._build", "KernelBuildError"): EXIT_RUNTIME,
}

# Built-in exceptions that always mean the user's input: a missing file named on the command line.
_BUILTIN_USAGE: tuple[type[BaseException], ...] = (FileNotFoundError, IsADirectoryError, NotADirectoryError)


def exit_code_for(exc: BaseException) -> Optional[int]:
    """The exit code of a user-facing error, or ``None`` for anything else (an internal error: a bug).

    Never imports a module (safe inside an ``except`` clause while an import is half done).
    """
    if isinstance(exc, ClipstyleError):
        return exc.exit_code
    for (module, name), code in MAPPED.items():
        mod = sys.modules.get(module)
        cls = getattr(mod, name, None) if mod is not None else None
        if isinstance(cls, type) and isinstance(exc, cls):
            return code
    if isinstance(exc, _BUILTIN_USAGE) and getattr(exc, "filename", None) is not None:
        return EXIT_USAGE
    if isinstance(exc, (MemoryError, FloatingPointError)):
        return EXIT_RUNTIME
    if isinstance(exc, OSError) and exc.errno is not None:  # disk full, permission denied… (not a bug)
        return EXIT_RUNTIME
    return None


def interrupt_requested() -> bool:
    """True once Ctrl-C was pressed inside a command run by the CLI (see ``cli.common.InterruptWatch``).

    Long loops check it before each step, so a command with several phases (projection, then edit) stops
    as a whole instead of running the next phase. Outside the CLI it is always False.
    """
    handler = signal.getsignal(signal.SIGINT)
    return bool(getattr(handler, "interrupted", False))
