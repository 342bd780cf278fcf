"""``benchmarks/gpu_check.py --smoke`` runs end to end on the CPU and writes every section (the real check
needs a CUDA machine; see benchmarks/README.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_smoke_on_cpu_writes_every_section(tmp_path):
    out = tmp_path / "check" / "gpu_check.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop("CLIPSTYLE_KERNELS", None)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--device", "cpu",
                           "--threads", "1", "--out", str(out)], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from gpu_check import OPS, SECTIONS
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert all(s in report for s in SECTIONS) and report["smoke"] is True and report["failed"] == []
    # No CUDA device here: the build and parity sections say so, by name.
    assert [report["build"][op]["status"] for op in OPS] == ["skipped"] * 3
    assert all(r["status"] == "skipped" and r["note"] == "no CUDA device" for r in report["generator_parity"].values())
    assert set(report["generator_parity"]) == {"sg2-32-tiny", "sg3t-32-tiny", "sg3r-32-tiny"}
    # The measurements ran: peaks, gen/step rows in fp32 and bf16 with FLOPs, the main-job memory rows.
    assert all(report["peaks"][p]["matmul"] > 0 and report["peaks"][p]["conv"] > 0 for p in ("fp32", "bf16"))
    rows = {(r["mode"], r["requested"]): r for r in report["bench"]}
    assert set(rows) == {("gen", "fp32"), ("gen", "bf16"), ("step", "fp32"), ("step", "bf16")}
    assert all("error" not in r and r["flops"] > 0 and r["median_s"] > 0 and r["peak_bytes"] > 0 for r in rows.values())
    assert rows[("step", "fp32")]["flops"] > rows[("gen", "fp32")]["flops"]  # CLIP's share is counted
    assert [r["requested"] for r in report["main_job"]] == ["fp32", "auto"]
    assert all(r["peak_gb"] > 0 and r["steps_per_s"] > 0 for r in report["main_job"])
    md = out.with_suffix(".md").read_text()
    assert "## Main job at 1024²" in md and "skipped no CUDA device" in md
