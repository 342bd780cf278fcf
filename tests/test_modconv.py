"""The activation-side modulated convolution (clipstyle.generator.modconv) against the paper's weight-side
form (per-sample weights, one grouped convolution), forward and backward, and what it saves in FLOPs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clipstyle.generator.stylegan2 import modulated_conv2d
from clipstyle.kernels import setup_filter, upfirdn2d


def _weight_side(x, weight, styles, up, padding, f, demodulate):
    """StyleGAN2 §2.2 eqs. 1–3 literally: w' = w·s, w'' = w'/‖w'‖, one grouped (transposed) conv."""
    n, in_ch, h, wd = x.shape
    out_ch, _, k, _ = weight.shape
    w = weight[None] * styles[:, None, :, None, None]                       # [N, O, I, k, k]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    xg = x.reshape(1, n * in_ch, h, wd)
    if up == 1:
        y = F.conv2d(xg, w.reshape(n * out_ch, in_ch, k, k), padding=padding, groups=n)
    else:  # 3×3 transposed conv (stride 2: 2H + 1), then the 4-tap FIR with gain 4, padded 1 per side: 2H
        wt = w.transpose(1, 2).reshape(n * in_ch, out_ch, k, k)
        y = F.conv_transpose2d(xg, wt, stride=up, groups=n)
        y = upfirdn2d(y, f, padding=1, gain=up * up)
    return y.reshape(n, out_ch, *y.shape[2:])


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("train_weight", [False, True])
@pytest.mark.parametrize("batch", [1, 2])  # one sample scales the weight, several scale x
def test_activation_side_equals_the_weight_side_forward_and_backward(up, demodulate, train_weight, batch):
    g = torch.Generator().manual_seed(up * 4 + demodulate * 2 + train_weight)
    x = torch.randn(batch, 5, 6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 5, 3, 3, generator=g, dtype=torch.float64, requires_grad=train_weight)
    styles = (torch.rand(batch, 5, generator=g, dtype=torch.float64) + 0.5).requires_grad_(True)
    f = setup_filter([1, 3, 3, 1]).double()
    kw = dict(up=up, padding=1, demodulate=demodulate)
    ours = modulated_conv2d(x, weight, styles, resample_filter=f, flip_weight=(up == 1), **kw)
    if up == 1:
        ref = _weight_side(x, weight, styles, 1, 1, f, demodulate)
    else:
        ref = _weight_side(x, weight, styles, 2, 1, f, demodulate)
    assert ours.shape == ref.shape == (batch, 4, 6 * up, 6 * up)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    probe = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    inputs = [x, styles] + ([weight] if train_weight else [])
    got = torch.autograd.grad((ours * probe).sum(), inputs)
    want = torch.autograd.grad((ref * probe).sum(), inputs)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_a_frozen_generator_step_costs_two_convolutions_per_layer_not_three():
    """Forward + backward to ws of a frozen SG2 counts ≈ 2× the forward's FLOPs (no weight gradients);
    the per-sample-weight form needs 3× (the gradient of every per-sample weight)."""
    from torch.utils.flop_counter import FlopCounterMode

    from tests._tiny import tiny_sg2

    G = tiny_sg2(resolution=32).eval().requires_grad_(False)
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0)), None)
    ws = ws.detach().requires_grad_(True)
    with FlopCounterMode(display=False) as fwd:
        img = G.synthesis(ws)
    with FlopCounterMode(display=False) as bwd:
        img.square().sum().backward()
    ratio = bwd.get_total_flops() / fwd.get_total_flops()
    assert 0.9 <= ratio <= 1.1, ratio  # the backward is one input-gradient convolution per forward one
    assert torch.isfinite(ws.grad).all() and ws.grad.abs().sum() > 0


def test_under_bf16_autocast_the_gradient_follows_float32():
    from tests._tiny import tiny_sg2

    G = tiny_sg2(resolution=32).eval().requires_grad_(False)
    ws0 = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(3)), None).detach()
    grads = []
    for enabled in (False, True):
        ws = ws0.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            img = G.synthesis(ws)
        assert img.dtype == (torch.bfloat16 if enabled else torch.float32)
        img.float().square().mean().backward()
        grads.append(ws.grad.flatten())
    assert grads[1].dtype == torch.float32 and torch.isfinite(grads[1]).all()
    assert F.cosine_similarity(grads[0], grads[1], dim=0) > 0.99


@pytest.mark.parametrize("threads", [1, 2])
def test_the_channels_last_generator_gradient_matches_float64(threads):
    """SG2 runs NHWC on the CPU; its ws gradient (every row, the ToRGB rows included) matches the same
    network in float64, with one and with two intra-op threads (oneDNN picks other kernels for each)."""
    import copy

    from tests._tiny import tiny_sg2

    G = tiny_sg2(resolution=32).eval().requires_grad_(False)
    G64 = copy.deepcopy(G).double()
    ws0 = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(5)), None).detach()
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        grads = []
        for net, dtype in ((G, torch.float32), (G64, torch.float64)):
            ws = ws0.to(dtype).detach().clone().requires_grad_(True)
            img = net.synthesis(ws)
            assert img.is_contiguous()
            (img * torch.linspace(-1, 1, img.shape[-1], dtype=dtype)).sum().backward()
            grads.append(ws.grad)
    finally:
        torch.set_num_threads(old)
    for row in range(G.num_ws):
        torch.testing.assert_close(grads[0][:, row], grads[1][:, row].float(), rtol=1e-3, atol=1e-4)
