"""Jobs per minute of ``clipstyle batch``: batch size 1 vs N, and Ray worker scaling, on the current device.

Two configurations, random weights:

* ``fixture`` — the 64² StyleGAN2 test fixture (``../shared/fixtures/sg2_skip_64.pkl``) with the tiny
  random CLIP of the tests (``tests/data/tiny_clip.json``): measures the batch machinery and the
  batching of small forwards;
* ``ffhq`` — StyleGAN2 in the FFHQ configuration (1024², ``channels_for(1024, 32768, 512)``, 8 mapping
  layers, ``skip``) with a random-weight CLIP ViT-B-32: the real per-step cost.

For each configuration and job count (``--jobs``, default 1 4 16) the same text jobs (distinct prompts
and seeds, ``--steps`` steps, ``--cutouts`` cutouts) run through :func:`clipstyle.batch.execute.execute_batch`
with batch size 1 and with batch size N (= the job count, capped by ``--max-batch``); networks and CLIP
are loaded and warmed up before timing (one untimed 1-step job), as in a long batch. Jobs/minute =
jobs / wall seconds × 60; jobs per CPU-minute uses the process's CPU time instead (user + system, all
threads), which a machine shared with other work disturbs far less than the wall clock. ``--ray`` adds the scaling with Ray workers (``--ray-workers``, default 1 2) on
a local cluster: 16 fixture jobs at batch size 4, ``--cpus-per-worker 1``, wall time from the first
submission to the last folder written (actor start and model loading included; the cluster itself is
started before timing).

Usage::

    PYTHONPATH=. python benchmarks/bench_batch.py --configs fixture --ray
    PYTHONPATH=. python benchmarks/bench_batch.py --configs ffhq --jobs 1 4 --steps 2 --max-batch 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared" / "fixtures" / "sg2_skip_64.pkl"
TINY_CLIP = ROOT / "tests" / "data" / "tiny_clip.json"
PROMPTS = ["a red car", "a blue sky", "a smiling child", "an old man", "a cat", "a dog", "a house", "a tree",
           "a portrait in oil", "a bronze statue", "a cartoon", "a watercolor", "a clown", "a robot", "a pirate",
           "a queen"]


def ffhq_generator(device: str):
    """StyleGAN2 FFHQ configuration at 1024², random weights (seeded)."""
    import torch

    from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator, channels_for

    torch.manual_seed(0)
    cfg = StyleGAN2Config(z_dim=512, w_dim=512, c_dim=0, img_resolution=1024, img_channels=3,
                          channels=channels_for(1024, 32768, 512), mapping_layers=8, architecture="skip",
                          conv_clamp=256)
    return StyleGAN2Generator(cfg).eval().to(device)


def models_for(config: str, device: str):
    """A :class:`Models` with the configuration's generator and CLIP preloaded; (models, network, clip, weights)."""
    from clipstyle.batch.execute import Models

    models = Models(device)
    if config == "fixture":
        network, clip, weights = str(FIXTURE), str(TINY_CLIP), "none"
    elif config == "ffhq":
        network, clip, weights = "bench:ffhq-1024-random", "ViT-B-32", "none"
        models._generators[(network, None)] = ffhq_generator(models.device)  # not a file: preload it
    else:
        raise SystemExit(f"unknown config {config!r}; use fixture or ffhq")
    models.generator(network)
    models.guide(clip, weights)
    return models, network, clip, weights


def make_jobs(n: int, network: str, clip: str, weights: str, steps: int, cutouts: int):
    from clipstyle.batch.jobs import Job, parse_job

    jobs = []
    for i in range(n):
        raw = {"prompt": PROMPTS[i % len(PROMPTS)], "seed": i, "network": network, "clip_model": clip,
               "clip_pretrained": weights, "steps": steps, "cutouts": cutouts, "save_every": max(1, steps)}
        jid, command, opts, _ = parse_job(raw, f"bench:{i}", base=ROOT)
        jobs.append(Job(jid, command, opts, i + 1, "bench"))
    return jobs


def time_jobs(models, jobs, batch_size: int) -> float:
    from clipstyle.batch.execute import execute_batch
    from clipstyle.batch.runner import make_batches

    t0, c0 = time.perf_counter(), time.process_time()
    for batch in make_batches(jobs, batch_size):
        outcomes = execute_batch(models, batch)
        bad = [o.error for o in outcomes if o.status != "done"]
        if bad:
            raise SystemExit(f"a benchmark job failed: {bad[0]}")
    return time.perf_counter() - t0, time.process_time() - c0


def bench_batching(config: str, counts, steps: int, cutouts: int, max_batch: int, device: str) -> list[dict]:
    models, network, clip, weights = models_for(config, device)
    time_jobs(models, make_jobs(1, network, clip, weights, 1, cutouts), 1)  # warm-up (allocator, kernels)
    rows = []
    for n in counts:
        jobs = make_jobs(n, network, clip, weights, steps, cutouts)
        for bs in sorted({1, min(n, max_batch)}):
            seconds, cpu = time_jobs(models, jobs, bs)
            rows.append({"config": config, "jobs": n, "batch_size": bs, "steps": steps, "cutouts": cutouts,
                         "seconds": round(seconds, 2), "jobs_per_min": round(n / seconds * 60, 2),
                         "cpu_s": round(cpu, 2), "jobs_per_cpu_min": round(n / cpu * 60, 2)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def bench_ray(workers_list, n_jobs: int, steps: int, cutouts: int, batch_size: int) -> list[dict]:
    import ray

    from clipstyle.batch.jobs import read_jobs
    from clipstyle.batch.ray_runner import _init
    from clipstyle.batch.runner import BatchConfig, run_jobs

    _init(ray, "local", None)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
            path = Path(tmp) / "jobs.jsonl"
            path.write_text("".join(json.dumps({"prompt": PROMPTS[i % len(PROMPTS)], "seed": i, "cutouts": cutouts,
                                                "save_every": steps}) + "\n" for i in range(n_jobs)))
            jobs = read_jobs(path, {"network": str(FIXTURE), "clip_model": str(TINY_CLIP), "clip_pretrained": "none",
                                    "steps": steps})
            for w in workers_list:
                config = BatchConfig(outdir=Path(tmp) / f"out{w}", batch_size=batch_size, device="cpu", ray="local",
                                     cpus_per_worker=1, workers=w, quiet=True)
                t0 = time.perf_counter()
                summary = run_jobs(jobs, config)
                seconds = time.perf_counter() - t0
                if not summary.ok:
                    raise SystemExit(f"a benchmark job failed: {summary.entries}")
                rows.append({"config": "fixture", "ray_workers": w, "jobs": n_jobs, "batch_size": batch_size,
                             "steps": steps, "seconds": round(seconds, 2),
                             "jobs_per_min": round(n_jobs / seconds * 60, 2)})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    finally:
        ray.shutdown()
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", nargs="+", default=["fixture"], choices=["fixture", "ffhq"])
    ap.add_argument("--jobs", nargs="+", type=int, default=[1, 4, 16])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cutouts", type=int, default=8)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--ray", action="store_true", help="also measure Ray worker scaling (fixture config)")
    ap.add_argument("--ray-workers", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--json", action="store_true", help="print raw rows as JSON instead of a table")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for config in args.configs:
        rows += bench_batching(config, args.jobs, args.steps, args.cutouts, args.max_batch, args.device)
    ray_rows = bench_ray(args.ray_workers, 16, args.steps, args.cutouts, 4) if args.ray else []
    if args.json:
        print(json.dumps({"rows": rows, "ray": ray_rows}, indent=2))
        return
    dev = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    print(f"torch {torch.__version__}, {dev}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, {args.threads} thread(s)\n")
    print("| config | jobs | batch size | steps | wall s | jobs/min | CPU s | jobs/CPU-min |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['config']} | {r['jobs']} | {r['batch_size']} | {r['steps']} | {r['seconds']} | {r['jobs_per_min']} "
              f"| {r['cpu_s']} | {r['jobs_per_cpu_min']} |")
    if ray_rows:
        print("\n| Ray workers | jobs | batch size | steps | seconds | jobs/min |\n|---:|---:|---:|---:|---:|---:|")
        for r in ray_rows:
            print(f"| {r['ray_workers']} | {r['jobs']} | {r['batch_size']} | {r['steps']} | {r['seconds']} | "
                  f"{r['jobs_per_min']} |")


if __name__ == "__main__":
    main()
