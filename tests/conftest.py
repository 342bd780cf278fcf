"""Test-suite settings and the tiny models every workflow test runs on.

The networks in tests are tiny (64² generators, w_dim 64, a 32-px random CLIP, IR-SE50 layouts of widths 4–16): one
intra-op thread runs them fastest and keeps timings stable when the 2 cores are shared.

Session fixtures (built in code, seeded, written once per session to a temp folder; see ``tests/_tiny.py``,
whose ``network_file(kind)``, ``e4e_file()``, ``arcface_file()`` give the same paths to plain helpers):

==========================  ========================================================================
``tiny_G``                  a 64² StyleGAN2 (w_dim 64, num_ws 10), eval, frozen, CPU
``tiny_network_path``       that generator as ``tiny_sg2.safetensors`` (what ``--network`` reads)
``tiny_sg3_path``           a 64² StyleGAN3-T as ``tiny_sg3.safetensors`` (``tiny_sg3_r_path``: config R)
``tiny_sg1_path``           a 64² StyleGAN1 as ``tiny_sg1.safetensors``
``tiny_clip_config``        ``tests/data/tiny_clip.json`` (use with ``clip_pretrained="none"``)
``tiny_guide``              that CLIP loaded once (a ``CLIPGuide``)
``tiny_e4e_path``           an e4e checkpoint (released layout) whose decoder is ``tiny_G``
``tiny_arcface_path``       ArcFace IR-SE50 weights (``model_ir_se50.pth`` layout, zip container)
==========================  ========================================================================

Networks are read back from the written files (``tiny_G`` excepted), so a test that writes to its model
cannot leak into another: fixtures hand out paths, and a loaded model is frozen.
"""

from __future__ import annotations

import gc

import pytest
import torch

from . import _tiny

torch.set_num_threads(1)


def pytest_runtest_teardown(item, nextitem):
    """After each test module, collect once and freeze what survives (modules, session models, pytest's
    reports): the collector then stops rescanning it at every later collection, which made the last
    third of the default run 2–3× slower than the same tests alone."""
    if nextitem is None or nextitem.module is not item.module:
        gc.collect()
        gc.freeze()


@pytest.fixture(scope="session")
def tiny_G():
    """A 64² StyleGAN2 (w_dim 64, num_ws 10), the one ``tiny_network_path`` holds; frozen, do not modify it."""
    return _tiny.tiny_sg2()


@pytest.fixture(scope="session")
def tiny_network_path():
    """Path (``Path``) of the tiny StyleGAN2 as clipstyle safetensors."""
    return _tiny.network_file("sg2")


@pytest.fixture(scope="session")
def tiny_sg3_path():
    """Path of a 64² StyleGAN3-T (num_ws 8) as clipstyle safetensors."""
    return _tiny.network_file("sg3")


@pytest.fixture(scope="session")
def tiny_sg3_r_path():
    """Path of a 64² StyleGAN3-R (radial filters, 1×1 convs) as clipstyle safetensors."""
    return _tiny.network_file("sg3r")


@pytest.fixture(scope="session")
def tiny_sg1_path():
    """Path of a 64² StyleGAN1 as clipstyle safetensors."""
    return _tiny.network_file("sg1")


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
def tiny_e4e_path():
    """Path of a tiny e4e checkpoint (``e4e_ffhq_encode.pt`` layout, zip container) decoding with ``tiny_G``."""
    return _tiny.e4e_file()


@pytest.fixture(scope="session")
def tiny_arcface_path():
    """Path of tiny ArcFace IR-SE50 weights (``model_ir_se50.pth`` layout, zip container)."""
    return _tiny.arcface_file()
