"""Test-suite settings.

The networks in tests are tiny (64² fixtures, a 32-px random CLIP): one intra-op thread runs them
fastest and keeps timings stable when the 2 cores are shared.
"""

import torch

torch.set_num_threads(1)
