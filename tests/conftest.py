"""Test-suite settings and the tiny models every workflow test runs on.

The networks in tests are tiny (32² generators, a 32-px random CLIP, IR-SE50 layouts of widths 4–16): one
intra-op thread runs them fastest and keeps timings stable when the 2 cores are shared.

Session fixtures (built in code, seeded, written once per session to a temp folder; see ``tests/_tiny.py``):

==========================  ========================================================================
``tiny_G``                  a 32² StyleGAN2 (w_dim 32, num_ws 8), eval, frozen, CPU
``tiny_network_path``       that generator as ``tiny_sg2.safetensors`` (what ``--network`` reads)
``tiny_sg3_path``           a 32² StyleGAN3-T as ``tiny_sg3.safetensors`` (``tiny_sg3_r_path``: config R)
``tiny_sg1_path``           a 32² StyleGAN1 as ``tiny_sg1.safetensors``
``tiny_clip_config``        ``tests/data/tiny_clip.json`` (use with ``clip_pretrained="none"``)
``tiny_guide``              that CLIP loaded once (a ``CLIPGuide``)
``tiny_e4e_path``           an e4e checkpoint (released layout) whose decoder is ``tiny_G``
``tiny_arcface_path``       ArcFace IR-SE50 weights (``model_ir_se50.pth`` layout, zip container)
==========================  ========================================================================

Networks are read back from the written files (``tiny_G`` excepted), so a test that writes to its model
cannot leak into another: fixtures hand out paths, and a loaded model is frozen.
"""

from __future__ import annotations

import pytest
import torch

from . import _tiny

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """The session's folder of tiny model files."""
    return tmp_path_factory.mktemp("tiny_models")


@pytest.fixture(scope="session")
def tiny_G():
    """A fresh-per-session 32² StyleGAN2 (frozen; do not modify it in place)."""
    return _tiny.tiny_sg2()


@pytest.fixture(scope="session")
def tiny_network_path(tiny_dir, tiny_G):
    """Path (``Path``) of ``tiny_G`` saved as clipstyle safetensors."""
    return _tiny.save_tiny_network(tiny_G, tiny_dir / "tiny_sg2.safetensors")


@pytest.fixture(scope="session")
def tiny_sg3_path(tiny_dir):
    """Path of a 32² StyleGAN3-T (num_ws 8) saved as clipstyle safetensors."""
    return _tiny.save_tiny_network(_tiny.tiny_sg3(), tiny_dir / "tiny_sg3.safetensors")


@pytest.fixture(scope="session")
def tiny_sg3_r_path(tiny_dir):
    """Path of a 32² StyleGAN3-R (radial filters, 1×1 convs) saved as clipstyle safetensors."""
    return _tiny.save_tiny_network(_tiny.tiny_sg3(seed=1, radial=True), tiny_dir / "tiny_sg3_r.safetensors")


@pytest.fixture(scope="session")
def tiny_sg1_path(tiny_dir):
    """Path of a 32² StyleGAN1 saved as clipstyle safetensors."""
    return _tiny.save_tiny_network(_tiny.tiny_sg1(), tiny_dir / "tiny_sg1.safetensors")


@pytest.fixture(scope="session")
def tiny_clip_config():
    """Path (``str``) of the tiny open_clip config; pass ``clip_pretrained="none"`` (random weights)."""
    return _tiny.TINY_CLIP


@pytest.fixture(scope="session")
def tiny_guide():
    """The tiny CLIP as a :class:`~clipstyle.guidance.clip.CLIPGuide` (random weights of ``init_seed`` 0: the
    model ``clip_model=TINY_CLIP, clip_pretrained="none"`` builds), loaded once per session."""
    from clipstyle.guidance.clip import CLIPGuide

    return CLIPGuide(_tiny.TINY_CLIP, None)


@pytest.fixture(scope="session")
def tiny_e4e_path(tiny_dir, tiny_G):
    """Path of a tiny e4e checkpoint (``e4e_ffhq_encode.pt`` layout, zip container) decoding with ``tiny_G``."""
    path = tiny_dir / "tiny_e4e.pt"
    torch.save(_tiny.e4e_checkpoint(tiny_G), path)
    return path


@pytest.fixture(scope="session")
def tiny_arcface_path(tiny_dir):
    """Path of tiny ArcFace IR-SE50 weights (``model_ir_se50.pth`` layout, zip container)."""
    path = tiny_dir / "tiny_arcface.pth"
    torch.save(_tiny.arcface_state(), path)
    return path
