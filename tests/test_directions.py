"""Latent directions: apply, learn (InterFaceGAN-style linear classifier), and from text."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipstyle.io.files import InputPathError
from clipstyle.latents import save_latents
from clipstyle.pipelines.directions import text_direction as direction_from_text
from clipstyle.latents.directions import (
    DirectionError,
    apply_direction,
    collect_latents,
    learn_direction,
    load_direction,
    normalize_direction,
)

from .test_creative_cli import (  # noqa: F401
    CLIP_ARGS,
    TINY_CLIP,
    assert_one_line_error,
    load,
    network_path,
    run_cli,
    run_dir_of,
)


def separable(n: int, dim: int, margin: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    true = torch.randn(dim, generator=g)
    true /= true.norm()
    offset = torch.randn(dim, generator=g) * 3  # the boundary does not pass through 0
    x = torch.randn(2 * n, dim, generator=g)
    x -= (x @ true)[:, None] * true  # no spread along the true normal…
    s = margin * (1 + torch.rand(2 * n, generator=g))  # …but a margin of at least ``margin``
    pos = x[:n] + s[:n, None] * true + offset
    neg = x[n:] - s[n:, None] * true + offset
    pos += 0.2 * torch.randn(n, dim, generator=g)  # some noise across the boundary
    neg += 0.2 * torch.randn(n, dim, generator=g)
    return pos, neg, true


@pytest.mark.parametrize("method", ["logistic", "svm"])
def test_learn_reaches_high_held_out_accuracy(method):
    pos, neg, true = separable(120, 64, 0.5, seed=1)
    res = learn_direction(pos, neg, method=method, holdout=0.25, seed=3)
    assert res.test_accuracy >= 0.95 and res.n_test == 60 and res.n_train == 180
    assert abs(float(res.direction.norm()) - 1) < 1e-5
    assert float(res.direction @ true) > 0.8  # points the right way, to the positives
    # the boundary offset is consistent: midpoints of the two clouds lie on either side of it
    assert float(pos.mean(0) @ res.direction) > res.offset > float(neg.mean(0) @ res.direction)


def test_learn_on_unseparable_data_is_near_chance():
    g = torch.Generator().manual_seed(0)
    res = learn_direction(torch.randn(100, 32, generator=g), torch.randn(100, 32, generator=g))
    assert res.test_accuracy < 0.8


def test_learn_errors():
    with pytest.raises(DirectionError, match="at least 2"):
        learn_direction(torch.randn(1, 4), torch.randn(5, 4))
    with pytest.raises(DirectionError, match="same D"):
        learn_direction(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(DirectionError, match="method"):
        learn_direction(torch.randn(3, 4), torch.randn(3, 4), method="tree")


def test_apply_moves_only_the_chosen_rows():
    ws = torch.randn(1, 10, 8)
    d = torch.randn(10, 8)
    out = apply_direction(ws, d, [-2.0, 0.0, 3.0], rows=[1, 5])
    assert out.shape == (3, 10, 8)
    others = [r for r in range(10) if r not in (1, 5)]
    assert torch.equal(out[:, others], ws[:, others].expand(3, -1, -1))
    torch.testing.assert_close(out[2, [1, 5]], ws[0, [1, 5]] + 3 * d[[1, 5]])
    assert torch.equal(out[1], ws[0])
    w_dir = apply_direction(ws, d[0], [1.0])  # a [w_dim] direction is added to every row
    torch.testing.assert_close(w_dir[0], ws[0] + d[0])


def test_load_direction_shapes(tmp_path):
    np.save(tmp_path / "w.npy", np.arange(8, dtype=np.float32))
    d = load_direction(tmp_path / "w.npy", 10, 8)
    assert d.shape == (10, 8) and torch.equal(d[3], torch.arange(8.0))
    np.save(tmp_path / "wp.npy", np.ones((1, 10, 8)))
    assert load_direction(tmp_path / "wp.npy", 10, 8).shape == (10, 8)
    np.save(tmp_path / "bad.npy", np.ones((9, 8)))
    with pytest.raises(DirectionError, match=r"\[8\] or \[10, 8\]"):
        load_direction(tmp_path / "bad.npy", 10, 8)
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(DirectionError, match="not a readable"):
        load_direction(tmp_path / "junk.npy", 10, 8)
    with pytest.raises(InputPathError, match="no such direction file"):
        load_direction(tmp_path / "none.npy", 10, 8)
    d, rms = normalize_direction(torch.tensor([[3.0, 4.0], [0.0, 0.0], [0.0, 5.0]]))
    assert rms == pytest.approx(5.0) and torch.allclose(d.norm(dim=-1), torch.tensor([1.0, 0.0, 1.0]))


def test_collect_latents_w_and_w_plus(tmp_path):
    (tmp_path / "a").mkdir()
    ws = torch.randn(2, 10, 8)
    save_latents(tmp_path / "a" / "x.npz", ws)
    save_latents(tmp_path / "y.npz", ws[:1])
    x, labels, shape = collect_latents([tmp_path / "a", tmp_path / "y.npz"])
    assert x.shape == (3, 8) and labels == ["x#0", "x#1", "y"] and shape == (10, 8)
    torch.testing.assert_close(x[0], ws[0].mean(0))
    x, _, _ = collect_latents([tmp_path / "a"], space="w+")
    assert x.shape == (2, 80)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DirectionError, match="no .npz"):
        collect_latents([tmp_path / "empty"])


def test_cli_learn_from_folders(tmp_path, capsys):
    pos, neg, true = separable(40, 64, 1.0, seed=5)
    for name, data in (("pos", pos), ("neg", neg)):
        (tmp_path / name).mkdir()
        for i, w in enumerate(data):
            save_latents(tmp_path / name / f"{i:03d}.npz", w[None, None].repeat(1, 10, 1))
    code, out, err = run_cli(["direction", "learn", "--positive", tmp_path / "pos", "--negative", tmp_path / "neg",
                              "--out", tmp_path / "d.npy"], capsys)
    assert code == 0, err
    assert "held-out accuracy" in out
    acc = float(out.split("held-out accuracy")[1].split("%")[0])
    assert acc >= 95
    d = np.load(tmp_path / "d.npy")
    assert d.shape == (64,) and abs(np.linalg.norm(d) - 1) < 1e-5 and float(d @ true.numpy()) > 0.8
    code, out, err = run_cli(["direction", "learn", "--positive", tmp_path / "pos", "--negative", tmp_path / "neg",
                              "--out", tmp_path / "d2.npy", "--space", "w+", "--method", "svm"], capsys)
    assert code == 0, err
    d2 = np.load(tmp_path / "d2.npy")
    assert d2.shape == (10, 64) and np.allclose(np.linalg.norm(d2, axis=1), 1, atol=1e-5)


def test_cli_apply(tmp_path, capsys):
    net = network_path("sg2")
    G = load("sg2")
    d = np.random.default_rng(0).standard_normal(64).astype(np.float32)
    np.save(tmp_path / "d.npy", d)
    code, out, err = run_cli(["direction", "apply", "4", tmp_path / "d.npy", "--strength=-5:5", "--frames", 3,
                              "--blocks", "coarse", "--network", net, "--device", "cpu", "--outdir", tmp_path], capsys)
    assert code == 0, err
    with np.load(run_dir_of(out) / "latents.npz") as f:
        ws = f["ws"]
    w0 = G.mapping(torch.from_numpy(np.random.RandomState(4).randn(1, 64)).float(), None)[0].numpy()
    assert ws.shape == (3, 10, 64)
    np.testing.assert_array_equal(ws[:, 3:], np.repeat(w0[None, 3:], 3, 0))
    np.testing.assert_allclose(ws[0, :3], w0[:3] - 5 * d, atol=1e-5)
    np.testing.assert_array_equal(ws[1], w0)


def test_direction_from_text_shape_and_rows():
    from clipstyle.guidance import CLIPGuide, CutoutConfig, Cutouts

    G = load("sg2")
    guide = CLIPGuide(TINY_CLIP, None)
    ws0 = G.mapping(torch.randn(2, 64, generator=torch.Generator().manual_seed(0)), None)
    res = direction_from_text(G, guide, "a face", "a smiling face", ws0, Cutouts(CutoutConfig(num_cutouts=2), 32),
                              rows=[3, 4], steps=4, lr=0.05)
    assert res.direction.shape == (10, 64) and len(res.history) == 4 and res.rows == (3, 4)
    assert torch.count_nonzero(res.direction[[0, 1, 2, 5, 6, 7, 8, 9]]) == 0
    norms = res.direction[[3, 4]].norm(dim=-1)
    assert float(norms.square().mean().sqrt()) == pytest.approx(1.0, abs=1e-5) and res.strength > 0
    # the directional loss falls on its own samples when the direction is applied at the found strength
    assert res.history[-1] < res.history[0]
    with pytest.raises(DirectionError, match="same CLIP embedding"):
        direction_from_text(G, guide, "a face", "a face", ws0, Cutouts(CutoutConfig(num_cutouts=0), 32), steps=1)


def test_cli_from_text_writes_num_ws_by_w_dim(tmp_path, capsys):
    net = network_path("sg2")
    code, out, err = run_cli(["direction", "from-text", "a face", "a smiling face", "--seeds", "0-1", "--steps", 2,
                              "--ensemble", "--cutouts", 2, "--network", net, *CLIP_ARGS, "--device", "cpu",
                              "--quiet", "--out", tmp_path / "t.npy"], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "t.npy").shape == (10, 64) and "strength" in out
    code, out, err = run_cli(["direction", "from-text", "a", "b", "--seeds", "x", "--network", net, *CLIP_ARGS,
                              "--device", "cpu", "--out", tmp_path / "u.npy"], capsys)
    assert_one_line_error(code, err, 2, "--seeds")
