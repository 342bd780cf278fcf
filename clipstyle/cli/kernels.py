"""``clipstyle kernels check``: can the custom ops run here, and which implementation will they use?

For each op (``bias_act``, ``upfirdn2d``, ``filtered_lrelu``) the report says whether the PyTorch
reference passes a quick self-test (fast path vs. the literal definition, forward and gradient, on
CPU), whether a CUDA device and toolkit are present, whether the CUDA extension builds (it is
compiled on demand and cached, see :mod:`clipstyle.kernels._build`), and — with a device — whether it
matches the reference.

Exit code: 0 when everything that should work works; 1 (after the report) when an extension that
should build does not (a CUDA device is present, or ``--compile`` was given, and the toolkit is
missing or the build fails), when the CUDA extension disagrees with the reference, or when the
reference fails its self-test. Only named build failures
(:class:`~clipstyle.kernels._build.KernelBuildError`) are reported as "build failed"; any other
exception is a bug and shows its traceback.
"""

from __future__ import annotations

import importlib
import json
from typing import Annotated, Any, Callable

import typer

OPS = ("bias_act", "upfirdn2d", "filtered_lrelu")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1] if len(lines) > 1 and "build failed" in lines[0] else lines[0]


def _max_err(a: Any, b: Any) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max()) if a.numel() else 0.0


def _cases(op: str, device: Any) -> list[tuple[Callable[..., Any], tuple, dict, tuple[int, ...]]]:
    """(function, args, kwargs, indices of the args to differentiate) of a few small calls."""
    import torch

    from clipstyle.kernels import setup_filter

    g = torch.Generator().manual_seed(0)

    def rnd(*shape: int) -> Any:
        return torch.randn(*shape, generator=g).to(device)

    if op == "bias_act":
        from clipstyle.kernels import bias_act

        return [(bias_act, (rnd(2, 5, 6, 7), rnd(5)), dict(act=a, clamp=c), (0, 1)) for a in ("lrelu", "tanh", "swish")
                for c in (None, 0.5)]
    if op == "upfirdn2d":
        from clipstyle.kernels import upfirdn2d

        f4, f12 = setup_filter([1, 3, 3, 1]).to(device), setup_filter(torch.hann_window(12) + 0.1).to(device)
        return [(upfirdn2d, (rnd(2, 3, 9, 8), f4), dict(up=2, padding=(2, 1, 2, 1), gain=4), (0,)),
                (upfirdn2d, (rnd(2, 3, 9, 8), f12), dict(down=2, padding=(5, 4, 5, 3)), (0,)),
                (upfirdn2d, (rnd(1, 2, 5, 6), f4), dict(up=(3, 1), down=(1, 2), padding=(-1, 2, 3, -1),
                                                        flip_filter=True), (0,))]
    from clipstyle.kernels.filtered_lrelu import filtered_lrelu

    fu, fd = (torch.hann_window(12) + 0.1).to(device), (torch.hann_window(8) + 0.1).to(device)
    fu, fd = fu / fu.sum(), fd / fd.sum()
    return [(filtered_lrelu, (rnd(2, 4, 10, 10), fu, fd, rnd(4)), dict(up=2, down=2, padding=(10, 9, 10, 9),
                                                                          clamp=0.7), (0, 3)),
            (filtered_lrelu, (rnd(1, 3, 8, 9), None, fd, None), dict(up=1, down=2, padding=3, flip_filter=True), (0,))]


def _compare(op: str, device: Any, impl_a: str, impl_b: str) -> float:
    """Largest |difference| of outputs and input gradients between two implementations."""
    import torch

    worst = 0.0
    for fn, args, kwargs, diff in _cases(op, device):
        outs = []
        for impl in (impl_a, impl_b):
            leaves = [a.detach().clone().requires_grad_(True) if i in diff else a for i, a in enumerate(args)]
            y = fn(*leaves, impl=impl, **kwargs)
            grads = torch.autograd.grad(y, [leaves[i] for i in diff], torch.ones_like(y))
            outs.append([y, *grads])
        worst = max(worst, *(_max_err(a, b) for a, b in zip(*outs)))
    return worst


def _reference_selftest(op: str) -> str:
    """The reference's fast path against the literal definition, on CPU in float64."""
    import torch

    mod = importlib.import_module(f"clipstyle.kernels.{op}.ref")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 9, 10, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64)
    if op == "bias_act":
        args = (x, b, 1, "lrelu", 0.2, 2 ** 0.5, 0.8)
        a, r = mod.bias_act_ref(*args), mod.bias_act_naive(*args)
    elif op == "upfirdn2d":
        f = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
        args = (x, f, (2, 3), (3, 2), (2, -1, 3, 4), False, 2.0)
        a, r = mod.upfirdn2d_ref(*args), mod.upfirdn2d_naive(*args)
    else:
        from clipstyle.kernels import bias_act, upfirdn2d

        fu = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64) / 8
        a = mod.filtered_lrelu_ref(x, fu, fu, b, 2, 2, (2, 1, 2, 1), 2 ** 0.5, 0.2, 0.6, False)
        y = upfirdn2d(bias_act(x, b, impl="ref"), fu, up=2, padding=(2, 1, 2, 1), gain=4, impl="ref")
        r = upfirdn2d(bias_act(y, act="lrelu", alpha=0.2, gain=2 ** 0.5, clamp=0.6, impl="ref"), fu, down=2, impl="ref")
    ga, = torch.autograd.grad(a, x, torch.ones_like(a))
    gr, = torch.autograd.grad(r, x, torch.ones_like(r))
    err = max(_max_err(a, r), _max_err(ga, gr))
    return "ok" if err < 1e-9 else f"MISMATCH ({err:.2e})"


def check_report(compile_without_device: bool = False) -> list[dict[str, str]]:
    """One row per op: ``op``, ``reference``, ``cuda_device``, ``extension``, ``parity``, ``note``, ``ok``.

    ``ok`` is ``"yes"`` or ``"no"``: no when the reference self-test fails, when an extension that
    should build (a CUDA device is present, or ``compile_without_device``) is unavailable or fails to
    build, or when the CUDA extension disagrees with the reference.
    """
    import torch

    from clipstyle.kernels._build import KernelBuildError, cuda_toolkit_problem

    has_device = torch.cuda.is_available()
    device_text = torch.cuda.get_device_name(0) if has_device else "none"
    toolkit = cuda_toolkit_problem()
    rows = []
    for op in OPS:
        row = {"op": op, "cuda_device": device_text, "extension": "not built", "parity": "-", "note": ""}
        row["reference"] = _reference_selftest(op)  # an exception here is a bug: it propagates
        if toolkit:
            row["extension"], row["note"] = "unavailable", toolkit
        elif not has_device and not compile_without_device:
            row["note"] = "no CUDA device"
        else:
            try:
                importlib.import_module(f"clipstyle.kernels.{op}.cuda").load()
                row["extension"] = "built"
                if not has_device:
                    row["note"] = "no CUDA device: compiled, not run"
            except KernelBuildError as exc:  # only a named build failure; a bug propagates
                row["extension"], row["note"] = "build failed", _first_line(exc)
        if has_device and row["extension"] == "built":
            try:
                err = _compare(op, torch.device("cuda"), "ref", "cuda")
                row["parity"] = "ok" if err < 1e-3 else f"MISMATCH ({err:.2e})"
            except RuntimeError as exc:  # a CUDA runtime error (illegal address…): reported as a failed check
                row["parity"] = f"error: {_first_line(exc)}"
        should_build = has_device or compile_without_device
        failed = (row["reference"] != "ok" or (should_build and row["extension"] != "built")
                  or row["parity"] not in ("-", "ok"))
        row["ok"] = "no" if failed else "yes"
        rows.append(row)
    return rows


def check_command(
    compile_: Annotated[bool, typer.Option("--compile", help="Build the CUDA extensions even without a CUDA device "
                                                             "(checks nvcc and the sources).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Report, per custom op, the reference self-test, the CUDA device and whether the extension builds."""
    rows = check_report(compile_without_device=compile_)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        _exit_on_failure(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("op", "reference", "CUDA device", "extension", "CUDA = reference", "note", title="clipstyle kernels")
    for i, col in enumerate(table.columns):  # fit 80 columns: op names whole, long words folded, never "…"
        col.no_wrap, col.overflow = i == 0, "fold"
    for r in rows:
        table.add_row(r["op"], r["reference"], r["cuda_device"], r["extension"], r["parity"], r["note"])
    console = Console()
    console.print(table)
    if not compile_ and any(r["note"] == "no CUDA device" for r in rows):
        console.print("No CUDA device: the reference runs. '--compile' builds the extensions anyway (checks nvcc).")
    _exit_on_failure(rows)


def _exit_on_failure(rows: list[dict[str, str]]) -> None:
    """Exit 1 with one line on stderr when a row failed (see the module docstring)."""
    bad = [r["op"] for r in rows if r.get("ok") == "no"]
    if bad:
        typer.echo(f"kernels check failed for {', '.join(bad)}: an extension that should build does not, "
                   "or an implementation disagrees with the reference (see the note column)", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``kernels`` command group (``clipstyle kernels check``) to the clipstyle app."""
    group = typer.Typer(help="Custom CUDA ops: build and check.", no_args_is_help=True)
    group.command("check")(check_command)
    app.add_typer(group, name="kernels")
