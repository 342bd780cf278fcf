"""Style mixing: the grid's latents equal their two sources row by row; ``--mix`` holds bit-exactly
through an optimization of the main command; spec parsing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clipstyle.io.files import InputPathError
from clipstyle.latents import BlockSpecError, save_latents
from clipstyle.latents.constraints import (
    SpecError,
    merge_mixes,
    parse_mix,
    parse_source,
    parse_sources,
)
from clipstyle.latents.styleblocks import mix_styles

from .test_creative_cli import CLIP_ARGS, load, network_path, run_cli, run_dir_of  # noqa: F401


def seed_ws(G, seed: int, psi: float = 1.0) -> torch.Tensor:
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    with torch.no_grad():
        return G.mapping(z, None, truncation_psi=psi)


def test_mix_styles_rows():
    a, b = torch.randn(2, 10, 8), torch.randn(2, 10, 8)
    m = mix_styles(a, b, [0, 1, 7])
    for r in range(10):
        assert torch.equal(m[:, r], (b if r in (0, 1, 7) else a)[:, r])
    with pytest.raises(ValueError):
        mix_styles(a, b[:, :9], [0])
    with pytest.raises(ValueError, match="out of range"):
        mix_styles(a, b, [10])


def test_sources_and_mix_specs(tmp_path):
    G = load("sg2")
    (s,) = parse_source("42", G)
    assert s.label == "seed42" and torch.equal(s.ws, seed_ws(G, 42)) and s.z.shape == (1, 64)
    (s,) = parse_source("42@0.5", G)
    assert torch.equal(s.ws, seed_ws(G, 42, 0.5)) and s.psi == 0.5
    assert [x.label for x in parse_sources("1-3,7", G)] == ["seed1", "seed2", "seed3", "seed7"]
    ws = torch.randn(3, 10, 64)
    save_latents(tmp_path / "f.npz", ws, z=torch.randn(3, 64))
    items = parse_sources(str(tmp_path / "f.npz"), G)
    assert [x.label for x in items] == ["f#0", "f#1", "f#2"] and torch.equal(items[2].ws, ws[2:3])
    assert items[0].z is not None
    (one,) = parse_source(f"{tmp_path / 'f.npz'}#1", G)
    assert torch.equal(one.ws, ws[1:2])

    mix = parse_mix("42:0-3", G)
    assert sorted(mix) == [0, 1, 2, 3] and all(torch.equal(mix[r], seed_ws(G, 42)[0, r]) for r in mix)
    mix = parse_mix("42@0.7:coarse", G)
    assert sorted(mix) == [0, 1, 2] and torch.equal(mix[0], seed_ws(G, 42, 0.7)[0, 0])
    mix = parse_mix(f"{tmp_path / 'f.npz'}#2:fine", G)
    assert sorted(mix) == [7, 8, 9] and torch.equal(mix[8], ws[2, 8])
    assert sorted(merge_mixes([parse_mix("1:0", G), parse_mix("2:0-1", G)])) == [0, 1]

    with pytest.raises(SpecError, match="SOURCE:BLOCKS"):
        parse_mix("42", G)
    with pytest.raises(BlockSpecError):
        parse_mix("42:0-10", G)
    with pytest.raises(SpecError, match="several"):
        parse_mix("1-3:0", G)
    with pytest.raises(InputPathError, match="no such latent file"):  # the one input-path check (a usage error)
        parse_mix(f"{tmp_path / 'none.npz'}:0", G)
    with pytest.raises(SpecError, match="out of range"):
        parse_source(f"{tmp_path / 'f.npz'}#5", G)


def test_mix_grid_latents_equal_sources_row_by_row(tmp_path, capsys):
    net = network_path("sg2")
    G = load("sg2")
    own = torch.randn(1, 10, 64)
    save_latents(tmp_path / "mine.npz", own)
    code, out, err = run_cli(["mix", "--rows", f"1,{tmp_path / 'mine.npz'}", "--cols", "7-8", "--blocks", "0-3,9",
                              "--network", net, "--device", "cpu", "--outdir", tmp_path / "out"], capsys)
    assert code == 0, err
    d = run_dir_of(out)
    rows = {"seed1": seed_ws(G, 1), "mine": own}
    cols = {"seed7": seed_ws(G, 7), "seed8": seed_ws(G, 8)}
    chosen = {0, 1, 2, 3, 9}
    for a, wa in rows.items():
        for b, wb in cols.items():
            with np.load(d / f"mix-{a}-{b}.npz") as f:
                ws = torch.from_numpy(f["ws"])
            for r in range(10):
                assert torch.equal(ws[0, r], (wb if r in chosen else wa)[0, r]), (a, b, r)
            with torch.no_grad():
                ref = (G.synthesis(ws) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
            assert np.abs(np.asarray(Image.open(d / f"mix-{a}-{b}.png")).astype(int) - ref.astype(int)).max() <= 1
    grid = np.asarray(Image.open(d / "grid.png"))
    assert grid.shape == (3 * 64, 3 * 64, 3)
    assert (grid[:64, :64] == 255).all()  # the empty corner
    cell = np.asarray(Image.open(d / "mix-mine-seed8.png"))
    np.testing.assert_array_equal(grid[128:, 128:], cell)  # row 2 = 'mine', column 2 = seed 8


@pytest.mark.parametrize("kind", ["sg2", "sg3"])
def test_mix_constraint_is_bit_exact_through_optimization(kind, tmp_path, capsys):
    net = network_path(kind)
    G = load(kind)
    last = G.num_ws - 1
    donor = torch.randn(1, G.num_ws, G.w_dim)
    save_latents(tmp_path / "donor.npz", donor)
    code, out, err = run_cli(["a smiling face", "--network", net, "--steps", 20, "--lr", 0.1, "--seed", 3,
                              "--mix", "7:0-2", "--mix", f"{tmp_path / 'donor.npz'}:{last}", *CLIP_ARGS,
                              "--device", "cpu", "--quiet", "--cutouts", 4, "--outdir", tmp_path / "out"], capsys)
    assert code == 0, err
    with np.load(run_dir_of(out) / "latents.npz") as f:
        ws = f["ws"]
    np.testing.assert_array_equal(ws[0, :3], seed_ws(G, 7)[0, :3].numpy())  # bit-exact
    np.testing.assert_array_equal(ws[0, last], donor[0, last].numpy())
    start = seed_ws(G, 3)[0].numpy()
    assert np.abs(ws[0, 3:last] - start[3:last]).max() > 1e-4  # the free rows did move
