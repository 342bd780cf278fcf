"""StyleGAN2 and StyleGAN3 generators, their checkpoint readers and the pretrained registry."""

from clipstyle.generator.base import Generator, SourceInfo, group_of_resolution
from clipstyle.generator.formats.common import CheckpointError
from clipstyle.generator.formats.safe_pickle import (
           CorruptPickleError,
           UnsafePickleError,
)
from clipstyle.generator.loader import load_generator, read_generator_file

__all__ = ["Generator", "SourceInfo", "group_of_resolution", "load_generator", "read_generator_file",
           "CheckpointError", "CorruptPickleError", "UnsafePickleError"]
