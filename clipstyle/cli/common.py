"""What every command shares: user-error handling (one line on stderr, exit 1 or 2), devices, options."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])

EXIT_RUNTIME = 1
EXIT_USAGE = 2


class UsageError(ValueError):
    """A mistake in the command line (exit code 2)."""


def _classes(spec: list[tuple[str, str]]) -> tuple[type, ...]:
    import importlib

    out = []
    for module, name in spec:
        try:
            out.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(out)


# Errors that mean "the user asked for something that can't be": usage (2) or runtime (1).
_USAGE = [("clipstyle.latents", "BlockSpecError"), ("clipstyle.latents", "LatentFileError"),
          ("clipstyle.guidance", "GuidanceError"), ("clipstyle.io.images", "ImageError"),
          ("clipstyle.io.files", "OutputExistsError")]
_RUNTIME = [("clipstyle.io.cache", "DownloadError"), ("clipstyle.generator.formats.common", "CheckpointError"),
            ("clipstyle.generator.formats.safe_pickle", "UnsafePickleError"),
            ("clipstyle.generator.formats.safe_pickle", "CorruptPickleError"), ("clipstyle.render.files", "RenderError")]


def fail(message: str, code: int = EXIT_RUNTIME) -> typer.Exit:
    """Print ``error: message`` (one line) to stderr and return the ``typer.Exit`` to raise."""
    line = " ".join(str(message).split())
    print(f"error: {line}", file=sys.stderr)
    return typer.Exit(code)


def handle_errors(func: F) -> F:
    """Turn a user's mistake into one line on stderr and exit code 2 (usage) or 1 (runtime)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except (UsageError, FileNotFoundError, *_classes(_USAGE)) as exc:
            raise fail(str(exc), EXIT_USAGE) from None
        except (FloatingPointError, *_classes(_RUNTIME)) as exc:
            raise fail(str(exc), EXIT_RUNTIME) from None
        except ValueError as exc:  # our value checks (shapes, names) raise ValueError with one line
            raise fail(str(exc), EXIT_USAGE) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except MemoryError:
            raise fail("out of memory; try a smaller --cutouts or --batch, or a GPU", EXIT_RUNTIME) from None

    return wrapper  # type: ignore[return-value]


def resolve_device(device: str) -> str:
    """``auto`` → CUDA, else MPS, else CPU; an absent device → DeviceError (a ValueError, exit 2)."""
    from clipstyle.optimize import devices

    return devices.resolve_device(device)


def class_vector(c_dim: int, class_idx: int | None, n: int, device: str):
    """One-hot labels ``[n, c_dim]`` (``[n, 0]`` for unconditional networks)."""
    import torch

    c = torch.zeros([n, c_dim], device=device)
    if c_dim == 0:
        if class_idx is not None:
            raise UsageError("--class was given but this network is unconditional")
        return c
    if class_idx is None:
        raise UsageError(f"this network is conditional: pass --class K (0-{c_dim - 1})")
    if not 0 <= class_idx < c_dim:
        raise UsageError(f"--class must be in 0-{c_dim - 1}, got {class_idx}")
    c[:, class_idx] = 1
    return c
