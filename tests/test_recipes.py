"""Recipes: every shipped file parses, names blocks valid for 10, 16 and 18 styleblocks; templates;
``--recipe`` on the main command; ``clipstyle recipes``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clipstyle.generator.base import group_of_resolution
from clipstyle.guidance.recipes import (
    RecipeError,
    depth_groups,
    get_recipe,
    keep_weight,
    list_recipes,
    load_templates,
    parse_recipe_file,
    parse_recipe_text,
    recipe_rows,
)

from .test_creative_cli import CLIP_ARGS, load, network_path, run_cli, run_dir_of  # noqa: F401

REQUIRED = ["smile", "age", "beard", "glasses", "blond_hair", "bald", "makeup", "surprised", "angry", "pose_left",
            "pose_right", "painting", "sketch", "marble_statue", "pixar"]


def sg2_groups(resolution: int) -> list[str]:
    """Row groups of a StyleGAN2 of this resolution (b4: row 0; block 2^k: rows 2k−5, 2k−4; last torgb)."""
    rows = [4]
    res = 8
    while res <= resolution:
        rows += [res, res]
        res *= 2
    return [group_of_resolution(r) for r in rows + [resolution]]


def sg3_like_groups() -> list[str]:
    """StyleGAN3 at 64² by output sampling rate: input + 4 layers at 16, 4 at 32, 7 at 64 (fixture README)."""
    return [group_of_resolution(r) for r in [16] * 5 + [32] * 4 + [64] * 7]


def test_every_recipe_file_parses():
    from clipstyle.guidance.recipes import prompts_folder

    folder = prompts_folder()
    files = [f for f in folder.iterdir() if f.name.endswith(".toml") and f.name != "templates.toml"]
    assert len(files) >= 3
    names = []
    for f in files:
        recipes = parse_recipe_file(str(f))
        assert recipes, f.name
        names += [r.name for r in recipes]
    assert len(names) == len(set(names))
    assert set(REQUIRED) <= set(names)
    assert [r.name for r in list_recipes()] and {r.name for r in list_recipes()} == set(names)


@pytest.mark.parametrize("num_ws,groups", [(10, sg2_groups(64)), (18, sg2_groups(1024)), (16, sg3_like_groups()),
                                           (10, None), (16, None), (18, None)])
def test_blocks_are_valid_for_10_16_and_18_rows(num_ws, groups):
    assert groups is None or len(groups) == num_ws
    for r in list_recipes():
        rows = recipe_rows(r, num_ws, groups)
        assert rows and all(0 <= i < num_ws for i in rows), r.name
        assert r.strength > 0 and r.keep >= 0 and r.strengths[0] < r.strengths[1] and r.target != r.source


def test_real_networks_resolve_every_recipe():
    for kind in ("sg2", "sg3"):
        try:
            G = load(kind)
        except pytest.skip.Exception:
            continue
        for r in list_recipes():
            assert recipe_rows(r, G.num_ws, G.block_groups())


def test_groups_follow_the_network_and_fall_back_by_depth():
    assert recipe_rows("coarse", 18, sg2_groups(1024)) == (0, 1, 2)
    assert recipe_rows("coarse", 16, sg3_like_groups()) == (0, 1, 2, 3)  # no coarse rows: by depth
    assert depth_groups(18)[:4] == ["coarse"] * 4 and depth_groups(18)[4:8] == ["middle"] * 4
    assert recipe_rows("fine,0", 10, sg2_groups(64)) == (0, 7, 8, 9)
    assert recipe_rows("all", 16, None) == tuple(range(16))


def test_get_recipe_and_errors():
    assert get_recipe("Blond hair").name == "blond_hair" == get_recipe("blond-hair").name
    with pytest.raises(RecipeError, match="did you mean smile"):
        get_recipe("smil")
    r = get_recipe("smile")
    assert keep_weight(r, 18, 512) == pytest.approx(r.keep / (18 * 512))
    for bad, needle in [("[a]\ntarget='x'\n", "needs text"), ("[a]\ntarget='x'\nsource='y'\nblocks='fine'\nfoo=1\n",
                        "unknown keys"), ("[a]\ntarget='x'\nsource='y'\nblocks='fine'\nstrength=0\n", "> 0"),
                        ("[a]\ntarget='x'\nsource='y'\nblocks='fine'\nstrengths=[1]\n", "low, high"),
                        ("not toml [", "not valid TOML")]:
        with pytest.raises(RecipeError, match=needle):
            parse_recipe_text(bad, "test")


def test_templates():
    templates = load_templates()
    assert len(templates) >= 24 and len(set(templates)) == len(templates)
    assert all(t.count("{}") == 1 for t in templates)
    assert "a photo of a cat." in [t.format("a cat") for t in templates]


def test_recipe_on_the_main_command(tmp_path, capsys):
    net = network_path("sg2")
    G = load("sg2")
    code, out, err = run_cli(["--recipe", "pose_left", "--seed", 2, "--network", net, "--steps", 4, "--lr", 0.1,
                              *CLIP_ARGS, "--device", "cpu", "--quiet", "--cutouts", 2, "--outdir", tmp_path], capsys)
    assert code == 0, err
    d = run_dir_of(out)
    assert d.name == "pose-left"
    settings = json.loads((d / "run.json").read_text())["settings"]
    rows = list(recipe_rows(get_recipe("pose_left"), 10, G.block_groups()))
    assert settings["recipe"] == "pose_left" and settings["blocks"] == rows
    assert settings["l2"] == pytest.approx(keep_weight(get_recipe("pose_left"), 10, 64))
    hist = json.loads((d / "run.json").read_text())["loss_history"]
    assert "directional" in hist[0]
    import torch

    with np.load(d / "latents.npz") as f:
        ws = f["ws"]
    w0 = G.mapping(torch.from_numpy(np.random.RandomState(2).randn(1, 64)).float(), None)[0].numpy()
    np.testing.assert_array_equal(ws[0, max(rows) + 1:], w0[max(rows) + 1:])  # only the recipe's rows move
    assert np.abs(ws[0, rows] - w0[rows]).max() > 0


def test_recipes_command(capsys):
    code, out, err = run_cli(["recipes", "--json"], capsys)
    assert code == 0, err
    items = json.loads(out)
    assert {i["name"] for i in items} >= set(REQUIRED)
    assert all({"target", "source", "blocks", "strengths"} <= set(i) for i in items)
