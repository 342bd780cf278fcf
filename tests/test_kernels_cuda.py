"""The compiled kernels against the PyTorch reference: forward and gradient, random shapes, every parameter.

Three ways to run them:

* ``cuda`` backend — the CUDA extensions on a GPU (skipped without ``torch.cuda.is_available()``);
* ``cpu-emulation`` backend (``slow``) — the same C++ built without CUDA: the kernels' element
  functions (``*.h``) run in CPU loops, and the autograd wrappers of ``cuda.py`` (including the
  adjoint parameters of the backward passes) run unchanged, so the index arithmetic is checked on a
  machine without a GPU (needs a C++ compiler);
* compile tests (``slow``) — build each CUDA extension with nvcc (``TORCH_CUDA_ARCH_LIST``, default
  9.0 without a GPU) into a fresh folder: the ``.cu``/``.cpp`` compile even where nothing can run
  (skipped without nvcc / a CUDA toolkit).
"""

from __future__ import annotations

import importlib
import itertools
import math
import random
import shutil

import pytest
import torch

from clipstyle.kernels import _build, bias_act, upfirdn2d
from clipstyle.kernels.filtered_lrelu import filtered_lrelu

OPS = ("bias_act", "upfirdn2d", "filtered_lrelu")
CUDA = torch.cuda.is_available()
TOOLKIT_PROBLEM = _build.cuda_toolkit_problem()
ba_ref = importlib.import_module("clipstyle.kernels.bias_act.ref")
cuda_mod = {op: importlib.import_module(f"clipstyle.kernels.{op}.cuda") for op in OPS}


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch):
    monkeypatch.delenv("CLIPSTYLE_KERNELS", raising=False)


@pytest.fixture(scope="module", params=[
    pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="needs a CUDA device")),
    pytest.param("cpu-emulation", marks=[pytest.mark.slow, pytest.mark.skipif(
        shutil.which("c++") is None, reason="needs a C++ compiler to build the CPU variant")]),
])
def backend(request, tmp_path_factory):
    """``(device, {op: extension module})`` of one backend."""
    if request.param == "cuda":
        return torch.device("cuda"), {op: cuda_mod[op].load() for op in OPS}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLIPSTYLE_KERNEL_CACHE", str(tmp_path_factory.mktemp("clipstyle_kernels")))
        exts = {op: cuda_mod[op].load_cpu() for op in OPS}
    return torch.device("cpu"), exts


def _tol(dtype: torch.dtype) -> dict:
    # The kernels accumulate in float64 for float64 data (filters are float32 values, as in the tests).
    return {torch.float64: dict(rtol=1e-9, atol=1e-10), torch.float32: dict(rtol=1e-4, atol=1e-4),
            torch.float16: dict(rtol=2e-2, atol=2e-2), torch.bfloat16: dict(rtol=5e-2, atol=5e-2)}[dtype]


def _value_and_grads(fn, inputs: list, grad_out: torch.Tensor | None = None):
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in inputs]
    y = fn(*leaves)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64).to(y) \
        if grad_out is None else grad_out
    grads = torch.autograd.grad(y, [t for t in leaves if t is not None], g)
    return [y, *grads], g


def _assert_parity(fn_test, fn_ref, inputs: list, dtype: torch.dtype, ref_dtype: torch.dtype | None = None):
    """Same inputs through both; compares outputs and gradients (the reference possibly in ref_dtype)."""
    ref_inputs = [t.to(ref_dtype) if (t is not None and ref_dtype) else t for t in inputs]
    got, g = _value_and_grads(fn_test, inputs)
    want, _ = _value_and_grads(fn_ref, ref_inputs, g.to(ref_dtype) if ref_dtype else g)
    assert got[0].shape == want[0].shape
    for a, b in zip(got, want):
        torch.testing.assert_close(a.to(b.dtype), b, **_tol(dtype))


# ---------------------------------------------------------------------------------------------------
# parity
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("act", list(ba_ref.ACTIVATIONS))
def test_bias_act_parity(backend, act):
    device, ext = backend
    gen = torch.Generator().manual_seed(11)
    for dim, alpha, gain, clamp, with_bias, dtype, cl in itertools.product(
            (0, 1, 3), (0.2, 0.01), (1.0, math.sqrt(2), -0.6), (None, 0.5, 4.0), (False, True),
            (torch.float64, torch.float32), (False, True)):
        x = torch.randn(2, 5, 3, 4, generator=gen, dtype=dtype)
        x = (x.contiguous(memory_format=torch.channels_last) if cl else x).to(device)
        b = torch.randn(x.shape[dim], generator=gen, dtype=dtype).to(device) if with_bias else None
        a = alpha if act == "lrelu" else 0.0
        _assert_parity(lambda x, b: cuda_mod["bias_act"].bias_act_cuda(ext["bias_act"], x, b, dim, act, a, gain, clamp),
                       lambda x, b: ba_ref.bias_act_naive(x, b, dim, act, a, gain, clamp), [x, b], dtype)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_bias_act_half_precision_on_cuda(dtype):
    ext = cuda_mod["bias_act"].load()
    x = torch.randn(2, 8, 16, 16, device="cuda", dtype=dtype)
    b = torch.randn(8, device="cuda", dtype=dtype)
    _assert_parity(lambda x, b: cuda_mod["bias_act"].bias_act_cuda(ext, x, b, 1, "lrelu", 0.2, math.sqrt(2), 256.0),
                   lambda x, b: ba_ref.bias_act_naive(x, b, 1, "lrelu", 0.2, math.sqrt(2), 256.0), [x, b], dtype,
                   ref_dtype=torch.float32)


def _upfirdn2d_cases(seed: int, count: int):
    rng = random.Random(seed)
    while count:
        kind = rng.choice(["none", "1d", "2d"])
        f = None if kind == "none" else (torch.rand(rng.randint(1, 7)) + 0.05 if kind == "1d"
                                         else torch.rand(rng.randint(1, 5), rng.randint(1, 5)) + 0.05)
        up = (rng.randint(1, 4), rng.randint(1, 4))
        down = (rng.randint(1, 4), rng.randint(1, 4))
        pad = tuple(rng.randint(-3, 6) for _ in range(4))
        h, w = rng.randint(1, 11), rng.randint(1, 11)
        fw, fh = (1, 1) if f is None else (f.shape[-1], f.shape[0])
        if h * up[1] + pad[2] + pad[3] < fh or w * up[0] + pad[0] + pad[1] < fw:
            continue
        count -= 1
        yield dict(shape=(rng.randint(1, 2), rng.randint(1, 4), h, w), f=f, up=up, down=down, pad=pad,
                   flip=rng.random() < 0.5, gain=rng.choice([1.0, 4.0, -0.3]), cl=rng.random() < 0.3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_upfirdn2d_parity(backend, dtype):
    device, ext = backend
    ref = importlib.import_module("clipstyle.kernels.upfirdn2d.ref")
    gen = torch.Generator().manual_seed(3)
    for case in _upfirdn2d_cases(21, 120):
        x = torch.randn(case["shape"], generator=gen, dtype=dtype)
        x = (x.contiguous(memory_format=torch.channels_last) if case["cl"] else x).to(device)
        f = None if case["f"] is None else case["f"].to(device)
        args = (case["up"], case["down"], case["pad"], case["flip"], case["gain"])
        _assert_parity(lambda x: cuda_mod["upfirdn2d"].upfirdn2d_cuda(ext["upfirdn2d"], x, f, *args),
                       lambda x: ref.upfirdn2d_naive(x, None if f is None else f.to(dtype), *args), [x], dtype)


def _literal_filtered_lrelu(x, fu, fd, b, up, down, pad, gain, slope, clamp, flip):
    y = bias_act(x, b, impl="ref") if b is not None else x
    y = upfirdn2d(y, fu, up=up, padding=pad, gain=up ** 2, flip_filter=flip, impl="ref")
    y = bias_act(y, act="lrelu", alpha=slope, gain=gain, clamp=clamp, impl="ref")
    return upfirdn2d(y, fd, down=down, flip_filter=flip, impl="ref")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_filtered_lrelu_parity(backend, dtype):
    device, ext = backend
    rng = random.Random(5)
    gen = torch.Generator().manual_seed(5)
    checked = 0
    while checked < 60:
        up, down = rng.choice([1, 2, 4]), rng.choice([1, 2, 3])

        def filt():
            k = rng.choice(["none", "1d", "1d", "2d"])
            return None if k == "none" else (torch.rand(rng.randint(1, 12)) + 0.05 if k == "1d"
                                             else torch.rand(rng.randint(1, 6), rng.randint(1, 6)) + 0.05)

        fu, fd = filt(), filt()
        pad = tuple(rng.randint(-2, 8) for _ in range(4))
        h, w = rng.randint(3, 12), rng.randint(3, 12)
        fuw, fuh = (1, 1) if fu is None else (fu.shape[-1], fu.shape[0])
        fdw, fdh = (1, 1) if fd is None else (fd.shape[-1], fd.shape[0])
        if h * up + pad[2] + pad[3] - fuh + 1 < fdh or w * up + pad[0] + pad[1] - fuw + 1 < fdw:
            continue
        checked += 1
        x = torch.randn(rng.randint(1, 2), rng.randint(1, 5), h, w, generator=gen, dtype=dtype)
        if rng.random() < 0.3:
            x = x.contiguous(memory_format=torch.channels_last)
        x = x.to(device)
        b = torch.randn(x.shape[1], generator=gen, dtype=dtype).to(device) if rng.random() < 0.7 else None
        fu = None if fu is None else fu.to(device)
        fd = None if fd is None else fd.to(device)
        args = (up, down, pad, rng.choice([1.0, math.sqrt(2), 0.6, -0.5]), rng.choice([0.2, 0.0, 1.0]),
                rng.choice([None, 0.4, 3.0]), rng.random() < 0.5)
        up_, down_, pad_, gain, slope, clamp, flip = args
        _assert_parity(
            lambda x, b: cuda_mod["filtered_lrelu"].filtered_lrelu_cuda(ext["filtered_lrelu"], x, fu, fd, b, up_, down_,
                                                                        pad_, gain, slope, clamp, flip),
            lambda x, b: _literal_filtered_lrelu(x, None if fu is None else fu.to(dtype),
                                                 None if fd is None else fd.to(dtype), b, *args),
            [x, b], dtype)


def test_broadcast_gradients(backend):
    """``y.sum().backward()`` hands the backward an expanded (stride-0) gradient."""
    device, ext = backend
    f = torch.tensor([1.0, 3.0, 3.0, 1.0], device=device) / 8
    calls = {
        "bias_act": (lambda e, x: cuda_mod["bias_act"].bias_act_cuda(e, x, None, 1, "lrelu", 0.2, 1.4, 0.5),
                     lambda x: ba_ref.bias_act_naive(x, None, 1, "lrelu", 0.2, 1.4, 0.5)),
        "upfirdn2d": (lambda e, x: cuda_mod["upfirdn2d"].upfirdn2d_cuda(e, x, f, (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0),
                      lambda x: upfirdn2d(x, f, up=2, padding=(2, 1, 2, 1), gain=4, impl="ref")),
        "filtered_lrelu": (lambda e, x: cuda_mod["filtered_lrelu"].filtered_lrelu_cuda(
                               e, x, f, f, None, 2, 2, (2, 1, 2, 1), 1.4, 0.2, 0.5, False),
                           lambda x: _literal_filtered_lrelu(x, f, f, None, 2, 2, (2, 1, 2, 1), 1.4, 0.2, 0.5, False)),
    }
    for op, (fn, ref_fn) in calls.items():
        x = torch.randn(2, 3, 7, 6, device=device, dtype=torch.float64)
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        fn(ext[op], xa).sum().backward()
        ref_fn(xb).sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad, **_tol(torch.float64))


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_auto_dispatch_uses_cuda_on_cuda_tensors():
    x = torch.randn(1, 4, 8, 8, device="cuda")
    f = torch.tensor([1.0, 3.0, 3.0, 1.0], device="cuda") / 8
    for impl in ("auto", "cuda"):
        torch.testing.assert_close(bias_act(x, torch.ones(4, device="cuda"), act="lrelu", impl=impl),
                                   bias_act(x, torch.ones(4, device="cuda"), act="lrelu", impl="ref"))
        torch.testing.assert_close(upfirdn2d(x, f, up=2, padding=(2, 1, 2, 1), gain=4, impl=impl),
                                   upfirdn2d(x, f, up=2, padding=(2, 1, 2, 1), gain=4, impl="ref"))
        torch.testing.assert_close(filtered_lrelu(x, f, f, None, up=2, down=2, padding=(2, 1, 2, 1), impl=impl),
                                   filtered_lrelu(x, f, f, None, up=2, down=2, padding=(2, 1, 2, 1), impl="ref"))


# ---------------------------------------------------------------------------------------------------
# compile tests
# ---------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(TOOLKIT_PROBLEM is not None, reason=f"no CUDA toolkit: {TOOLKIT_PROBLEM}")
@pytest.mark.parametrize("op", OPS)
def test_cuda_extension_builds_on_the_default_path(op, tmp_path, monkeypatch):
    """The path users get: the op's own ``load()`` with no clipstyle variable set builds the .cpp + .cu with
    nvcc into the platform cache (here a fresh HOME / XDG cache); works without a GPU (9.0 is compiled)."""
    for var in ("CLIPSTYLE_KERNEL_CACHE", "CLIPSTYLE_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    _build._cached.cache_clear()  # a module loaded earlier in this process would be returned unbuilt
    try:
        ext = cuda_mod[op].load()
    finally:
        _build._cached.cache_clear()
    assert ext.has_cuda
    built = list((tmp_path / "xdg" / "clipstyle" / "kernels").glob(f"clipstyle_{op}-*/clipstyle_{op}*.so"))
    assert len(built) == 1, built
