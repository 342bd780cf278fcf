"""``--precision``: the generator's forward under bf16/fp16 autocast; latent and loss stay float32."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from clipstyle.generator import read_generator_file
from clipstyle.optimize.loop import _autocast

from ._cli import TINY_CLIP, run_cli
from . import _tiny


@pytest.mark.parametrize("name", ["sg2", "sg3"])
def test_bf16_autocast_stays_close_and_differentiable(name):
    G = read_generator_file(_tiny.network_file(name))
    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0)), None,
                   truncation_psi=0.7).requires_grad_(True)
    with torch.no_grad():
        ref = G.synthesis(ws)
    with _autocast("bf16", ws.device)():
        img = G.synthesis(ws)
    assert img.dtype == torch.bfloat16
    err = (img.float() - ref).abs().max().item()
    assert 0 < err < 0.1  # bf16 keeps ~3 significant digits; it really ran in bf16 (err > 0)
    img.float().square().mean().backward()
    assert torch.isfinite(ws.grad).all() and ws.grad.abs().sum() > 0


def test_cli_precision_bf16_runs_and_is_recorded(tmp_path, capsys):
    code, out, err = run_cli(["a red apple", "--network", _tiny.network_file("sg2"), "--clip-model", TINY_CLIP,
                              "--clip-pretrained", "none", "--steps", "5", "--cutouts", "4", "--precision", "bf16",
                              "--outdir", tmp_path, "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    record = json.loads((Path(out.strip()) / "run.json").read_text())
    assert record["settings"]["precision"] == "bf16"
    assert all(math.isfinite(h["loss"]) for h in record["loss_history"])


def test_cli_bad_precision(tmp_path, capsys):
    code, out, err = run_cli(["x", "--network", _tiny.network_file("sg2"), "--precision", "fp8",
                              "--outdir", tmp_path, "--device", "cpu"], capsys)
    assert code == 2 and "--precision must be one of" in err and "Traceback" not in err
