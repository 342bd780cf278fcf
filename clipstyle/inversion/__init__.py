"""Projection of photos into W / W+, W→Z inversion of the mapping network, and editing projected photos.

* :func:`project` — the StyleGAN2 projector (Karras et al. 2020, Appendix D) with LPIPS/MSE and noise maps.
* :func:`invert_mapping` — z for a given w (algebraic inverse of the mapping MLP + Levenberg–Marquardt).
* :func:`edit` — StyleCLIP-style latent optimization with the directional CLIP loss.
* :class:`LPIPS` / :func:`load_lpips` — the perceptual distance of Zhang et al. 2018 on VGG16.
"""

from clipstyle.inversion.edit import EditConfig, EditResult, edit
from clipstyle.inversion.lpips import LPIPS, LPIPSWeightsError, load_lpips
from clipstyle.inversion.mapping_inverse import (
           MappingInversion,
           invert_mapping,
           mapping_residual,
)
from clipstyle.inversion.project import (
           ProjectConfig,
           ProjectionResult,
           project,
           psnr,
           w_statistics,
)

__all__ = ["ProjectConfig", "ProjectionResult", "project", "psnr", "w_statistics", "MappingInversion",
           "invert_mapping", "mapping_residual", "LPIPS", "LPIPSWeightsError", "load_lpips", "EditConfig",
           "EditResult", "edit"]
