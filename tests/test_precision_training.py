"""--precision where the optimization trains a generator (pivotal tuning, ``adapt``) or a direction shared by
several samples (``direction from-text``): the trained tensors stay float32 master copies, the forwards run in
the mode, and the mode runs only after the check of its own (``trains_weights``) measured it safe."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

import clipstyle.optimize.precision_check as pc
import clipstyle.optimize.precision_verdicts as pv
from clipstyle.optimize.loop import Schedule, train
from clipstyle.optimize.precision import model_synthesis
from clipstyle.optimize.precision_check import (
    Limits,
    PrecisionRefusedError,
    check_precision,
)

from ._cli import TINY_CLIP, run_cli
from ._fixtures import fixture_path
from ._tiny import network_file, tiny_sg2

CPU = torch.device("cpu")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache: verdicts measured here do not leak into other tests (or the user's cache)."""
    monkeypatch.setenv("CLIPSTYLE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def counted(monkeypatch):
    """The checks actually measured: ``(mode, trains_weights)`` per call."""
    calls = []
    real = pc.check_precision

    def counting(*a, **k):
        calls.append((a[1], k.get("trains_weights", False)))
        return real(*a, **k)

    monkeypatch.setattr(pc, "check_precision", counting)
    return calls


def _store(G, mode, ok, reason="", trains_weights=False):
    path = pv.verdict_path(pv.network_fingerprint(G), mode, CPU, trains_weights=trains_weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"ok": ok, "reasons": [reason] if reason else []}))
    return path


def _autocast_probe(G):
    """Record, at every synthesis forward of ``G``, whether CPU autocast is on and in which dtype."""
    seen = []
    G.synthesis.register_forward_pre_hook(
        lambda mod, args: seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None))
    return seen


def _ws(G, seed, n=1):
    with torch.no_grad():
        return G.mapping(torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed)), None,
                         truncation_psi=0.7)


@pytest.mark.parametrize("mode", ["fp32", "bf16", "fp16"])
def test_train_keeps_float32_master_weights_and_runs_the_forward_in_the_mode(mode):
    G = tiny_sg2(resolution=32)
    G1 = copy.deepcopy(G)
    G1.synthesis.requires_grad_(True)
    params = [p for p in G1.synthesis.parameters() if p.requires_grad]
    ws, target = _ws(G, 1), G.synthesis(_ws(G, 2)).detach()
    seen = _autocast_probe(G1)

    def forward(step):
        images = model_synthesis(G1, ws)
        assert images.dtype == torch.float32  # the loss is float32 whatever the mode
        loss = (images - target).square().mean()
        return images, loss, {"mse": loss.detach()}

    result = train(params, forward, Schedule(lr=3e-3, steps=25, rampup=0.0, rampdown=0.0), keep=lambda: None)
    assert result.precision == "fp32" and set(seen) == {None}
    seen.clear()
    result = train(params, forward, Schedule(lr=3e-3, steps=25, rampup=0.0, rampdown=0.0), keep=lambda: None,
                   precision=mode)
    expected = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
    assert result.precision == mode and set(seen) == {expected}
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in params)  # master copies
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.8 * losses[0], losses  # it trains


def test_train_refuses_a_mode_the_device_cannot_run_before_any_step():
    p = torch.zeros(3, requires_grad=True)
    with pytest.raises(pc.PrecisionError, match="needs a CUDA GPU"):
        train([p], lambda step: pytest.fail("a step ran"), Schedule(steps=2), keep=lambda: None, precision="tf32")


def test_the_training_check_measures_weight_gradients_and_a_training_run():
    G = tiny_sg2(resolution=32)
    weights = check_precision(G, "bf16", "cpu", steps=10, batch=1, trains_weights=True)
    latent = check_precision(G, "bf16", "cpu", steps=10, batch=1)
    assert weights.trains_weights and weights.ok and not latent.trains_weights
    assert weights.image_rms_error == latent.image_rms_error > 0  # the same forward, really in bf16
    assert 0.99 <= weights.grad_cosine < 1.0  # bf16 rounding is visible, the direction is the same
    assert weights.grad_cosine != latent.grad_cosine and weights.loss_fp32 != latent.loss_fp32
    strict = Limits(grad_cosine=0.999999999, loss_rel=-1.0)
    failed = check_precision(G, "bf16", "cpu", steps=3, batch=1, trains_weights=True, limits=strict)
    assert not failed.ok and len(failed.reasons) == 2
    assert failed.reasons[0].startswith("weight-gradient cosine") and "3-step training run" in failed.reasons[1]
    assert json.loads(json.dumps(failed.as_dict()))["trains_weights"] is True


@pytest.mark.parametrize("name", ["sg2_skip_64.pkl", pytest.param("sg3_t_64.pkl", marks=pytest.mark.slow),
                                  pytest.param("rosinality_64.pt", marks=pytest.mark.slow)])
def test_the_training_check_on_the_fixtures(name):
    from clipstyle.generator import read_generator_file

    G = read_generator_file(fixture_path(name))
    check = check_precision(G, "bf16", "cpu", steps=20, batch=1, trains_weights=True)
    assert 0 < check.image_rms_error <= 0.03 and check.grad_cosine >= 0.999, check.as_dict()
    assert all(p.dtype == torch.float32 for p in G.parameters()) and not any(p.requires_grad for p in G.parameters())


def test_latent_and_training_verdicts_are_kept_apart(cache, counted):
    G = tiny_sg2(resolution=32)
    fp = pv.network_fingerprint(G)
    assert pv.verdict_path(fp, "bf16", CPU) != pv.verdict_path(fp, "bf16", CPU, trains_weights=True)
    _store(G, "bf16", ok=True)
    _store(G, "bf16", ok=False, reason="final loss of a 100-step training run 2 vs fp32 1 (+100.0%)",
           trains_weights=True)
    assert pv.verified_precision(G, "bf16", CPU) == "bf16"
    with pytest.raises(PrecisionRefusedError, match="refused for training this network: final loss"):
        pv.verified_precision(G, "bf16", CPU, trains_weights=True)
    assert counted == []  # both verdicts were read, none measured


def test_tuning_runs_in_the_verified_mode_and_keeps_float32_weights(cache, counted, monkeypatch):
    from clipstyle.inversion.pti import TuneConfig, tune

    G = tiny_sg2(resolution=32)
    pivot = _ws(G, 3)  # [1, num_ws, w_dim]
    target = G.synthesis(_ws(G, 4)).detach()
    res = tune(G, pivot, target, TuneConfig(steps=30, lr=3e-3, precision="bf16"))
    assert counted == [("bf16", True)]  # measured with the training check, on G
    assert res.run.precision == "bf16" and res.metrics["psnr_tuned"] > res.metrics["psnr_pivot"] + 1.0
    assert all(p.dtype == torch.float32 for p in res.G.parameters())
    _store(G, "bf16", ok=False, reason="weight-gradient cosine vs fp32 0.9000 < 0.99", trains_weights=True)
    with pytest.raises(PrecisionRefusedError, match="training this network: weight-gradient cosine"):
        tune(G, pivot, target, TuneConfig(steps=2, precision="bf16"))
    monkeypatch.setattr(pv, "auto_candidates", lambda device: ("bf16", "fp32"))
    assert tune(G, pivot, target, TuneConfig(steps=2, precision="auto")).run.precision == "fp32"


def test_the_locality_term_runs_the_tuned_copy_in_the_mode(cache, monkeypatch):
    from clipstyle.inversion import pti
    from clipstyle.optimize import precision

    G = tiny_sg2(resolution=32)
    _store(G, "bf16", ok=True, trains_weights=True)
    seen = []
    real = pti.model_synthesis

    def probe(net, ws, noise_mode="const"):
        out = real(net, ws, noise_mode)
        seen.append((precision._MODEL_PRECISION.get(), out.dtype, torch.is_autocast_enabled("cpu")))
        return out

    monkeypatch.setattr(pti, "model_synthesis", probe)
    pti.tune(G, _ws(G, 3), G.synthesis(_ws(G, 4)).detach(), pti.TuneConfig(steps=2, precision="bf16"))
    # in the mode the tuning runs in; a float32 image back, for float32 loss arithmetic outside autocast
    assert seen == [(("bf16", "cpu"), torch.float32, False)] * 2


def test_adapt_runs_in_the_verified_mode_and_only_trained_layers_change(cache, counted, tiny_guide, monkeypatch):
    from clipstyle.adapt.losses import AdaptLoss, text_critic
    from clipstyle.adapt.trainer import AdaptConfig, adapt_generator

    G = tiny_sg2(resolution=32)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    loss = AdaptLoss([text_critic(tiny_guide, 1.0, "photo", "pencil sketch", None)])
    res = adapt_generator(G, loss, AdaptConfig(steps=6, lr=0.01, rows=(1, 2), preview_every=0, precision="bf16"))
    assert counted == [("bf16", True)] and res.run.precision == "bf16"
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())  # the base is untouched
    state = res.G.state_dict()
    assert all(v.dtype == before[k].dtype for k, v in state.items())  # float32 weights, not bf16 copies
    assert any(not torch.equal(before[k], v) for k, v in state.items() if k.startswith("synthesis."))
    assert all(torch.equal(before[k], v) for k, v in state.items() if k.startswith("mapping."))
    monkeypatch.setattr(pv, "auto_candidates", lambda device: ("bf16", "fp32"))
    _store(G, "bf16", ok=False, reason="final loss of a 100-step training run", trains_weights=True)
    res = adapt_generator(G, loss, AdaptConfig(steps=1, rows=(1,), preview_every=0, precision="auto"))
    assert res.run.precision == "fp32"


def test_cli_adapt_measures_bf16_and_records_what_ran(cache, tmp_path, capsys):
    code, out, err = run_cli(["adapt", "--network", str(network_file("sg2")), "--target", "pencil sketch",
                              "--clip-model", TINY_CLIP, "--clip-pretrained", "none", "--steps", "3",
                              "--layers", "1-2", "--seeds", "0", "--precision", "bf16", "--device", "cpu", "-q",
                              "--outdir", str(tmp_path / "out")], capsys)
    assert code == 0, err
    record = json.loads((Path(out.strip()) / "run.json").read_text())
    assert record["precision"] == "bf16" and record["provenance"]["precision"] == "bf16"
    (verdict,) = (cache / "precision").glob("*.json")  # measured once, by the training check
    stored = json.loads(verdict.read_text())
    assert stored["trains_weights"] is True and stored["ok"] and stored["steps"] == pv.CHECK_STEPS


def test_direction_from_text_runs_in_the_verified_mode(cache, counted, tiny_guide, tmp_path, capsys):
    from clipstyle.pipelines.directions import direction_from_text

    G = tiny_sg2(resolution=32)
    _store(G, "bf16", ok=True)
    res = direction_from_text("a face", "a smiling face", G=G, guide=tiny_guide, device="cpu", steps=3, seeds="0-1",
                              cutouts=2, precision="bf16")
    assert res.precision == "bf16" and res.direction.dtype == torch.float32 and counted == []
    _store(G, "bf16", ok=False, reason="gradient cosine vs fp32 0.9 < 0.99")
    with pytest.raises(PrecisionRefusedError, match="gradient cosine"):
        direction_from_text("a face", "a smiling face", G=G, guide=tiny_guide, device="cpu", steps=3, seeds="0",
                            cutouts=2, precision="bf16")
    from clipstyle.generator import read_generator_file

    _store(read_generator_file(network_file("sg2")), "fp16", ok=True)  # the CLI's network (measured: the adapt test)
    code, out, err = run_cli(["direction", "from-text", "a face", "a smiling face", "--network",
                              str(network_file("sg2")), "--clip-model", TINY_CLIP, "--clip-pretrained", "none",
                              "--steps", "3", "--seeds", "0", "--cutouts", "2", "--precision", "fp16",
                              "--device", "cpu", "-q", "--out", str(tmp_path / "d.npy")], capsys)
    assert code == 0, err
    assert "ran in fp16" in out and (tmp_path / "d.npy").is_file() and counted == []


def test_an_edit_in_stylespace_runs_in_the_verified_mode(cache, tiny_guide):
    from clipstyle.guidance import CutoutConfig, Cutouts
    from clipstyle.inversion.edit import EditConfig
    from clipstyle.pipelines.photo_edit import edit_in_s

    G = tiny_sg2(resolution=32)
    _store(G, "bf16", ok=True)
    cut = Cutouts(CutoutConfig(num_cutouts=2), tiny_guide.input_size)
    result, styles = edit_in_s(G, _ws(G, 5), "a smiling face", tiny_guide, cut,
                               EditConfig(steps=2, l2=0.0, precision="bf16"))
    assert result.run.precision == "bf16" and styles.dtype == torch.float32
    _store(G, "bf16", ok=False, reason="image error vs fp32: RMS 0.2000")
    with pytest.raises(PrecisionRefusedError, match="RMS 0.2000"):
        edit_in_s(G, _ws(G, 5), "a smiling face", tiny_guide, cut, EditConfig(steps=2, l2=0.0, precision="bf16"))
