"""notebooks/quickstart.ipynb runs end to end (nbclient) with a tiny random network and the tiny random CLIP.

The parameters are injected after the notebook's first cell (the parameters cell), as papermill does; any
cell error fails the test. The committed notebook carries no outputs.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from ._cli import TINY_CLIP

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"


def test_the_notebook_is_committed_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and "NETWORK =" in code[0].source and "CLIP_MODEL =" in code[0].source and "PHOTO =" in code[0].source
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def tiny_networks(folder: Path) -> tuple[Path, Path]:
    """Two random 32² StyleGAN2s of one architecture (A and a blending partner B), in clipstyle's native format."""
    import torch

    from clipstyle.generator.formats.native import save_native
    from clipstyle.generator.stylegan2 import StyleGAN2Config, StyleGAN2Generator

    config = StyleGAN2Config(z_dim=32, w_dim=32, c_dim=0, img_resolution=32, img_channels=3, channels=(16,) * 4)
    paths = []
    for seed, name in ((0, "a"), (1, "b")):
        torch.manual_seed(seed)
        paths.append(save_native(StyleGAN2Generator(config), folder / f"tiny-{name}.safetensors"))
    return paths[0], paths[1]


@pytest.mark.slow
def test_the_notebook_runs_end_to_end(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    net_a, net_b = tiny_networks(tmp_path)
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    align = all(importlib.util.find_spec(m) is not None for m in ("dlib", "face_recognition_models"))
    params = dict(NETWORK=str(net_a), NETWORK_B=str(net_b), CLIP_MODEL=TINY_CLIP, CLIP_PRETRAINED="none",
                  PHOTO=str(photo), ALIGN=align, PERCEPTUAL="none", STEPS=3, PROJECT_STEPS=3, EDIT_STEPS=3,
                  DIRECTION_STEPS=2, BLEND_AT=16, FRAMES=3, CUTOUTS=2, DEVICE="cpu", OUT=str(tmp_path / "out"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    injected = nbformat.v4.new_code_cell("# injected by tests/test_notebook.py\n"
                                         + "\n".join(f"{k} = {v!r}" for k, v in params.items()))
    nb.cells.insert(1 + next(i for i, c in enumerate(nb.cells) if c.cell_type == "code"), injected)
    root = str(NOTEBOOK.parent.parent)  # the kernel imports this checkout's clipstyle
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    outs = tmp_path / "out"
    assert (outs / "a-smiling-woman-with-curly-red-hair" / "result.png").is_file()
    assert any(p.name.startswith("interpolate") and (p / "interpolation.gif").is_file() for p in outs.iterdir())
    if importlib.util.find_spec("tensorboard") is not None:  # the tracking cell logs only with the extra
        assert any((outs / "runs").glob("*/events.out.tfevents.*"))
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 7  # text, edit, styleblocks, mix, blend ×2, direction (+ the GIF)
