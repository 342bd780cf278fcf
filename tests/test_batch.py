"""``clipstyle batch`` on one machine: six jobs → six folders, batched = alone, failures, resume, kill -9 (issue 12)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from clipstyle.batch.jobs import read_jobs
from clipstyle.batch.runner import BatchConfig, run_jobs
from clipstyle.pipelines.run import is_complete

from ._cli import TINY_CLIP, run_cli
from . import _tiny

ROOT = Path(__file__).resolve().parents[1]
STEPS = 4

SIX = [
    {"prompt": "a red car", "seed": 1, "id": "car"},
    {"prompt": "a blue sky", "seed": 2, "blocks": "0-3"},
    {"prompt": "a dog", "l2": 0.01},
    {"prompt": "a cat:1 | a dog:-0.5", "seed": 4},
    {"prompt": "a house", "seed": 5, "mix": "7:6-9"},
    {"prompt": "a tree", "seed": 6, "cutouts": 0},
]


def job_file(tmp_path: Path, jobs=SIX, name="jobs.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    return path


def defaults() -> dict:
    return {"network": str(_tiny.network_file("sg2")), "clip_model": TINY_CLIP, "clip_pretrained": "none",
            "steps": STEPS}


def cli_args(path: Path, outdir: Path, *extra) -> list:
    d = defaults()
    return ["batch", path, "--outdir", outdir, "--network", d["network"], "--clip-model", TINY_CLIP,
            "--clip-pretrained", "none", "--steps", STEPS, "--device", "cpu", "--quiet", *extra]


def manifest(outdir: Path) -> list[dict]:
    return [json.loads(line) for line in (outdir / "batch.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def six_run(tmp_path_factory):
    import contextlib
    import io

    from clipstyle.cli import main

    tmp = tmp_path_factory.mktemp("six")
    path = job_file(tmp)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in cli_args(path, tmp / "out", "--batch-size", "4")])
            code = 0
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue(), path, tmp / "out"


def test_six_jobs_six_complete_folders(six_run):
    code, out, err, path, outdir = six_run
    assert code == 0, err
    jobs = read_jobs(path, defaults())
    folders = [Path(line) for line in out.split()]
    assert folders == [outdir / j.id for j in jobs]
    for folder in folders:
        assert is_complete(folder)
        assert sorted(p.name for p in folder.iterdir()) == ["latents.npz", "progress.gif", "result.png", "run.json"]
        rec = json.loads((folder / "run.json").read_text())
        assert rec["steps_done"] == STEPS and rec["settings"]["job_id"] == folder.name
    assert not [p for p in outdir.iterdir() if p.name.startswith(".staging")]
    entries = manifest(outdir)
    assert [e["id"] for e in entries] == [j.id for j in jobs]
    assert all(e["status"] == "done" and e["error"] is None and e["seconds"] > 0 for e in entries)
    assert [e["batch"] for e in entries] == [4, 4, 4, 4, 2, 2]  # one group of six, --batch-size 4
    assert "6 done, 0 already complete, 0 failed" in err


def test_each_job_keeps_its_own_settings(six_run):
    outdir = six_run[4]
    by_prompt = {}
    for folder in outdir.iterdir():
        if folder.is_dir() and not folder.name.startswith("."):
            rec = json.loads((folder / "run.json").read_text())
            by_prompt[rec["settings"]["prompt"]] = (rec, np.load(folder / "latents.npz"))
    rec, lat = by_prompt["a blue sky"]
    assert rec["settings"]["blocks"] == [0, 1, 2, 3]
    start = torch.from_numpy(lat["z"]).float()
    assert lat["ws"].shape == (1, 10, 64) and start.shape == (1, 64)
    rec, lat = by_prompt["a house"]
    assert rec["settings"]["mixed_rows"] == [6, 7, 8, 9] and rec["settings"]["mix"] == ["7:6-9"]
    assert by_prompt["a tree"][0]["settings"]["cutouts"] == 0
    assert by_prompt["a dog"][0]["settings"]["l2"] == 0.01 and "z" not in by_prompt["a dog"][1]  # w_avg start


def test_rerun_resumes_and_does_nothing(six_run, capsys):
    code, _, _, path, outdir = six_run
    assert code == 0
    stamps = {p.name: (p / "run.json").stat().st_mtime_ns for p in outdir.iterdir() if p.is_dir()}
    code, out, err = run_cli(cli_args(path, outdir), capsys)
    assert code == 0, err
    assert out == "" and "0 done, 6 already complete, 0 failed" in err
    assert {p.name: (p / "run.json").stat().st_mtime_ns for p in outdir.iterdir() if p.is_dir()} == stamps
    entries = manifest(outdir)
    assert len(entries) == 6 and all(e["resumed"] and e["status"] == "done" and e["seconds"] > 0 for e in entries)


# --------------------------------------------------------------------------- batched = one at a time

def _models():
    from clipstyle.workflows.models import ModelCache

    m = ModelCache("cpu")
    d = defaults()
    return m.get("G", (d["network"], None)), m.get("guide", (TINY_CLIP, "none"))


class RowByRow(torch.nn.Module):
    """G whose synthesis runs each row alone: a batch then has no batched-convolution rounding at all."""

    def __init__(self, G) -> None:
        super().__init__()
        self.G, self.w_avg = G, G.w_avg

    def synthesis(self, ws, **kw):
        return torch.cat([self.G.synthesis(ws[i:i + 1], **kw) for i in range(ws.shape[0])])


def test_batched_equals_one_at_a_time():
    """The stacked batch against the public text_to_image run alone, job by job.

    Batched convolutions round differently from batch-1 ones (~1e-6 in the images); Adam's first
    steps are close to sign(gradient), which turns that into up to ~1e-2 on elements whose gradient
    is near zero, so ws is compared with a tolerance and the loss histories to 1e-3. Without the
    batched rounding (a row-by-row G) the same code is bit-identical to one at a time:
    no job's gradient depends on another's.
    """
    from clipstyle.batch.stack import optimize_stacked
    from clipstyle.pipelines.text import text_job, text_to_image

    G, guide = _models()
    specs = [dict(prompt="a red car", seed=1), dict(prompt="a blue sky", seed=2, blocks="0-3"),
             dict(prompt="a dog", l2=0.01), dict(prompt="a house", seed=5, mix=["7:6-9"])]
    steps = 6

    def job(spec):
        spec = dict(spec)
        return text_job(G, guide, spec.pop("prompt"), cutouts=4, steps=steps, **spec)

    batched = optimize_stacked(G, [job(s) for s in specs], save_every=2)
    for spec, res in zip(specs, batched):
        spec = dict(spec)
        alone = text_to_image(spec.pop("prompt"), G=G, guide=guide, steps=steps, cutouts=4, save_every=2, **spec)
        diff = (alone.ws - res.ws).abs()
        assert diff.max() < 0.05 and diff.mean() < 5e-3, (spec, float(diff.max()), float(diff.mean()))
        if spec.get("seed") is not None:
            assert diff.max() < 1e-3, (spec, float(diff.max()))
        assert [h["step"] for h in res.history] == list(range(steps))
        np.testing.assert_allclose([h["loss"] for h in res.history], [h["loss"] for h in alone.history], rtol=1e-3)
        assert len(res.frames) == len(alone.result.frames) and res.frames[-1].shape == (1, 64, 64, 3)
        assert np.abs(res.frames[-1].astype(int) - alone.images.astype(int)).max() <= 8
        moved = (alone.ws - job(dict(spec, prompt="x")).ws0).abs().amax(-1)[0]  # which rows moved at all
        assert torch.equal(moved > 0, (res.ws - job(dict(spec, prompt="x")).ws0.cpu()).abs().amax(-1)[0] > 0)

    R = RowByRow(G)
    specs.insert(1, dict(prompt="two starts", seed=7, batch=2))  # a job of two latents among jobs of one
    alone = [optimize_stacked(R, [job(s)])[0] for s in specs]
    together = optimize_stacked(R, [job(s) for s in specs])
    assert [r.ws.shape[0] for r in together] == [1, 2, 1, 1, 1]
    for a, b in zip(alone, together):
        assert torch.equal(a.ws, b.ws) and a.history == b.history and a.best_step == b.best_step
        assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames))


def test_one_jobs_gradient_never_reaches_another():
    """A job whose loss is multiplied by 1000 leaves the other job's result bit-identical (row-by-row G)."""
    from clipstyle.batch.stack import optimize_stacked
    from clipstyle.pipelines.text import text_job

    G, guide = _models()
    R = RowByRow(G)

    def pair(scale):
        a = text_job(G, guide, "a red car", seed=1, cutouts=2, steps=4)
        b = text_job(G, guide, "a dog", seed=2, cutouts=2, steps=4)
        loss = b.loss
        b = dataclasses.replace(b, loss=lambda images, ws: (lambda v, t: (v * scale, t))(*loss(images, ws)))
        return optimize_stacked(R, [a, b])

    one, other = pair(1.0), pair(1000.0)
    assert torch.equal(one[0].ws, other[0].ws)
    assert not torch.equal(one[1].ws, other[1].ws)


# --------------------------------------------------------------------------- failures

def test_failures_are_recorded_and_the_others_go_on(tmp_path, capsys, monkeypatch):
    """A styleblock beyond the network, a NaN inside a shared batch, an edit whose LPIPS weights are offline."""
    import clipstyle.pipelines.text as text

    real = text.text_job

    def nan_for_poison(G, guide, settings, **kw):  # inject a NaN loss into one job of a batch
        job = real(G, guide, settings, **kw)
        if job.prompt != "poison":
            return job
        return dataclasses.replace(job, loss=lambda images, ws: (images.sum() * float("nan"), {}))

    monkeypatch.setattr(text, "text_job", nan_for_poison)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "me.png")  # a photo whose edit fails at run time (LPIPS offline)
    jobs = [{"prompt": "fine one", "seed": 1, "id": "ok1"}, {"prompt": "x", "blocks": "0-99", "id": "badblocks"},
            {"prompt": "poison", "id": "nan"},
            {"command": "edit", "photo": "me.png", "prompt": "smile", "id": "edit1"},
            {"prompt": "fine two", "seed": 2, "id": "ok2"}]
    outdir = tmp_path / "out"
    code, out, err = run_cli(cli_args(job_file(tmp_path, jobs), outdir, "--batch-size", "8"), capsys)
    assert code == 1
    entries = {e["id"]: e for e in manifest(outdir)}
    assert {i for i, e in entries.items() if e["status"] == "done"} == {"ok1", "ok2"}
    assert "out of range" in entries["badblocks"]["error"]
    assert "became nan" in entries["nan"]["error"]  # the loop names the cause (optimize.loop.nonfinite_cause)
    assert "offline" in entries["edit1"]["error"] and "internal error" not in entries["edit1"]["error"]
    assert entries["ok1"]["batch"] == 1 and entries["ok2"]["batch"] == 1  # the NaN batch was redone job by job
    assert is_complete(outdir / "ok1") and is_complete(outdir / "ok2") and not (outdir / "nan").exists()
    assert "failed: nan (line 3): the loss term" in err and "became nan" in err
    assert "Traceback" not in err


def test_other_commands_call_their_pipeline_with_the_loaded_models(tmp_path, monkeypatch):
    """An edit job goes to the registry's edit pipeline with its settings, G and CLIP loaded once and reused."""
    import clipstyle.pipelines.photo_edit as photo_edit
    from clipstyle.pipelines.run import Run
    from clipstyle.workflows.photo import EditSettings

    calls = []

    def edit(settings, *, G=None, guide=None, encoder=None, identity=None, perceptual=None, device="auto",
             quiet=True):
        calls.append({"settings": settings, "G": G, "guide": guide, "encoder": encoder})
        ws = G.w_avg[None, None].repeat(1, G.num_ws, 1).cpu()
        img = np.full((1, 64, 64, 3), 7, np.uint8)
        return Run(name=settings.prompt, result=None, settings={"command": "edit"}, network={}, ws_=ws, images_=img)

    monkeypatch.setattr(photo_edit, "edit", edit)
    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    d = defaults()
    jobs = [{"command": "edit", "photo": "a.png", "prompt": "smile", "id": "e1", "clip_model": TINY_CLIP,
             "clip_pretrained": "none", "perceptual": "none"},
            {"command": "edit", "photo": "b.png", "prompt": "frown", "steps": 2, "class": None, "id": "e2",
             "clip_model": TINY_CLIP, "clip_pretrained": "none", "perceptual": "none"}]
    parsed = read_jobs(job_file(tmp_path, jobs), {"network": d["network"]})
    summary = run_jobs(parsed, BatchConfig(outdir=tmp_path / "out", device="cpu", quiet=True))
    assert summary.done == ("e1", "e2") and summary.ok
    assert all(isinstance(c["settings"], EditSettings) for c in calls)
    assert [c["settings"].photo_or_latents for c in calls] == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    assert calls[1]["settings"].steps == 2 and calls[0]["settings"].steps == 100
    assert calls[0]["G"] is calls[1]["G"] and calls[0]["guide"] is calls[1]["guide"]  # loaded once
    assert calls[0]["guide"] is not None and calls[0]["encoder"] is None  # no --encoder: none loaded
    assert calls[0]["settings"].perceptual == "none"
    assert is_complete(tmp_path / "out" / "e2")
    with pytest.raises(Exception, match="unknown option 'strenght' for edit; did you mean 'strength'"):
        read_jobs(job_file(tmp_path, [{"command": "edit", "photo": "a.png", "strenght": 1}], "bad.jsonl"))


def test_generate_jobs_run_the_generate_pipeline(tmp_path, capsys):
    pytest.importorskip("clipstyle.pipelines.creative")
    jobs = [{"command": "generate", "seeds": "0-2", "id": "gen", "truncation": 0.5},
            {"command": "generate", "seeds": "x", "id": "badseeds"}]
    code, out, err = run_cli(cli_args(job_file(tmp_path, jobs), tmp_path / "out"), capsys)
    assert code == 1 and not (tmp_path / "out").exists()  # the whole file is checked before anything runs
    assert err.strip() == "error: jobs.jsonl:2: bad seed 'x' in --seeds 'x': use e.g. 0-7,12"
    code, out, err = run_cli(cli_args(job_file(tmp_path, jobs[:1]), tmp_path / "out"), capsys)
    assert code == 0 and out.split() == [str(tmp_path / "out" / "gen")]
    folder = tmp_path / "out" / "gen"
    assert is_complete(folder) and {"seed0000.png", "seed0002.npz"} <= {p.name for p in folder.iterdir()}
    from clipstyle.generator import load_generator
    from clipstyle.latents import start_ws

    G = load_generator(defaults()["network"], device="cpu")
    ws, _ = start_ws(G, seed=2, truncation_psi=0.5)
    np.testing.assert_array_equal(np.load(folder / "seed0002.npz")["ws"], ws.numpy())
    code, _, err = run_cli(cli_args(job_file(tmp_path, [{"command": "generate", "prompt": "x"}], "b.jsonl"),
                                    tmp_path / "out2"), capsys)
    assert code == 1 and err.startswith("error: b.jsonl:1: unknown option 'prompt' for generate")


# --------------------------------------------------------------------------- kill -9 and resume

KILLER = textwrap.dedent("""
    import json, os, signal, sys
    import torch
    torch.set_num_threads(1)
    from clipstyle.batch.jobs import read_jobs
    from clipstyle.batch.runner import BatchConfig, run_jobs
    path, outdir, defaults, after = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
    done = []
    def on_job(job, entry):
        done.append(job.id)
        if len(done) == after:
            os.kill(os.getpid(), signal.SIGKILL)
    run_jobs(read_jobs(path, defaults), BatchConfig(outdir=outdir, batch_size=1, device="cpu", quiet=True),
             on_job=on_job)
""")


def test_driver_killed_after_two_jobs_restarts_with_the_other_four(tmp_path, capsys):
    path, outdir = job_file(tmp_path), tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", KILLER, str(path), str(outdir), json.dumps(defaults()), "2"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    jobs = read_jobs(path, defaults())
    complete = [j.id for j in jobs if is_complete(outdir / j.id)]
    assert complete == [jobs[0].id, jobs[1].id]
    before = {i: (outdir / i / "run.json").stat() for i in complete}
    assert [e["id"] for e in manifest(outdir)] == complete  # the append-only log of the killed run

    code, out, err = run_cli(cli_args(path, outdir, "--batch-size", "2"), capsys)
    assert code == 0, err
    assert [Path(p).name for p in out.split()] == [j.id for j in jobs[2:]]  # the other four only
    assert "4 done, 2 already complete, 0 failed" in err
    for i, st in before.items():  # the first two were not done again
        now = (outdir / i / "run.json").stat()
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    entries = manifest(outdir)
    assert [e["id"] for e in entries] == [j.id for j in jobs] and all(e["status"] == "done" for e in entries)
    assert [e.get("resumed", False) for e in entries] == [True, True, False, False, False, False]
    assert all(is_complete(outdir / j.id) for j in jobs)
    assert sorted(p.name for p in outdir.iterdir()) == sorted([j.id for j in jobs] + ["batch.jsonl", ".batch.lock"])


@pytest.mark.slow
def test_kill_at_any_moment_leaves_nothing_half_done(tmp_path):
    """kill -9 the CLI at several moments (model loading, optimizing, writing folders), restart each time."""
    import time

    path, outdir = job_file(tmp_path, [dict(j, steps=40) for j in SIX]), tmp_path / "out"  # ~1-2 s a job
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "clipstyle", *map(str, cli_args(path, outdir, "--batch-size", "1"))]
    jobs = read_jobs(path, defaults())
    first_seen: dict[str, tuple] = {}
    rng = np.random.default_rng(0)
    partial_kills = 0
    for attempt in range(10):
        proc = subprocess.Popen(cmd, env={**env, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        before = sum(is_complete(outdir / j.id) for j in jobs)
        while proc.poll() is None and sum(is_complete(outdir / j.id) for j in jobs) == before:
            time.sleep(0.01)  # up to this run's first finished job (models loaded, optimizing)
        deadline = time.monotonic() + float(rng.uniform(0.0, 2.0))  # then anywhere in the next job
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert time.monotonic() - t0 < 120
        n_complete = sum(is_complete(outdir / j.id) for j in jobs)
        partial_kills += killed and 0 < n_complete < len(jobs)
        for j in jobs:
            folder = outdir / j.id
            if folder.exists() and is_complete(folder):
                st = (folder / "run.json").stat()
                assert first_seen.setdefault(j.id, (st.st_ino, st.st_mtime_ns)) == (st.st_ino, st.st_mtime_ns)
                json.loads((folder / "run.json").read_text())
                assert np.load(folder / "latents.npz")["ws"].shape == (1, 10, 64)
            elif folder.exists():
                assert not any(folder.iterdir()), f"{folder} is half-written"
        if proc.returncode == 0:
            break
    assert partial_kills >= 2  # the kills did land in the middle of the batch
    final = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert all(is_complete(outdir / j.id) for j in jobs)
    assert sorted(p.name for p in outdir.iterdir()) == sorted([j.id for j in jobs] + ["batch.jsonl", ".batch.lock"])
    assert [e["id"] for e in manifest(outdir)] == [j.id for j in jobs]
