"""The text → image pipeline as a library: CLI/API parity, its own random generator, stop, callbacks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ._cli import TINY_CLIP, run_cli
from . import _tiny

PROMPT = "a red face | a smile:0.5"


@pytest.fixture(scope="module")
def models():
    from clipstyle.generator import load_generator
    from clipstyle.guidance import CLIPGuide

    G = load_generator(str(_tiny.network_file("sg2")), device="cpu")
    return G, CLIPGuide(TINY_CLIP, None, device="cpu")


def test_cli_and_api_give_bit_identical_ws(tmp_path, capsys):
    from clipstyle import text_to_image
    from clipstyle.latents import load_latents

    net = _tiny.network_file("sg2")
    code, out, err = run_cli([PROMPT, "--network", net, "--clip-model", TINY_CLIP, "--clip-pretrained", "none",
                              "--steps", "6", "--seed", "5", "--blocks", "2-7", "--cutouts", "4",
                              "--outdir", tmp_path, "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    cli_ws = load_latents(Path(out.strip()) / "latents.npz").ws
    run = text_to_image(PROMPT, network=str(net), clip_model=TINY_CLIP, clip_pretrained="none", steps=6, seed=5,
                        blocks="2-7", cutouts=4, device="cpu")
    assert run.ws.shape == (1, 10, 64) and run.ws.dtype == torch.float32
    assert np.array_equal(run.ws.numpy(), cli_ws)
    from clipstyle.generator import load_generator
    from clipstyle.latents import start_ws

    ws0, _ = start_ws(load_generator(str(net), device="cpu"), seed=5)
    assert np.array_equal(cli_ws[:, [0, 1, 8, 9]], ws0.numpy()[:, [0, 1, 8, 9]])
    assert not np.array_equal(cli_ws[:, 2:8], ws0.numpy()[:, 2:8])
    settings = json.loads((Path(out.strip()) / "run.json").read_text())["settings"]
    assert settings["seed"] == 5 and settings["blocks"] == [2, 3, 4, 5, 6, 7] and settings["command"] == "text"


def test_job_randomness_is_its_own(models):
    """The cutouts draw from the job's generator: the global RNG neither matters nor moves."""
    from clipstyle.pipelines.text import text_job

    G, guide = models
    img = G.synthesis(G.mapping(torch.zeros(1, G.z_dim), None))

    def value(job):
        return float(job.loss(img, job.ws0)[0])

    torch.manual_seed(123)
    a = value(text_job(G, guide, PROMPT, seed=1, cutouts=4))
    state = torch.random.get_rng_state()
    torch.manual_seed(999)
    b = value(text_job(G, guide, PROMPT, seed=1, cutouts=4))
    torch.manual_seed(999)
    c = value(text_job(G, guide, PROMPT, seed=2, cutouts=4))
    assert a == b and a != c
    torch.manual_seed(123)
    text_job(G, guide, PROMPT, seed=1, cutouts=4).loss(img, None)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_job_fields(models):
    from clipstyle.pipelines.text import text_job

    G, guide = models
    job = text_job(G, guide, "a cat", seed=3, batch=2, blocks="0-5", mix=["7:0-1"], cutouts=2, steps=4, lr=0.05)
    assert job.ws0.shape == (2, G.num_ws, G.w_dim) and job.z.shape == (2, G.z_dim) and job.c.shape == (2, 0)
    assert job.free_rows == (2, 3, 4, 5) and sorted(job.mix) == [0, 1]
    assert job.schedule.steps == 4 and job.schedule.lr == 0.05 and job.name == "a cat"
    lat = job.latent()
    assert lat.free_rows == (2, 3, 4, 5)
    from clipstyle.latents import start_ws

    ws7, _ = start_ws(G, seed=7)
    assert torch.equal(lat.ws()[:, 0], ws7[:, 0].expand(2, -1))


def test_stop_keeps_the_best_and_callback_sees_every_step(models):
    from clipstyle import text_to_image

    G, guide = models
    seen = []
    run = text_to_image("a blue face", steps=50, seed=0, cutouts=2, G=G, guide=guide,
                        callback=lambda info, images: seen.append((info.step, tuple(images.shape))),
                        stop=lambda: len(seen) >= 4)
    assert run.interrupted and len(run.history) == 4
    assert [s for s, _ in seen] == [0, 1, 2, 3] and seen[0][1] == (1, 3, 64, 64)
    best = min(range(4), key=lambda i: run.history[i]["loss"])
    assert run.result.best_step == best
    assert torch.equal(run.ws, run.result.best_ws)
    assert run.image.size == (64, 64)


def test_empty_prompt_is_a_settings_error(models):
    from clipstyle import text_to_image
    from clipstyle.workflows.base import SettingsError

    G, guide = models
    with pytest.raises(SettingsError, match="the prompt is empty"):
        text_to_image("  ", G=G, guide=guide, steps=2)


def test_cli_and_api_agree_in_a_blended_network_too(tmp_path, capsys):
    from clipstyle import text_to_image
    from clipstyle.latents import load_latents

    net = str(_tiny.network_file("sg2"))
    other = net  # a blend of the network with itself: the same architecture, the full blend code path
    code, out, err = run_cli(["a cat", "--network", net, "--blend", f"{other}@16", "--clip-model", TINY_CLIP,
                              "--clip-pretrained", "none", "--steps", "4", "--seed", "2", "--cutouts", "2",
                              "--outdir", tmp_path, "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    run = text_to_image("a cat", network=net, blend=f"{other}@16", clip_model=TINY_CLIP, clip_pretrained="none",
                        steps=4, seed=2, cutouts=2, device="cpu")
    assert np.array_equal(run.ws.numpy(), load_latents(Path(out.strip()) / "latents.npz").ws)
    record = json.loads((Path(out.strip()) / "run.json").read_text())
    assert record["settings"]["blend"] == f"{other}@16" and record["network"]["format"] == "blend"
