"""The pure-PyTorch kernels (the source of truth) against hand-written definitions, their gradients
(``torch.autograd.gradcheck`` in float64), the filter cache, the impl dispatch and the build helper.

CUDA parity and the compile tests live in ``test_kernels_cuda.py``.
"""

from __future__ import annotations

import importlib
import itertools
import math
import random
import shutil
import types
import warnings

import pytest
import torch
import torch.nn.functional as F

from clipstyle.kernels import (
    _build,
    _dispatch,
    bias_act,
    downsample2d,
    filter2d,
    setup_filter,
    upfirdn2d,
    upsample2d,
)

ba_ref = importlib.import_module("clipstyle.kernels.bias_act.ref")
up_ref = importlib.import_module("clipstyle.kernels.upfirdn2d.ref")


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch):
    monkeypatch.delenv("CLIPSTYLE_KERNELS", raising=False)


# ---------------------------------------------------------------------------------------------------
# bias_act
# ---------------------------------------------------------------------------------------------------

def _hand_act(t: torch.Tensor, act: str, alpha: float) -> torch.Tensor:
    """Each activation written out from its formula (not through torch.nn.functional)."""
    if act == "linear":
        return t
    if act == "relu":
        return torch.where(t > 0, t, torch.zeros_like(t))
    if act == "lrelu":
        return torch.where(t > 0, t, t * alpha)
    if act == "tanh":
        return (torch.exp(t) - torch.exp(-t)) / (torch.exp(t) + torch.exp(-t))
    if act == "sigmoid":
        return 1 / (1 + torch.exp(-t))
    if act == "elu":
        return torch.where(t > 0, t, torch.exp(t) - 1)
    if act == "selu":
        a, s = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
        return s * torch.where(t > 0, t, a * (torch.exp(t) - 1))
    if act == "softplus":
        return torch.log(1 + torch.exp(t))
    if act == "swish":
        return t / (1 + torch.exp(-t))
    raise AssertionError(act)


def _hand_bias_act(x, b, dim, act, alpha, gain, clamp):
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.reshape(shape)
    y = _hand_act(x, act, alpha) * gain
    if clamp is not None:
        y = torch.minimum(torch.maximum(y, torch.full_like(y, -clamp)), torch.full_like(y, clamp))
    return y


ACTS = list(ba_ref.ACTIVATIONS)


@pytest.mark.parametrize("act", ACTS)
def test_bias_act_matches_hand_composition(act):
    gen = torch.Generator().manual_seed(0)
    for dim, alpha, gain, clamp, with_bias in itertools.product((0, 1, 2), (0.2, 0.05), (None, 1.0, 2.5, -0.7),
                                                                 (None, 0.4, 3.0), (False, True)):
        x = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)
        b = torch.randn(x.shape[dim], generator=gen, dtype=torch.float64) if with_bias else None
        y = bias_act(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp, impl="ref")
        spec = ba_ref.ACTIVATIONS[act]
        expect = _hand_bias_act(x, b, dim, act, alpha if act == "lrelu" else 0.0,
                                spec.def_gain if gain is None else gain, clamp)
        assert y.shape == x.shape and y.dtype == x.dtype
        torch.testing.assert_close(y, expect, rtol=1e-12, atol=1e-12)


def test_bias_act_defaults_and_errors():
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    b = torch.randn(3, dtype=torch.float64)
    torch.testing.assert_close(bias_act(x, b, act="lrelu"), F.leaky_relu(x + b.view(1, 3, 1, 1), 0.2) * math.sqrt(2))
    assert bias_act(x) is x  # linear, no bias, gain 1, no clamp: identity
    with pytest.raises(ValueError, match="unknown activation"):
        bias_act(x, act="gelu6")
    with pytest.raises(ValueError, match="bias must have shape"):
        bias_act(x, torch.zeros(4))
    y = bias_act(x, b, clamp=-1.0)  # negative clamp = none
    torch.testing.assert_close(y, x + b.view(1, 3, 1, 1))


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("clamp", [None, 0.8])
def test_bias_act_gradcheck(act, clamp):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    fn = lambda x, b: bias_act(x, b, dim=1, act=act, gain=1.3, clamp=clamp, impl="ref")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b), eps=1e-6, atol=1e-6)


def test_bias_act_fused_path_gradient_equals_autograd_composition():
    """The fast path (output-only backward) against the naive composition, channels-last too."""
    gen = torch.Generator().manual_seed(2)
    for act, gain, clamp, cl in itertools.product(("linear", "relu", "lrelu"), (1.0, math.sqrt(2)), (None, 0.5, 50.0),
                                                  (False, True)):
        x = torch.randn(2, 5, 6, 7, generator=gen, dtype=torch.float64)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        b = torch.randn(5, generator=gen, dtype=torch.float64, requires_grad=True)
        alpha = 0.2 if act == "lrelu" else 0.0
        y1 = ba_ref.bias_act_ref(x, b, 1, act, alpha, gain, clamp)
        y2 = ba_ref.bias_act_naive(x, b, 1, act, alpha, gain, clamp)
        g = torch.randn_like(y1)
        for a, c in zip(torch.autograd.grad(y1, (x, b), g), torch.autograd.grad(y2, (x, b), g)):
            torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(y1, y2, rtol=1e-12, atol=1e-12)


def test_bias_act_fused_path_never_modifies_its_input():
    x = torch.randn(1, 3, 4, 4, requires_grad=True)
    x0 = x.detach().clone()
    y = bias_act(x, None, act="lrelu", gain=1.0, clamp=0.1)
    y.sum().backward()
    assert torch.equal(x.detach(), x0)


# ---------------------------------------------------------------------------------------------------
# upfirdn2d
# ---------------------------------------------------------------------------------------------------

def _direct_upfirdn2d(x, f, up, down, pad, flip, gain):
    """The definition with explicit loops over taps: zero insertion, pad/crop, correlate with the
    (flipped unless ``flip``) filter, keep every ``down``-th sample. Float64 throughout."""
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, pad
    n, c, h, w = x.shape
    u = torch.zeros(n, c, h * upy, w * upx, dtype=torch.float64)
    u[:, :, ::upy, ::upx] = x.double()
    hp, wp = h * upy + py0 + py1, w * upx + px0 + px1
    p = torch.zeros(n, c, hp, wp, dtype=torch.float64)
    for yy in range(hp):
        for xx in range(wp):
            sy, sx = yy - py0, xx - px0
            if 0 <= sy < u.shape[2] and 0 <= sx < u.shape[3]:
                p[:, :, yy, xx] = u[:, :, sy, sx]
    if f is None:
        f2 = torch.ones(1, 1, dtype=torch.float64)
    else:
        f2 = torch.outer(f.double(), f.double()) if f.ndim == 1 else f.double()
    g = f2 if flip else f2.flip([0, 1])
    th, tw = g.shape
    out = torch.zeros(n, c, hp - th + 1, wp - tw + 1, dtype=torch.float64)
    for ty in range(th):
        for tx in range(tw):
            out += g[ty, tx] * p[:, :, ty: ty + out.shape[2], tx: tx + out.shape[3]]
    return (out * gain)[:, :, ::downy, ::downx]


def _random_filter(rng: random.Random, kind: str):
    if kind == "none":
        return None
    if kind == "1d":
        return torch.tensor([rng.uniform(-1, 2) for _ in range(rng.randint(1, 6))], dtype=torch.float64)
    th, tw = rng.randint(1, 5), rng.randint(1, 5)
    return torch.tensor([[rng.uniform(-1, 2) for _ in range(tw)] for _ in range(th)], dtype=torch.float64)


@pytest.mark.parametrize("up,down", [(u, d) for u in range(1, 5) for d in range(1, 5)])
def test_upfirdn2d_matches_direct_definition(up, down):
    rng = random.Random(100 * up + down)
    checked = 0
    while checked < 8:
        kind = ["none", "1d", "2d"][checked % 3]
        f = _random_filter(rng, kind)
        upxy = (up, rng.randint(1, 4)) if checked % 2 else (up, up)
        downxy = (rng.randint(1, 4), down) if checked % 4 == 3 else (down, down)
        pad = tuple(rng.randint(-3, 5) for _ in range(4))
        h, w = rng.randint(1, 7), rng.randint(1, 7)
        fw, fh = (1, 1) if f is None else (f.shape[-1], f.shape[0])
        if h * upxy[1] + pad[2] + pad[3] < fh or w * upxy[0] + pad[0] + pad[1] < fw:
            continue
        x = torch.randn(2, 3, h, w, dtype=torch.float64)
        flip, gain = rng.random() < 0.5, rng.choice([1.0, 4.0, -0.5])
        y = upfirdn2d(x, f, up=upxy, down=downxy, padding=pad, flip_filter=flip, gain=gain, impl="ref")
        expect = _direct_upfirdn2d(x, f, upxy, downxy, pad, flip, gain)
        assert y.shape == expect.shape, (upxy, downxy, pad, None if f is None else f.shape)
        torch.testing.assert_close(y, expect, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(up_ref.upfirdn2d_naive(x, f, upxy, downxy, pad, flip, gain), expect,
                                   rtol=1e-12, atol=1e-12)
        checked += 1


def test_upfirdn2d_float32_within_rounding_of_naive_and_keeps_memory_format():
    f = setup_filter([1, 3, 3, 1])
    for cl in (False, True):
        x = torch.randn(2, 8, 17, 13)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        for args in (((2, 2), (1, 1), (2, 1, 2, 1), False, 4.0), ((1, 1), (2, 2), (1, 1, 1, 1), True, 1.0),
                     ((1, 1), (1, 1), (1, 2, -1, 1), False, 1.0)):
            y = up_ref.upfirdn2d_ref(x, f, *args)
            torch.testing.assert_close(y, up_ref.upfirdn2d_naive(x, f, *args), rtol=0, atol=2e-6)
            assert y.is_contiguous(memory_format=torch.channels_last) == cl


@pytest.mark.parametrize("kind", ["none", "1d", "2d"])
def test_upfirdn2d_gradcheck(kind):
    rng = random.Random(7)
    f = _random_filter(rng, kind) if kind != "1d" else torch.tensor([0.3, 1.0, -0.4, 0.7], dtype=torch.float64)
    for up, down, pad in (((2, 3), (1, 1), (2, -1, 1, 3)), ((1, 1), (2, 3), (1, 2, 0, 1)), ((3, 2), (2, 2), (3, 3, -1, 2))):
        x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
        fn = lambda x: upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=True, gain=1.7, impl="ref")  # noqa
        assert torch.autograd.gradcheck(fn, (x,))


def test_upfirdn2d_double_backward_and_saved_memory():
    f = setup_filter([1, 3, 3, 1]).double()
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    fn = lambda x: upfirdn2d(x, f, up=2, down=1, padding=(2, 1, 2, 1), gain=4, impl="ref")  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (x,))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        fn(x)
        bias_act(x, torch.zeros(2, dtype=torch.float64), act="lrelu", clamp=1.0, impl="ref")
    # upfirdn2d keeps only its filter, bias_act only its output: no padded or upsampled copies.
    assert sorted(saved) == [f.numel(), x.numel()]


def test_upfirdn2d_filter_gradient_and_cache_invalidation():
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    f = torch.tensor([[1.0, 2.0], [0.5, 1.0]], dtype=torch.float64, requires_grad=True)
    y = upfirdn2d(x, f, up=2, padding=1, impl="ref")
    (gf,) = torch.autograd.grad(y.sum(), f)
    assert gf.abs().sum() > 0  # a filter that requires grad is not cached and gets its gradient
    g = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
    y1 = upfirdn2d(x, g, up=2, padding=(2, 1, 2, 1), impl="ref")
    with torch.no_grad():
        g.mul_(2)  # in-place change: the cached weights must not be reused
    y2 = upfirdn2d(x, g, up=2, padding=(2, 1, 2, 1), impl="ref")
    torch.testing.assert_close(y2, 4 * y1)


def test_resampling_helpers_shapes_and_dc_gain():
    f = setup_filter([1, 3, 3, 1])
    x = torch.ones(1, 2, 8, 8)
    assert upsample2d(x, f).shape == (1, 2, 16, 16)
    assert downsample2d(x, f).shape == (1, 2, 4, 4)
    assert filter2d(x, f).shape == (1, 2, 8, 8)
    torch.testing.assert_close(upsample2d(x, f)[:, :, 4:-4, 4:-4], torch.ones(1, 2, 8, 8))
    torch.testing.assert_close(downsample2d(x, f)[:, :, 1:-1, 1:-1], torch.ones(1, 2, 2, 2))
    with pytest.raises(ValueError, match="smaller than the filter"):
        upfirdn2d(torch.ones(1, 1, 2, 2), f, padding=-1, impl="ref")


# ---------------------------------------------------------------------------------------------------
# dispatch and build helper
# ---------------------------------------------------------------------------------------------------

def test_env_override_forces_reference(monkeypatch):
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(RuntimeError, match="needs a CUDA tensor"):
        bias_act(x, impl="cuda")
    monkeypatch.setenv("CLIPSTYLE_KERNELS", "ref")
    torch.testing.assert_close(bias_act(x, act="lrelu", impl="cuda"), F.leaky_relu(x, 0.2) * math.sqrt(2))
    torch.testing.assert_close(upfirdn2d(x, None, impl="cuda"), x)


def test_impl_cuda_on_cpu_tensor_raises_clear_error():
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(RuntimeError, match=r"upfirdn2d: impl='cuda' needs a CUDA tensor, got one on cpu"):
        upfirdn2d(x, setup_filter([1, 1]), impl="cuda")
    with pytest.raises(RuntimeError, match="bias_act: impl='cuda' needs a CUDA tensor"):
        bias_act(x, impl="cuda")


def test_invalid_impl_raises_value_error(monkeypatch):
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match="impl must be one of"):
        bias_act(x, impl="fast")
    monkeypatch.setenv("CLIPSTYLE_KERNELS", "triton")
    with pytest.raises(ValueError, match="CLIPSTYLE_KERNELS must be one of"):
        upfirdn2d(x, None)


def test_auto_falls_back_with_one_warning_per_op_and_reason():
    _dispatch.reset_warnings()
    fake_cuda = types.SimpleNamespace(is_cuda=True, device="cuda:0")

    def broken():
        raise _build.KernelBuildError("nvcc not found")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert _dispatch.choose("opA", "auto", fake_cuda, broken) is None
        assert _dispatch.choose("opB", "auto", fake_cuda, broken) is None
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2 and "opA" in messages[0] and "nvcc not found" in messages[0]
    with pytest.raises(RuntimeError, match="CUDA extension unavailable: nvcc not found"):
        _dispatch.choose("opA", "cuda", fake_cuda, broken)
    _dispatch.reset_warnings()


def test_build_reports_missing_toolkit_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv("CLIPSTYLE_KERNEL_CACHE", str(tmp_path))
    assert _build.cache_dir() == tmp_path
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "no-cuda-here"))
    problem = _build.cuda_toolkit_problem()
    if torch.version.cuda is None:
        assert "no CUDA support" in problem
    else:
        assert "CUDA_HOME=" in problem and "not a CUDA toolkit" in problem
    src = tmp_path / "x.cpp"
    src.write_text("int main() {}\n")
    with pytest.raises(_build.KernelBuildError, match="cannot build the CUDA extension"):
        _build.build("clipstyle_test_missing_toolkit", [src], with_cuda=True)
    with pytest.raises(_build.KernelBuildError):  # memoised: the same error, no second attempt
        _build.build("clipstyle_test_missing_toolkit", [src], with_cuda=True)


def test_cpu_use_builds_nothing():
    """Importing the kernels and running them on CPU never calls the compiler."""
    import subprocess
    import sys

    code = ("import torch, clipstyle.kernels as k\n"
            "from clipstyle.kernels import _build\n"
            "x = torch.randn(1, 2, 8, 8)\n"
            "k.upsample2d(k.bias_act(x, torch.zeros(2), act='lrelu'), k.setup_filter([1, 3, 3, 1]))\n"
            "print(_build._cached.cache_info().misses)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


def test_kernels_check_command_reports_without_building(capsys):
    """``clipstyle kernels check --json`` exits 0 and says why CUDA is not used on this machine."""
    import json

    from clipstyle.cli import main

    with pytest.raises(SystemExit) as done:
        main(["kernels", "check", "--json"])
    assert done.value.code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["op"] for r in rows] == ["bias_act", "upfirdn2d", "filtered_lrelu"]
    assert all(r["reference"] == "ok" for r in rows)
    if not torch.cuda.is_available():
        assert all(r["extension"] in ("not built", "unavailable") and r["note"] for r in rows)


# ---------------------------------------------------------------------------------------------------
# fallbacks that tell the truth (issue 17, item 1)
# ---------------------------------------------------------------------------------------------------

def test_default_cache_folder_needs_no_environment(monkeypatch, tmp_path):
    """With no clipstyle variable set, the build folder is the platform cache's ``clipstyle/kernels``."""
    for var in ("CLIPSTYLE_KERNEL_CACHE", "CLIPSTYLE_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _build.cache_dir() == tmp_path / "xdg" / "clipstyle" / "kernels"


def test_kernel_build_error_is_a_user_runtime_error():
    from clipstyle.errors import UserRuntimeError, exit_code_for

    err = _build.KernelBuildError("bias_act: build failed")
    assert isinstance(err, UserRuntimeError) and isinstance(err, RuntimeError) and exit_code_for(err) == 1


@pytest.mark.parametrize("bug", [ImportError("No module named 'clipstyle.cache'"), AttributeError("no attr"),
                                 TypeError("bad call"), KeyError("k")])
def test_dispatch_never_hides_a_bug_behind_the_reference(bug):
    """Only a KernelBuildError falls back; an ImportError/AttributeError/TypeError of our code propagates."""
    _dispatch.reset_warnings()
    fake_cuda = types.SimpleNamespace(is_cuda=True, device="cuda:0")

    def buggy():
        raise bug

    for impl in ("auto", "cuda"):
        with pytest.raises(type(bug)):
            _dispatch.choose("opA", impl, fake_cuda, buggy)


def _fake_source(tmp_path):
    src = tmp_path / "x.cpp"
    src.write_text("int answer() { return 42; }\n")
    return src


@pytest.mark.skipif(shutil.which("c++") is None or shutil.which("ninja") is None, reason="needs c++ and ninja")
def test_build_turns_only_toolchain_failures_into_kernel_build_errors(monkeypatch, tmp_path):
    """A compiler failure (torch raises RuntimeError) is a KernelBuildError naming the log; a missing
    module of ours raised inside the build is a bug and propagates as itself."""
    from torch.utils import cpp_extension

    monkeypatch.setenv("CLIPSTYLE_KERNEL_CACHE", str(tmp_path / "cache"))
    src = _fake_source(tmp_path)

    def compiler_fails(**kwargs):
        raise RuntimeError("Error building extension 'x': error: expected ';' before '}' token")

    monkeypatch.setattr(cpp_extension, "load", compiler_fails)
    with pytest.raises(_build.KernelBuildError, match="(?s)build failed .*expected ';'"):
        _build.build("clipstyle_test_compiler_fails", [src], with_cuda=False)

    def our_bug(**kwargs):
        raise ModuleNotFoundError("No module named 'clipstyle.cache'", name="clipstyle.cache")

    monkeypatch.setattr(cpp_extension, "load", our_bug)
    with pytest.raises(ModuleNotFoundError, match="clipstyle.cache"):
        _build.build("clipstyle_test_our_bug", [src], with_cuda=False)

    def so_unloadable(**kwargs):
        raise ImportError("/cache/clipstyle_test_so.so: undefined symbol: _ZN3c10", name="clipstyle_test_so")

    monkeypatch.setattr(cpp_extension, "load", so_unloadable)
    with pytest.raises(_build.KernelBuildError, match="undefined symbol"):
        _build.build("clipstyle_test_so", [src], with_cuda=False)


def test_kernels_check_exits_1_when_an_extension_that_should_build_does_not(monkeypatch, capsys):
    """``--compile`` asks for the build: a toolkit that is not there is a failed check (exit 1)."""
    import json

    from clipstyle.cli import main

    monkeypatch.setenv("CUDA_HOME", "/nonexistent/cuda")
    with pytest.raises(SystemExit) as done:
        main(["kernels", "check", "--compile", "--json"])
    out, err = capsys.readouterr()
    rows = json.loads(out)
    if torch.version.cuda is None:
        assert all("no CUDA support" in r["note"] for r in rows)
    else:
        assert all(r["extension"] == "unavailable" and "not a CUDA toolkit" in r["note"] for r in rows)
    assert done.value.code == 1 and all(r["ok"] == "no" for r in rows)
    assert "kernels check failed for bias_act, upfirdn2d, filtered_lrelu" in err and "Traceback" not in err


def test_cpu_filters_run_in_float32_under_bf16_autocast_and_return_the_input_dtype():
    """oneDNN has no fast 16-bit depthwise convolution: under autocast (or on 16-bit input) the CPU
    reference filters in float32 with autocast off, and hands back the input's dtype — bit for bit the
    float32 result rounded once (16-bit arithmetic inside would round at every tap)."""
    from clipstyle.kernels import setup_filter, upfirdn2d
    from clipstyle.kernels.filtered_lrelu import filtered_lrelu

    x16 = torch.randn(1, 4, 12, 12, generator=torch.Generator().manual_seed(0)).bfloat16()
    f = setup_filter([1, 3, 3, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y16 = upfirdn2d(x16, f, up=2, padding=1)
        z16 = filtered_lrelu(x16, f, f, up=2, down=2, padding=1)
        y32 = upfirdn2d(x16.float(), f, up=2, padding=1)   # float32 input, autocast on: float32 filters too
    assert y16.dtype == z16.dtype == torch.bfloat16 and y32.dtype == torch.float32
    assert torch.equal(y16, upfirdn2d(x16.float(), f, up=2, padding=1).bfloat16())
    assert torch.equal(y32, upfirdn2d(x16.float(), f, up=2, padding=1))
    assert torch.equal(z16, filtered_lrelu(x16.float(), f, f, up=2, down=2, padding=1).bfloat16())
