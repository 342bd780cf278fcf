"""Device resolution: auto picks CUDA, else MPS, else CPU; absent devices are one-line errors."""

from __future__ import annotations

import pytest
import torch

from clipstyle.optimize import devices
from clipstyle.optimize.devices import DeviceError, resolve_device


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "mps_available", lambda: True)
    assert resolve_device("auto") == "mps"
    assert resolve_device(" MPS ") == "mps"
    monkeypatch.setattr(devices, "mps_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"


def test_absent_or_unknown_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "mps_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="no MPS"):
        resolve_device("mps")
    with pytest.raises(DeviceError, match="auto, cpu, cuda or mps, got 'tpu'"):
        resolve_device("tpu")


def test_cli_reports_a_missing_mps_in_one_line(tmp_path, capsys, monkeypatch):
    from ._cli import run_cli

    monkeypatch.setattr(devices, "mps_available", lambda: False)
    from . import _tiny

    net = _tiny.network_file("sg2")
    code, out, err = run_cli(["generate", "--network", net, "--device", "mps", "--outdir", tmp_path], capsys)
    assert code == 2 and err.strip() == "error: --device mps was asked for but this torch has no MPS (Apple GPU) " \
                                        "backend; use --device cpu"
