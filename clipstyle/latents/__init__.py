"""Latents: the optimized :class:`Latent`, block sets, seeds → z → w, latent files, and the tools
that work on ``ws`` (constraints, styleblocks, interpolation, directions)."""

from clipstyle.latents.latent import (
    BlockSpecError,
    Latent,
    LatentFile,
    LatentFileError,
    load_latents,
    parse_blocks,
    save_latents,
    seed_z,
    start_ws,
)

__all__ = ["BlockSpecError", "Latent", "LatentFile", "LatentFileError", "load_latents", "parse_blocks",
           "save_latents", "seed_z", "start_ws"]
