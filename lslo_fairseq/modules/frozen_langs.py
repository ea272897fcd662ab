"""``--lslo-train-langs``: only some languages' adapters train; every other tensor stays bitwise
unchanged.

Language ``l``'s adapter is a block of every LSLo tensor: rows [o_l, o_l + r_l) of ``lora_A`` and the
same columns of ``lora_B`` (every bank). Two guards keep the other blocks fixed:

- a gradient hook multiplies each adapter tensor's gradient by a 0/1 mask of the trained blocks, so
  frozen blocks get a zero gradient (gradient clipping and Adam see only the trained languages);
- around each optimizer step, the frozen blocks are saved and written back, so that neither weight
  decay nor optimizer state from an earlier run can move them.

The base is frozen anyway; weight-learning logits (shared by all languages) are frozen as well.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor

from ..layout.languages import rank_axis
from .lslo_linear import LSLoLinear


class FrozenLanguages:
    """The frozen blocks of every adapter tensor of ``layers``, for the languages not in
    ``train_langs`` (``languages`` gives the adapter row order)."""

    def __init__(self, layers: Dict[str, LSLoLinear], languages: Sequence[str], train_langs: Sequence[str]):
        self.entries: List[Tuple[Tensor, Tensor]] = []  # (parameter, mask of its trained blocks)
        for lslo in layers.values():
            keep = torch.zeros(lslo.offsets[-1], dtype=torch.bool)
            for row, lang in enumerate(languages):
                if lang in train_langs:
                    lo, hi = lslo.lang_columns(row)
                    keep[lo:hi] = True
            for name in lslo.param_names():
                param = lslo.raw(name)
                mask = keep.view(-1, 1) if rank_axis(name) == 0 else keep.view(1, -1)
                mask = mask.to(device=param.device)
                param.register_hook(lambda g, m=mask: g * m.to(g.dtype))
                self.entries.append((param, mask))

    @torch.no_grad()
    def save(self) -> List[Tensor]:
        """A copy of every adapter tensor's frozen blocks (its trained blocks zeroed)."""
        return [param.detach().masked_fill(mask.expand_as(param), 0) for param, mask in self.entries]

    @torch.no_grad()
    def restore(self, saved: List[Tensor]) -> None:
        """Write the saved frozen blocks back; the trained blocks keep their new values."""
        for (param, mask), old in zip(self.entries, saved):
            param.data.copy_(torch.where(mask.expand_as(param), param.data, old))
