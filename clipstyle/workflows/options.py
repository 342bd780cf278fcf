"""Options shared by several workflows, declared once: the network, CLIP, seeds, styleblocks, constraints.

Each function returns a settings field (:func:`~clipstyle.workflows.base.option`), so a workflow writes
``network: str = network_option()`` and every workflow that has a network has the same flag, help text,
default and checks. The checks here look only at syntax and files; what needs the loaded network (a
block index beyond ``num_ws``, a class beyond ``c_dim``) is checked by the pipeline before CLIP loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clipstyle.optimize.precision import COMPILE_MODES, PRECISIONS  # torch-free: the names only
from clipstyle.workflows.base import SettingsError, check_input_file, option, resolve_path

__all__ = [
    "COMPILE_MODES", "MAX_LR", "PRECISIONS", "compile_option", "blend_option", "blocks_option", "class_option", "clip_model_option",
    "clip_pretrained_option", "lr_option", "mix_option", "network_option", "precision_option",
    "save_every_option", "seed_option", "steps_option", "truncation_option", "check_prompt", "latent_network",
    "resolve_sources",
]

#: Largest learning rate accepted: Adam moves each coordinate by about lr per step, so anything near
#: float32's range overflows inside the optimizer instead of optimizing.
MAX_LR = 1e4
#: Seeds are NumPy ``RandomState`` seeds, as NVIDIA's scripts use them.
MAX_SEED = 2**32 - 1


def network_option(default: str | None = "ffhq", help: str | None = None) -> Any:  # noqa: A002
    """``--network/-n``: an alias, a checkpoint path or a URL."""
    return option(default, short="-n", input_file=True, aliases=True, help=help or (
        "Generator: an alias (ffhq, metfaces, sg3-ffhq-r…; see 'clipstyle networks'), a checkpoint path, or a "
        "file:// / https:// URL."))


def clip_model_option() -> Any:
    """``--clip-model``: an open_clip model name or a model-config JSON."""
    return option("ViT-B-32", check=_check_clip_model, help=(
        "open_clip model name (ViT-B-32, ViT-L-14…) or a path to an open_clip model-config .json."))


def clip_pretrained_option() -> Any:
    """``--clip-pretrained``: an open_clip weights tag, a local checkpoint, or ``none``."""
    return option("openai", check=_check_clip_pretrained, resolve=_resolve_if_file, help=(
        "open_clip pretrained tag (openai, laion2b_s34b_b79k…), a local checkpoint path, or 'none' for random "
        "weights (tests)."))


def steps_option(default: int, help: str = "Optimization steps.") -> Any:  # noqa: A002
    """``--steps``: at least 1."""
    return option(default, minimum=1, maximum=10**7, help=help)


def lr_option(default: float | None, help: str | None = None) -> Any:  # noqa: A002
    """``--lr``: the peak Adam learning rate, > 0 and at most :data:`MAX_LR`."""
    return option(default, above=0.0, maximum=MAX_LR, help=help or (
        "Peak Adam learning rate (ramped up over the first 5% of steps, cosine ramp-down over the last 25%)."))


def seed_option(help: str | None = None) -> Any:  # noqa: A002
    """``--seed``: a NumPy seed in 0 … 2³²−1, or None."""
    return option(None, minimum=0, maximum=MAX_SEED, help=help or (
        "Start from the image of this seed (same z as NVIDIA's gen_images.py) instead of the average latent "
        "w_avg."))


def truncation_option(default: float = 1.0, help: str | None = None) -> Any:  # noqa: A002
    """``--truncation``: ψ, finite (1 = none)."""
    return option(default, minimum=-10.0, maximum=10.0, help=help or (
        "Truncation psi for the seed's start latent (1 = none)."))


def class_option() -> Any:
    """``--class``: labels of conditional networks."""
    return option(None, flag="--class", numbers=True, check=_check_class, resolve=_resolve_if_file, help=(
        "Class label(s) for conditional networks: K, K1,K2,… (sum), …@S (scaled) or a .npy vector."))


def blocks_option(help: str | None = None) -> Any:  # noqa: A002
    """``--blocks``: styleblocks (rows of ``ws``) as indices, ranges and groups."""
    return option(None, numbers=True, check=_check_blocks, help=help or (
        "Styleblocks (rows of ws) to optimize, e.g. 0-3,8 or coarse,middle; the other rows stay exactly at the "
        "start."))


def mix_option() -> Any:
    """``--mix SOURCE:BLOCKS`` (repeatable)."""
    return option((), check=_check_mix, resolve=_resolve_mix, help=(
        "Style mixing constraint SOURCE:BLOCKS (repeatable): fix those rows to another latent, e.g. 42:0-3, "
        "42@0.7:coarse, face.npz:fine."))


def blend_option(help: str | None = None) -> Any:  # noqa: A002
    """``--blend NETWORK@RES[:SMOOTH]``."""
    return option(None, check=_check_blend, help=help or (
        "Optimize and render in a blended network NETWORK@RES[:SMOOTH]: layers up to RES from --network, the "
        "rest from NETWORK."))


def precision_option(trained: str = "the latent") -> Any:
    """``--precision``: the precision of the networks' forward passes (generator and CLIP); ``trained``
    names what the optimization trains (it stays float32)."""
    return option("fp32", choices=PRECISIONS, help=(
        "Precision of the generator's and CLIP's forward passes: fp32, tf32 (Ampere+ GPUs), bf16 or fp16 autocast, "
        f"or auto (the fastest mode measured safe for this network on this device); {trained}, Adam and the loss "
        "stay float32. run.json records what ran."))


def compile_option() -> Any:
    """``--compile``: torch.compile / channels-last for the generator and CLIP."""
    return option("off", choices=COMPILE_MODES, help=(
        "torch.compile and/or channels-last memory format for the generator and CLIP's image tower: off, compile, "
        "channels-last, both, or auto (compile on CUDA, off on the CPU where it does not pay). Results are "
        "unchanged; the first step includes the compile time."))


def save_every_option() -> Any:
    """``--save-every``: a GIF frame every N steps."""
    return option(10, minimum=1, help="Keep a GIF frame every N steps.")


# ----------------------------------------------------------------------------- checks (syntax, files)

def check_prompt(value: str, flag: str) -> None:
    """A weighted prompt's syntax and its ``@image`` files, before anything loads.

    Raises:
        SettingsError: a malformed weight, an empty segment, a missing image prompt file.
    """
    if not value.strip():
        return
    from clipstyle.guidance.prompts import parse_prompts

    try:
        items = parse_prompts(value)
    except ValueError as exc:  # GuidanceError
        raise SettingsError(f"{flag}: {exc}") from None
    for item in items:
        if getattr(item, "image", None):
            check_input_file(item.image, f"{flag} (image prompt)", "image")


def _check_clip_model(value: str, flag: str) -> None:
    if not value.strip():
        raise SettingsError(f"{flag} is empty: give an open_clip model name such as ViT-B-32")
    if value.lower().endswith(".json"):
        check_input_file(value, flag, "model-config JSON")


def _check_clip_pretrained(value: str, flag: str) -> None:
    if not value.strip():
        raise SettingsError(f"{flag} is empty: give a tag such as openai, a checkpoint path, or none")
    if any(sep in value for sep in ("/", "\\")) or Path(value).suffix:
        check_input_file(value, flag, "CLIP checkpoint")


def _check_class(value: str, flag: str) -> None:
    if value.strip().lower().endswith(".npy"):
        check_input_file(value.strip(), flag, "label vector (.npy)")


def _check_blocks(value: str, flag: str) -> None:
    import re

    if not value.strip():
        raise SettingsError(f"{flag} is empty: give rows such as 0-3,8 or coarse,middle,fine")
    for item in value.split(","):
        item = item.strip().lower()
        if not item or not (item in ("coarse", "middle", "fine", "all") or re.fullmatch(r"\d+(-\d+)?", item)):
            raise SettingsError(f"{flag}: bad styleblock {item!r} in {value!r}: use indices and ranges (0-3,8) or "
                                f"groups (coarse, middle, fine, all)")


def _check_mix(value: tuple[str, ...], flag: str) -> None:
    for item in value:
        source, sep, blocks = item.rpartition(":")
        if not sep or not source.strip() or not blocks.strip():
            raise SettingsError(f"{flag} {item!r}: use SOURCE:BLOCKS, e.g. 42:0-3 or face.npz:fine")
        _check_blocks(blocks, f"{flag} {item!r}")


def _check_blend(value: str, flag: str) -> None:
    from clipstyle.latents.constraints import parse_blend_spec

    try:
        parse_blend_spec(value)
    except ValueError as exc:  # SpecError
        raise SettingsError(str(exc).replace("--blend", flag, 1)) from None


def _resolve_if_file(value: Any, base: Path) -> Any:
    if isinstance(value, str) and (base / value).is_file():
        return str((base / value).resolve())
    return value


def _resolve_mix(value: Any, base: Path) -> Any:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        return value
    out = []
    for item in items:
        if isinstance(item, str):
            source, sep, blocks = item.rpartition(":")
            file_part = source.split("#")[0]
            if sep and file_part.endswith(".npz") and not Path(file_part).is_absolute():
                item = f"{resolve_path(source, base)}:{blocks}"
        out.append(item)
    return out


def resolve_sources(value: Any, base: Path) -> Any:
    """A job file's latent sources (``42``, ``0-3``, ``face.npz``, ``face.npz#1``, comma lists, or a list of
    them) with relative ``.npz`` files made absolute against the job file's folder."""
    if isinstance(value, (list, tuple)):
        return [resolve_sources(v, base) for v in value]
    if not isinstance(value, str):
        return value
    items = []
    for item in value.split(","):
        file_part, hash_, index = item.strip().partition("#")
        if file_part.lower().endswith((".npz", ".npy", ".pt", ".pth")) and not Path(file_part).is_absolute():
            item = str(resolve_path(file_part, base)) + hash_ + index
        items.append(item)
    return ",".join(items)


def latent_network(source: str | None, network: str | None) -> str:
    """The network that renders latent source ``source`` (a seed spec or a latent file, ``FILE#i``) — the one
    rule every command that reads latents uses: ``network`` when given; else the tuned generator the file
    names; else the network the file records; else ``ffhq`` (:func:`clipstyle.pipelines.common.network_for_latents`).
    """
    from clipstyle.pipelines.common import latent_file_of, network_for_latents

    path = latent_file_of(source) if source else None
    return network_for_latents(path, network)


def check_photo(value: str, flag: str) -> None:
    """A photo option: an existing regular file whose header is an image PIL can read (pixels are decoded
    later, budgeted, by :mod:`clipstyle.io.images`), so a wrong file is named before any model loads.

    Raises:
        SettingsError: not a readable file. ImageError: not an image (exit 1, as when the pixels are read).
    """
    check_input_file(value, flag, "photo")
    from clipstyle.io.images import check_image

    check_image(value)
