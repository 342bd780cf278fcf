"""CLIP runs sequence-first (clipstyle.guidance.layout): the same embeddings and gradients as open_clip's
batch-first default, on a tiny open_clip ViT built from a config in the test."""

from __future__ import annotations

import copy

import torch


def test_the_guide_runs_its_transformers_sequence_first(tiny_guide):
    from open_clip.transformer import Transformer

    transformers = [m for m in tiny_guide.model.modules() if isinstance(m, Transformer)]
    assert len(transformers) == 2  # the image tower's and the text tower's
    assert all(not t.batch_first and not t.resblocks[0].attn.batch_first for t in transformers)


def test_sequence_first_gives_the_batch_first_numbers_forward_and_backward(tiny_guide):
    from clipstyle.guidance.layout import use_sequence_first

    seq = tiny_guide.model
    batch = copy.deepcopy(seq)
    for m in batch.modules():  # back to open_clip's default layout
        if hasattr(m, "batch_first"):
            m.batch_first = True
    assert use_sequence_first(copy.deepcopy(batch)) == 2
    assert use_sequence_first(seq) == 0  # idempotent
    g = torch.Generator().manual_seed(0)
    size = tiny_guide.input_size
    x = torch.randn(3, 3, size, size, generator=g)
    tokens = tiny_guide.tokenizer(["a face", "a smiling face with green eyes"])
    outs, grads = [], []
    for model in (batch, seq):
        xi = x.clone().requires_grad_(True)
        img = model.encode_image(xi)
        (img * torch.linspace(-1, 1, img.shape[-1])).sum().backward()
        outs.append((img.detach(), model.encode_text(tokens).detach()))
        grads.append(xi.grad)
    for a, b in zip(outs[0], outs[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)
