"""What a step costs, and how close it runs to the device's limit (issue 22).

Measured per (configuration, mode, precision), random weights, batch 1:

* ``gen``  — ``G.synthesis(ws)`` forward + backward to ``ws`` (the generator's share of a step);
* ``tune`` — ``G.synthesis(ws)`` forward + backward to the synthesis *weights* + Adam on them (the
  generator's share of a pivotal-tuning or ``clipstyle adapt`` step; float32 master weights, the forward in
  the precision);
* ``step`` — one main-job step: the generator, ``--cutouts`` random cutouts resized to 224², CLIP
  ViT-B-32 with random weights (:class:`clipstyle.guidance.CLIPGuide`, ``pretrained=None``), the cosine
  loss to a text embedding, backward to ``ws``, Adam — with the precision machinery of the loop
  (:mod:`clipstyle.optimize.precision`: the generator and CLIP's image tower in the mode, the loss in fp32).

For each row: the median wall time of ``--runs`` after ``--warmup``, the process CPU time, the FLOPs of
one step (``torch.utils.flop_counter.FlopCounterMode``: matmuls and convolutions, forward + backward),
the achieved FLOP/s, the fraction of the device's *measured* peak (:func:`device_peaks`: a large matmul
and a 3×3 convolution in the same precision; the larger of the two is the peak), and the peak memory
(``ru_maxrss`` on CPU — including ~0.8 GB for ``import torch`` —, ``torch.cuda.max_memory_allocated``
on CUDA).

The reference column (``--nvidia-repo PATH``) is the straightforward composition the issue compares with:
NVIDIA's generator imported from a local checkout of stylegan2-ada-pytorch / stylegan3 (never vendored:
its licence is non-commercial), open_clip's ViT-B-32, bilinear random cutouts, Adam; same sizes, in float32
— the issue's baseline, and the only precision it runs in on the CPU (its networks assert float32/float16
activations, which bf16 autocast breaks) —, so every row's ratio is to the float32 reference. Without
``--nvidia-repo`` the column says ``n/a``.

Configurations: ``sg2-256`` / ``sg2-1024`` — StyleGAN2 FFHQ (``channels_for(R, 32768, 512)``, 8 mapping
layers, ``skip``, ``conv_clamp=256``); ``sg3t-256`` — StyleGAN3-T; ``sg3r-256`` — StyleGAN3-R
(``channel_base`` 65536, 1×1 convolutions, radial filters).

Every row runs in its own subprocess (peaks do not mix), with ``--allocator heap`` by default: glibc keeps
freed memory for reuse, as the ``clipstyle`` command sets it (:mod:`clipstyle.optimize.allocator`), for the
reference rows too; ``--allocator system`` measures the C library's default. NVIDIA's code imports
``pkg_resources`` (setuptools < 81 provides it)::

    python benchmarks/bench_step.py --configs sg2-256 --modes gen step --precisions fp32 bf16
    python benchmarks/bench_step.py --configs sg2-256 --nvidia-repo ~/src/stylegan3 --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = ("sg2-256", "sg2-1024", "sg3t-256", "sg3r-256")
MODES = ("gen", "step", "tune")
PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "auto")
ROOT = Path(__file__).resolve().parents[1]


def build_generator(name: str, seed: int = 0):
    """The random-weight clipstyle generator of a configuration (see the module docstring); also accepts
    ``sg2-<R>-tiny`` / ``sg3t-<R>-tiny`` / ``sg3r-<R>-tiny`` (narrow channels, for smoke runs)."""
    import torch

    torch.manual_seed(seed)
    parts = name.split("-")
    kind, res, tiny = parts[0], int(parts[1]), parts[-1] == "tiny"
    if kind == "sg2":
        from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator, channels_for

        z = 32 if tiny else 512
        cfg = StyleGAN2Config(z_dim=z, w_dim=z, c_dim=0, img_resolution=res, img_channels=3,
                              channels=channels_for(res, 512 if tiny else 32768, 32 if tiny else 512),
                              mapping_layers=2 if tiny else 8, architecture="skip", conv_clamp=256)
        return StyleGAN2Generator(cfg)
    if kind in ("sg3t", "sg3r"):
        from clipstyle.generator.stylegan3 import StyleGAN3Config, StyleGAN3Generator

        base = 1024 if tiny else 32768
        kw = dict(z_dim=32, w_dim=32, num_layers=6) if tiny else {}
        if kind == "sg3r":
            kw.update(conv_kernel=1, use_radial_filters=True)
            base *= 2
        return StyleGAN3Generator(StyleGAN3Config.design(res, channel_base=base, channel_max=base // 64 if tiny
                                                         else (1024 if kind == "sg3r" else 512), **kw))
    raise ValueError(f"unknown config {name!r}; known: {', '.join(CONFIGS)}")


def peak_bytes(device) -> int:
    """Peak memory of this process: CUDA allocator peak, or the resident-set peak on CPU (bytes)."""
    import resource

    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: kilobytes


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device, runs: int, warmup: int) -> tuple[list[float], list[float]]:
    times, cpu = [], []
    for i in range(warmup + runs):
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return times, cpu


def count_flops(fn) -> int:
    """FLOPs of one call of ``fn`` (forward + backward), by ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def device_peaks(device, precision: str, size: int | None = None) -> dict[str, float]:
    """Measured FLOP/s of a square matmul and of a 3×3 convolution in ``precision`` on ``device``.

    ``size``: the matmul side (default 4096 on CUDA, 1536 on CPU); the convolution is
    ``[8, 256, 32, 32] * [256, 256, 3, 3]`` (×4 the batch on CUDA). Best of 5 after 2 warm-ups.
    """
    import torch

    from clipstyle.optimize.precision import autocast_context, resolve_precision

    mode = resolve_precision(precision, device)
    n = size or (4096 if device.type == "cuda" else 1536)
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    batch = 32 if device.type == "cuda" else 8
    x = torch.randn(batch, 256, 32, 32, device=device)
    w = torch.randn(256, 256, 3, 3, device=device)
    out = {}
    with autocast_context(mode, device), torch.no_grad():
        for name, fn, flops in (("matmul", lambda: a @ b, 2 * n ** 3),
                                ("conv", lambda: torch.nn.functional.conv2d(x, w, padding=1),
                                 2 * batch * 256 * 256 * 9 * 32 * 32)):
            times, _ = _time(fn, device, 5, 2)
            out[name] = flops / min(times)
    return out


class _Step:
    """The clipstyle main-job step (or the generator alone) as a callable; see the module docstring."""

    def __init__(self, config: str, mode: str, precision: str, device, cutouts: int, clip_model: str,
                 compile_mode: str = "off") -> None:
        import torch

        from clipstyle.optimize.compile import maybe_compile
        from clipstyle.optimize.precision import autocast_context, model_precision, resolve_precision

        self.device = device
        self.precision = resolve_precision(precision, device)
        G = build_generator(config).to(device).eval().requires_grad_(False)
        self.compile_info = [maybe_compile(G.synthesis, compile_mode, device)]
        with torch.no_grad():
            z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(1)).to(device)
            ws0 = G.mapping(z, None)
        self.ws = ws0.clone().requires_grad_(mode != "tune")
        if mode == "tune":  # the weights train (float32 master copies), the latent is fixed
            G.synthesis.requires_grad_(True)
        self.opt = torch.optim.Adam([p for p in G.synthesis.parameters() if p.requires_grad] if mode == "tune"
                                    else [self.ws], lr=3e-4 if mode == "tune" else 0.01)
        self.G, self.mode = G, mode
        self._gen_ctx = lambda: autocast_context(self.precision, device)
        self._loss_ctx = lambda: model_precision(self.precision, device)
        if mode == "step":
            from clipstyle.guidance import CLIPGuide, CutoutConfig, Cutouts

            self.guide = CLIPGuide(clip_model, None, device=device)
            self.compile_info.append(maybe_compile(self.guide.model.visual, compile_mode, device))
            self.cutouts = Cutouts(CutoutConfig(num_cutouts=cutouts), self.guide.input_size)
            self.target = self.guide.encode_text(["a photo of a face"])
            self.rng = torch.Generator().manual_seed(2)

    def __call__(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        with self._gen_ctx():
            img = self.G.synthesis(self.ws, noise_mode="const")
        img = img.float()
        if self.mode in ("gen", "tune"):
            loss = img.square().mean()
        else:
            with self._loss_ctx():
                emb = self.guide.encode_image(self.cutouts(img, self.rng))  # [K, D] float32
            loss = (1 - emb @ self.target.T).mean()
        loss.backward()
        if self.mode != "gen":
            self.opt.step()


def measure(config: str, mode: str, precision: str, device, *, cutouts: int = 8, runs: int = 3, warmup: int = 1,
            clip_model: str = "ViT-B-32", compile_mode: str = "off", flops: bool = True) -> dict:
    """One row: times, FLOPs, achieved FLOP/s and peak memory of clipstyle's ``mode`` (in this process).

    With ``compile_mode`` compiling, ``compile[0]["seconds"]`` is the time of the first (compiling) call."""
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    step = _Step(config, mode, precision, device, cutouts, clip_model, compile_mode)
    if any(c.compiled for c in step.compile_info):  # the first call compiles: its time is the compile time
        from clipstyle.optimize.compile import warm_up

        step.compile_info = [warm_up(step.compile_info[0], step), *step.compile_info[1:]]
    times, cpu = _time(step, device, runs, warmup)
    row = {"config": config, "mode": mode, "precision": step.precision, "requested": precision,
           "median_s": statistics.median(times), "min_s": min(times), "cpu_s": statistics.median(cpu),
           "runs": len(times), "peak_bytes": peak_bytes(device), "setup_s": time.perf_counter() - t0 - sum(times),
           "compile": [vars(c) for c in step.compile_info]}
    if flops:
        row["flops"] = count_flops(step)
        row["flops_per_s"] = row["flops"] / row["median_s"]
    return row


# --------------------------------------------------------------------------------------------------
# the straightforward reference: NVIDIA's generator + open_clip + bilinear cutouts
# --------------------------------------------------------------------------------------------------

def nvidia_generator(repo: Path, config: str):
    """NVIDIA's ``Generator`` of ``config`` from a local stylegan2-ada-pytorch / stylegan3 checkout."""
    import torch

    sys.path.insert(0, str(repo))
    torch.manual_seed(0)
    kind, res = config.split("-")[0], int(config.split("-")[1])
    if kind == "sg2":
        module = "training.networks_stylegan2" if (repo / "training" / "networks_stylegan2.py").is_file() \
            else "training.networks"
        net = __import__(module, fromlist=["Generator"])
        return net.Generator(z_dim=512, w_dim=512, c_dim=0, img_resolution=res, img_channels=3,
                             mapping_kwargs=dict(num_layers=8), channel_base=32768, channel_max=512,
                             num_fp16_res=0, conv_clamp=256, architecture="skip")  # synthesis kwargs, flat
    net = __import__("training.networks_stylegan3", fromlist=["Generator"])
    kw = dict(channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True) if kind == "sg3r" \
        else dict(channel_base=32768, channel_max=512)
    return net.Generator(z_dim=512, w_dim=512, c_dim=0, img_resolution=res, img_channels=3,
                         mapping_kwargs=dict(num_layers=2), num_fp16_res=0, conv_clamp=256, **kw)


def measure_reference(repo: Path, config: str, mode: str, precision: str, device, *, cutouts: int = 8,
                      runs: int = 3, warmup: int = 1) -> dict:
    """The reference row: NVIDIA's G, open_clip ViT-B-32 (random), bilinear random crops, Adam."""
    import open_clip
    import torch
    import torch.nn.functional as F

    from clipstyle.optimize.precision import autocast_context, resolve_precision

    mode_ran = resolve_precision(precision, device)
    G = nvidia_generator(repo, config).to(device).eval().requires_grad_(False)
    with torch.no_grad():
        ws0 = G.mapping(torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(1)).to(device), None)
    ws = ws0.clone().requires_grad_(mode != "tune")
    if mode == "tune":
        G.synthesis.requires_grad_(True)
    opt = torch.optim.Adam([p for p in G.synthesis.parameters() if p.requires_grad] if mode == "tune" else [ws],
                           lr=3e-4 if mode == "tune" else 0.01)
    if mode == "step":
        clip = open_clip.create_model("ViT-B-32", pretrained=None, device=device).eval().requires_grad_(False)
        tokens = open_clip.get_tokenizer("ViT-B-32")(["a photo of a face"]).to(device)
        with torch.no_grad():
            target = F.normalize(clip.encode_text(tokens).float(), dim=-1)
        mean = torch.tensor([0.4815, 0.4578, 0.4082], device=device).view(1, 3, 1, 1)
        std = torch.tensor([0.2686, 0.2613, 0.2758], device=device).view(1, 3, 1, 1)
        gen = torch.Generator().manual_seed(2)

    def once() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast_context(mode_ran, device):
            img = G.synthesis(ws, noise_mode="const")
            if mode in ("gen", "tune"):
                loss = img.float().square().mean()
            else:
                x = (img.float() + 1) / 2
                size = x.shape[-1]
                crops = []
                for _ in range(cutouts):
                    s = int(torch.randint(size // 4, size + 1, (), generator=gen))
                    oy, ox = (int(torch.randint(0, size - s + 1, (), generator=gen)) for _ in range(2))
                    crops.append(F.interpolate(x[:, :, oy:oy + s, ox:ox + s], size=224, mode="bilinear",
                                               align_corners=False))
                emb = F.normalize(clip.encode_image((torch.cat(crops) - mean) / std).float(), dim=-1)
                loss = (1 - emb @ target.T).mean()
        loss.backward()
        if mode != "gen":
            opt.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, cpu = _time(once, device, runs, warmup)
    return {"config": config, "mode": mode, "precision": mode_ran, "reference": True,
            "median_s": statistics.median(times), "min_s": min(times), "cpu_s": statistics.median(cpu),
            "runs": len(times), "peak_bytes": peak_bytes(device), "flops": count_flops(once)}


# --------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------

def environment(device: str, threads: int) -> str:
    """One line: torch version, device, hardware, date."""
    import torch

    if device.startswith("cuda"):
        hw = torch.cuda.get_device_name(torch.device(device))
    else:
        hw = f"{platform.processor() or platform.machine()}, {threads} threads of {os.cpu_count()} cores"
    return f"torch {torch.__version__}, {device}: {hw}, {time.strftime('%Y-%m-%d %H:%M')}"


def _child(args: argparse.Namespace) -> dict:
    if args.allocator == "heap":  # before torch allocates anything; as the CLI's entry point does
        from clipstyle.optimize.allocator import keep_freed_memory

        keep_freed_memory()
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.what == "peak":
        return {"peak": args.precisions[0], **device_peaks(device, args.precisions[0])}
    config, mode, precision = args.configs[0], args.modes[0], args.precisions[0]
    if args.what == "reference":
        return measure_reference(Path(args.nvidia_repo).expanduser(), config, mode, precision, device,
                                 cutouts=args.cutouts, runs=args.runs, warmup=args.warmup)
    return measure(config, mode, precision, device, cutouts=args.cutouts, runs=args.runs, warmup=args.warmup,
                   compile_mode=args.compile)


def _run_child(args: argparse.Namespace, what: str, config: str, mode: str, precision: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", what, "--configs", config, "--modes", mode,
           "--precisions", precision, "--runs", str(args.runs), "--warmup", str(args.warmup), "--threads",
           str(args.threads), "--cutouts", str(args.cutouts), "--device", args.device, "--compile", args.compile,
           "--allocator", args.allocator]
    if args.nvidia_repo:
        cmd += ["--nvidia-repo", str(args.nvidia_repo)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    label = {"config": config, "mode": mode, "precision": precision}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**label, "error": f"timed out after {args.timeout:.0f} s"}
    out = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if out:
        return json.loads(out[-1][7:])
    return {**label, "error": ((proc.stderr.strip().splitlines() or ["no output"])[-1])[:160]}


def table(rows: list[dict], peaks: dict[str, float], refs: dict[tuple, dict]) -> str:
    """The markdown table of :func:`main`."""
    lines = ["| config | mode | precision | median s | CPU s | GFLOP | GFLOP/s | % of peak | peak GB "
             "| reference s (fp32) | × reference |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['config']} | {r['mode']} | {r['precision']} | error: {r['error']} |||||||| ")
            continue
        peak = peaks.get(r["precision"])
        ref = refs.get((r["config"], r["mode"]))
        ref_s = f"{ref['median_s']:.2f}" if ref and "median_s" in ref else ("n/a" if not ref else "error")
        ratio = f"{r['median_s'] / ref['median_s']:.2f}" if ref and "median_s" in ref else "n/a"
        name = r["precision"] + (" (auto)" if r["requested"] == "auto" else "")
        gflop = r.get("flops", 0) / 1e9
        frac = f"{100 * r['flops_per_s'] / peak:.0f} %" if peak and "flops_per_s" in r else "n/a"
        lines.append(f"| {r['config']} | {r['mode']} | {name} | {r['median_s']:.2f} | {r['cpu_s']:.2f} | "
                     f"{gflop:.0f} | {gflop / r['median_s']:.0f} | {frac} | {r['peak_bytes'] / 1e9:.2f} | "
                     f"{ref_s} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=["sg2-256"], choices=CONFIGS)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--precisions", nargs="+", default=["fp32", "auto"], choices=PRECISIONS)
    p.add_argument("--runs", type=int, default=3, help="timed repetitions (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--cutouts", type=int, default=8, help="CLIP cutouts per step")
    p.add_argument("--device", default="cuda" if _cuda_available() else "cpu")
    p.add_argument("--compile", default="off", help="off | compile | channels-last | both | auto (generator and CLIP)")
    p.add_argument("--nvidia-repo", type=Path, default=None,
                   help="local checkout of NVIDIA's stylegan2-ada-pytorch or stylegan3: adds the reference column")
    p.add_argument("--allocator", choices=("heap", "system"), default="heap",
                   help="heap: glibc keeps freed memory for reuse, as the clipstyle CLI sets it "
                        "(clipstyle.optimize.allocator); system: the C library's default. Applies to every row, "
                        "the reference's too")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per subprocess")
    p.add_argument("--json", action="store_true", help="print raw JSON lines instead of the table")
    p.add_argument("--child", choices=("ours", "reference", "peak"), dest="what", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.what:
        print("RESULT " + json.dumps(_child(args)), flush=True)
        return 0
    import torch

    from clipstyle.optimize.precision import resolve_precision

    device = torch.device(args.device)
    ran = {pr: resolve_precision(pr, device) for pr in args.precisions}
    peaks = {}
    for pr in sorted(set(ran.values())):
        peak = _run_child(args, "peak", args.configs[0], "gen", pr)
        peaks[pr] = max(peak.get("matmul", 0.0), peak.get("conv", 0.0)) or None
        if args.json:
            print(json.dumps(peak), flush=True)
    rows, refs = [], {}
    for config in args.configs:
        for mode in args.modes:
            for pr in args.precisions:
                rows.append(_run_child(args, "ours", config, mode, pr))
                if args.json:
                    print(json.dumps(rows[-1]), flush=True)
                if args.nvidia_repo and (config, mode) not in refs:  # the reference runs fp32 (see above)
                    refs[(config, mode)] = _run_child(args, "reference", config, mode, "fp32")
                    if args.json:
                        print(json.dumps(refs[(config, mode)]), flush=True)
    if not args.json:
        peak_text = ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items() if v)
        print(f"{environment(args.device, args.threads)}; {args.cutouts} cutouts; median of {args.runs} after "
              f"{args.warmup} warm-up; allocator {args.allocator}; measured peak: {peak_text}\n")
        print(table(rows, peaks, refs))
    return 0


def _cuda_available() -> bool:
    with contextlib.suppress(Exception):
        import torch

        return torch.cuda.is_available()
    return False


if __name__ == "__main__":
    sys.exit(main())
