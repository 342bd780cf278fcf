"""The web UI's named endpoints, driven with gradio_client; its runner (stop flags, streaming) directly."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

from ._ui import served_ui


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    pytest.importorskip("gradio_client")
    from gradio_client import Client

    with served_ui(tmp_path_factory.mktemp("ui")) as (url, demo):
        yield Client(url, verbose=False), demo


def test_text_to_image_endpoint_returns_the_image(ui):
    client, _ = ui
    path = client.predict("a red face", 3, api_name="/text_to_image")
    img = np.asarray(Image.open(path))
    assert img.shape == (64, 64, 3) and img.std() > 1  # a rendered face, not a blank


def test_text_generate_streams_progress_then_the_files(ui):
    client, _ = ui
    job = client.submit("a red face", 6, 3, [2, 3], 7, [0, 1], "", api_name="/text_generate")
    outputs = list(job)
    statuses = [o[1] for o in outputs]
    assert any('value="1" max="6"' in s for s in statuses)  # preview after the first step
    assert 'value="6" max="6"' in statuses[-1] and "done: 6 steps" in statuses[-1]
    files = sorted(p.rsplit("/", 1)[-1] for p in outputs[-1][3])
    assert files == ["latents.npz", "progress.gif", "result.png"]
    latents = next(p for p in outputs[-1][3] if p.endswith("latents.npz"))
    with np.load(latents) as f:
        ws = f["ws"]
    from clipstyle.generator import load_generator
    from clipstyle.latents import start_ws

    from . import _tiny

    G = load_generator(str(_tiny.network_file("sg2")))
    ws3, _ = start_ws(G, seed=3)
    ws7, _ = start_ws(G, seed=7)
    assert np.array_equal(ws[0, 4:], ws3[0, 4:].numpy())  # rows not chosen stay at seed 3's
    assert np.array_equal(ws[0, :2], ws7[0, :2].numpy())  # rows 0-1 fixed to the mixing source, seed 7
    assert not np.array_equal(ws[0, 2:4], ws3[0, 2:4].numpy())


def test_styleblocks_and_mix_endpoints_render(ui):
    client, _ = ui
    one = np.asarray(Image.open(client.predict(1, "zero", *([1.0] * 10), api_name="/styleblocks")))
    scaled = np.asarray(Image.open(client.predict(1, "zero", *([1.0] * 9 + [0.0]), api_name="/styleblocks")))
    assert one.shape == (64, 64, 3) and not np.array_equal(one, scaled)
    grid = Image.open(client.predict(1, 2, [0, 1], api_name="/mix"))
    assert grid.size == (128, 128)  # blank | B over A | mix


def test_interpolate_endpoint_writes_the_gif(ui):
    client, _ = ui
    gif, status, files = client.predict("1,2", 3, "lerp", False, api_name="/interpolate")
    assert Image.open(gif).n_frames == 4 and 'value="4" max="4"' in status and len(files) == 2


def test_user_mistake_is_a_one_line_app_error(ui):
    from gradio_client.exceptions import AppError

    client, _ = ui
    with pytest.raises(AppError, match="the prompt is empty"):
        client.predict("  ", 2, api_name="/text_to_image")


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


def test_stop_flags_are_per_session():
    from clipstyle.ui.runner import StopFlags

    flags = StopFlags()
    a, b = flags.new("a"), flags.new("b")
    assert flags.stop("a") and a.is_set() and not b.is_set() and not flags.stop("nobody")


def test_photo_tab_says_when_the_photo_pipelines_are_missing(ui):
    import importlib.util

    _, demo = ui
    text = str(demo.config)
    if importlib.util.find_spec("clipstyle.pipelines.photo") is None:
        assert "photo-unavailable" in text and "not available" in text
    else:
        assert "/project" in str(demo.get_api_info()) and "/edit" in str(demo.get_api_info())


def test_blend_endpoint_with_the_same_network_changes_nothing(ui):
    from . import _tiny

    client, _ = ui
    pair = np.asarray(Image.open(client.predict(str(_tiny.network_file("sg2")), "16", 0, 3, api_name="/blend")))
    assert pair.shape == (64, 128, 3)
    assert np.array_equal(pair[:, :64], pair[:, 64:])  # A blended with itself is A


def test_two_browser_sessions_queue_instead_of_corrupting_each_other(ui):
    """Two clients (two sessions) at once: each gets exactly the ws it would get alone."""
    from gradio_client import Client

    client, demo = ui
    url = client.src
    other = Client(url, verbose=False)

    def final_ws(outputs):
        path = next(p for p in outputs[-1][3] if p.endswith("latents.npz"))
        with np.load(path) as f:
            return f["ws"]

    a = client.submit("a red face", 8, 1, [], -1, [], "", api_name="/text_generate")
    b = other.submit("a blue face", 8, 2, [], -1, [], "", api_name="/text_generate")
    both = (final_ws(list(a)), final_ws(list(b)))
    alone_a = final_ws(list(client.submit("a red face", 8, 1, [], -1, [], "", api_name="/text_generate")))
    alone_b = final_ws(list(other.submit("a blue face", 8, 2, [], -1, [], "", api_name="/text_generate")))
    assert np.array_equal(both[0], alone_a) and np.array_equal(both[1], alone_b)
    assert not np.array_equal(alone_a, alone_b)


def test_text_generate_with_a_recipe_moves_only_its_blocks(ui):
    from clipstyle.generator import load_generator
    from clipstyle.guidance.recipes import get_recipe, recipe_rows
    from clipstyle.latents import start_ws

    from . import _tiny

    client, _ = ui
    outputs = list(client.submit("", 3, 4, [], -1, [], "smile", api_name="/text_generate"))
    assert "done: 3 steps" in outputs[-1][1]
    with np.load(next(p for p in outputs[-1][3] if p.endswith("latents.npz"))) as f:
        ws = f["ws"]
    G = load_generator(str(_tiny.network_file("sg2")))
    rows = recipe_rows(get_recipe("smile"), G.num_ws, G.block_groups())
    others = [r for r in range(G.num_ws) if r not in rows]
    assert np.array_equal(ws[0, others], start_ws(G, seed=4)[0][0, others].numpy())
