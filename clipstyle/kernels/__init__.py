"""Custom ops of the generators: a pure-PyTorch reference (the source of truth) for each, and a
CUDA version built lazily with ninja on first CUDA use (never at import).

Every op takes ``impl="auto" | "ref" | "cuda"``; ``CLIPSTYLE_KERNELS`` overrides it for a whole run.
"""

from .bias_act import bias_act
from .upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = ["bias_act", "upfirdn2d", "setup_filter", "upsample2d", "downsample2d", "filter2d"]
