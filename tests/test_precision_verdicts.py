"""The precision check guards every run with --precision (clipstyle.optimize.precision_verdicts): a reduced mode
runs on a network only after its check passed there; the verdict is measured once and read back from the cache."""

from __future__ import annotations

import json

import pytest
import torch

import clipstyle.optimize.precision_check as pc
import clipstyle.optimize.precision_verdicts as pv
from clipstyle.optimize.precision_check import PrecisionRefusedError

from ._tiny import tiny_sg2


@pytest.fixture
def G():
    return tiny_sg2(resolution=32).eval().requires_grad_(False)


@pytest.fixture
def counted(monkeypatch):
    calls = []
    real = pc.check_precision

    def counting(*a, **k):
        calls.append(a[1])
        return real(*a, **k)

    monkeypatch.setattr(pc, "check_precision", counting)
    return calls


def _text(G, guide, precision):
    from clipstyle import text_to_image

    return text_to_image("a red apple", G=G, guide=guide, device="cpu", steps=2, cutouts=2, precision=precision)


def test_a_passing_mode_is_measured_once_then_read_from_the_cache(G, tiny_guide, counted, tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPSTYLE_CACHE", str(tmp_path))
    for _ in range(2):
        assert _text(G, tiny_guide, "bf16").result.precision == "bf16"
    assert counted == ["bf16"]  # the second run read the verdict
    (path,) = (tmp_path / "precision").glob("*.json")
    verdict = json.loads(path.read_text())
    assert verdict["ok"] and verdict["steps"] == pv.CHECK_STEPS and verdict["grad_cosine"] >= 0.99
    assert path == pv.verdict_path(pv.network_fingerprint(G), "bf16", torch.device("cpu"))


def test_a_failing_verdict_refuses_the_mode_and_auto_falls_back(G, tiny_guide, counted, tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPSTYLE_CACHE", str(tmp_path))
    path = pv.verdict_path(pv.network_fingerprint(G), "bf16", torch.device("cpu"))
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"ok": False, "reasons": ["gradient cosine vs fp32 0.9500 < 0.99"]}))
    with pytest.raises(PrecisionRefusedError, match="refused for this network: gradient cosine"):
        _text(G, tiny_guide, "bf16")
    monkeypatch.setattr(pv, "auto_candidates", lambda device: ("bf16", "fp32"))
    assert _text(G, tiny_guide, "auto").result.precision == "fp32"
    assert counted == []  # both read the stored verdict


def test_another_network_is_measured_on_its_own(G, tmp_path):
    other = tiny_sg2(seed=1, resolution=32)
    assert pv.network_fingerprint(G) != pv.network_fingerprint(other)
    assert pv.network_fingerprint(G) == pv.network_fingerprint(tiny_sg2(resolution=32))


def test_projection_and_edit_run_only_the_verified_mode(G, tiny_guide, tmp_path, monkeypatch):
    from clipstyle.guidance import CutoutConfig, Cutouts
    from clipstyle.inversion.edit import EditConfig, edit
    from clipstyle.inversion.project import ProjectConfig, project

    monkeypatch.setenv("CLIPSTYLE_CACHE", str(tmp_path))
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(4)), None)
        target = G.synthesis(ws)
    cfg = ProjectConfig(steps=2, mse=1.0, perceptual=0.0, w_avg_samples=64, precision="bf16")
    assert project(G, target, cfg, perceptual=None).run.precision == "bf16"  # measured safe here
    path = pv.verdict_path(pv.network_fingerprint(G), "bf16", torch.device("cpu"))
    path.write_text(json.dumps({"ok": False, "reasons": ["image error vs fp32: RMS 0.2000"]}))
    with pytest.raises(PrecisionRefusedError, match="RMS 0.2000"):
        project(G, target, cfg, perceptual=None)
    cut = Cutouts(CutoutConfig(num_cutouts=2), tiny_guide.input_size)
    with pytest.raises(PrecisionRefusedError, match="RMS 0.2000"):
        edit(G, ws, "a smiling face", tiny_guide, cut, EditConfig(steps=2, precision="bf16"))
    assert edit(G, ws, "a smiling face", tiny_guide, cut, EditConfig(steps=2, precision="fp32")).run.precision == "fp32"
