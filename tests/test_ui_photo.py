"""The Photo tab against the real photo pipelines (align, encode, project, edit) on the UI's loaded tiny models:
the endpoint gives the ws the API gives for the same settings and models; LPIPS, e4e start, pivotal tuning and
the ArcFace identity loss each run; Stop keeps the best."""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest
from PIL import Image

from ._ui import served_ui, tiny_models


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    pytest.importorskip("gradio_client")
    from gradio_client import Client

    from clipstyle.ui.config import Limits

    root = tmp_path_factory.mktemp("photo-ui")
    allowed = root / "photos"
    allowed.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 30, 3)) * 255).astype(np.uint8)).save(allowed / "me.png")
    with tiny_models(root / "models") as models, \
            served_ui(root / "out", models=models, allow_dirs=(str(allowed),),
                      limits=Limits(max_steps=40, max_resolution=600)) as (url, demo):
        yield Client(url, verbose=False), demo, allowed / "me.png"


def photo_args(photo=None, choice="", align=False, prompt="a smiling face", steps=3, project_steps=4, space="w",
               perceptual="none", e4e=False, tune=False, tune_steps=2, identity=False, id_lambda=0.1, seed=0):
    from gradio_client import handle_file

    upload = handle_file(str(photo)) if photo is not None else None
    return [upload, choice, align, prompt, steps, project_steps, space, perceptual, e4e, tune, tune_steps, identity,
            id_lambda, seed]


def latents_of(result) -> np.ndarray:
    with np.load(next(p for p in result[3] if p.endswith("latents.npz"))) as f:
        return f["ws"]


def test_encode_uses_the_operators_e4e_and_gives_the_apis_ws(ui):
    from clipstyle.pipelines.photo import encode
    from clipstyle.workflows.photo import EncodeSettings

    client, demo, photo = ui
    m = demo.clipstyle.models
    result = client.predict(*photo_args(photo, identity=True), api_name="/photo_encode")
    assert "encode: done · identity" in result[2]
    settings = EncodeSettings(photo=str(photo), encoder=demo.clipstyle.config.encoder,
                              network=demo.clipstyle.config.network, id_weights=demo.clipstyle.config.id_weights)
    api = encode(settings, G=m.G, encoder=m.encoder, identity=m.identity, device="cpu")
    assert np.array_equal(latents_of(result), api.ws.numpy())


def test_project_with_lpips_e4e_start_tuning_and_identity(ui):
    from clipstyle.pipelines.photo import project
    from clipstyle.workflows.photo import ProjectSettings

    client, demo, photo = ui
    m = demo.clipstyle.models
    choice = next(iter(demo.clipstyle.allowed.images))  # the photo from the operator's folder, by name
    outputs = list(client.submit(*photo_args(choice=choice, perceptual="lpips", e4e=True, tune=True, identity=True),
                                 api_name="/photo_project"))
    assert any('max="4"' in o[2] for o in outputs[:-1])  # projection progress streamed
    final = outputs[-1]
    assert "project: done · identity" in final[2] and "pivotal tuning" in final[2]
    names = sorted(p.rsplit("/", 1)[-1] for p in final[3])
    assert names == ["latents.npz", "progress.gif", "result.png", "target.png"]
    cfg = demo.clipstyle.config
    settings = ProjectSettings(photo=str(photo), network=cfg.network, steps=4, space="w", perceptual="lpips",
                               lpips_weights=cfg.lpips_weights, init="e4e", encoder=cfg.encoder, tune=True,
                               tune_steps=2, id_weights=cfg.id_weights, seed=0, save_every=1)
    api = project(settings, G=m.G, encoder=m.encoder, identity=m.identity, perceptual=m.perceptual, device="cpu")
    assert np.array_equal(latents_of(final), api.ws.numpy())


def test_edit_runs_every_stage_and_offers_before_after(ui):
    client, _, photo = ui
    outputs = list(client.submit(*photo_args(photo, steps=3, identity=True, tune=True), api_name="/photo_edit"))
    final = outputs[-1]
    assert "edit: done · identity" in final[2]
    assert {"before_after.png", "target.png", "result.png"} <= {p.rsplit("/", 1)[-1] for p in final[3]}
    assert Image.open(final[1]).size == Image.open(final[0]).size  # after and before, the network's size


def test_stop_ends_the_projection_keeping_the_best(ui):
    client, _, photo = ui
    job = client.submit(*photo_args(photo, project_steps=40), api_name="/photo_project")
    deadline = time.monotonic() + 120
    while not job.outputs() and time.monotonic() < deadline:  # the first preview: the projection runs
        time.sleep(0.05)
    client.predict(api_name="/stop")  # Stop of this session (every tab's Stop button calls it)
    result = job.result()
    assert "project: stopped by Stop, kept the best" in result[2] and latents_of(result).shape[0] == 1


@pytest.mark.skipif(importlib.util.find_spec("dlib") is None
                    or importlib.util.find_spec("face_recognition_models") is None,
                    reason="the align extra (dlib-bin, face-recognition-models) is not installed")
def test_align_finds_the_face(ui, tmp_path):
    skimage = pytest.importorskip("skimage")
    client, _, _ = ui
    face = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(face)
    result = client.predict(*photo_args(face), api_name="/photo_align")
    assert "align: done" in result[2] and result[4].startswith("upload:")
    assert Image.open(result[1]).size == (600, 600)  # --max-resolution caps the aligned size
    projected = client.predict(*photo_args(choice=result[4]), api_name="/photo_project")  # the aligned face, by name
    assert "project: done" in projected[2]
