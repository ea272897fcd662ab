"""One direction's LSLo update of each adapted matrix as plain LoRA factors (B, A), full shape.

For the direction src -> tgt every LSLo layer adds ``delta = sum_i B_i A_i`` to its weight
(``LSLoLinear.direction_weight`` and ``checkpoints.fold.folded_weights`` give the same sum, dense). The
pairs are the layer's mode's (``lslo_fairseq.modules.modes``), padded to the matrix's full shape:

- source- or target-indexed layer: one pair, that language's ``(scale_l B_l, A_l)``;
- weight learning (eq. 5): two pairs, ``(w_src scale B_src, A_src)`` and ``(w_tgt scale B_tgt, A_tgt)``;
  stacked they are one LoRA whose rank is the sum;
- the paper's sliced fc adapters: ``B`` gets zero rows outside the output slice (fc1), ``A`` zero
  columns outside the input slice (fc2), so the pair has the matrix's full shape;
- modular checkpoints (``--lslo-modular``), with the merge the model's router holds
  (:func:`..merging.apply_merge`: the pivot's directions (1, 0) / (0, 1), the others the merge weights
  (w_in, w_out) of the direction):

  - ``outputs`` (the follow-up's Setting 1, eq. 3): two pairs, ``(B_in[src], w_in scale A_in[src])``
    and ``(B_out[tgt], w_out scale A_out[tgt])``; stacked, the ranks add;
  - ``ab`` (Setting 2, eq. 4): one pair, ``B = sqrt(w_in) B_in[src] + sqrt(w_out) B_out[tgt]`` and
    ``A = sqrt(w_in) scale A_in[src] + sqrt(w_out) scale A_out[tgt]`` (equal ranks, hence equal
    scales, wherever both weights are > 0; the rank stays r);

  a bank whose weight is 0 (or whose language is the pivot, rank 0) contributes no pair (the
  factors the layer itself decodes a one-direction batch with);
- pruning masks are applied (``LSLoLinear.effective``) and every scale (alpha / r_l, the learned or
  merge weights) is folded into the factors: the LoRA needs no scaling (PEFT: lora_alpha = r).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List

import torch

from ..checkpoints.fold import lang_row

from ..modules.modes import Pair


def full_shape(layer, b: torch.Tensor, a: torch.Tensor) -> Pair:
    """A pair on the adapter's spans padded with zeros to the matrix's full shape (float64)."""
    out_f, in_f = layer.base_layer.weight.shape
    full_a = torch.zeros(a.shape[0], in_f, dtype=torch.float64)
    full_b = torch.zeros(out_f, b.shape[1], dtype=torch.float64)
    full_a[:, layer.in_span[0]:layer.in_span[1]] = a.double()
    full_b[layer.out_span[0]:layer.out_span[1]] = b.double()
    return full_b, full_a


@torch.no_grad()
def direction_factors(model, src: str, tgt: str) -> "OrderedDict[str, List[Pair]]":
    """fairseq module path of every LSLo layer -> the full-shape (B, A) pairs of its update for
    src -> tgt: its mode's factors (``LSLoLinear.direction_pairs``; a modular model: by the merge its
    router is configured with, see :func:`..merging.apply_merge`)."""
    cfg = model.lslo_config
    s, t = lang_row(cfg, src, "--directions (source)"), lang_row(cfg, tgt, "--directions (target)")
    return OrderedDict((path, [full_shape(layer, b, a) for b, a in layer.direction_pairs(s, t, torch.float64)])
                       for path, layer in model.lslo_layers.items())


def stacked(pairs: List[Pair]) -> Pair:
    """One LoRA of the summed rank: ``B = [B_1 B_2 ...]``, ``A = [A_1; A_2; ...]``."""
    return torch.cat([b for b, _ in pairs], 1), torch.cat([a for _, a in pairs], 0)


def direction_lora(model, src: str, tgt: str) -> Dict[str, Pair]:
    """fairseq module path -> one (B, A) per LSLo layer for src -> tgt; ``B @ A`` is the layer's update.
    A layer without any update for the direction (no pair: e.g. a modular layer whose only weighted bank
    is the pivot's, of rank 0) is left out."""
    return OrderedDict((path, stacked(pairs)) for path, pairs in direction_factors(model, src, tgt).items() if pairs)
