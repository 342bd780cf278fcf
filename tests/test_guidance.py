"""Tests for clipstyle.guidance with a tiny random open_clip model (tests/data/tiny_clip.json), CPU only."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from clipstyle.guidance import (
    CLIPGuide,
    CombinedLoss,
    CutoutConfig,
    Cutouts,
    DirectionalLoss,
    GuidanceError,
    ImagePromptLoss,
    KeepIdentity,
    LatentL2,
    PixelMSE,
    TextLoss,
    WeightedPrompt,
    build_prompt_loss,
    load_image_prompt,
    parse_prompts,
)

TINY = str(Path(__file__).parent / "data" / "tiny_clip.json")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@pytest.fixture(scope="module")
def guide() -> CLIPGuide:
    return CLIPGuide(TINY, pretrained=None)


def _smooth_image(size: int = 32, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A smooth random image in [-1, 1]: upsampled low-resolution noise."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, 3, 4, 4, generator=g) * 2 - 1
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def _optimize(loss, evaluate, x0: torch.Tensor, steps: int = 30, lr: float = 0.05) -> tuple[float, float]:
    """Adam on the pixels of x0 against `loss`; returns (before, after) of the deterministic `evaluate`."""
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    with torch.no_grad():
        before = float(evaluate(x0, None))
    for _ in range(steps):
        opt.zero_grad()
        loss(x, None).backward()
        opt.step()
    with torch.no_grad():
        after = float(evaluate(x, None))
    return before, after


# ---------------------------------------------------------------------------------------------- CLIPGuide
def test_guide_frozen_eval_normalized_and_differentiable(guide):
    assert guide.input_size == 32 and guide.embed_dim == 32
    assert not guide.model.training
    assert all(not m.training for m in guide.model.modules())
    assert all(not p.requires_grad for p in guide.model.parameters())

    x = _smooth_image(batch=2).requires_grad_(True)
    emb = guide.encode_image(x)
    assert emb.shape == (2, 32) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    emb[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in guide.model.parameters())
    assert guide.encode_image(_smooth_image(size=48)).shape == (1, 32)  # any input size is resized
    with pytest.raises(GuidanceError, match=r"\[N, 3, H, W\]"):
        guide.encode_image(torch.zeros(3, 32, 32))


def test_random_weights_are_reproducible_and_leave_global_rng_alone(guide):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    again = CLIPGuide(TINY, pretrained="none")
    torch.testing.assert_close(torch.rand(3), expected)  # building did not consume the caller's RNG
    for a, b in zip(guide.model.state_dict().values(), again.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    other = CLIPGuide(TINY, pretrained=None, init_seed=1)
    assert not torch.equal(other.model.visual.proj, guide.model.visual.proj)


def test_encode_text(guide):
    t = guide.encode_text(["a cat", "a dog", "a cat"])
    assert t.shape == (3, 32) and not t.requires_grad
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(t[0], t[2])
    assert not torch.allclose(t[0], t[1])
    with pytest.raises(GuidanceError):
        guide.encode_text([])


def test_preprocess_matches_manual_resize_and_normalize(guide):
    mean = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(guide.mean.cpu(), mean)
    torch.testing.assert_close(guide.std.cpu(), std)

    x = _smooth_image(size=80, batch=2) + 0.1 * torch.randn(2, 3, 80, 80, generator=torch.Generator().manual_seed(1))
    manual = F.interpolate((x + 1) / 2, size=(32, 32), mode="bicubic", align_corners=False, antialias=True)
    torch.testing.assert_close(guide.preprocess(x), (manual - mean) / std)
    # already at the model size: only normalization
    y = _smooth_image(size=32)
    torch.testing.assert_close(guide.preprocess(y), ((y + 1) / 2 - mean) / std)
    # a constant colour stays exactly that colour after resizing
    c = torch.tensor([-0.5, 0.0, 0.75]).view(1, 3, 1, 1).expand(1, 3, 50, 50)
    expected = (((c[:, :, :1, :1] + 1) / 2 - mean) / std).expand(1, 3, 32, 32)
    torch.testing.assert_close(guide.preprocess(c), expected)
    x.requires_grad_(True)
    guide.preprocess(x).square().sum().backward()
    assert x.grad.abs().sum() > 0


def test_preprocess_agrees_with_open_clip_pil_pipeline(guide):
    from open_clip.transform import PreprocessCfg, image_transform_v2

    yy, xx = np.mgrid[0:96, 0:128] / 95.0
    rgb = np.stack([np.sin(3 * xx) * 0.5 + 0.5, yy, xx * yy / 1.35], -1)
    u8 = (rgb.clip(0, 1) * 255).round().astype(np.uint8)  # non-square: shortest-side resize + center crop
    reference = image_transform_v2(PreprocessCfg(size=32), is_train=False)(Image.fromarray(u8)).unsqueeze(0)
    x = torch.from_numpy(u8).permute(2, 0, 1)[None].float() / 127.5 - 1
    ours = guide.preprocess(x)
    assert ours.shape == reference.shape == (1, 3, 32, 32)
    assert (ours - reference).abs().max() < 0.03


# ---------------------------------------------------------------------------------------------- errors
def test_unknown_model_name():
    pattern = r"^unknown CLIP model 'ViT-Q-99'; known: .*\(or pass a model-config \.json\)$"
    with pytest.raises(GuidanceError, match=pattern):
        CLIPGuide("ViT-Q-99", pretrained=None)


def test_missing_checkpoint_path(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(GuidanceError, match=r"CLIP checkpoint not found: .*nope\.pt"):
        CLIPGuide(TINY, pretrained=str(missing))
    with pytest.raises(GuidanceError, match=r"CLIP checkpoint not found: .*nope\.pt"):
        CLIPGuide("ViT-B-32", pretrained=str(missing))


def test_bad_pretrained_tags_and_configs(tmp_path):
    pattern = r"unknown pretrained tag 'bogus' for CLIP model 'ViT-B-32'; known tags: .*openai"
    with pytest.raises(GuidanceError, match=pattern):
        CLIPGuide("ViT-B-32", pretrained="bogus")
    with pytest.raises(GuidanceError, match=r"cannot be used with a model-config JSON.*--clip-pretrained"):
        CLIPGuide(TINY, pretrained="openai")
    with pytest.raises(GuidanceError, match=r"CLIP model config not found"):
        CLIPGuide(str(tmp_path / "missing.json"), pretrained=None)
    bad = tmp_path / "bad.json"
    bad.write_text('{"embed_dim": 8}')
    with pytest.raises(GuidanceError, match=r"not an open_clip model config"):
        CLIPGuide(str(bad), pretrained=None)


def test_offline_tag_gives_one_line_error(tmp_path, monkeypatch):
    import open_clip

    def offline(*args, **kwargs):
        raise FileNotFoundError("Failed to download file\nName or service not known")

    monkeypatch.setattr(open_clip, "download_pretrained", offline)
    with pytest.raises(GuidanceError) as info:
        CLIPGuide("ViT-B-32", pretrained="openai", cache_dir=str(tmp_path))  # empty cache → must download
    msg = str(info.value)
    assert "\n" not in msg and "'openai'" in msg and "--clip-pretrained" in msg


def test_cached_tag_is_used_without_download(guide, tmp_path, monkeypatch):
    import open_clip

    # a Hugging Face cache holding the weights of ViT-B-32/openai (hf_hub "timm/vit_base_patch32_clip_224.openai/")
    repo = tmp_path / "models--timm--vit_base_patch32_clip_224.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    weights = repo / "snapshots" / "abc123" / "open_clip_model.safetensors"
    weights.parent.mkdir(parents=True)
    from safetensors.torch import save_file

    save_file({"stand_in": torch.zeros(1)}, str(weights))  # a valid file: cached weights pass the checks too
    calls = {}

    def no_download(*args, **kwargs):
        raise AssertionError("must not download a cached tag")

    def fake_create_model(name, pretrained=None, **kwargs):
        calls.update(name=name, pretrained=pretrained, **kwargs)
        return guide.model  # building ViT-B-32 itself is too slow for a unit test

    monkeypatch.setattr(open_clip, "download_pretrained", no_download)
    monkeypatch.setattr(open_clip, "create_model", fake_create_model)
    CLIPGuide("ViT-B-32", pretrained="openai", cache_dir=str(tmp_path))
    assert calls["name"] == "ViT-B-32" and Path(calls["pretrained"]).resolve() == weights.resolve()
    assert calls["force_quick_gelu"] is True  # the OpenAI weights were trained with QuickGELU
    assert calls["force_preprocess_cfg"]["mean"] == pytest.approx(OPENAI_MEAN)


def test_local_checkpoint_roundtrip_and_mismatch(guide, tmp_path):
    ckpt = tmp_path / "tiny.pt"
    torch.save(guide.model.state_dict(), ckpt)
    loaded = CLIPGuide(TINY, pretrained=str(ckpt))
    x = _smooth_image()
    torch.testing.assert_close(loaded.encode_image(x), guide.encode_image(x))
    torch.testing.assert_close(loaded.encode_text(["hello"]), guide.encode_text(["hello"]))

    wrong = tmp_path / "wrong.pt"
    torch.save({"visual.proj": torch.zeros(3, 3)}, wrong)
    with pytest.raises(GuidanceError, match=r"could not load CLIP checkpoint"):
        CLIPGuide(TINY, pretrained=str(wrong))

    # a TorchScript archive (layout of OpenAI's original ViT-B-32.pt) is refused before any loading
    scripted = tmp_path / "ViT-B-32.pt"
    with zipfile.ZipFile(scripted, "w") as archive:
        archive.writestr("ViT-B-32/data.pkl", b"")
        archive.writestr("ViT-B-32/constants.pkl", b"")
        archive.writestr("ViT-B-32/code/__torch__/model.py", "")
    for model in (TINY, "ViT-B-32"):
        with pytest.raises(GuidanceError, match=r"TorchScript archive"):
            CLIPGuide(model, pretrained=str(scripted))


def test_guidance_imports_neither_generator_nor_open_clip_eagerly():
    code = (
        "import sys, clipstyle.guidance\n"
        "assert not any(m.startswith('clipstyle.generator') for m in sys.modules)\n"
        "assert 'open_clip' not in sys.modules\n"
    )
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


# ---------------------------------------------------------------------------------------------- cutouts
def test_cutouts_shape_and_sample_major_order():
    images = torch.arange(3, dtype=torch.float32).view(3, 1, 1, 1).expand(3, 3, 40, 40) / 3
    cut = Cutouts(CutoutConfig(num_cutouts=5, noise=0.0), cut_size=16)
    out = cut(images, torch.Generator().manual_seed(0))
    assert out.shape == (15, 3, 16, 16)
    for n in range(3):
        torch.testing.assert_close(out[n * 5 : (n + 1) * 5], torch.full((5, 3, 16, 16), n / 3))


def test_cutouts_content_matches_boxes():
    ramp = torch.linspace(-1, 1, 48).view(1, 1, 1, 48).expand(2, 3, 36, 48).clone()
    ramp[1] = -ramp[1]
    cut = Cutouts(CutoutConfig(num_cutouts=6, flip=True), cut_size=12)
    plan = cut.sample(36, 48, torch.Generator().manual_seed(3))
    out = cut.crop(ramp, plan).view(2, 6, 3, 12, 12)
    for k, box in enumerate(plan.boxes):
        ref = F.interpolate(
            ramp[:, :, box.top : box.top + box.size, box.left : box.left + box.size],
            size=(12, 12), mode="bilinear", align_corners=False, antialias=True,
        )
        if box.flip:
            ref = ref.flip(-1)
        torch.testing.assert_close(out[:, k], ref)
    assert any(b.flip for b in plan.boxes) and not all(b.flip for b in plan.boxes)


def test_cutouts_deterministic_with_seeded_generator():
    images = torch.rand(2, 3, 40, 40) * 2 - 1
    cut = Cutouts(CutoutConfig(num_cutouts=8, noise=0.1), cut_size=16)
    a = cut(images, torch.Generator().manual_seed(42))
    b = cut(images, torch.Generator().manual_seed(42))
    c = cut(images, torch.Generator().manual_seed(43))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


def test_cutouts_within_bounds_and_sizes():
    cfg = CutoutConfig(num_cutouts=200, min_size_frac=0.25, max_size_frac=0.75)
    cut = Cutouts(cfg, cut_size=8)
    h, w = 40, 24
    plan = cut.sample(h, w, torch.Generator().manual_seed(0))
    assert len(plan.boxes) == 200
    for b in plan.boxes:
        assert 6 <= b.size <= 18  # round(0.25 * 24) .. round(0.75 * 24)
        assert 0 <= b.top and b.top + b.size <= h
        assert 0 <= b.left and b.left + b.size <= w
    sizes = [b.size for b in plan.boxes]
    assert min(sizes) == 6 and max(sizes) == 18
    # cut_pow > 1 favours small crops
    mean_size = {}
    for p in (1.0, 3.0):
        boxes = Cutouts(CutoutConfig(200, cut_pow=p), 8).sample(h, w, torch.Generator().manual_seed(0)).boxes
        mean_size[p] = np.mean([b.size for b in boxes])
    assert mean_size[3.0] < mean_size[1.0] - 2
    # values stay within the input range (antialiased bilinear never overshoots)
    images = torch.rand(1, 3, h, w) * 2 - 1
    out = cut(images, torch.Generator().manual_seed(1))
    assert out.min() >= images.min() - 1e-6 and out.max() <= images.max() + 1e-6


def test_cutouts_zero_means_whole_image():
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    out = Cutouts(CutoutConfig(num_cutouts=0, noise=0.5), cut_size=32)(images)
    ref = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(out, ref)


def test_cutouts_noise_and_pairing():
    cut = Cutouts(CutoutConfig(num_cutouts=4, noise=0.2), cut_size=16)
    a_img, b_img = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    a, b = cut.paired(a_img, b_img, torch.Generator().manual_seed(5))
    plan = cut.sample(32, 32, torch.Generator().manual_seed(5))
    diff = cut.crop(a_img, plan) - cut.crop(b_img, plan)
    torch.testing.assert_close(a - b, diff)  # same boxes and the same noise on both
    assert not torch.allclose(a, cut.crop(a_img, plan))  # noise was added
    with pytest.raises(GuidanceError):
        cut.paired(a_img, b_img[:1])


@pytest.mark.parametrize(
    "kwargs",
    [dict(num_cutouts=-1), dict(min_size_frac=0.0), dict(min_size_frac=0.8, max_size_frac=0.5), dict(noise=-1)],
)
def test_cutout_config_validation(kwargs):
    with pytest.raises(GuidanceError):
        CutoutConfig(**kwargs)


# ---------------------------------------------------------------------------------------------- prompts
def test_parse_prompts_weights_negatives_and_images():
    assert parse_prompts("a castle") == [WeightedPrompt("a castle", None, 1.0)]
    assert parse_prompts(" a:1 | b:0.5 | c:-1 ") == [
        WeightedPrompt("a", None, 1.0),
        WeightedPrompt("b", None, 0.5),
        WeightedPrompt("c", None, -1.0),
    ]
    assert parse_prompts("@photo.png:0.5 | oil painting") == [
        WeightedPrompt(None, "photo.png", 0.5),
        WeightedPrompt("oil painting", None, 1.0),
    ]
    assert parse_prompts("@ my pics/a b.jpg") == [WeightedPrompt(None, "my pics/a b.jpg", 1.0)]
    assert parse_prompts("x : +2 | y:1e-1 | z:.5") == [
        WeightedPrompt("x", None, 2.0), WeightedPrompt("y", None, 0.1), WeightedPrompt("z", None, 0.5)
    ]


def test_parse_prompts_colons_in_text():
    assert parse_prompts("style: baroque") == [WeightedPrompt("style: baroque", None, 1.0)]
    assert parse_prompts("style: baroque:2") == [WeightedPrompt("style: baroque", None, 2.0)]
    assert parse_prompts("aspect 16:9:1") == [WeightedPrompt("aspect 16:9", None, 1.0)]
    assert parse_prompts(r"@C:\pics\cat.png") == [WeightedPrompt(None, r"C:\pics\cat.png", 1.0)]
    assert parse_prompts("a || b |") == [WeightedPrompt("a", None, 1.0), WeightedPrompt("b", None, 1.0)]
    assert parse_prompts("a:0 | b:1")[0].weight == 0.0


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "empty prompt"),
        ("   ", "empty prompt"),
        (" | | ", "empty prompt"),
        ("a:0 | b:0", "all prompt weights are zero"),
        (":0.5", "weight but no text"),
        ("@:1", "no file name"),
        ("a:inf", "finite"),
        ("a:nan", "finite"),
    ],
)
def test_parse_prompts_errors(spec, message):
    with pytest.raises(GuidanceError, match=message) as info:
        parse_prompts(spec)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------- losses
def _loss_pair(make, cfg=CutoutConfig(num_cutouts=8)):
    """(training loss with seeded random cutouts, deterministic whole-image evaluator)."""
    train = make(Cutouts(cfg, 32), torch.Generator().manual_seed(0))
    evaluate = make(Cutouts(CutoutConfig(num_cutouts=0), 32), None)
    return train, evaluate


def test_text_loss_decreases(guide):
    prompts = [WeightedPrompt("a red apple", None, 1.0)]
    train, evaluate = _loss_pair(lambda c, g: TextLoss(guide, prompts, c, generator=g))
    assert train.name == "clip"
    before, after = _optimize(train, evaluate, _smooth_image(seed=1))
    assert 0 <= after < before - 0.2, (before, after)


def test_text_loss_negative_weight_pushes_away(guide):
    prompts = [WeightedPrompt("a red apple", None, -1.0)]
    train, evaluate = _loss_pair(lambda c, g: TextLoss(guide, prompts, c, generator=g))
    before, after = _optimize(train, evaluate, _smooth_image(seed=2))
    assert after < before - 0.2, (before, after)  # loss = −distance: the distance grew
    positive = TextLoss(guide, ["a red apple"], Cutouts(CutoutConfig(num_cutouts=0), 32))
    x = _smooth_image(seed=2)
    torch.testing.assert_close(evaluate(x, None), -positive(x, None))


def test_text_loss_weighted_mean_of_prompts(guide):
    whole = Cutouts(CutoutConfig(num_cutouts=0), 32)
    x = _smooth_image(seed=3)
    da = TextLoss(guide, ["a"], whole)(x, None)
    db = TextLoss(guide, ["b"], whole)(x, None)
    both = TextLoss(guide, [WeightedPrompt("a", None, 1.0), WeightedPrompt("b", None, -0.5)], whole)(x, None)
    torch.testing.assert_close(both, (da - 0.5 * db) / 1.5)
    with pytest.raises(GuidanceError):
        TextLoss(guide, [WeightedPrompt(None, "x.png", 1.0)], whole)
    with pytest.raises(GuidanceError):
        TextLoss(guide, [WeightedPrompt("a", None, 0.0)], whole)


def test_image_prompt_loss_decreases(guide):
    target = _smooth_image(seed=10)
    train, evaluate = _loss_pair(lambda c, g: ImagePromptLoss(guide, target, None, c, generator=g))
    assert train.name == "image"
    x0 = -_smooth_image(seed=11)
    before, after = _optimize(train, evaluate, x0)
    assert after < 0.5 * before, (before, after)
    assert float(evaluate(target, None)) < 1e-5  # the target itself is at distance 0


def test_directional_loss_decreases(guide):
    x0 = _smooth_image(seed=4)
    train, evaluate = _loss_pair(lambda c, g: DirectionalLoss(guide, "a photo", "a red photo", x0, c, generator=g))
    assert train.name == "directional"
    torch.testing.assert_close(evaluate(x0, None), torch.tensor(1.0))  # x = x0: no change yet
    before, after = _optimize(train, evaluate, x0)
    assert after < before - 0.3, (before, after)
    with pytest.raises(GuidanceError, match="same CLIP embedding"):
        DirectionalLoss(guide, "a photo", "a photo", x0, Cutouts(CutoutConfig(), 32))


def test_directional_loss_gradient_bounded_at_start(guide):
    x0 = _smooth_image(seed=5)
    loss = DirectionalLoss(guide, "a photo", "a red photo", x0, Cutouts(CutoutConfig(num_cutouts=4), 32))
    x = x0.clone().requires_grad_(True)
    loss(x, None).backward()
    assert torch.isfinite(x.grad).all() and 0 < x.grad.abs().max() < 1e3


def test_keep_identity(guide):
    src = _smooth_image(seed=6)
    for cut in (None, Cutouts(CutoutConfig(num_cutouts=4), 32)):
        keep = KeepIdentity(guide, src, cut, generator=torch.Generator().manual_seed(0))
        assert keep.name == "keep"
        assert abs(float(keep(src, None))) < 1e-5
        assert float(keep(-src, None)) > 1e-3


def test_latent_l2_exact():
    ws0 = torch.randn(2, 4, 8)
    l2 = LatentL2(ws0)
    assert l2.name == "l2"
    assert float(l2(None, ws0.clone())) == 0.0
    offset = torch.zeros_like(ws0)
    offset[0, 1, :] = 0.5  # sample 0: 8 * 0.25 = 2.0
    offset[1] = 1.0  # sample 1: 32 * 1.0 = 32.0
    torch.testing.assert_close(l2(None, ws0 + offset), torch.tensor((2.0 + 32.0) / 2))
    ws = (ws0 + 0.1).requires_grad_(True)
    l2(None, ws).backward()
    torch.testing.assert_close(ws.grad, torch.full_like(ws, 0.1))  # d/dws mean_n Σ(ws−ws0)² = 2·0.1/N
    torch.testing.assert_close(LatentL2(ws0[:1])(None, ws0[:1].expand(3, 4, 8) + 1.0), torch.tensor(32.0))
    with pytest.raises(GuidanceError):
        l2(None, torch.zeros(2, 5, 8))


def test_pixel_mse():
    target = torch.zeros(1, 3, 4, 4)
    mse = PixelMSE(target)
    assert mse.name == "mse"
    torch.testing.assert_close(mse(torch.full((2, 3, 4, 4), 0.5), None), torch.tensor(0.25))
    with pytest.raises(GuidanceError):
        mse(torch.zeros(1, 3, 8, 8), None)


def test_combined_loss():
    ws0 = torch.zeros(1, 2, 3)
    target = torch.zeros(1, 3, 4, 4)
    images = torch.full((1, 3, 4, 4), 0.5)
    ws = torch.ones(1, 2, 3, requires_grad=True)
    terms = [(LatentL2(ws0), 0.5), (PixelMSE(target), 2.0), (PixelMSE(target), 1.0), (LatentL2(ws0), 0.0)]
    combined = CombinedLoss(terms)
    assert combined.names == ["l2", "mse", "mse_2"]
    total, parts = combined(images, ws)
    torch.testing.assert_close(total, torch.tensor(0.5 * 6.0 + 2.0 * 0.25 + 1.0 * 0.25))
    assert set(parts) == {"l2", "mse", "mse_2"}
    torch.testing.assert_close(parts["l2"], torch.tensor(6.0))
    assert not parts["l2"].requires_grad
    total.backward()
    assert ws.grad is not None
    with pytest.raises(GuidanceError):
        CombinedLoss([(PixelMSE(target), 0.0)])


# ---------------------------------------------------------------------------------------------- image prompts
def test_load_image_prompt(tmp_path):
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :, 0] = 255  # red
    arr[:, :10] = 0  # a black band on the left, cropped away by the center crop
    path = tmp_path / "red.png"
    Image.fromarray(arr).save(path)
    img = load_image_prompt(str(path), 16)
    assert img.shape == (1, 3, 16, 16) and img.dtype == torch.float32
    torch.testing.assert_close(img[0, 0], torch.ones(16, 16))
    torch.testing.assert_close(img[0, 1:], -torch.ones(2, 16, 16))

    with pytest.raises(GuidanceError, match="image prompt not found"):
        load_image_prompt(str(tmp_path / "missing.png"), 16)
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    with pytest.raises(GuidanceError, match="not a readable image"):
        load_image_prompt(str(junk), 16)


def test_build_prompt_loss(guide, tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(path)
    cut = Cutouts(CutoutConfig(num_cutouts=4), guide.input_size)
    terms = build_prompt_loss(guide, f"a:1 | @{path}:0.5 | c:-1", cut)
    assert [(t.name, w) for t, w in terms] == [("clip", pytest.approx(2 / 2.5)), ("image", pytest.approx(0.5 / 2.5))]
    total, parts = CombinedLoss(terms)(_smooth_image(), None)
    assert set(parts) == {"clip", "image"} and total.ndim == 0

    only_image = build_prompt_loss(guide, "", cut, image_prompt=str(path))
    assert [(t.name, w) for t, w in only_image] == [("image", 1.0)]
    both = build_prompt_loss(guide, "a", cut, image_prompt=str(path))
    assert [w for _, w in both] == [0.5, 0.5]
    with pytest.raises(GuidanceError, match="nothing to guide by"):
        build_prompt_loss(guide, "  ", cut)
    with pytest.raises(GuidanceError, match="image prompt not found"):
        build_prompt_loss(guide, "a | @missing.png", cut)
