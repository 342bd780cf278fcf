"""The Run result: its folder appears complete or not at all, and holds what the run made."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clipstyle.latents import load_latents
from clipstyle.optimize.loop import OptimizeResult
from clipstyle.pipelines.run import Run, is_complete


def _run(name: str = "a prompt") -> Run:
    frames = tuple(np.full((2, 8, 8, 3), v, np.uint8) for v in (10, 200))
    ws = torch.randn(2, 4, 3)
    res = OptimizeResult(ws=ws, best_ws=ws, best_loss=0.5, best_step=1, history=({"step": 0, "loss": 1.0},),
                         frames=frames, frame_steps=(0, 1), interrupted=False, seconds=1.0, steps_done=2)
    return Run(name=name, result=res, settings={"steps": 2}, network={"source": "x.pkl"},
               extra_images={"item0.png": frames[-1][0]}, extra_json={"psnr": 30.0})


def test_save_writes_every_file_and_the_record(tmp_path):
    run = _run()
    folder = run.save(tmp_path)
    assert folder.name == "a-prompt" and is_complete(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["item0.png", "latents.npz", "progress.gif", "result.png",
                                                       "run.json"]
    rec = json.loads((folder / "run.json").read_text())
    assert rec["psnr"] == 30.0 and rec["settings"] == {"steps": 2} and rec["steps_done"] == 2
    assert torch.equal(torch.as_tensor(load_latents(folder / "latents.npz").ws), run.ws)
    assert run.image.mode == "RGB" and run.image.size == (16, 8)  # a 2-item grid of 8x8 images
    assert np.array_equal(np.asarray(run.images), run.result.frames[-1])
    assert run.save(tmp_path).name == "a-prompt-0001"  # never reuses a folder
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging")]


def test_failed_save_leaves_no_folder(tmp_path, monkeypatch):
    import clipstyle.pipelines.run as run_mod

    def boom(self, folder):
        (folder / "result.png").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(run_mod.Run, "write_into", boom)
    with pytest.raises(OSError):
        _run().save(tmp_path)
    assert list(tmp_path.iterdir()) == []
