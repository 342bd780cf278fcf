"""--log tensorboard / --log mlflow: read back with TensorBoard's and MLflow's own readers.

A tiny random StyleGAN2 (built here, saved with clipstyle's native writer) and the tiny random CLIP.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ._cli import TINY_CLIP, run_cli

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
pytest.importorskip("mlflow", reason="the mlflow extra is not installed")

PROMPT = "a red face | a smile:0.5"


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> Path:
    from clipstyle.generator.formats.native import save_native
    from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator

    torch.manual_seed(0)
    G = StyleGAN2Generator(StyleGAN2Config(z_dim=32, w_dim=32, c_dim=0, img_resolution=32, img_channels=3,
                                           channels=(16, 16, 16, 16)))
    return save_native(G, tmp_path_factory.mktemp("net") / "tiny32.safetensors")


def cli_args(net, outdir, *extra):
    return [PROMPT, "--network", net, "--clip-model", TINY_CLIP, "--clip-pretrained", "none", "--steps", "6",
            "--seed", "3", "--cutouts", "2", "--save-every", "2", "--device", "cpu", "--quiet", "--outdir", outdir,
            *extra]


def api_kwargs(net):
    return dict(network=str(net), clip_model=TINY_CLIP, clip_pretrained="none", steps=4, seed=1, cutouts=2,
                save_every=2, device="cpu")


def event_reader(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def only_child(folder: Path) -> Path:
    children = [p for p in folder.iterdir() if p.is_dir()]
    assert len(children) == 1, children
    return children[0]


def test_tensorboard_scalars_equal_the_loss_history(net, tmp_path, capsys):
    from clipstyle.tracking import scalar_tag

    code, out, err = run_cli(cli_args(net, tmp_path / "out", "--log", f"tensorboard:{tmp_path / 'tb'}"), capsys)
    assert code == 0, err
    record = json.loads((Path(out.strip()) / "run.json").read_text())
    history = record["loss_history"]
    assert len(history) == 6
    acc = event_reader(only_child(tmp_path / "tb"))
    keys = [k for k in history[0] if k != "step"]
    assert set(keys) >= {"loss", "lr"} and len(keys) >= 3  # the total, the lr and at least one term
    for key in keys:
        events = acc.Scalars(scalar_tag(key))
        assert [e.step for e in events] == [h["step"] for h in history], key
        # event files store float32
        assert [e.value for e in events] == [float(np.float32(h[key])) for h in history], key
    assert [e.step for e in acc.Images("preview")] == [0, 2, 4]
    (result,) = acc.Images("result")
    assert result.step == 6 and result.encoded_image_string.startswith(b"\x89PNG")
    assert (result.width, result.height) == (32, 32)
    assert acc.Scalars("loss/best")[0].value == pytest.approx(record["best_loss"], rel=1e-6)


def test_mlflow_params_metrics_and_artifacts(net, tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    from clipstyle.tracking import param_value, scalar_tag

    uri = (tmp_path / "mlruns").as_uri()
    code, out, err = run_cli(cli_args(net, tmp_path / "out", "--log", f"mlflow:{uri}"), capsys)
    assert code == 0, err
    folder = Path(out.strip())
    record = json.loads((folder / "run.json").read_text())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # reading a file store with MLflow >= 3.7
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("clipstyle").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == PROMPT
    settings = record["settings"]
    assert run.data.params == {k: param_value(v) for k, v in settings.items()}
    assert run.data.params["prompt"] == PROMPT and run.data.params["steps"] == "6"
    assert run.data.params["seed"] == "3" and run.data.params["image_prompt"] == "null"
    history = record["loss_history"]
    for key in (k for k in history[0] if k != "step"):
        metric = sorted(client.get_metric_history(run.info.run_id, scalar_tag(key)), key=lambda m: m.step)
        assert [(m.step, m.value) for m in metric] == [(h["step"], h[key]) for h in history], key
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"result.png", "latents.npz", "run.json", "progress.gif"} <= artifacts
    local = Path(client.download_artifacts(run.info.run_id, "result.png", str(tmp_path / "dl")))
    assert local.read_bytes() == (folder / "result.png").read_bytes()
    previews = {a.path for a in client.list_artifacts(run.info.run_id, "images/preview")}
    assert previews == {f"images/preview/step_{s:06d}.png" for s in (0, 2, 4)}


def test_api_log_specs_finish_by_themselves(net, tmp_path, monkeypatch):
    """``log=`` specs in a pipeline call: the pipeline finishes the trackers (MLflow gets the run's files)."""
    from mlflow.tracking import MlflowClient

    from clipstyle import text_to_image

    uri = (tmp_path / "mlruns").as_uri()
    run = text_to_image("a blue face", **api_kwargs(net), log=[f"tensorboard:{tmp_path / 'tb'}", f"mlflow:{uri}"])
    acc = event_reader(only_child(tmp_path / "tb"))
    assert [e.step for e in acc.Scalars("loss/total")] == [0, 1, 2, 3]
    assert [e.step for e in acc.Images("result")] == [4]
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=uri)
    (mr,) = client.search_runs([client.get_experiment_by_name("clipstyle").experiment_id])
    assert {"result.png", "latents.npz", "run.json"} <= {a.path for a in client.list_artifacts(mr.info.run_id)}
    assert [m.value for m in sorted(client.get_metric_history(mr.info.run_id, "loss/total"), key=lambda m: m.step)] \
        == [h["loss"] for h in run.history]


class Recorder:
    """A tracker that records what it is given (the protocol of clipstyle.tracking.Tracker)."""

    label, wants_folder = "recorder", False

    def __init__(self, fail_at: int | None = None):
        self.fail_at, self.steps, self.closed = fail_at, [], None

    def start(self, name, group):
        self.name = name

    def log_settings(self, settings):
        pass

    def log_scalars(self, step, scalars):
        if step == self.fail_at:
            raise OSError("disk full")
        self.steps.append(step)

    def log_image(self, tag, step, image):
        pass

    def log_folder(self, folder):
        pass

    def close(self, status):
        self.closed = status


def test_a_tracker_that_raises_mid_run_is_one_warning(net, tmp_path):
    from clipstyle import text_to_image
    from clipstyle.tracking import TrackerWarning

    bad, good = Recorder(fail_at=2), Recorder()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = text_to_image("a red face", **api_kwargs(net), log=[bad, good])
    ours = [w for w in caught if issubclass(w.category, TrackerWarning)]
    assert len(ours) == 1, [str(w.message) for w in ours]
    assert "recorder failed (OSError: disk full)" in str(ours[0].message)
    assert run.result.steps_done == 4 and not run.interrupted
    assert bad.steps == [0, 1] and bad.closed == "failed"
    assert good.steps == [0, 1, 2, 3, 4] and good.closed == "finished"  # step 4 = the final loss/best
    folder = run.save(tmp_path / "out")
    assert (folder / "result.png").is_file() and (folder / "run.json").is_file()


def test_cli_tracker_failure_keeps_the_result(net, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, out, err = run_cli(cli_args(net, tmp_path / "out", "--log", f"tensorboard:{blocker}"), capsys)
    assert code == 0, err
    assert (Path(out.strip()) / "result.png").is_file()
    assert err.count("experiment tracking: tensorboard") == 1 and "the result is kept" in err


def test_missing_extra_is_one_line_before_any_work(net, tmp_path, capsys, monkeypatch):
    import clipstyle.pipelines.common as common
    from clipstyle import text_to_image
    from clipstyle.tracking import MissingExtraError

    def no_loading(*a, **k):
        raise AssertionError("a network was loaded")

    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the extra were not installed
    monkeypatch.setattr(common, "load_network", no_loading)
    code, out, err = run_cli(cli_args(net, tmp_path / "out", "--log", "mlflow"), capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "--log mlflow needs the mlflow extra: pip install 'clipstyle[mlflow]'" in err, err
    assert not (tmp_path / "out").exists()
    with pytest.raises(MissingExtraError, match=r"clipstyle\[mlflow\]"):
        text_to_image("x", network="no-such-network", log=["tensorboard", "mlflow"])


@pytest.mark.parametrize("spec, needle", [("wandb", "unknown tracker 'wandb'"), ("mlflow:", "nothing after the colon"),
                                          ("tensorboard: ", "nothing after the colon")])
def test_bad_specs_are_usage_errors(net, tmp_path, capsys, spec, needle):
    code, out, err = run_cli(cli_args(net, tmp_path / "out", "--log", spec), capsys)
    assert code == 2 and needle in err and err.count("\n") == 1


def test_specs_parse():
    from clipstyle.tracking import LogSpec, parse_log_specs

    assert parse_log_specs(["tensorboard", "TensorBoard:runs/x", "mlflow:http://h:5000", "tensorboard"]) == (
        LogSpec("tensorboard"), LogSpec("tensorboard", "runs/x"), LogSpec("mlflow", "http://h:5000"))
    assert parse_log_specs(None) == () and parse_log_specs("mlflow") == (LogSpec("mlflow"),)


def test_a_batch_of_three_jobs_makes_three_grouped_runs(net, tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    from clipstyle.tracking import scalar_tag

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps({"id": f"job{i}", "prompt": p, "seed": i, "steps": 4, "cutouts": 2,
                                          "save_every": 2})
                              for i, p in enumerate(["a red face", "a blue face", "a green face"])))
    uri = (tmp_path / "mlruns").as_uri()
    code, out, err = run_cli(["batch", jobs, "--outdir", tmp_path / "show", "--network", net, "--clip-model", TINY_CLIP,
                              "--clip-pretrained", "none", "--device", "cpu", "-q",
                              "--log", f"tensorboard:{tmp_path / 'tb'}", "--log", f"mlflow:{uri}"], capsys)
    assert code == 0, err
    runs = sorted((tmp_path / "tb" / "show").iterdir())
    assert [p.name.rsplit("-", 2)[0] for p in runs] == ["job0", "job1", "job2"]
    for i, folder in enumerate(runs):
        history = json.loads((tmp_path / "show" / f"job{i}" / "run.json").read_text())["loss_history"]
        acc = event_reader(folder)
        for key in (k for k in history[0] if k != "step"):
            assert [(e.step, e.value) for e in acc.Scalars(scalar_tag(key))] == \
                [(h["step"], float(np.float32(h[key]))) for h in history], key
        assert [e.step for e in acc.Images("preview")] == [0, 2] and [e.step for e in acc.Images("result")] == [4]
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=uri)
    found = client.search_runs([client.get_experiment_by_name("clipstyle").experiment_id])
    assert sorted(r.info.run_name for r in found) == ["job0", "job1", "job2"]
    for r in found:
        assert r.data.tags["clipstyle.group"] == "show" and r.info.status == "FINISHED"
        assert {"result.png", "latents.npz", "run.json"} <= {a.path for a in client.list_artifacts(r.info.run_id)}


def test_project_logs_its_tuning_phase(net, tmp_path, capsys):
    from PIL import Image

    from clipstyle.tracking import scalar_tag

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    code, out, err = run_cli(["project", tmp_path / "photo.png", "--network", net, "--perceptual", "none",
                              "--steps", "3", "--tune", "--tune-steps", "2", "--save-every", "2", "--device", "cpu",
                              "-q", "--outdir", tmp_path / "out", "--log", f"tensorboard:{tmp_path / 'tb'}"], capsys)
    assert code == 0, err
    record = json.loads((Path(out.strip().splitlines()[-1]) / "run.json").read_text())
    acc = event_reader(only_child(tmp_path / "tb"))
    history = record["loss_history"]
    assert [(e.step, e.value) for e in acc.Scalars("loss/total")] == \
        [(h["step"], float(np.float32(h["loss"]))) for h in history]
    assert [e.step for e in acc.Scalars(scalar_tag("loss", "tune"))] == [0, 1]
    assert acc.Scalars("metrics/psnr")[0].value == pytest.approx(record["metrics"]["psnr"], rel=1e-6)


def test_adapt_logs_its_training(net, tmp_path, capsys):
    code, out, err = run_cli(["adapt", "--network", net, "--target", "pencil sketch", "--steps", "4", "--batch", "2",
                              "--clip-model", TINY_CLIP, "--clip-pretrained", "none", "--cutouts", "0", "--seeds", "0-1",
                              "--preview-every", "2", "--device", "cpu", "-q", "--outdir", tmp_path / "out",
                              "--log", f"tensorboard:{tmp_path / 'tb'}"], capsys)
    assert code == 0, err
    history = json.loads((Path(out.strip().splitlines()[-1]) / "run.json").read_text())["loss_history"]
    acc = event_reader(only_child(tmp_path / "tb"))
    assert [(e.step, e.value) for e in acc.Scalars("loss/total")] == \
        [(h["step"], float(np.float32(h["loss"]))) for h in history]
    assert [e.step for e in acc.Images("preview")] == [0, 2] and [e.step for e in acc.Images("result")] == [4]
