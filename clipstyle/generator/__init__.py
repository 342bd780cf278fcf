"""StyleGAN2 and StyleGAN3 generators, their checkpoint readers and the pretrained registry."""

from .base import Generator, SourceInfo, group_of_resolution
from .loader import load_generator, read_generator_file
from .nvidia import CheckpointError
from .safe_pickle import CorruptPickleError, UnsafePickleError

__all__ = ["Generator", "SourceInfo", "group_of_resolution", "load_generator", "read_generator_file",
           "CheckpointError", "CorruptPickleError", "UnsafePickleError"]
