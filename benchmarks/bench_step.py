"""Time one CLIP-guided optimization step and the generator alone, on the current device.

Measured per configuration (random weights, batch 1, float32):

* ``gen``  — ``G.synthesis(ws)`` forward + backward to ``ws`` (the generator's share of a step);
* ``step`` — the generator, 32 random cutouts resized to 224², a random-weight CLIP ViT-B-32 image
  encoder (:class:`clipstyle.guidance.CLIPGuide` with ``pretrained=None``), a cosine loss against
  a fixed text embedding, and the backward pass to ``ws`` plus an Adam update.

Configurations: ``sg2-256`` / ``sg2-1024`` — StyleGAN2 FFHQ (``channels_for(R, 32768, 512)``,
8 mapping layers, ``skip``, ``conv_clamp=256``); ``sg3t-256`` — StyleGAN3-T at 256²
(``channel_base=32768``; skipped with a note while :mod:`clipstyle.generator.stylegan3` is absent).

Each (config, mode) runs in its own subprocess so that the CPU peak (``ru_maxrss``, the resident set
including the weights and the Python/torch runtime) of one does not hide another; on CUDA the peak is
``torch.cuda.max_memory_allocated``. Times are the median of ``--runs`` timed repetitions after
``--warmup`` untimed ones: wall clock, and the process's CPU time (user + system, all threads), which
is far less sensitive than the wall clock to other processes sharing the cores (on an otherwise idle
machine, wall ≈ CPU time / threads). The result is a markdown table on stdout (``--json`` for raw
numbers). ``--precision fp16|bf16`` wraps the forward pass in ``torch.autocast``; ``--channels-last``
runs the StyleGAN2 synthesis network in channels-last memory format (both for GPU experiments).

Usage::

    .venv/bin/python benchmarks/bench_step.py                       # all configs, both modes
    .venv/bin/python benchmarks/bench_step.py --configs sg2-256 --modes gen --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = ("sg2-256", "sg2-1024", "sg3t-256")
MODES = ("gen", "step")
ROOT = Path(__file__).resolve().parents[1]


def build_generator(name: str):
    """The random-weight generator of a configuration name (see the module docstring)."""
    import torch

    torch.manual_seed(0)
    if name.startswith("sg2-"):
        from clipstyle.generator.stylegan2 import (
            StyleGAN2Config,
            StyleGAN2Generator,
            channels_for,
        )

        res = int(name.split("-")[1])
        cfg = StyleGAN2Config(z_dim=512, w_dim=512, c_dim=0, img_resolution=res, img_channels=3,
                              channels=channels_for(res, 32768, 512), mapping_layers=8,
                              architecture="skip", conv_clamp=256)
        return StyleGAN2Generator(cfg)
    if name.startswith("sg3t-"):
        from clipstyle.generator.stylegan3 import StyleGAN3Config, StyleGAN3Generator

        res = int(name.split("-")[1])  # config T: the paper's defaults of StyleGAN3Config.design
        return StyleGAN3Generator(StyleGAN3Config.design(res, channel_base=32768, channel_max=512))
    raise ValueError(f"unknown config {name!r}; known: {', '.join(CONFIGS)}")


def _peak_bytes(device) -> int:
    import resource

    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: kilobytes


def child(args: argparse.Namespace) -> dict:
    """Run one (config, mode) in this process and return its measurements."""
    import contextlib

    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    G = build_generator(args.configs[0]).to(device).eval().requires_grad_(False)
    if args.channels_last:  # run the synthesis network in channels-last from its first layer on
        first = next(m for m in G.synthesis.modules() if hasattr(m, "affine") and hasattr(m, "weight"))
        first.register_forward_pre_hook(
            lambda _m, a: (a[0].contiguous(memory_format=torch.channels_last),) + tuple(a[1:]))
    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.precision]
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext
    with torch.no_grad():
        z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(1)).to(device)
        ws0 = G.mapping(z, None)
    ws = ws0.clone().requires_grad_(True)
    opt = torch.optim.Adam([ws], lr=0.01)
    mode = args.modes[0]
    if mode == "step":
        from clipstyle.guidance import CLIPGuide, CutoutConfig, Cutouts

        guide = CLIPGuide("ViT-B-32", None, device=device)
        cutouts = Cutouts(CutoutConfig(num_cutouts=args.cutouts), guide.input_size)
        target = guide.encode_text(["a photo of a face"])
        rng = torch.Generator().manual_seed(2)

        def once() -> None:
            opt.zero_grad(set_to_none=True)
            with autocast():
                img = G.synthesis(ws, noise_mode="const")
                emb = guide.encode_image(cutouts(img.float(), rng))
                loss = (1 - emb @ target.T).mean()
            loss.backward()
            opt.step()
    else:
        def once() -> None:
            ws.grad = None
            with autocast():
                img = G.synthesis(ws, noise_mode="const")
            img.float().square().mean().backward()

    times, cpu_times = [], []
    for i in range(args.warmup + args.runs):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0, c0 = time.perf_counter(), time.process_time()
        once()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
    return {"config": args.configs[0], "mode": mode, "median_s": statistics.median(times),
            "min_s": min(times), "cpu_s": statistics.median(cpu_times), "runs": len(times),
            "peak_bytes": _peak_bytes(device)}


def environment(device: str, threads: int) -> str:
    import torch

    if device.startswith("cuda"):
        hw = torch.cuda.get_device_name(torch.device(device))
    else:
        hw = f"{platform.processor() or platform.machine()}, {threads} threads of {os.cpu_count()} cores"
    return f"torch {torch.__version__}, {device}: {hw}, {time.strftime('%Y-%m-%d')}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--runs", type=int, default=3, help="timed repetitions (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--cutouts", type=int, default=32)
    p.add_argument("--device", default="cuda" if _cuda_available() else "cpu")
    p.add_argument("--timeout", type=float, default=900, help="seconds per (config, mode) subprocess")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"),
                   help="autocast dtype around the forward pass (fp32 = no autocast)")
    p.add_argument("--channels-last", action="store_true",
                   help="StyleGAN2 only: run the synthesis network in channels-last memory format")
    p.add_argument("--json", action="store_true", help="print raw JSON lines instead of the table")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return 0

    rows = []
    for config in args.configs:
        for mode in args.modes:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--configs", config, "--modes", mode,
                   "--runs", str(args.runs), "--warmup", str(args.warmup), "--threads", str(args.threads),
                   "--cutouts", str(args.cutouts), "--device", args.device, "--precision", args.precision]
            cmd += ["--channels-last"] if args.channels_last else []
            env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
                out = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                if out:
                    rows.append(json.loads(out[-1][7:]))
                else:
                    err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                    rows.append({"config": config, "mode": mode, "error": err[:120]})
            except subprocess.TimeoutExpired:
                rows.append({"config": config, "mode": mode, "error": f"timed out after {args.timeout:.0f} s"})
            if args.json:
                print(json.dumps(rows[-1]), flush=True)
    if not args.json:
        extra = f", {args.precision}" + (", channels-last" if args.channels_last else "")
        print(f"{environment(args.device, args.threads)}{extra}; median of {args.runs} after {args.warmup} warm-up\n")
        print("| config | mode | median s | min s | CPU time s | peak memory GB |")
        print("|---|---|---:|---:|---:|---:|")
        for r in rows:
            if "error" in r:
                print(f"| {r['config']} | {r['mode']} | n/a | n/a | n/a | {r['error']} |")
            else:
                print(f"| {r['config']} | {r['mode']} | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['cpu_s']:.2f} "
                      f"| {r['peak_bytes'] / 1e9:.2f} |")
    return 0


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


if __name__ == "__main__":
    sys.exit(main())
