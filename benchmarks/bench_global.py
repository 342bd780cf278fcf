"""Global directions: preprocessing time per network and milliseconds per edit, on the current device.

Configurations (random weights; the cost does not depend on the values): ``sg2-256`` and ``sg2-1024`` are
StyleGAN2 in the FFHQ configuration (``channels_for(R, 32768, 512)``, 8 mapping layers, ``skip``), with a
random-weight CLIP ViT-B-32 (``CLIPGuide("ViT-B-32", None)``: the compute of the OpenAI weights).

* **preprocessing** = the channel statistics (``--stat-samples`` styles, affines only) + the relevance
  ``Δi_c`` of every conv channel (6048 at 1024², 4928 at 256²) over ``N = 100`` images, ``2·N·C`` renders +
  CLIP encodings in batches of ``--batch``. A full run takes hours on a CPU, so this script times
  ``--groups`` groups of ``batch/2`` channels over ``--probe-samples`` images (after one warm-up group) and
  extrapolates linearly to ``2·N·C`` images: the computation is the same batched forward repeated, so the
  extrapolation is the per-image time × the image count (stated as such in the output).
* **edit** = one text pair → Δs (``global_direction``: relevance ``[C, D]·[D]``, β threshold) + one render of
  the edited styles at batch 1 (the UI's slider move); the text embedding is cached after the first edit,
  as in the UI. Median of ``--runs`` after one warm-up.

Wall times and process CPU times (user + system, all threads) are both reported: on a shared machine the CPU
time is far less disturbed by other work; on an idle machine wall ≈ CPU time / threads.

Usage::

    PYTHONPATH=. python benchmarks/bench_global.py                     # both configs, CPU: ~10 min on 2 cores
    PYTHONPATH=. python benchmarks/bench_global.py --configs sg2-1024 --device cuda --batch 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch


def build(config: str, device: str):
    from clipstyle.generator.stylegan2 import (
        StyleGAN2Config,
        StyleGAN2Generator,
        channels_for,
    )

    res = int(config.split("-")[1])
    torch.manual_seed(0)
    G = StyleGAN2Generator(StyleGAN2Config(z_dim=512, w_dim=512, c_dim=0, img_resolution=res, img_channels=3,
                                           channels=channels_for(res), conv_clamp=256.0))
    return G.eval().requires_grad_(False).to(device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(config: str, device: str, batch: int, groups: int, probe_samples: int, samples: int,
          stat_samples: int, runs: int) -> dict:
    from clipstyle.generator.stylespace import (
        flatten_styles,
        num_channels,
        style_layers,
    )
    from clipstyle.guidance import CLIPGuide
    from clipstyle.guidance.global_directions import RelevanceConfig, compute_relevance
    from clipstyle.latents.directions import text_delta
    from clipstyle.latents.stylespace import (
        edit_flat,
        global_direction,
        render_flat,
        style_statistics,
    )

    G = build(config, device)
    guide = CLIPGuide("ViT-B-32", None, device=device)
    C = num_channels(G, include_torgb=False)
    t0, c0 = time.perf_counter(), time.process_time()
    stats = style_statistics(G, stat_samples)
    sync(device)
    stat_s, stat_cpu = time.perf_counter() - t0, time.process_time() - c0
    # relevance: time `groups` groups of batch/2 channels (stop after them), after one warm-up group
    m = batch // 2
    cfg = RelevanceConfig(samples=probe_samples, batch=batch, stat_samples=2, checkpoint_seconds=1e9)
    with tempfile.TemporaryDirectory() as tmp:
        seen: list[float] = []

        cpu: list[float] = []

        def progress(done: int, total: int) -> None:
            sync(device)
            seen.append(time.perf_counter())
            cpu.append(time.process_time())

        compute_relevance(G, guide, cfg, path=f"{tmp}/r.npz", progress=progress,
                          stop=lambda: len(seen) > groups + 1)
    per_group = (seen[-1] - seen[1]) / (len(seen) - 2)   # seen[0]: start, seen[1]: the warm-up group done
    per_image = per_group / (2 * m * probe_samples)
    cpu_per_image = (cpu[-1] - cpu[1]) / (len(cpu) - 2) / (2 * m * probe_samples)
    images = 2 * samples * C
    # edit: direction + render at batch 1
    delta_i = torch.nn.functional.normalize(torch.randn(num_channels(G), guide.embed_dim), dim=1)
    ws = G.mapping(torch.randn(1, 512, device=device), None)
    s0 = flatten_styles(G.styles(ws), style_layers(G))
    dt = text_delta(guide, "a face", "a face with a beard")
    times, cpu_times = [], []
    for i in range(runs + 1):
        sync(device)
        t, c = time.perf_counter(), time.process_time()
        gd = global_direction(delta_i, dt, stats.std, 0.02)
        with torch.no_grad():
            render_flat(G, ws, edit_flat(s0, gd.direction, [3.0]))
        sync(device)
        if i:
            times.append(time.perf_counter() - t)
            cpu_times.append(time.process_time() - c)
    return {"config": config, "device": device, "channels": C, "stat_seconds": round(stat_s, 2),
            "seconds_per_probe_image": round(per_image, 4), "probe_images": images,
            "preprocessing_seconds_extrapolated": round(stat_s + per_image * images),
            "cpu_seconds_per_probe_image": round(cpu_per_image, 4),
            "preprocessing_cpu_seconds_extrapolated": round(stat_cpu + cpu_per_image * images),
            "edit_ms": round(1000 * statistics.median(times), 1),
            "edit_cpu_ms": round(1000 * statistics.median(cpu_times), 1), "batch": batch, "samples": samples,
            "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["sg2-256", "sg2-1024"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--groups", type=int, default=2)
    ap.add_argument("--probe-samples", type=int, default=1)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--stat-samples", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for config in args.configs:
        print(json.dumps(bench(config, args.device, args.batch, args.groups, args.probe_samples, args.samples,
                               args.stat_samples, args.runs)), flush=True)


if __name__ == "__main__":
    main()
