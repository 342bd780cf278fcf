"""Keep freed memory in the process for reuse (glibc): large CPU tensors then cost no page faults.

A step allocates and frees the same large activations again and again (a 512-channel 148² StyleGAN3
feature map is 45 MB). glibc's ``malloc`` serves every block above its mmap threshold (128 KB to 32 MB,
adaptive) with a fresh ``mmap`` and returns it with ``munmap`` on free, so each new tensor is zero pages
that fault in on first write: on the 2-core development machine an out-of-place multiply of a
``[1, 512, 306, 306]`` tensor took 66 ms, of which 48 were page faults (18 ms from the heap).
:func:`keep_freed_memory` makes ``malloc`` serve everything from its heap and never trim it, so freed
blocks are reused warm. Measured (benchmarks/README.md): the SG2-256 generator step 1.04 → 0.87 s,
SG3-T-256 6.6 → 5.1 s, fp32.

The cost: memory freed after the peak stays with the process (its resident size stays at the peak
instead of falling back), which is what a one-job process such as the CLI, the UI server or a batch
worker wants. The front ends call it once at start; Python API users may call it themselves. A
process-wide setting of the C library, so it is a function a program's entry point calls — nothing in
clipstyle's import calls it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1   # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Tell glibc's ``malloc`` to serve all blocks from its heap (``M_MMAP_MAX = 0``) and not to give the
    heap's free top back to the system below 2 GB (``M_TRIM_THRESHOLD``); see the module docstring.

    Returns:
        ``True`` when both settings took; ``False`` where there is no glibc (macOS, Windows, musl) —
        nothing changes there. Idempotent; never raises.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        if not hasattr(libc, "gnu_get_libc_version"):  # musl has mallopt as a no-op stub
            return False
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
