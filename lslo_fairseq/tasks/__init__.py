"""Tasks: ``translation_multi_simple_epoch_lslo``."""
from .translation_lslo import TranslationMultiSimpleEpochLSLoTask  # noqa: F401
