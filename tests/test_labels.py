"""Labels of conditional networks: several at once, a global scale, a .npy vector, truncation towards the
label's own mean w; and the same through ``generate``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clipstyle.latents.labels import label_tensor as class_vector
from clipstyle.generator.formats.native import save_native
from clipstyle.generator.stylegan1 import StyleGAN1Config, StyleGAN1Generator
from clipstyle.latents.labels import LabelError, label_w_avg, parse_labels, truncate_ws

from ._cli import run_cli

C_DIM = 167  # the WikiArt StyleGAN1 models: artists, genres and styles


def test_multi_label_is_the_scaled_sum_of_one_hots():
    eye = np.eye(C_DIM, dtype=np.float32)
    got = parse_labels("12,130,145", C_DIM, label_scale=2.0)
    np.testing.assert_array_equal(got, 2.0 * (eye[12] + eye[130] + eye[145]))
    np.testing.assert_array_equal(parse_labels("12,130,145@2", C_DIM), got)
    np.testing.assert_array_equal(parse_labels("12,130@2", C_DIM, label_scale=1.5), 3.0 * (eye[12] + eye[130]))
    np.testing.assert_array_equal(parse_labels("7,7", C_DIM), 2 * eye[7])
    np.testing.assert_array_equal(parse_labels(5, C_DIM), eye[5])
    c = class_vector(C_DIM, "12,130,145", 3, "cpu", 2.0)
    assert c.shape == (3, C_DIM) and torch.equal(c[1], torch.from_numpy(got))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(C_DIM,), (1, C_DIM)])
def test_npy_label_vector(tmp_path, dtype, shape):
    v = np.zeros(shape, dtype)
    v.reshape(-1)[[3, 40]] = [0.5, 1.0]
    path = tmp_path / "label.npy"
    np.save(path, v)
    got = parse_labels(str(path), C_DIM, label_scale=2.0)
    want = np.zeros(C_DIM, np.float32)
    want[[3, 40]] = [1.0, 2.0]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("spec,c_dim,match", [
    ("3", 0, "unconditional"), (None, 10, "conditional: pass --class"), ("10", 10, "0-9, got 10"),
    ("1,x", 10, "bad class 'x'"), ("1@big", 10, "bad label scale"), ("-1", 10, "0-9, got -1"),
])
def test_label_errors(spec, c_dim, match):
    with pytest.raises(LabelError, match=match) as info:
        parse_labels(spec, c_dim)
    assert "\n" not in str(info.value)


def test_npy_of_wrong_shape_names_both(tmp_path):
    path = tmp_path / "l.npy"
    np.save(path, np.zeros([2, 5], np.float32))
    with pytest.raises(LabelError, match=r"\[5\] or \[1, 5\].*\[2, 5\]"):
        parse_labels(str(path), 5)


def _conditional(c_dim: int = 6) -> StyleGAN1Generator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        G = StyleGAN1Generator(StyleGAN1Config(z_dim=16, w_dim=16, c_dim=c_dim, img_resolution=16, img_channels=3,
                                               channels=(8, 8, 8), mapping_layers=2))
    return G.eval().requires_grad_(False)


def test_label_mean_differs_per_label_and_truncation_moves_towards_it():
    G = _conditional()
    c1, c2 = class_vector(6, "1", 1, "cpu"), class_vector(6, "4", 1, "cpu")
    m1, m2 = label_w_avg(G, c1, samples=512), label_w_avg(G, c2, samples=512)
    assert float((m1 - m2).norm()) > 1e-3
    assert torch.equal(m1, label_w_avg(G, c1, samples=512))  # seeded
    ws = G.mapping(torch.randn(2, 16, generator=torch.Generator().manual_seed(0)), c1.expand(2, -1))
    t = truncate_ws(ws, m1, 0.5, cutoff=2)
    assert torch.allclose(t[:, :2], m1 + 0.5 * (ws[:, :2] - m1), atol=1e-6)
    assert torch.equal(t[:, 2:], ws[:, 2:])
    assert torch.allclose(truncate_ws(ws, m1, 0.0), m1.expand_as(ws))


def test_generate_with_several_labels_truncated_to_the_label(tmp_path, capsys):
    G = _conditional()
    net = save_native(G, tmp_path / "cond.safetensors")
    code, out, err = run_cli(["generate", "-n", net, "--seeds", "3", "--class", "1,4", "--label-scale", "2",
                              "--truncation", "0.5", "--truncate-to", "label", "--outdir", tmp_path / "o",
                              "--device", "cpu"], capsys)
    assert code == 0, err
    run = Path(out.strip().splitlines()[-1])
    with np.load(run / "seed0003.npz") as f:
        c, ws = f["c"], f["ws"]
    want_c = np.zeros([1, 6], np.float32)
    want_c[0, [1, 4]] = 2.0
    np.testing.assert_array_equal(c, want_c)
    ct = torch.from_numpy(want_c)
    z = torch.from_numpy(np.random.RandomState(3).randn(1, 16)).float()
    full = G.mapping(z, ct)
    center = label_w_avg(G, ct)
    np.testing.assert_allclose(ws, truncate_ws(full, center, 0.5, 8).numpy(), atol=1e-6)
    # and differs from truncating towards the global w_avg
    glob = G.mapping(z, ct, truncation_psi=0.5, truncation_cutoff=8)
    assert float((torch.from_numpy(ws) - glob).abs().max()) > 1e-3


def test_class_on_unconditional_network_is_a_usage_error(tmp_path, capsys):
    G = StyleGAN1Generator(StyleGAN1Config(z_dim=8, w_dim=8, c_dim=0, img_resolution=8, img_channels=3, channels=(4, 4)))
    net = save_native(G, tmp_path / "u.safetensors")
    code, _, err = run_cli(["generate", "-n", net, "--seeds", "0", "--class", "1,2", "--outdir", tmp_path,
                            "--device", "cpu"], capsys)
    assert code == 2 and err.strip() == "error: --class was given but this network is unconditional"
