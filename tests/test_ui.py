"""Every tab and button of the web UI driven with gradio_client against the real pipelines, on tiny models
built in code; the runner (stop flags, streaming) directly."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

from ._ui import served_ui, tiny_models


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    pytest.importorskip("gradio_client")
    from gradio_client import Client

    from clipstyle.generator import load_generator
    from clipstyle.latents import start_ws
    from clipstyle.latents.latent import save_latents

    allowed = tmp_path_factory.mktemp("allowed")
    root = tmp_path_factory.mktemp("ui")
    with tiny_models(root / "models") as models:
        G = load_generator(models["network"])
        save_latents(allowed / "seed9.npz", start_ws(G, seed=9)[0].numpy())
        with served_ui(root / "out", models=models, allow_dirs=(str(allowed),)) as (url, demo):
            yield Client(url, verbose=False), demo, G


def final_ws(outputs, files_at=3):
    path = next(p for p in outputs[-1][files_at] if p.endswith("latents.npz"))
    with np.load(path) as f:
        return f["ws"]


def text_args(prompt="a red face", steps=6, seed=3, blocks=(), mix_seed=-1, mix_rows=(), recipe="", batch=1,
              upload=None, choice=""):
    return [prompt, steps, seed, list(blocks), mix_seed, list(mix_rows), recipe, batch, upload, choice]


def test_text_to_image_endpoint_returns_the_image(ui):
    client, _, G = ui
    img = np.asarray(Image.open(client.predict("a red face", 3, api_name="/text_to_image")))
    assert img.shape == (G.img_resolution, G.img_resolution, 3) and img.std() > 1  # rendered, not blank


def test_text_generate_streams_progress_then_the_files(ui):
    from clipstyle.latents import start_ws

    client, _, G = ui
    outputs = list(client.submit(*text_args(blocks=[2, 3], mix_seed=7, mix_rows=[0, 1]), api_name="/text_generate"))
    statuses = [o[1] for o in outputs]
    assert any('value="1" max="6"' in s for s in statuses)  # a preview after the first step
    assert 'value="6" max="6"' in statuses[-1] and "done: 6 steps" in statuses[-1]
    assert sorted(p.rsplit("/", 1)[-1] for p in outputs[-1][3]) == ["latents.npz", "progress.gif", "result.png"]
    ws = final_ws(outputs)
    ws3, ws7 = start_ws(G, seed=3)[0].numpy(), start_ws(G, seed=7)[0].numpy()
    assert np.array_equal(ws[0, 4:], ws3[0, 4:])  # rows not chosen stay at seed 3's
    assert np.array_equal(ws[0, :2], ws7[0, :2])  # rows 0-1 fixed to the mixing source, seed 7
    assert not np.array_equal(ws[0, 2:4], ws3[0, 2:4])


def test_text_generate_is_the_pipeline_call(ui):
    """The tab gives the ws the API gives for the same settings (same seed → bit-identical)."""
    from clipstyle.pipelines.text import text_to_image

    client, demo, G = ui
    ctx = demo.clipstyle
    ws = final_ws(list(client.submit(*text_args(steps=4, seed=5, batch=2), api_name="/text_generate")))
    run = text_to_image("a red face", steps=4, seed=5, batch=2, save_every=1, G=G, guide=ctx.models.guide,
                        device="cpu")
    assert ws.shape[0] == 2 and np.array_equal(ws, run.ws.numpy())


def test_image_prompt_comes_from_an_upload(ui, tmp_path):
    from gradio_client import handle_file

    client, _, _ = ui
    pic = tmp_path / "paint.png"
    Image.fromarray((np.random.default_rng(1).random((48, 48, 3)) * 255).astype(np.uint8)).save(pic)
    outputs = list(client.submit(*text_args(prompt="", steps=3, upload=handle_file(str(pic))),
                                 api_name="/text_generate"))
    assert "done: 3 steps" in outputs[-1][1]


def test_styleblocks_and_mix_endpoints_render(ui):
    client, _, G = ui
    n = G.num_ws
    one = np.asarray(Image.open(client.predict(1, "zero", *([1.0] * n), api_name="/styleblocks")))
    scaled = np.asarray(Image.open(client.predict(1, "zero", *([1.0] * (n - 1) + [0.0]), api_name="/styleblocks")))
    assert one.shape == (G.img_resolution, G.img_resolution, 3) and not np.array_equal(one, scaled)
    grid = Image.open(client.predict(1, 2, [0, 1], api_name="/mix"))
    assert grid.size == (2 * G.img_resolution, 2 * G.img_resolution)  # blank | B over A | mix


def test_blend_with_the_same_network_changes_nothing_and_b_changes_the_fine_rows(ui):
    client, demo, G = ui
    a, b = demo.clipstyle.config.networks
    r = G.img_resolution
    same = np.asarray(Image.open(client.predict(a, "16", 0, 3, api_name="/blend")))
    assert same.shape == (r, 2 * r, 3) and np.array_equal(same[:, :r], same[:, r:])  # A with itself is A
    other = np.asarray(Image.open(client.predict(b, "16", 0, 3, api_name="/blend")))
    assert np.array_equal(other[:, :r], same[:, :r]) and not np.array_equal(other[:, r:], other[:, :r])


def test_interpolate_with_seeds_an_allowed_file_and_an_upload(ui, tmp_path):
    from gradio_client import handle_file

    from clipstyle.latents import start_ws
    from clipstyle.latents.latent import save_latents

    client, demo, G = ui
    gif, status, files = client.predict("1,2", 3, "lerp", False, [], api_name="/interpolate")
    assert Image.open(gif).n_frames == 4 and 'value="4" max="4"' in status and len(files) == 2
    up = tmp_path / "mine.npz"
    save_latents(up, start_ws(G, seed=11)[0].numpy())
    allowed = next(iter(demo.clipstyle.allowed.latents))
    gif, status, files = client.predict(f"1, {allowed}, mine.npz", 2, "slerp", False, [handle_file(str(up))],
                                        api_name="/interpolate")
    with np.load(next(f for f in files if f.endswith(".npz"))) as f:
        ws = f["ws"]
    assert ws.shape[0] == 5
    assert np.array_equal(ws[2], start_ws(G, seed=9)[0][0].numpy())   # the allowed file's latent, exactly
    assert np.array_equal(ws[4], start_ws(G, seed=11)[0][0].numpy())  # the upload's


def test_user_mistake_is_a_one_line_app_error(ui):
    from gradio_client.exceptions import AppError

    client, _, _ = ui
    with pytest.raises(AppError, match="the prompt is empty"):
        client.predict("  ", 2, api_name="/text_to_image")


def test_stop_ends_a_long_run_keeping_the_best(ui):
    client, _, _ = ui
    job = client.submit(*text_args(steps=60), api_name="/text_generate")
    deadline = time.monotonic() + 60
    # running: PROCESSING until the first yield, ITERATING after it (a poll can miss PROCESSING entirely)
    while job.status().code.name not in ("PROCESSING", "ITERATING") and not job.status().progress_data:
        assert not job.done() and time.monotonic() < deadline, f"the job never ran: {job.status()}"
        time.sleep(0.05)
    time.sleep(1.0)
    client.predict(api_name="/stop")
    status = job.result()[1]
    assert "stopped after" in status and "by Stop" in status and "kept the best" in status


def test_two_browser_sessions_queue_instead_of_corrupting_each_other(ui):
    """Two clients (two sessions) at once: each gets exactly the ws it would get alone."""
    from gradio_client import Client

    client, _, _ = ui
    other = Client(client.src, verbose=False)
    a = client.submit(*text_args(steps=5, seed=1), api_name="/text_generate")
    b = other.submit(*text_args("a blue face", steps=5, seed=2), api_name="/text_generate")
    both = (final_ws(list(a)), final_ws(list(b)))
    alone_a = final_ws(list(client.submit(*text_args(steps=5, seed=1), api_name="/text_generate")))
    alone_b = final_ws(list(other.submit(*text_args("a blue face", steps=5, seed=2), api_name="/text_generate")))
    assert np.array_equal(both[0], alone_a) and np.array_equal(both[1], alone_b)
    assert not np.array_equal(alone_a, alone_b)


def test_text_generate_with_a_recipe_moves_only_its_blocks(ui):
    from clipstyle.guidance.recipes import get_recipe, recipe_rows
    from clipstyle.latents import start_ws

    client, _, G = ui
    outputs = list(client.submit(*text_args(prompt="", steps=3, seed=4, recipe="smile"), api_name="/text_generate"))
    assert "done: 3 steps" in outputs[-1][1]
    rows = recipe_rows(get_recipe("smile"), G.num_ws, G.block_groups())
    others = [r for r in range(G.num_ws) if r not in rows]
    assert np.array_equal(final_ws(outputs)[0, others], start_ws(G, seed=4)[0][0, others].numpy())


def test_stream_hands_over_progress_result_and_errors():
    from clipstyle.ui.runner import stream

    lock = threading.Lock()

    def job(report):
        for i in range(3):
            report(i)
        return "result"

    assert list(stream(job, lock)) == [("progress", (0,)), ("progress", (1,)), ("progress", (2,)), ("done", "result")]

    def bad(report):
        raise KeyError("bug")

    with pytest.raises(KeyError):
        list(stream(bad, lock))
    assert not lock.locked()


def test_stream_closed_early_sets_the_stop_flag():
    from clipstyle.ui.runner import stream

    flag = threading.Event()

    def job(report):
        while not flag.is_set():
            report("tick")
            time.sleep(0.01)
        return "stopped"

    it = stream(job, threading.Lock(), flag)
    assert next(it)[0] == "progress"
    it.close()
    assert flag.wait(2)


def test_stop_flags_are_per_session_and_jobs_time_out():
    from clipstyle.ui.runner import StopFlags

    flags = StopFlags()
    a, b = flags.new("a"), flags.new("b")
    assert flags.stop("a") and a.stopped() and not b.stopped() and not flags.stop("nobody")
    assert a.why() == "Stop"
    quick = flags.new("c", seconds=0.01)
    time.sleep(0.05)
    assert quick.stopped() and "--max-seconds" in quick.why()


def test_tabs_written_elsewhere_mount_themselves(ui, monkeypatch):
    """A module ``clipstyle.ui.tabs.global_edit`` exposing ``build_tab(models)`` gets its tab in the app: the app
    opens the ``gr.Tab``, the module lays out its contents."""
    import importlib.machinery
    import sys
    import types

    import gradio as gr

    from clipstyle.ui.app import build_app

    _, demo, _ = ui
    seen = []

    def build_tab(models):
        seen.append(models)
        gr.Markdown("global edit here", elem_id="ge-mounted")

    module = types.ModuleType("clipstyle.ui.tabs.global_edit")
    module.__spec__ = importlib.machinery.ModuleSpec("clipstyle.ui.tabs.global_edit", None)
    module.build_tab = build_tab
    monkeypatch.setitem(sys.modules, "clipstyle.ui.tabs.global_edit", module)
    try:
        app = build_app(demo.clipstyle.config, models=demo.clipstyle.models)
    finally:
        demo.clipstyle.models.ui = demo.clipstyle  # the served app's context again
    assert seen == [demo.clipstyle.models]
    tabs = {b["id"]: b.get("props", {}).get("label") for b in app.config["components"] if b.get("type") == "tabitem"}
    assert "Global edit" in tabs.values() and "Adapt" in tabs.values() and "ge-mounted" in str(app.config)
