"""``--precision``: what ``auto`` picks, what each mode covers (generator and CLIP, float32 latents, optimizer
state and loss), and the measured safety check on the fixtures and on a tiny network built in code."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from clipstyle.errors import UsageError
from clipstyle.generator import read_generator_file
from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from clipstyle.latents import Latent, start_ws
from clipstyle.optimize import precision as P
from clipstyle.optimize.loop import Schedule, _autocast, run
from clipstyle.optimize.precision_check import (
    Limits,
    PrecisionRefusedError,
    check_precision,
    choose_precision,
    require_safe,
)

from ._cli import TINY_CLIP, run_cli
from ._fixtures import fixture_path


def tiny_sg2(seed: int = 0) -> StyleGAN2Generator:
    """A random 32² StyleGAN2 (w_avg set to the mapped mean, as a trained network has it)."""
    torch.manual_seed(seed)
    G = StyleGAN2Generator(StyleGAN2Config(z_dim=32, w_dim=32, c_dim=0, img_resolution=32, img_channels=3,
                                           channels=(32, 32, 32, 16), conv_clamp=256))
    G.eval().requires_grad_(False)
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(1000, 32), None)[:, 0].mean(0))
    return G


# ---------------------------------------------------------------------------------------------------
# resolving a mode
# ---------------------------------------------------------------------------------------------------

def test_precisions_and_auto_on_the_cpu(monkeypatch):
    assert P.PRECISIONS == ("auto", "fp32", "tf32", "bf16", "fp16")
    P.cpu_has_fast_bf16.cache_clear()
    monkeypatch.setattr(P, "cpu_has_fast_bf16", lambda: True)
    assert P.auto_candidates("cpu") == ("bf16", "fp32")
    assert P.resolve_precision("auto", "cpu") == "bf16"
    assert P.resolve_precision("auto", "cpu", refused=("bf16",)) == "fp32"
    monkeypatch.setattr(P, "cpu_has_fast_bf16", lambda: False)
    assert P.resolve_precision("auto", "cpu") == "fp32"
    assert P.resolve_precision("BF16", "cpu") == "bf16"


def test_cpu_bf16_detection_reads_the_cpu_flags():
    P.cpu_has_fast_bf16.cache_clear()
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        pytest.skip("no /proc/cpuinfo (not Linux): the flag check falls back to torch's capability")
    flags = next((set(ln.split(":", 1)[1].split()) for ln in info.read_text().splitlines()
                  if ln.startswith("flags")), set())
    assert P.cpu_has_fast_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})


@pytest.mark.parametrize("mode,device,match", [("fp8", "cpu", "must be one of"), ("tf32", "cpu", "needs a CUDA GPU"),
                                               ("bf16", "cpu", "refused")])
def test_bad_precisions_are_usage_errors(mode, device, match):
    with pytest.raises(P.PrecisionError, match=match) as err:
        P.resolve_precision(mode, device, refused=("bf16",))
    assert isinstance(err.value, UsageError)


def test_autocast_context_needs_a_resolved_mode():
    with pytest.raises(P.PrecisionError):
        P.autocast_context("auto", "cpu")
    with P.autocast_context("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with P.autocast_context("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")


def test_model_autocast_is_active_only_inside_model_precision():
    lin = torch.nn.Linear(8, 8)
    x = torch.randn(2, 8)
    with P.model_autocast("cpu"):
        assert lin(x).dtype == torch.float32
    with P.model_precision("bf16", "cpu"):
        with P.model_autocast("cpu"):
            assert lin(x).dtype == torch.bfloat16
        assert lin(x).dtype == torch.float32  # the loss arithmetic around the critics stays float32
        with P.model_autocast("cuda"):  # another device type: untouched
            assert not torch.is_autocast_enabled("cpu")
    with P.model_autocast("cpu"):
        assert lin(x).dtype == torch.float32


# ---------------------------------------------------------------------------------------------------
# what a mode covers in the loop
# ---------------------------------------------------------------------------------------------------

def test_bf16_covers_the_generator_and_clip_but_not_latent_optimizer_or_loss():
    from clipstyle.guidance import CLIPGuide

    G = tiny_sg2()
    guide = CLIPGuide(TINY_CLIP, None)
    seen: dict[str, torch.dtype] = {}
    guide.model.visual.register_forward_hook(lambda m, a, out: seen.__setitem__("clip", out.dtype))
    target = guide.encode_text(["a red apple"])  # [1, D] float32
    assert target.dtype == torch.float32 and "clip" not in seen  # the text tower is not hooked

    def loss_fn(images, ws):
        seen["images"] = images.dtype
        emb = guide.encode_image(images)
        seen["emb"] = emb.dtype
        dist = (1 - emb @ target.T).mean()
        seen["loss"] = dist.dtype
        return dist, {"clip": dist.detach()}

    ws, _ = start_ws(G, seed=1, truncation_psi=0.7)
    latent = Latent(ws)
    result = run(G, latent, loss_fn, Schedule(lr=0.05, steps=4), precision="bf16")
    assert result.precision == "bf16"
    assert seen == {"clip": torch.bfloat16, "images": torch.float32, "emb": torch.float32, "loss": torch.float32}
    assert latent.param.dtype == torch.float32 and result.ws.dtype == torch.float32
    assert all(math.isfinite(h["loss"]) for h in result.history) and len(result.history) == 4


def test_fp32_run_is_exactly_fp32_and_auto_records_what_ran(monkeypatch):
    G = tiny_sg2()
    ws, _ = start_ws(G, seed=2, truncation_psi=0.7)
    target = torch.zeros(1, 3, 32, 32)

    def loss_fn(images, ws):
        assert images.dtype == torch.float32
        mse = (images - target).square().mean()
        return mse, {"mse": mse.detach()}

    a = run(G, Latent(ws), loss_fn, Schedule(lr=0.05, steps=3))
    b = run(G, Latent(ws), loss_fn, Schedule(lr=0.05, steps=3), precision="fp32")
    assert a.precision == b.precision == "fp32" and torch.equal(a.ws, b.ws)
    monkeypatch.setattr(P, "cpu_has_fast_bf16", lambda: False)
    assert run(G, Latent(ws), loss_fn, Schedule(lr=0.05, steps=1), precision="auto").precision == "fp32"
    monkeypatch.setattr(P, "cpu_has_fast_bf16", lambda: True)
    c = run(G, Latent(ws), loss_fn, Schedule(lr=0.05, steps=3), precision="auto")
    assert c.precision == "bf16" and not torch.equal(c.ws, a.ws)  # it really ran in bf16
    assert c.history[-1]["loss"] < c.history[0]["loss"]


def test_fp16_scales_the_loss_and_still_optimizes():
    G = tiny_sg2()
    ws, _ = start_ws(G, seed=3, truncation_psi=0.7)
    target = torch.zeros(1, 3, 32, 32)

    def loss_fn(images, ws):
        mse = (images - target).square().mean()
        return mse, {"mse": mse.detach()}

    result = run(G, Latent(ws), loss_fn, Schedule(lr=0.05, steps=6), precision="fp16")
    assert result.precision == "fp16"
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_loop_refuses_tf32_on_the_cpu_before_any_work():
    G = tiny_sg2()
    ws, _ = start_ws(G, seed=0)
    calls = []
    with pytest.raises(P.PrecisionError, match="tf32 needs a CUDA GPU"):
        run(G, Latent(ws), lambda i, w: calls.append(1), Schedule(steps=2), precision="tf32")
    assert not calls


@pytest.mark.parametrize("name", ["sg2_skip_64.pkl", "sg3_t_64.pkl"])
def test_bf16_autocast_stays_close_and_differentiable(name):
    G = read_generator_file(fixture_path(name))
    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0)), None,
                   truncation_psi=0.7).requires_grad_(True)
    with torch.no_grad():
        ref = G.synthesis(ws)
    with _autocast("bf16", ws.device)():
        img = G.synthesis(ws)
    assert img.dtype == torch.bfloat16
    err = (img.float() - ref).abs().max().item()
    assert 0 < err < 0.1  # bf16 keeps ~3 significant digits; it really ran in bf16 (err > 0)
    img.float().square().mean().backward()
    assert torch.isfinite(ws.grad).all() and ws.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------
# the measured safety check
# ---------------------------------------------------------------------------------------------------

def _assert_passes(check, mode):
    assert check.precision == mode and check.ok, check.reasons
    assert 0 < check.image_rms_error <= check.limits.image_rms  # > 0: the mode really ran
    assert check.grad_cosine >= 0.99 and check.loss_rel_diff <= 0.02


@pytest.mark.parametrize("name", ["sg2_skip_64.pkl", pytest.param("sg3_t_64.pkl", marks=pytest.mark.slow),
                                  pytest.param("sg3_r_64.pkl", marks=pytest.mark.slow)])
def test_bf16_passes_its_check_on_the_fixtures(name):
    G = read_generator_file(fixture_path(name))
    _assert_passes(check_precision(G, "bf16", "cpu", steps=15, batch=1), "bf16")


def test_the_check_on_a_tiny_network_built_in_code():
    G = tiny_sg2()
    check = check_precision(G, "bf16", "cpu", steps=20, batch=2)
    _assert_passes(check, "bf16")
    record = json.loads(json.dumps(check.as_dict()))
    assert record["precision"] == "bf16" and record["ok"] is True and record["steps"] == 20


def test_a_mode_that_fails_its_check_is_refused_with_the_reason():
    G = tiny_sg2()
    strict = Limits(image_rms=1e-7, image_max=1e-6, grad_cosine=0.999999999, loss_rel=1e-9)
    check = check_precision(G, "bf16", "cpu", steps=5, batch=1, limits=strict)
    assert not check.ok and len(check.reasons) == 3 and "image error" in check.reasons[0]
    with pytest.raises(PrecisionRefusedError, match="bf16 is refused for tiny: image error") as err:
        require_safe(check, "tiny")
    assert isinstance(err.value, UsageError)
    with pytest.raises(PrecisionRefusedError):
        choose_precision(G, "bf16", "cpu", network="tiny", steps=5, batch=1, limits=strict)


def test_auto_falls_back_to_fp32_when_bf16_fails_its_check(monkeypatch):
    monkeypatch.setattr(P, "cpu_has_fast_bf16", lambda: True)
    G = tiny_sg2()
    strict = Limits(image_rms=1e-7)
    mode, checks = choose_precision(G, "auto", "cpu", steps=3, batch=1, limits=strict)
    assert mode == "fp32" and [c.precision for c in checks] == ["bf16"] and not checks[0].ok
    mode, checks = choose_precision(G, "auto", "cpu", steps=3, batch=1)
    assert mode == "bf16" and checks[0].ok


def test_cli_precision_bf16_runs_and_is_recorded(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CLIPSTYLE_CACHE", str(tmp_path / "cache"))  # the check's verdict lands there
    code, out, err = run_cli(["a red apple", "--network", fixture_path("sg2_skip_64.pkl"), "--clip-model", TINY_CLIP,
                              "--clip-pretrained", "none", "--steps", "5", "--cutouts", "4", "--precision", "bf16",
                              "--outdir", tmp_path, "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    record = json.loads((Path(out.strip()) / "run.json").read_text())
    assert record["settings"]["precision"] == "bf16"
    assert all(math.isfinite(h["loss"]) for h in record["loss_history"])


def test_cli_bad_precision(tmp_path, capsys):
    code, out, err = run_cli(["x", "--network", fixture_path("sg2_skip_64.pkl"), "--precision", "fp8",
                              "--outdir", tmp_path, "--device", "cpu"], capsys)
    assert code == 2 and "--precision must be one of" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------------
# --compile: torch.compile and channels_last
# ---------------------------------------------------------------------------------------------------

def test_compile_modes_resolve_where_they_pay():
    from clipstyle.optimize.compile import COMPILE_MODES, resolve_compile

    assert COMPILE_MODES == ("auto", "off", "compile", "channels-last", "both")
    assert resolve_compile("auto", "cpu") == "off" and resolve_compile("channels_last", "cpu") == "channels-last"
    with pytest.raises(UsageError, match="--compile must be one of"):
        resolve_compile("fast", "cpu")


def _synthesis_and_grad(G, ws):
    ws = ws.clone().requires_grad_(True)
    img = G.synthesis(ws, noise_mode="const")
    (grad,) = torch.autograd.grad(img.square().mean(), ws)
    return img.detach(), grad


def test_channels_last_is_refused_on_the_cpu():
    """oneDNN's channels-last backward gave a wrong latent gradient here (see clipstyle.optimize.compile)."""
    from clipstyle.optimize.compile import maybe_compile

    G = tiny_sg2()
    for mode in ("channels-last", "both"):
        with pytest.raises(UsageError, match="not offered on the CPU"):
            maybe_compile(G.synthesis, mode)
    assert next(G.synthesis.parameters()).is_contiguous()  # untouched


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (channels-last is CUDA-only)")
def test_channels_last_keeps_parity_with_eager_on_cuda():
    from clipstyle.optimize.compile import maybe_compile
    from clipstyle.optimize.precision import autocast_context

    G = tiny_sg2().cuda()
    ws, _ = start_ws(G, seed=4, truncation_psi=0.7, batch=2)
    with autocast_context("fp32", "cuda"):
        want = _synthesis_and_grad(G, ws)
        info = maybe_compile(G.synthesis, "channels-last")
        assert info.channels_last and not info.compiled and info.mode == "channels-last"
        got = _synthesis_and_grad(G, ws)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sg2", "sg3"])
def test_torch_compile_keeps_parity_with_eager(kind):
    """Inductor-compiled synthesis against eager: images and gradients to ws agree to float32 rounding."""
    from clipstyle.generator.stylegan3 import StyleGAN3Config, StyleGAN3Generator
    from clipstyle.optimize.compile import maybe_compile, warm_up

    if kind == "sg2":
        G = tiny_sg2()
    else:
        torch.manual_seed(0)
        G = StyleGAN3Generator(StyleGAN3Config.design(32, z_dim=16, w_dim=16, channel_base=512, channel_max=16,
                                                      num_layers=4)).eval().requires_grad_(False)
    ws, _ = start_ws(G, seed=5, truncation_psi=0.7, batch=2)
    want = _synthesis_and_grad(G, ws)
    info = maybe_compile(G.synthesis, "compile")
    assert info.compiled and info.seconds is None
    info = warm_up(info, lambda: _synthesis_and_grad(G, ws))
    assert info.seconds > 0
    got = _synthesis_and_grad(G, ws)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert list(G.state_dict()) == list(type(G)(G.config).state_dict())  # keys unchanged: saving still works
