"""The optimization loop and the constrained latent, on a tiny random StyleGAN2 (no fixtures needed)."""

from __future__ import annotations

import math

import pytest
import torch

from clipstyle.generator.stylegan2 import (
    StyleGAN2Config,
    StyleGAN2Generator,
    channels_for,
)
from clipstyle.latents import Latent
from clipstyle.optimize.loop import Schedule, run


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    cfg = StyleGAN2Config(z_dim=8, w_dim=8, c_dim=0, img_resolution=16, img_channels=3,
                          channels=channels_for(16, 128, 8), mapping_layers=2)
    return StyleGAN2Generator(cfg).eval().requires_grad_(False)


def mse_to(target: torch.Tensor):
    def loss(images, ws):
        value = (images - target).square().mean()
        return value, {"mse": value.detach()}
    return loss


def test_schedule_ramps():
    s = Schedule(lr=0.1, steps=100, rampup=0.05, rampdown=0.25)
    assert s.lr_at(0) == 0.0
    assert s.lr_at(2) == pytest.approx(0.1 * 2 / 5)
    assert s.lr_at(50) == pytest.approx(0.1)
    assert s.lr_at(75) == pytest.approx(0.1)
    assert s.lr_at(99) < 0.001
    assert s.lr_at(90) == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(0.4 * math.pi)))
    with pytest.raises(ValueError):
        Schedule(steps=0)


def test_loss_falls_and_frozen_rows_are_bit_identical(G):
    target_ws = G.mapping(torch.randn(1, 8, generator=torch.Generator().manual_seed(1)), None)
    with torch.no_grad():
        target = G.synthesis(target_ws)
    start = G.w_avg[None, None].repeat(1, G.num_ws, 1)
    latent = Latent(start, free_rows=[0, 1, 2])
    result = run(G, latent, mse_to(target), Schedule(lr=0.05, steps=60), save_every=20)
    first, last = result.history[0]["mse"], result.history[-1]["mse"]
    assert last < 0.5 * first
    assert torch.equal(result.ws[:, 3:], start[:, 3:])
    assert not torch.equal(result.ws[:, :3], start[:, :3])
    assert len(result.frames) == 4 and result.frame_steps == (0, 20, 40, 60)
    assert result.frames[-1].shape == (1, 16, 16, 3)
    assert not any(p.requires_grad for p in G.parameters())


def test_ctrl_c_returns_the_best_so_far(G):
    target = torch.zeros(1, 3, 16, 16)
    latent = Latent(G.w_avg[None, None].repeat(1, G.num_ws, 1))

    def stop_at_7(info, images):
        if info.step == 7:
            raise KeyboardInterrupt

    result = run(G, latent, mse_to(target), Schedule(lr=0.05, steps=50), callbacks=[stop_at_7])
    assert result.interrupted and result.steps_done == 8  # steps 0..7 completed
    assert torch.equal(result.ws, result.best_ws)
    losses = [h["loss"] for h in result.history]
    assert result.best_loss == min(losses) and losses[result.best_step] == result.best_loss


def test_stop_ends_like_ctrl_c_and_is_asked_before_every_step(G):
    target = torch.zeros(1, 3, 16, 16)
    latent = Latent(G.w_avg[None, None].repeat(1, G.num_ws, 1))
    asked = []

    def stop() -> bool:
        asked.append(len(asked))
        return len(asked) == 5

    result = run(G, latent, mse_to(target), Schedule(lr=0.05, steps=50), stop=stop)
    assert result.interrupted and result.steps_done == 4 and len(asked) == 5  # the 5th ask comes before step 4
    assert torch.equal(result.ws, result.best_ws)
    full = run(G, Latent(G.w_avg[None, None].repeat(1, G.num_ws, 1)), mse_to(target), Schedule(lr=0.05, steps=5),
               stop=lambda: False)
    assert not full.interrupted and full.steps_done == 5


def test_w_space_shares_one_vector_and_mix_rows_hold(G):
    start = G.mapping(torch.randn(2, 8, generator=torch.Generator().manual_seed(2)), None)
    other = G.mapping(torch.randn(1, 8, generator=torch.Generator().manual_seed(3)), None)[0, 0]
    latent = Latent(start, mix={0: other, 1: other}, space="w")
    result = run(G, latent, mse_to(torch.zeros(2, 3, 16, 16)), Schedule(lr=0.05, steps=10))
    ws = result.ws
    assert torch.equal(ws[:, 0], other.expand(2, -1)) and torch.equal(ws[:, 1], other.expand(2, -1))
    assert torch.equal(ws[:, 2], ws[:, -1])  # one shared w for the free rows
    assert latent.free_rows == tuple(range(2, G.num_ws))


def test_trust_radius_bounds_every_free_row(G):
    start = G.w_avg[None, None].repeat(1, G.num_ws, 1)
    latent = Latent(start, trust_radius=0.25)
    result = run(G, latent, mse_to(torch.ones(1, 3, 16, 16)), Schedule(lr=0.5, steps=20))
    dist = (result.ws - start).norm(dim=-1)
    assert dist.max() <= 0.25 + 1e-5 and dist.max() > 0.2


def test_non_finite_loss_is_a_clear_error(G):
    latent = Latent(G.w_avg[None, None].repeat(1, G.num_ws, 1))

    def bad(images, ws):
        return images.sum() * float("nan"), {}

    from clipstyle.errors import NonFiniteLossWarning

    with pytest.warns(NonFiniteLossWarning, match="became nan") as record:
        result = run(G, latent, bad, Schedule(steps=3))
    assert "smaller --lr" not in str(record[0].message)  # the latent is finite: the lr is not the cause
    assert result.interrupted and result.steps_done == 0 and result.extra["stop_reason"]


def test_latent_rejects_bad_input():
    with pytest.raises(ValueError, match="num_ws"):
        Latent(torch.zeros(4, 8))
    with pytest.raises(ValueError, match="no free styleblocks"):
        Latent(torch.zeros(1, 2, 8), free_rows=[0], mix={0: torch.zeros(8)})
    with pytest.raises(ValueError, match="space"):
        Latent(torch.zeros(1, 2, 8), space="z")
