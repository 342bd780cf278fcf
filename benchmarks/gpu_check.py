"""The GPU check anyone can run in one command (issue 17, item 2; issue 22, item 3).

    python benchmarks/gpu_check.py                     # on a CUDA machine, ≤ 8 minutes on one GPU
    python benchmarks/gpu_check.py --smoke --device cpu  # tiny sizes: checks the script itself (a test runs it)

Sections of the JSON (``--out``, default ``benchmarks/gpu_check.json``) and of the markdown beside it:

* ``environment`` — torch, CUDA, the device, the date;
* ``build`` — each CUDA extension (``bias_act``, ``upfirdn2d``, ``filtered_lrelu``) built on the default
  path (:mod:`clipstyle.kernels._build`), with its time or the build error;
* ``op_parity`` — each op, CUDA against the PyTorch reference, forward and backward (max |error|) on a few
  random calls of every parameter kind, float32;
* ``generator_parity`` — whole random generators (SG2 at 256 and 1024, SG3-T and SG3-R at 256): the image
  and the gradient to ``ws`` with the CUDA kernels against the reference (``CLIPSTYLE_KERNELS=ref``), fp32;
* ``peaks`` — the device's measured matmul and convolution FLOP/s in each precision;
* ``bench`` — :mod:`bench_step` ``gen`` and ``step`` (ViT-B-32 × 32 cutouts, random weights) at 256 and
  1024 in fp32, tf32 and bf16: time, FLOPs, FLOP/s, fraction of the peak, peak memory;
* ``main_job`` — a main-job step at 1024 with ViT-B/32 × 32 cutouts (``open_clip``, pretrained none) in
  fp32 and ``auto``: steps/s and peak memory against the issue's goals (≥ 20 steps/s, ≤ 4 GB).

Without a CUDA device the build and parity sections say ``skipped`` with the reason; the exit code is 1
when an extension fails to build or a parity check fails, else 0.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_step  # noqa: E402  (benchmarks/ is not a package)

OPS = ("bias_act", "upfirdn2d", "filtered_lrelu")
SECTIONS = ("environment", "build", "op_parity", "generator_parity", "peaks", "bench", "main_job")
GOALS = {"steps_per_s": 20.0, "peak_gb": 4.0}
# Tolerances for CUDA vs reference in float32 (summation order differs; cuDNN's TF32 is off in fp32).
OP_TOL = 1e-4
GEN_TOL = {"image": 2e-3, "grad_rel": 1e-3}

# A 2-layer, 64-wide CLIP for --smoke (the real check uses ViT-B-32).
TINY_CLIP = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
             "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}


def _environment(device) -> dict:
    import torch

    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": str(device),
           "date": time.strftime("%Y-%m-%d %H:%M"), "python": sys.version.split()[0]}
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["capability"] = "%d.%d" % torch.cuda.get_device_capability(device)
        env["memory_gb"] = torch.cuda.get_device_properties(device).total_memory / 1e9
    else:
        import platform

        env["device_name"] = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    return env


def _build(device) -> dict:
    import importlib

    from clipstyle.kernels._build import KernelBuildError, cuda_toolkit_problem

    if device.type != "cuda":
        return {op: {"status": "skipped", "note": "no CUDA device"} for op in OPS}
    problem = cuda_toolkit_problem()
    out = {}
    for op in OPS:
        if problem:
            out[op] = {"status": "failed", "note": problem}
            continue
        t0 = time.perf_counter()
        try:
            importlib.import_module(f"clipstyle.kernels.{op}.cuda").load()
            out[op] = {"status": "built", "seconds": time.perf_counter() - t0}
        except KernelBuildError as exc:  # only a named build failure is a result; a bug propagates
            out[op] = {"status": "failed", "note": str(exc)[:2000], "seconds": time.perf_counter() - t0}
    return out


def _max_err(a, b) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max()) if a.numel() else 0.0


def _op_parity(device, built: dict) -> dict:
    import torch

    from clipstyle.cli.kernels import _cases

    out = {}
    for op in OPS:
        if device.type != "cuda" or built[op]["status"] != "built":
            out[op] = {"status": "skipped", "note": built[op].get("note", "not built")}
            continue
        fwd = bwd = 0.0
        for fn, args, kwargs, diff in _cases(op, device):
            res = []
            for impl in ("ref", "cuda"):
                leaves = [a.detach().clone().requires_grad_(True) if i in diff else a for i, a in enumerate(args)]
                y = fn(*leaves, impl=impl, **kwargs)
                g = torch.randn(y.shape, generator=torch.Generator().manual_seed(7)).to(y)
                res.append((y, torch.autograd.grad(y, [leaves[i] for i in diff], g)))
            fwd = max(fwd, _max_err(res[0][0], res[1][0]))
            bwd = max(bwd, *(_max_err(a, b) for a, b in zip(res[0][1], res[1][1])))
        out[op] = {"status": "ok" if max(fwd, bwd) <= OP_TOL else "MISMATCH", "forward_max_err": fwd,
                   "backward_max_err": bwd, "tolerance": OP_TOL}
    return out


def _generator_parity(device, configs: list[str], built: dict) -> dict:
    import torch

    from clipstyle.optimize.precision import autocast_context

    out = {}
    for config in configs:
        if device.type != "cuda" or any(b["status"] != "built" for b in built.values()):
            out[config] = {"status": "skipped", "note": "no CUDA device" if device.type != "cuda"
                           else "an extension is not built"}
            continue
        G = bench_step.build_generator(config).to(device).eval().requires_grad_(False)
        with torch.no_grad():
            ws0 = G.mapping(torch.randn([2, G.z_dim], generator=torch.Generator().manual_seed(3)).to(device), None,
                            truncation_psi=0.7)
        res = {}
        for impl in ("ref", "cuda"):
            os.environ["CLIPSTYLE_KERNELS"] = impl  # read on every op call (clipstyle.kernels._dispatch)
            try:
                ws = ws0.clone().requires_grad_(True)
                with autocast_context("fp32", device):
                    img = G.synthesis(ws, noise_mode="const")
                    (grad,) = torch.autograd.grad(img.square().mean(), ws)
                res[impl] = (img.detach(), grad)
            finally:
                os.environ.pop("CLIPSTYLE_KERNELS", None)
        image_err = _max_err(res["ref"][0], res["cuda"][0])
        grad_rel = _max_err(res["ref"][1], res["cuda"][1]) / max(float(res["ref"][1].abs().max()), 1e-30)
        ok = image_err <= GEN_TOL["image"] and grad_rel <= GEN_TOL["grad_rel"]
        out[config] = {"status": "ok" if ok else "MISMATCH", "image_max_err": image_err, "grad_max_rel_err": grad_rel,
                       "tolerance": GEN_TOL}
        del G, res
        _free(device)
    return out


def _free(device) -> None:
    gc.collect()
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()


def _guarded(fn, *args, **kwargs) -> dict:
    """Run one measurement; an exception becomes its row (the rest of the check goes on)."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # reported in the summary with its traceback's last line; the check goes on
        return {"error": f"{type(exc).__name__}: {exc}"[:500], "traceback": traceback.format_exc()[-2000:]}


def run_check(args: argparse.Namespace) -> dict:
    """Every section (see the module docstring) as one JSON-able dict."""
    import torch

    from clipstyle.optimize.precision import resolve_precision

    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    smoke = args.smoke
    gen_configs = ["sg2-32-tiny", "sg3t-32-tiny", "sg3r-32-tiny"] if smoke else \
        ["sg2-256", "sg2-1024", "sg3t-256", "sg3r-256"]
    bench_configs = ["sg2-32-tiny"] if smoke else ["sg2-256", "sg2-1024"]
    main_config = "sg2-64-tiny" if smoke else "sg2-1024"
    precisions = [p for p in ("fp32", "tf32", "bf16") if device.type == "cuda" or p != "tf32"]
    cutouts = 2 if smoke else 32
    runs, warmup = (1, 0) if smoke else (5, 2)
    clip_model = "ViT-B-32"
    if smoke:
        tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
        clip_model = str(tmp / "tiny_clip.json")
        Path(clip_model).write_text(json.dumps(TINY_CLIP))

    report: dict = {"smoke": smoke, "environment": _environment(device)}
    t0 = time.perf_counter()
    report["build"] = _build(device)
    report["op_parity"] = _op_parity(device, report["build"])
    report["generator_parity"] = _generator_parity(device, gen_configs, report["build"])
    report["peaks"] = {p: _guarded(bench_step.device_peaks, device, p, size=256 if smoke else None)
                       for p in precisions}
    report["bench"] = []
    for config in bench_configs:
        for mode in ("gen", "step"):
            for p in precisions:
                row = _guarded(bench_step.measure, config, mode, p, device, cutouts=cutouts, runs=runs,
                               warmup=warmup, clip_model=clip_model)
                row.update(config=config, mode=mode, requested=p)
                peak = report["peaks"].get(row.get("precision", p), {})
                best = max(peak.get("matmul", 0.0), peak.get("conv", 0.0))
                if best and "flops_per_s" in row:
                    row["fraction_of_peak"] = row["flops_per_s"] / best
                report["bench"].append(row)
                _free(device)
    report["main_job"] = []
    for p in ("fp32", "auto"):
        row = _guarded(bench_step.measure, main_config, "step", p, device, cutouts=cutouts, runs=runs,
                       warmup=warmup, clip_model=clip_model, flops=False)
        row.update(config=main_config, requested=p, cutouts=cutouts, clip=clip_model if not smoke else "tiny")
        if "median_s" in row:
            row["steps_per_s"] = 1 / row["median_s"]
            row["peak_gb"] = row["peak_bytes"] / 1e9
            row["meets_goals"] = (row["steps_per_s"] >= GOALS["steps_per_s"] and row["peak_gb"] <= GOALS["peak_gb"])
        row["precision_ran"] = resolve_precision(p, device)
        report["main_job"].append(row)
        _free(device)
    report["seconds"] = time.perf_counter() - t0
    failed = [f"build {op}" for op, r in report["build"].items() if r["status"] == "failed"]
    failed += [f"parity {op}" for op, r in report["op_parity"].items() if r["status"] == "MISMATCH"]
    failed += [f"parity {c}" for c, r in report["generator_parity"].items() if r["status"] == "MISMATCH"]
    report["failed"] = failed
    return report


def markdown(report: dict) -> str:
    """The summary table of a report."""
    env = report["environment"]
    lines = [f"# GPU check{' (smoke)' if report['smoke'] else ''}", "",
             f"torch {env['torch']} (CUDA {env['cuda']}), {env['device']}: {env.get('device_name')}, {env['date']}; "
             f"{report['seconds']:.0f} s", "", "## Build and parity", "",
             "| op / network | build | forward max err | backward max err | status |", "|---|---|---:|---:|---|"]
    for op in OPS:
        b, p = report["build"][op], report["op_parity"][op]
        secs = f" ({b['seconds']:.0f} s)" if "seconds" in b else ""
        lines.append(f"| {op} | {b['status']}{secs} | {p.get('forward_max_err', '-')} | "
                     f"{p.get('backward_max_err', '-')} | {p['status']} {p.get('note', '')} |")
    for config, r in report["generator_parity"].items():
        lines.append(f"| {config} | - | {r.get('image_max_err', '-')} | {r.get('grad_max_rel_err', '-')} (rel) | "
                     f"{r['status']} {r.get('note', '')} |")
    lines += ["", "## Peaks (measured)", "", "| precision | matmul GFLOP/s | conv GFLOP/s |", "|---|---:|---:|"]
    for p, r in report["peaks"].items():
        if "error" in r:
            lines.append(f"| {p} | error: {r['error']} | |")
        else:
            lines.append(f"| {p} | {r['matmul'] / 1e9:.0f} | {r['conv'] / 1e9:.0f} |")
    lines += ["", "## Steps", "", "| config | mode | precision | median ms | GFLOP | GFLOP/s | % of peak | peak GB |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in report["bench"]:
        if "error" in r:
            lines.append(f"| {r['config']} | {r['mode']} | {r['requested']} | error: {r['error'][:120]} |||||")
            continue
        frac = f"{100 * r['fraction_of_peak']:.0f} %" if "fraction_of_peak" in r else "n/a"
        lines.append(f"| {r['config']} | {r['mode']} | {r['precision']} | {1000 * r['median_s']:.1f} | "
                     f"{r['flops'] / 1e9:.1f} | {r['flops_per_s'] / 1e9:.0f} | {frac} | {r['peak_bytes'] / 1e9:.2f} |")
    lines += ["", "## Main job at 1024² (ViT-B/32 × 32 cutouts)", "",
              f"Goals: ≥ {GOALS['steps_per_s']:.0f} steps/s, ≤ {GOALS['peak_gb']:.0f} GB.", "",
              "| config | precision | steps/s | peak GB | goals met |", "|---|---|---:|---:|---|"]
    for r in report["main_job"]:
        if "error" in r:
            lines.append(f"| {r['config']} | {r['requested']} | error: {r['error'][:120]} | | |")
        else:
            lines.append(f"| {r['config']} | {r['precision']} ({r['requested']}) | {r['steps_per_s']:.1f} | "
                         f"{r['peak_gb']:.2f} | {'yes' if r['meets_goals'] else 'no'} |")
    lines += ["", "Failed: " + (", ".join(report["failed"]) or "nothing"), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "gpu_check.json",
                   help="the JSON report; the markdown summary goes beside it (.md)")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (runs on a CPU in seconds): checks the script")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (CPU runs)")
    args = p.parse_args(argv)
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    report = run_check(args)
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((out, json.dumps(report, indent=2, default=str)), (out.with_suffix(".md"), markdown(report))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)  # atomic
    print(markdown(report))
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
