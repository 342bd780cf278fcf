"""Curated edit recipes and CLIP prompt templates, shipped as TOML in the top-level ``prompts/``
(in the wheel: the data package ``clipstyle.prompts``).

A recipe (one TOML table; the table name is the recipe name, the file stem its category) holds:

* ``target`` / ``source``: the texts of the directional CLIP loss (Gal et al. 2021, StyleGAN-NADA:
  the image must change the way the text changes from ``source`` to ``target``);
* ``blocks``: the styleblocks to optimize — group names ``coarse`` / ``middle`` / ``fine``, ``all``,
  or indices — resolved per network by :func:`recipe_rows`;
* ``strength``: weight of the directional CLIP term (1 = nominal);
* ``strengths``: suggested ``[low, high]`` range for ``direction apply --strength``;
* ``keep``: weight of the *mean* squared latent change ``mean((ws − ws0)²)``; as a
  :class:`~clipstyle.guidance.LatentL2` (a *sum*) weight that is ``keep / (num_ws·w_dim)``
  (:func:`keep_weight`), so one value suits 10×64 and 18×512 latents alike.

``templates.toml`` is not a recipe file: its ``templates`` list holds prompt templates (one ``{}``
each) for text ensembling (Radford et al. 2021, §3.1.4).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import tomllib

from clipstyle.errors import UsageError

__all__ = ["Recipe", "RecipeError", "list_recipes", "get_recipe", "parse_recipe_file", "recipe_rows",
           "depth_groups", "keep_weight", "load_templates", "normalize_name"]

TEMPLATES_FILE = "templates.toml"
_FIELDS = {"description", "target", "source", "blocks", "strength", "strengths", "keep"}
_REQUIRED = ("target", "source", "blocks")
_GROUPS = ("coarse", "middle", "fine")


class RecipeError(UsageError):
    """An unknown recipe name or a malformed recipe file (one-line message)."""


@dataclass(frozen=True)
class Recipe:
    """One curated edit (see the module docstring for the fields' meaning).

    Attributes:
        name: normalized name (lower case, ``_`` for spaces and dashes).
        category: the TOML file's stem (``faces``, ``pose``, ``styles``).
        description: one line.
        target, source: texts of the directional loss.
        blocks: block spec string (e.g. ``"middle,fine"``).
        strength: weight of the CLIP term, > 0.
        strengths: ``(low, high)`` suggested direction strengths.
        keep: weight of the mean squared latent change, >= 0.
    """

    name: str
    category: str
    description: str
    target: str
    source: str
    blocks: str
    strength: float = 1.0
    strengths: tuple[float, float] = (-3.0, 3.0)
    keep: float = 0.0

    def rows(self, num_ws: int, groups: Sequence[str] | None = None) -> tuple[int, ...]:
        """The latent rows this recipe edits (:func:`recipe_rows`)."""
        return recipe_rows(self, num_ws, groups)

    def keep_weight(self, num_ws: int, w_dim: int) -> float:
        """The latent-L2 weight of :attr:`keep` (:func:`keep_weight`)."""
        return keep_weight(self, num_ws, w_dim)


def normalize_name(name: str) -> str:
    """``"Blond hair"`` / ``"blond-hair"`` → ``"blond_hair"``."""
    return "_".join(str(name).strip().lower().replace("-", " ").split())


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RecipeError(f"{what} must be a number, got {value!r}")
    return float(value)


def parse_recipe_text(text: str, category: str, origin: str = "<recipes>") -> list[Recipe]:
    """Parse the TOML text of a recipe file.

    Raises:
        RecipeError: invalid TOML, a table without ``target``/``source``/``blocks``, unknown keys,
            wrong types, ``strength <= 0``, ``keep < 0``, or ``strengths`` not two numbers.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{origin} is not valid TOML: {exc}") from None
    out = []
    for raw_name, table in data.items():
        where = f"{origin} [{raw_name}]"
        if not isinstance(table, dict):
            raise RecipeError(f"{where}: a recipe must be a table, got {type(table).__name__}")
        unknown = sorted(set(table) - _FIELDS)
        if unknown:
            raise RecipeError(f"{where}: unknown keys {', '.join(unknown)}")
        missing = [k for k in _REQUIRED if not isinstance(table.get(k), str) or not table[k].strip()]
        if missing:
            raise RecipeError(f"{where}: needs text values for {', '.join(missing)}")
        strength = _number(table.get("strength", 1.0), f"{where} strength")
        if strength <= 0:
            raise RecipeError(f"{where}: strength must be > 0")
        keep = _number(table.get("keep", 0.0), f"{where} keep")
        if keep < 0:
            raise RecipeError(f"{where}: keep must be >= 0")
        rng = table.get("strengths", [-3.0, 3.0])
        if not isinstance(rng, list) or len(rng) != 2:
            raise RecipeError(f"{where}: strengths must be [low, high]")
        lo, hi = (_number(v, f"{where} strengths") for v in rng)
        out.append(Recipe(normalize_name(raw_name), category, str(table.get("description", "")).strip(),
                          table["target"].strip(), table["source"].strip(), table["blocks"].strip(),
                          strength, (lo, hi), keep))
    return out


def parse_recipe_file(path: str | Path) -> list[Recipe]:
    """Parse one recipe ``.toml`` file (category = file stem). Raises :class:`RecipeError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_recipe_text(text, path.stem, str(path))


def prompts_folder() -> Any:
    """The folder of the shipped recipe files: the data package ``clipstyle.prompts`` of an installed wheel
    (or an editable install), else the repository's top-level ``prompts/`` beside the source package."""
    try:
        return resources.files("clipstyle.prompts")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "prompts"


def _prompt_files() -> list[Any]:
    folder = prompts_folder()
    return sorted((f for f in folder.iterdir() if f.name.endswith(".toml") and f.name != TEMPLATES_FILE),
                  key=lambda f: f.name)


def _builtin() -> tuple[Recipe, ...]:
    recipes: dict[str, Recipe] = {}
    for f in _prompt_files():
        for r in parse_recipe_text(f.read_text(encoding="utf-8"), f.name[: -len(".toml")], f.name):
            if r.name in recipes:
                raise RecipeError(f"recipe {r.name!r} is defined twice ({recipes[r.name].category}, {r.category})")
            recipes[r.name] = r
    return tuple(sorted(recipes.values(), key=lambda r: (r.category, r.name)))


def list_recipes() -> list[Recipe]:
    """Every shipped recipe, sorted by category then name."""
    return list(_builtin())


def get_recipe(name: str) -> Recipe:
    """The shipped recipe called ``name`` (case, spaces and dashes are ignored: ``"Blond hair"``).

    Raises:
        RecipeError: no such recipe (the message suggests close names and ``clipstyle recipes``).
    """
    key = normalize_name(name)
    for r in _builtin():
        if r.name == key:
            return r
    names = [r.name for r in _builtin()]
    close = difflib.get_close_matches(key, names, n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise RecipeError(f"unknown recipe {name!r}; {hint}'clipstyle recipes' lists them")


def depth_groups(num_ws: int) -> list[str]:
    """Groups by depth, for networks whose rows do not cover every group (e.g. StyleGAN3).

    The split of FFHQ StyleGAN (18 rows: coarse 0–3, middle 4–7, fine 8–17) scaled to ``num_ws``:
    row ``i`` is coarse if ``i < ceil(num_ws·4/18)``, middle if ``i < ceil(num_ws·8/18)``, else fine.
    """
    a, b = math.ceil(num_ws * 4 / 18), math.ceil(num_ws * 8 / 18)
    return ["coarse" if i < a else "middle" if i < b else "fine" for i in range(num_ws)]


def recipe_rows(blocks: str | Recipe, num_ws: int, groups: Sequence[str] | None = None) -> tuple[int, ...]:
    """Resolve a recipe's block spec for a network.

    Each comma item is a group name, ``all``, an index or a range. A group name uses the network's
    own row groups (``G.block_groups()``); when the network has no row in that group (StyleGAN3's
    first layers already run at 16², so it has no coarse rows) or ``groups`` is None, the group
    comes from :func:`depth_groups` instead.

    Returns:
        Sorted unique row indices.

    Raises:
        BlockSpecError: a malformed item or an index out of range.
    """
    from clipstyle.latents import parse_blocks

    spec = blocks.blocks if isinstance(blocks, Recipe) else str(blocks)
    fallback = depth_groups(num_ws)
    rows: set[int] = set()
    for item in spec.split(","):
        key = item.strip().lower()
        if key in _GROUPS:
            own = [i for i, g in enumerate(groups or ()) if g == key]
            rows.update(own or [i for i, g in enumerate(fallback) if g == key])
        else:
            rows.update(parse_blocks(item, num_ws, groups))
    return tuple(sorted(rows))


def keep_weight(recipe: Recipe, num_ws: int, w_dim: int) -> float:
    """The :class:`~clipstyle.guidance.LatentL2` weight equal to ``recipe.keep·mean((ws − ws0)²)``."""
    return recipe.keep / float(num_ws * w_dim)


def load_templates() -> tuple[str, ...]:
    """The shipped CLIP prompt templates (each contains exactly one ``{}``).

    Raises:
        RecipeError: the templates file is malformed.
    """
    text = prompts_folder().joinpath(TEMPLATES_FILE).read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{TEMPLATES_FILE} is not valid TOML: {exc}") from None
    items = data.get("templates")
    if not isinstance(items, list) or not items:
        raise RecipeError(f"{TEMPLATES_FILE} needs a non-empty 'templates' list")
    for t in items:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise RecipeError(f"{TEMPLATES_FILE}: every template needs exactly one {{}}, got {t!r}")
    return tuple(items)
