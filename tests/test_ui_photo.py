"""The UI's Photo tab, wired to a stand-in ``clipstyle.pipelines.photo`` (the real one comes from the photo branch):
the tab calls ``project(image_path, *, network, steps, space, G, callback, stop)`` and ``edit(image_path, prompt, …)``,
streams their progress and offers their run folder."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from ._ui import served_ui


def fake_photo_module(calls: list):
    from clipstyle.optimize.loop import StepInfo
    from clipstyle.pipelines.creative import generate

    def project(image_path, *, network, steps, space, G, callback=None, stop=None):
        calls.append(("project", image_path, steps, space))
        images = G.synthesis(G.w_avg[None, None].repeat(1, G.num_ws, 1))
        for step in range(steps):
            callback(StepInfo(step, steps, 0.1, 1.0 / (step + 1), {}, 0.0), images)
            if stop():
                break
        return generate(seeds="5", G=G)

    def edit(image_path, prompt, *, steps, G, callback=None, stop=None):
        calls.append(("edit", image_path, prompt, steps))
        return generate(seeds="6", G=G)

    module = types.ModuleType("clipstyle.pipelines.photo")
    module.__spec__ = importlib.machinery.ModuleSpec("clipstyle.pipelines.photo", None)
    module.project, module.edit = project, edit
    return module


def test_photo_tab_calls_project_and_edit(tmp_path, monkeypatch):
    pytest.importorskip("gradio_client")
    from gradio_client import Client, handle_file

    if "clipstyle.pipelines.photo" in sys.modules or importlib.util.find_spec("clipstyle.pipelines.photo"):
        pytest.skip("the real photo pipelines are installed; the stand-in would hide them")
    calls: list = []
    monkeypatch.setitem(sys.modules, "clipstyle.pipelines.photo", fake_photo_module(calls))
    photo = tmp_path / "me.png"
    Image.fromarray((np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8)).save(photo)
    with served_ui(tmp_path / "out") as (url, _demo):
        client = Client(url, verbose=False)
        job = client.submit(handle_file(str(photo)), "", 6, "w", api_name="/project")
        outputs = list(job)
        assert calls[0][0] == "project" and calls[0][2:] == (6, "w") and calls[0][1].endswith(".png")
        assert any('value="1" max="6"' in o[1] for o in outputs) and "project: done" in outputs[-1][1]
        from clipstyle.latents import start_ws
        from clipstyle.generator import load_generator

        from ._fixtures import fixture_path

        latents = next(p for p in outputs[-1][2] if p.endswith("latents.npz"))
        G = load_generator(str(fixture_path("sg2_skip_64.pkl")))
        with np.load(latents) as f:
            assert torch.equal(torch.from_numpy(f["ws"]), start_ws(G, seed=5)[0])
        out = client.predict(handle_file(str(photo)), "a smiling face", 3, "w+", api_name="/edit")
        assert calls[1][0] == "edit" and calls[1][2:] == ("a smiling face", 3) and "edit: done" in out[1]
