"""Pivotal tuning (Roich et al. 2022): the tuned generator reproduces a real photo better than its pivot,
images of other latents stay close (the locality regularizer), and the tuned generator travels with the
latents (saved beside them, named by latents.npz, used by later commands)."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from tests._cli import run_cli
from tests import _tiny


@pytest.fixture(scope="module")
def photo_and_net():
    skimage = pytest.importorskip("skimage")
    from clipstyle.generator import read_generator_file
    from clipstyle.io.images import image_to_tensor

    G = read_generator_file(_tiny.network_file("sg2"))
    x = image_to_tensor(skimage.data.astronaut(), 64)
    return G, x


@pytest.fixture(scope="module")
def pivot(photo_and_net):
    from clipstyle.inversion.project import ProjectConfig, project

    G, x = photo_and_net
    return project(G, x, ProjectConfig(steps=40, mse=1.0, w_avg_samples=1000))


def test_tuning_beats_the_pivot_and_the_regularizer_keeps_other_latents(photo_and_net, pivot):
    from clipstyle.inversion.pti import TuneConfig, tune

    G, x = photo_and_net
    before = {k: v.clone() for k, v in G.state_dict().items()}
    reg = tune(G, pivot.ws, x, TuneConfig(steps=100, lr=3e-3), noise=pivot.noise)  # the paper's λ_R = 0.1
    free = tune(G, pivot.ws, x, TuneConfig(steps=100, lr=3e-3, locality=0.0), noise=pivot.noise)
    m = reg.metrics
    assert m["psnr_pivot"] == pytest.approx(pivot.metrics["psnr"], abs=1e-6)
    assert m["psnr_tuned"] > m["psnr_pivot"] + 3.0, m          # a clear margin over the pivot
    assert m["locality_psnr_random"] > 18.0, m                  # random-w images stay close
    assert m["locality_psnr_random"] > free.metrics["locality_psnr_random"] + 5.0  # thanks to L_R
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())  # G itself untouched
    assert torch.equal(reg.G.mapping.fc0.weight, G.mapping.fc0.weight)  # only the synthesis is tuned
    assert {"mse", "locality"} <= set(reg.run.history[0]) and len(reg.run.history) == 100


def test_stop_ends_tuning_early(photo_and_net, pivot):
    from clipstyle.inversion.pti import TuneConfig, tune

    G, x = photo_and_net
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    res = tune(G, pivot.ws, x, TuneConfig(steps=50, lr=1e-3), noise=pivot.noise, stop=stop)
    assert res.run.interrupted and res.run.steps_done == 3


def test_cli_tune_saves_the_generator_and_later_commands_use_it(tmp_path, photo_and_net, capsys):
    skimage = pytest.importorskip("skimage")
    from clipstyle.generator import load_generator
    from clipstyle.latents import load_latents
    from clipstyle.latents.source import tuned_generator_path
    from clipstyle.pipelines.photo_parts import generator_for_latents

    Image.fromarray(skimage.data.astronaut()).resize((64, 64)).save(tmp_path / "astronaut.png")
    net = _tiny.network_file("sg2")
    code, out, err = run_cli(["project", tmp_path / "astronaut.png", "--network", net, "--perceptual", "none",
                              "--steps", "30", "--tune", "--tune-steps", "40", "--tune-lr", "1e-2", "--device", "cpu",
                              "-q", "--outdir", tmp_path / "out"], capsys)
    assert code == 0, err
    run_dir = tmp_path / "out" / "proj-astronaut"
    assert out.strip() == str(run_dir) and "pivotal tuning: PSNR" in err
    record = json.loads((run_dir / "run.json").read_text())
    tm = record["tune_metrics"]
    assert tm["psnr_tuned"] > tm["psnr_pivot"] + 1.0 and "locality_psnr_random" in tm
    lf = load_latents(run_dir / "latents.npz")
    assert lf.meta["generator"] == "generator.safetensors"
    assert tuned_generator_path(run_dir / "latents.npz") == run_dir / "generator.safetensors"
    G_t = generator_for_latents(run_dir / "latents.npz")
    assert G_t.source.format == "clipstyle-safetensors"
    ws = torch.from_numpy(lf.ws)
    with torch.no_grad():
        base = load_generator(str(net)).synthesis(ws, noise_mode="const")
        tuned = G_t.synthesis(ws, noise_mode="const")
    assert not torch.allclose(base, tuned)
    # the edit of that latent file runs in the tuned generator and names it again
    code, out, err = run_cli(["edit", "--latents", run_dir / "latents.npz", "a smiling face", "--steps", "2",
                              "--clip-model", "tests/data/tiny_clip.json", "--clip-pretrained", "none",
                              "--cutouts", "0", "--device", "cpu", "-q", "--outdir", tmp_path / "edits"], capsys)
    assert code == 0, err
    edit_dir = out.strip().splitlines()[-1]
    rec = json.loads((tmp_path / "edits" / edit_dir.split("/")[-1] / "run.json").read_text())
    assert "generator.safetensors" in json.dumps(rec["network"])  # edited in the tuned generator
    again = load_latents(tmp_path / "edits" / edit_dir.split("/")[-1] / "latents.npz")
    assert again.meta["generator"].endswith("generator.safetensors")
