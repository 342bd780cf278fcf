"""clipstyle: text-guided image generation and editing with CLIP and StyleGAN2/StyleGAN3.

Importing this package is cheap: it imports neither torch-heavy modules nor builds any CUDA code.
The public API is loaded on first use::

    import clipstyle
    G = clipstyle.load_generator("ffhq")            # or a path / file:// / https:// URL
    ws = G.mapping(z, None, truncation_psi=0.7)     # [N, num_ws, w_dim]
    img = G.synthesis(ws, noise_mode="const")       # [N, 3, H, W] in [-1, 1]
    run = clipstyle.text_to_image("a smiling child", steps=100, seed=42)   # a Run: .image, .ws, .save(outdir)
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "load_generator": ("clipstyle.generator.loader", "load_generator"),
    "read_generator_file": ("clipstyle.generator.loader", "read_generator_file"),
    "Generator": ("clipstyle.generator.base", "Generator"),
    "Latent": ("clipstyle.latents", "Latent"),
    "load_latents": ("clipstyle.latents", "load_latents"),
    "save_latents": ("clipstyle.latents", "save_latents"),
    "parse_blocks": ("clipstyle.latents", "parse_blocks"),
    "text_to_image": ("clipstyle.pipelines.text", "text_to_image"),
    "align": ("clipstyle.pipelines.align", "align"),
    "encode": ("clipstyle.pipelines.photo", "encode"),
    "project": ("clipstyle.pipelines.photo", "project"),
    "edit": ("clipstyle.pipelines.photo_edit", "edit"),
    "invert_z": ("clipstyle.pipelines.photo_edit", "invert_z"),
    "styleblocks": ("clipstyle.pipelines.creative", "styleblocks"),
    "mix_grid": ("clipstyle.pipelines.creative", "mix_grid"),
    "interpolate": ("clipstyle.pipelines.creative", "interpolate"),
    "render": ("clipstyle.pipelines.creative", "render"),
    "generate": ("clipstyle.pipelines.creative", "generate"),
    "blend": ("clipstyle.pipelines.creative", "blend"),
    "direction_apply": ("clipstyle.pipelines.directions", "direction_apply"),
    "direction_learn": ("clipstyle.pipelines.directions", "direction_learn"),
    "direction_from_text": ("clipstyle.pipelines.directions", "direction_from_text"),
    "WORKFLOWS": ("clipstyle.workflows.registry", "WORKFLOWS"),
    "ModelCache": ("clipstyle.workflows.models", "ModelCache"),
    "Run": ("clipstyle.pipelines.run", "Run"),
    "load_encoder": ("clipstyle.encoders.e4e", "load_encoder"),
    "load_face_identity": ("clipstyle.encoders.arcface", "load_face_identity"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'clipstyle' has no attribute {name!r}")
