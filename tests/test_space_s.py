"""``--space s``: the text optimization in StyleSpace S (StyleCLIP's --work_in_stylespace) on the tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ._cli import TINY_CLIP, run_cli

PROMPT = "a red face"


def _api(net, **kw):
    from clipstyle import text_to_image

    opts = dict(network=str(net), clip_model=TINY_CLIP, clip_pretrained="none", steps=6, seed=5, cutouts=4,
                device="cpu", space="s", lr=0.3)
    opts.update(kw)
    return text_to_image(PROMPT, **opts)


def test_loss_falls_and_ws_stays_the_start(tiny_network_path):
    from clipstyle.generator import load_generator
    from clipstyle.latents import start_ws

    run = _api(tiny_network_path, steps=8)
    losses = [h["loss"] for h in run.result.history]
    assert min(losses[1:]) < losses[0]
    ws0, _ = start_ws(load_generator(str(tiny_network_path), device="cpu"), seed=5)
    assert torch.equal(run.ws, ws0)  # the styles carry the edit
    styles = run.extra_arrays["styles"]
    assert styles.dtype == np.float32 and styles.ndim == 2 and run.meta == {"space": "s"}


def test_channels_outside_the_blocks_stay_bit_identical(tiny_network_path):
    from clipstyle.generator import load_generator
    from clipstyle.generator.stylespace import flatten_styles, style_layers
    from clipstyle.latents import start_ws

    G = load_generator(str(tiny_network_path), device="cpu")
    run = _api(tiny_network_path, G=G, blocks="2-5")
    layers = style_layers(G)
    ws0, _ = start_ws(G, seed=5)
    with torch.no_grad():
        s0 = flatten_styles(G.styles(ws0), layers).numpy()
    styles = run.extra_arrays["styles"]
    inside = np.zeros(s0.shape[1], bool)
    for l in layers:
        if l.ws_index in (2, 3, 4, 5):
            inside[l.offset:l.offset + l.width] = True
    assert inside.any() and not inside.all()
    assert np.array_equal(styles[:, ~inside], s0[:, ~inside])
    assert not np.array_equal(styles[:, inside], s0[:, inside])


def test_cli_and_api_give_the_same_styles_and_render_reproduces_result(tiny_network_path, tmp_path, capsys):
    from clipstyle.pipelines.creative import render

    code, out, err = run_cli([PROMPT, "--network", tiny_network_path, "--clip-model", TINY_CLIP, "--clip-pretrained",
                              "none", "--steps", "6", "--seed", "5", "--cutouts", "4", "--lr", "0.3", "--space", "s",
                              "--outdir", tmp_path, "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    folder = Path(out.strip())
    with np.load(folder / "latents.npz", allow_pickle=False) as data:
        cli_styles = data["styles"]
    api = _api(tiny_network_path)
    assert np.array_equal(cli_styles, api.extra_arrays["styles"])
    again = render(str(folder / "latents.npz"), network=str(tiny_network_path), device="cpu")
    import imageio.v3 as iio

    assert np.array_equal(again.images[0], iio.imread(folder / "result.png"))
    assert np.array_equal(again.images, api.images)


def test_a_bad_combination_is_refused_before_any_model_loads(tiny_network_path, tmp_path, capsys, monkeypatch):
    from clipstyle.workflows.base import SettingsError
    from clipstyle.workflows.text import TextSettings

    with pytest.raises(SettingsError, match="--space s"):
        TextSettings(prompt="a face", space="s", l2=0.01)
    import clipstyle.pipelines.common as common

    def no_load(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(common, "load_network", no_load)
    monkeypatch.setattr(common, "load_guide", no_load)
    code, out, err = run_cli([PROMPT, "--network", tiny_network_path, "--clip-model", TINY_CLIP, "--space", "s",
                              "--l2", "0.01", "--outdir", tmp_path, "--device", "cpu"], capsys)
    assert code == 2 and "--space s" in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def projected(tmp_path_factory, tiny_network_path):
    """A 3-step projection of a random photo with the tiny StyleGAN2: its latents.npz has noise maps."""
    from PIL import Image

    from clipstyle.cli import main

    folder = tmp_path_factory.mktemp("proj")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "photo.png")
    try:
        main(["project", str(folder / "photo.png"), "--network", str(tiny_network_path), "--perceptual", "none",
              "--steps", "3", "--device", "cpu", "--outdir", str(folder), "-q"])
    except SystemExit as e:
        assert e.code == 0
    return folder / "proj-photo" / "latents.npz"


def test_edit_in_s_from_a_projection_keeps_its_noise_and_renders_back(projected, tiny_network_path, tmp_path,
                                                                      capsys):
    import imageio.v3 as iio

    from clipstyle.generator import load_generator
    from clipstyle.generator.stylespace import flatten_styles, style_layers
    from clipstyle.latents import load_latents
    from clipstyle.pipelines.creative import render

    code, out, err = run_cli(["edit", "--latents", projected, "a smiling face", "--space", "s", "--blocks", "6-9",
                              "--steps", "8", "--cutouts", "4", "--outdir", tmp_path, "--clip-model", TINY_CLIP,
                              "--clip-pretrained", "none", "--device", "cpu", "-q"], capsys)
    assert code == 0, err
    folder = Path(out.strip())
    record = __import__("json").loads((folder / "run.json").read_text())
    directional = [h["directional"] for h in record["loss_history"]]
    assert min(directional[1:]) < directional[0]
    start = load_latents(projected).ws
    with np.load(folder / "latents.npz", allow_pickle=False) as data:
        ws, styles = data["ws"], data["styles"]
        assert "noise_0" in data.files
    assert np.array_equal(ws, start)  # ws stays the start; the styles carry the edit
    G = load_generator(str(tiny_network_path), device="cpu")
    layers = style_layers(G)
    with torch.no_grad():
        s0 = flatten_styles(G.styles(torch.from_numpy(start)), layers).numpy()
    inside = np.zeros(s0.shape[1], bool)
    for l in layers:
        inside[l.offset:l.offset + l.width] = l.ws_index >= 6
    assert np.array_equal(styles[:, ~inside], s0[:, ~inside])
    assert not np.array_equal(styles[:, inside], s0[:, inside])
    # the before half is the projection's image (its noise maps are used), and render gives result.png back
    pair = iio.imread(folder / "before_after.png")
    assert np.array_equal(pair[:, :64], iio.imread(projected.parent / "proj.png"))
    again = render(str(folder / "latents.npz"), network=str(tiny_network_path), device="cpu")
    assert np.array_equal(again.images[0], iio.imread(folder / "result.png"))


def test_edit_refuses_l2_in_s_before_loading(projected):
    from clipstyle.workflows.base import SettingsError
    from clipstyle.workflows.photo import EditSettings

    with pytest.raises(SettingsError, match="--space s"):
        EditSettings(latents=str(projected), prompt="a smile", space="s", l2=0.01)


def test_a_stacked_batch_refuses_an_s_job(tiny_G, tiny_guide):
    from clipstyle.errors import UsageError
    from clipstyle.pipelines.text import text_job

    job = text_job(tiny_G, tiny_guide, "a red face", space="s", steps=2, cutouts=2)
    with pytest.raises(UsageError, match="--space s"):
        job.latent()
