"""Models: ``lslo_transformer``."""
from .lslo_transformer import LSLoTransformerModel  # noqa: F401
