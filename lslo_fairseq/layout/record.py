"""The adapter layout: what must agree for LSLo weights to load into a model.

Every LSLo model holds its layout under :data:`LAYOUT_KEY` (UTF-8 JSON in a uint8 tensor, as the
frozen-base reference: :mod:`.json_buffer`; :func:`encode_layout`/:func:`decode_layout`);
:func:`layout_of` takes it from a config and :func:`layout_differences` names every differing field
with the flag that sets it.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch

from ..config import LSLoConfig
from . import json_buffer

LAYOUT_KEY = "lslo_layout"  # state-dict key of every LSLo model: the layout as UTF-8 JSON in a uint8 tensor
LAYOUT_FLAGS = {
    "languages": "--lslo-langs (or --lang-pairs/--langs)",
    "ranks": "--lslo-ranks/--lslo-lang-groups",
    "modules": "--lslo-modules",
    "encoder_index": "--lslo-encoder-index/--lslo-weight-learning",
    "decoder_index": "--lslo-decoder-index/--lslo-weight-learning",
    "adapter_shape": "--lslo-adapter-shape",
    "fc_offset": "--lslo-fc-offset",
    "alpha": "--lslo-alpha",
    "pivot": "--lslo-modular/--lslo-pivot",
    "token_ids": "--langs/--lang-dict (the language tokens' ids)",
}
# what a layout written before a field existed meant by its absence
LAYOUT_DEFAULTS = {"adapter_shape": "full", "fc_offset": 0, "alpha": None, "pivot": None, "token_ids": None}


def layout_of(cfg: LSLoConfig) -> Dict[str, list]:
    """The part of a config that fixes the adapters' meaning: language order (adapter rows), ranks,
    modules, per-layer indexes (``learned`` under weight learning), adapter shape and offset, and
    the alpha scale. Pruning and the initialisation are not part of it."""
    return dict(languages=list(cfg.languages), ranks=[int(r) for r in cfg.ranks], modules=list(cfg.modules),
                encoder_index=list(cfg.encoder_index), decoder_index=list(cfg.decoder_index),
                adapter_shape=cfg.adapter_shape, fc_offset=int(cfg.fc_offset), alpha=cfg.alpha,
                pivot=cfg.pivot, token_ids=None if cfg.token_ids is None else [int(t) for t in cfg.token_ids])


def layout_differences(theirs: Dict[str, list], ours: Dict[str, list], theirs_name: str,
                       ours_name: str = "this model") -> List[str]:
    """One line per differing field, naming the flag that sets it; empty when they agree."""
    out = []
    for key, flag in LAYOUT_FLAGS.items():
        a, b = theirs.get(key, LAYOUT_DEFAULTS.get(key)), ours.get(key, LAYOUT_DEFAULTS.get(key))
        if key == "token_ids" and (a is None or b is None):  # recorded since modular fine-tuning only
            continue
        if a != b:
            out.append(f"{key}: {a} in {theirs_name}, {b} in {ours_name} ({flag})")
    return out


def encode_layout(layout: dict) -> torch.Tensor:
    """The layout as the ``lslo_layout`` buffer (:func:`.json_buffer.encode`)."""
    return json_buffer.encode(layout)


def decode_layout(tensor: torch.Tensor) -> dict:
    """The layout an ``lslo_layout`` buffer holds."""
    return json_buffer.decode(tensor)


def layout_in(model_state: Dict[str, Any]) -> Optional[Dict]:
    """The ``lslo_layout`` a checkpoint's weights record (None when absent)."""
    t = model_state.get(LAYOUT_KEY)
    return None if t is None else decode_layout(t)
