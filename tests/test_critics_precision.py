"""LPIPS, ArcFace and e4e run in the loop's precision (model_autocast inside model_precision) and still
hand float32 back; outside model_precision they are untouched float32 (issue 22)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clipstyle.optimize.precision import model_precision


def _conv_dtypes(module: torch.nn.Module) -> tuple[list[torch.dtype], list]:
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.dtype)) for m in module.modules()
             if isinstance(m, torch.nn.Conv2d)]
    return seen, hooks


def _twice(module, call):
    """``call()`` in fp32 and under bf16 ``model_precision``: (outputs, dtypes its convolutions returned)."""
    out = {}
    for mode in ("fp32", "bf16"):
        seen, hooks = _conv_dtypes(module)
        try:
            with model_precision(mode, "cpu"):
                out[mode] = call()
        finally:
            for h in hooks:
                h.remove()
        out[mode + "_convs"] = set(seen)
    return out


def test_lpips_runs_its_vgg_in_bf16_and_returns_float32():
    from clipstyle.inversion.lpips import LPIPS, CHANNELS, build_vgg16_features

    torch.manual_seed(0)
    features = build_vgg16_features()
    lp = LPIPS({f"features.{k}": v for k, v in features.state_dict().items()},
               {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(CHANNELS)})
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    out = _twice(lp, lambda: lp(x, y))
    assert out["fp32_convs"] == {torch.float32} and out["bf16_convs"] == {torch.bfloat16}
    assert out["bf16"].dtype == torch.float32
    torch.testing.assert_close(out["bf16"], out["fp32"], rtol=0.05, atol=1e-3)


def test_arcface_runs_in_bf16_and_returns_unit_float32_embeddings(tiny_arcface_path):
    from clipstyle.encoders.arcface import load_face_identity

    ident = load_face_identity(tiny_arcface_path)
    faces = torch.rand(3, 3, 112, 112, generator=torch.Generator().manual_seed(2)) * 2 - 1
    out = _twice(ident, lambda: ident.embed(faces))
    assert out["fp32_convs"] == {torch.float32} and out["bf16_convs"] == {torch.bfloat16}
    assert out["bf16"].dtype == torch.float32
    torch.testing.assert_close(out["bf16"].norm(dim=1), torch.ones(3), rtol=0, atol=1e-6)
    assert F.cosine_similarity(out["bf16"], out["fp32"]).min() > 0.99


def test_e4e_runs_in_bf16_and_returns_float32_ws(tiny_e4e_path):
    from clipstyle.encoders.e4e import load_encoder

    enc = load_encoder(tiny_e4e_path)
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1
    out = _twice(enc, lambda: enc(images))
    assert out["fp32_convs"] == {torch.float32} and out["bf16_convs"] == {torch.bfloat16}
    assert out["bf16"].dtype == torch.float32
    err = (out["bf16"] - out["fp32"]).norm() / out["fp32"].norm()
    assert err < 0.02, err
