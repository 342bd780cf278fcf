"""Checks before work: every command's arguments validated by *parameter name*, before its body runs.

:func:`check_arguments` is called by :func:`clipstyle.cli.common.handle_errors` with the keyword arguments
Typer passes, so a new command whose options use the shared names (``outdir``, ``out``, ``photo``,
``latents``, ``network``, ``prompts`` …) is checked without code of its own. Nothing here
loads a network or imports torch: a mistake is reported in well under a second, before any work and
before any output folder exists.

To check a new kind of argument, add a function to :data:`CHECKS` under the parameter's name.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from clipstyle.cli.messages import warn
from clipstyle.errors import UsageError

__all__ = ["CHECKS", "check_arguments", "check_input_file", "check_outdir", "check_output_file",
           "read_prompts_lines"]

NETWORK_SUFFIXES = (".pkl", ".pt", ".pth", ".safetensors", ".ckpt")
LATENT_SUFFIXES = (".npz",)
#: What a latent source may be (torch .pt files hold latent tensors too: the latent reader tells them apart).
LATENT_FILE_SUFFIXES = (".npz", ".npy", ".pt", ".pth")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
CLIP_CONTEXT = 77  # tokens CLIP reads, start and end tokens included


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _writable_dir(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def _first_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_outdir(path: Path, option: str = "--outdir") -> None:
    """``path`` is a writable folder, or can be created as one. UsageError otherwise (nothing is created)."""
    p = Path(path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise UsageError(f"{option} {p} is a file, not a folder; choose a folder for the results")
        if not _writable_dir(p):
            raise UsageError(f"{option} {p} is not writable; choose another folder")
        return
    base = _first_existing(p)
    if not base.is_dir():
        raise UsageError(f"{option} {p} cannot be created: {base} is a file, not a folder")
    if not _writable_dir(base):
        raise UsageError(f"{option} {p} cannot be created: {base} is not writable")


def check_output_file(path: Path, option: str = "--out", overwrite: bool | None = None) -> None:
    """``path`` can be written as a file: not a folder, its folder exists and is writable, and it does not
    exist unless ``overwrite`` (None: the command has no ``--overwrite``; existing files are its business).

    Raises:
        UsageError / OutputExistsError (exit 2).
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise UsageError(f"{option} {p} is a folder; give a file path, e.g. {p / 'out.png'}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        what = "is a file" if parent.exists() else "does not exist"
        raise UsageError(f"the folder of {option} {what}: {parent}")
    if not _writable_dir(parent):
        raise UsageError(f"the folder of {option} is not writable: {parent}")
    if overwrite is False and (p.exists() or p.is_symlink()):
        from clipstyle.io.files import OutputExistsError

        raise OutputExistsError(p)


def check_input_file(path: str | os.PathLike[str], option: str, noun: str = "file") -> Path:
    """``path`` is a readable regular file: :func:`clipstyle.io.files.check_input_path`, the one check of every
    input file option (a folder, a FIFO, a device or an unreadable path is named as such; nothing is opened).

    Raises:
        InputPathError (a UsageError, exit 2).
    """
    from clipstyle.io.files import check_input_path

    return check_input_path(path, noun, option)


def _looks_like_path(value: str) -> bool:
    return "://" not in value and (os.sep in value or "/" in value or value.startswith("~") or bool(Path(value).suffix))


def check_network(value: str | None, option: str = "--network") -> None:
    """An alias/URL passes; a path must be an existing checkpoint file — and an .npz is named a latent file."""
    if not value or not _looks_like_path(str(value)):
        return
    p = Path(str(value)).expanduser()
    if p.suffix.lower() in LATENT_SUFFIXES:
        raise UsageError(f"{p} is a latent file (.npz), not a network; give it as the LATENTS argument or "
                         f"--latents, and a network checkpoint (.pkl, .pt, .safetensors) or alias as {option}")
    check_input_file(p, option, "network checkpoint")


def _latent_items(value: str | os.PathLike[str] | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        value = [os.fspath(value)]
    items: list[str] = []
    for v in value:
        items.extend(part.strip() for part in str(v).split(","))
    return [i for i in items if i]


def check_latent_sources(value: Any, option: str) -> None:
    """Latent sources (``face.npz``, ``face.npz#2``, seeds ``42``, ``0-3``, ``42@0.7``): files must exist."""
    for item in _latent_items(value):
        path = item.split("#", 1)[0]
        suffix = Path(path).suffix.lower()
        if suffix in NETWORK_SUFFIXES and suffix not in LATENT_FILE_SUFFIXES:
            raise UsageError(f"{path} is a network checkpoint, not a latent file (.npz); give networks with --network")
        if suffix in LATENT_FILE_SUFFIXES or (_looks_like_path(path) and Path(path).expanduser().exists()):
            check_input_file(path, option, "latent file")


def read_prompts_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, prompt)`` of a ``--prompts`` file, every line parsed before any run starts.

    Blank lines and ``#`` comments are skipped. Raises UsageError naming the line of a bad prompt
    (weights, empty segments, a missing ``@image``), or for a missing/unreadable/empty file.
    """
    p = check_input_file(path, "--prompts", "prompts file")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read prompts file {p}: {type(exc).__name__}") from None
    items = [(n, line.strip()) for n, line in enumerate(lines, 1)
             if line.strip() and not line.strip().startswith("#")]
    if not items:
        raise UsageError(f"{p} holds no prompt (one per line; # starts a comment)")
    from clipstyle.guidance.prompts import parse_prompts

    for n, text in items:
        try:
            parsed = parse_prompts(text)
        except ValueError as exc:
            raise UsageError(f"{p} line {n}: {exc}") from None
        for wp in parsed:
            image = getattr(wp, "image", None)
            if image and not Path(str(image)).expanduser().is_file():
                raise UsageError(f"{p} line {n}: no such image prompt file: {image}")
    return items


def _token_count(text: str) -> int:
    """CLIP BPE tokens of ``text`` including start/end (an upper bound without the tokenizer: characters)."""
    if len("".join(text.split())) + 2 <= CLIP_CONTEXT:
        return len(text.split()) + 2  # cannot be over the limit: every token holds at least one character
    try:
        from open_clip.tokenizer import SimpleTokenizer
    except Exception:  # noqa: BLE001 - no tokenizer: no warning
        return 0
    return len(SimpleTokenizer().encode(text)) + 2


def warn_long_prompt(text: str, where: str = "the prompt") -> None:
    for segment in str(text).split("|"):
        body = segment.rsplit(":", 1)[0] if ":" in segment else segment
        if body.strip().startswith("@"):
            continue
        n = _token_count(body.strip())
        if n > CLIP_CONTEXT:
            warn(f"{where} is {n} CLIP tokens long; CLIP reads only the first {CLIP_CONTEXT}, the rest is ignored: "
                 f"{' '.join(body.split()[:6])}…")


# --------------------------------------------------------------------------- the checks, by parameter name


def _outdir(kw: dict[str, Any]) -> None:
    if kw.get("outdir") is not None:
        check_outdir(kw["outdir"])


def _out(kw: dict[str, Any]) -> None:
    if kw.get("out") is not None:
        check_output_file(kw["out"], "--out", kw.get("overwrite") if "overwrite" in kw else None)


def _file(name: str, noun: str, label: str | None = None) -> Callable[[dict[str, Any]], None]:
    def check(kw: dict[str, Any]) -> None:
        if kw.get(name) is not None:
            check_input_file(kw[name], label or _flag(name), noun)
    return check


def _latents(kw: dict[str, Any]) -> None:
    check_latent_sources(kw.get("latents"), "--latents")


def _photo_or_latents(kw: dict[str, Any]) -> None:
    value = kw.get("photo_or_latents")
    if not value or kw.get("latents") is not None:
        return  # with --latents the argument is the prompt
    suffix = Path(str(value)).suffix.lower()
    p = Path(str(value)).expanduser()
    if suffix in LATENT_FILE_SUFFIXES:
        check_input_file(value, "PHOTO_OR_LATENTS", "latent file")
    elif suffix in IMAGE_SUFFIXES:
        check_input_file(value, "PHOTO_OR_LATENTS", "image")
    elif suffix in NETWORK_SUFFIXES:
        raise UsageError(f"{p} is a network checkpoint, not a photo or latent file; give it with --network")
    else:
        check_input_file(value, "PHOTO_OR_LATENTS", "photo or latent file")


def _network(name: str) -> Callable[[dict[str, Any]], None]:
    def check(kw: dict[str, Any]) -> None:
        check_network(kw.get(name), _flag(name) if name == "network" else name.split("_")[-1].upper())
    return check


def _blend(kw: dict[str, Any]) -> None:
    spec = kw.get("blend")
    if not spec:
        return
    net, _, rest = str(spec).rpartition("@")
    if not net:
        return  # the body reports the malformed spec
    res = rest.split(":", 1)[0].strip()
    if res.isdigit() and (int(res) < 4 or int(res) & (int(res) - 1)):
        raise UsageError(f"--blend {spec}: the resolution {res} is not a power of two >= 4 (e.g. 32)")
    check_network(net, "--blend")


def _clip_pretrained(kw: dict[str, Any]) -> None:
    value = kw.get("clip_pretrained")
    if value and _looks_like_path(str(value)):
        check_input_file(value, "--clip-pretrained", "CLIP checkpoint")


def _prompts(kw: dict[str, Any]) -> None:
    if kw.get("prompts") is not None:
        if str(kw.get("prompt") or "").strip():
            raise UsageError("give either a PROMPT or --prompts FILE, not both")
        for n, text in read_prompts_lines(kw["prompts"]):
            warn_long_prompt(text, f"--prompts line {n}")


def _prompt(kw: dict[str, Any]) -> None:
    if isinstance(kw.get("prompt"), str) and kw["prompt"].strip():
        warn_long_prompt(kw["prompt"])


#: Largest learning rate accepted: Adam moves each coordinate by about lr per step, so anything near
#: float32's range (3.4e38) overflows inside the optimizer instead of optimizing.
MAX_LR = 1e4


def _finite(name: str, positive: bool = False, most: float | None = None) -> Callable[[dict[str, Any]], None]:
    def check(kw: dict[str, Any]) -> None:
        value = kw.get(name)
        if isinstance(value, float) and (not math.isfinite(value) or (positive and value <= 0)):
            need = "a finite number > 0" if positive else "a finite number"
            raise UsageError(f"{_flag(name)} must be {need}, got {value}")
        if isinstance(value, float) and most is not None and value > most:
            raise UsageError(f"{_flag(name)} {value:g} is too large (at most {most:g}; Adam moves the latent by "
                             "about lr per step)")
    return check


def _truncation(kw: dict[str, Any]) -> None:
    _finite("truncation")(kw)
    psi = kw.get("truncation")
    if "seed" in kw and kw.get("seed") is None and psi is not None and psi != 1.0 and kw.get("batch", 1) == 1:
        if kw.get("latents") is None:
            warn(f"--truncation {psi} has no effect without --seed (the start is the average latent w_avg)")
        else:
            warn(f"--truncation {psi} has no effect on --latents (they are used as recorded)")


def _direction(kw: dict[str, Any]) -> None:
    value = kw.get("direction")
    if value is None:
        return
    p = check_input_file(value, "DIRECTION", "direction file")
    import numpy as np

    try:
        d = np.load(p, allow_pickle=False)
    except Exception:  # noqa: BLE001 - the body reports unreadable files with its own message
        return
    if isinstance(d, np.ndarray) and d.dtype.kind == "f":
        if not np.isfinite(d).all():
            raise UsageError(f"the direction {p} holds NaN or infinite values")
        if not np.any(d):
                    warn(f"the direction {p} is all zeros: every frame will be the same image")


def _positive_negative(kw: dict[str, Any]) -> None:
    if "positive" not in kw or "negative" not in kw:
        return
    sets = []
    for name in ("positive", "negative"):
        resolved = set()
        for item in kw.get(name) or []:
            p = Path(item).expanduser()
            if not p.exists():
                raise UsageError(f"no such file or folder: {p} (--{name})")
            if p.is_dir():
                resolved |= {q.resolve() for q in p.glob("*.npz")} or {p.resolve()}
            else:
                resolved.add(p.resolve())
        sets.append(resolved)
    if sets[0] and sets[0] == sets[1]:
        raise UsageError("--positive and --negative name the same latents; give two different sets")
    shared = sets[0] & sets[1]
    if shared:
        raise UsageError(f"{len(shared)} latent file(s) are in both --positive and --negative, e.g. "
                         f"{sorted(shared)[0]}")


#: Parameter name → check of the command's keyword arguments. Order matters only for which mistake is
#: reported first (inputs before outputs before warnings).
CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "network": _network("network"),
    "network_a": _network("network_a"),
    "network_b": _network("network_b"),
    "blend": _blend,
    "photo": _file("photo", "image"),
    "image_prompt": _file("image_prompt", "image"),
    "encoder": _file("encoder", "e4e checkpoint"),
    "id_weights": _file("id_weights", "ArcFace weights file"),
    "clip_pretrained": _clip_pretrained,
    "jobs": _file("jobs", "job file", "JOBS"),
    "photo_or_latents": _photo_or_latents,
    "latents": _latents,
    "sources": lambda kw: check_latent_sources(kw.get("sources"), "SOURCES"),
    "rows": lambda kw: check_latent_sources(kw.get("rows"), "--rows"),
    "cols": lambda kw: check_latent_sources(kw.get("cols"), "--cols"),
    "direction": _direction,
    "prompts": _prompts,
    "prompt": _prompt,
    "outdir": _outdir,
    "out": _out,
    "positive": _positive_negative,
    "truncation": _truncation,
    "lr": _finite("lr", positive=True, most=MAX_LR),
    "project_lr": _finite("project_lr", positive=True, most=MAX_LR),
    "strength": _finite("strength"),
}


def check_finite_numbers(kwargs: dict[str, Any]) -> None:
    """Every float option (or each float of a repeated one) is finite: ``nan``/``inf`` parse as floats but
    mean nothing to any option. Raises UsageError naming the option."""
    for name, value in kwargs.items():
        values = value if isinstance(value, (list, tuple)) else (value,)
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise UsageError(f"{_flag(name)} must be a finite number, got {v}")


def check_arguments(func: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Run every check of :data:`CHECKS` whose parameter the command has, after :func:`check_finite_numbers`.
    Raises UsageError on the first mistake."""
    check_finite_numbers(kwargs)
    for name, check in CHECKS.items():
        if name in kwargs:
            check(kwargs)
