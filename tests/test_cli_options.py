"""Issue 13 class 5: the same option means the same thing with the same default in every command.

Every command's options are collected from the CLI (click introspection), so a new command that reuses a
name with another default or meaning fails here — unless the divergence is listed in :data:`DIVERGENT` with
its reason (and documented in docs/newcomer.md), which a reviewer then sees.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clipstyle.cli import click_app, walk_commands

OPTIONS = {}
for _path, _cmd in walk_commands(click_app()):
    for _p in _cmd.params:
        OPTIONS.setdefault(_p.name, {})[" ".join(_path)] = _p

#: name → (the default everywhere, how every help text starts (its meaning))
CANONICAL = {
    "seed": (None, "Start from"),
    "truncation": (1.0, "Truncation psi"),
    "device": ("auto", "auto (CUDA, else Apple MPS, else CPU), cpu, cuda or mps."),
    "cutouts": (None, "Random crops per image fed to CLIP"),
    "lr": (0.1, "Peak Adam learning rate"),
    "outdir": (Path("out"), "Folder under which a new run folder is created."),
    "strength": (None, "Weight of the directional CLIP loss"),
    "out": (None, ("Output", "Where to write")),
}

#: (command, option) → why it differs. Keep this short: each entry is a surprise for a user.
DIVERGENT = {
    ("project", "seed"): "seed of the w statistics (projection), default 0 for reproducible projections",
    ("edit", "seed"): "seed of the w statistics and cutouts, as project",
    ("direction learn", "seed"): "seed of the train/held-out split",
    ("direction from-text", "truncation"): "psi 0.7 keeps the sample seeds typical while learning a direction",
    ("direction from-text", "lr"): "optimizes a direction, not a latent: smaller steps",
    ("direction from-text", "cutouts"): "a fixed 8 cutouts per sample seed",
    ("direction apply", "strength"): "a range LO:HI of multiples of the direction, not a loss weight",
    ("invert-z", "truncation"): "the psi to undo; default: the one recorded in the latent file",
    ("batch", "outdir"): "default out/batch: a batch's folders and its manifest stay together",
    ("ui", "outdir"): "default out/ui: the folders the UI offers for download",
    ("generate", "truncation"): "default: the network family's documented value (StyleGAN1 0.7, else none)",
    ("blend", "out"): "default file blended.safetensors",
    ("direction learn", "out"): "default file learned-direction.npy",
    ("direction from-text", "out"): "default file text-direction.npy",
}


def cases():
    for name in CANONICAL:
        for command, param in sorted(OPTIONS.get(name, {}).items()):
            yield pytest.param(name, command, param, id=f"{command}:{name}")


@pytest.mark.parametrize("name,command,param", list(cases()))
def test_same_name_same_default_and_meaning(name, command, param):
    default, meaning = CANONICAL[name]
    if (command, name) in DIVERGENT:
        return
    assert param.default == default, f"{command} --{name} defaults to {param.default!r}, elsewhere {default!r}"
    starts = meaning if isinstance(meaning, tuple) else (meaning,)
    assert (param.help or "").startswith(starts), f"{command} --{name}: {param.help!r}"


def test_divergences_are_real_and_documented():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "newcomer.md").read_text()
    for command, name in DIVERGENT:
        assert command in OPTIONS.get(name, {}), f"stale entry {(command, name)}"
        assert f"`{command} --{name}`" in doc, f"document the divergence of {command} --{name}"


def test_every_command_has_its_own_help():
    helps = {}
    for path, cmd in walk_commands(click_app()):
        text = (cmd.help or "").strip().splitlines()[0] if cmd.help else ""
        assert text, f"{' '.join(path)} has no help"
        helps.setdefault(text, []).append(" ".join(path))
    assert all(len(v) == 1 for v in helps.values()), {k: v for k, v in helps.items() if len(v) > 1}
