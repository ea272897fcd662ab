"""Which state-dict keys are LSLo's: the trained adapter tensors, and with them the layout buffer."""
from __future__ import annotations

from .record import LAYOUT_KEY


def is_adapter_key(key: str) -> bool:
    """A trained LSLo tensor of a state dict: ``lora_A``/``lora_B`` (and ``_src``/``_tgt`` banks,
    ``_mask`` buffers) and the weight-learning logits."""
    return key.rsplit(".", 1)[-1].startswith("lora_") or key.endswith("lslo_index_weights.logits")


def is_lslo_key(key: str) -> bool:
    """Anything a plain transformer does not have: the adapter tensors and the layout buffer."""
    return is_adapter_key(key) or key == LAYOUT_KEY
