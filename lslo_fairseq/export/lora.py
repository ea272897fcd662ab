"""One direction's LSLo update of each adapted matrix as plain LoRA factors (B, A), full shape.

For the direction src -> tgt every LSLo layer adds ``delta = sum_i B_i A_i`` to its weight
(``LSLoLinear.delta_weight`` and ``checkpoints.merge.merged_weights`` give the same sum, dense):

- source- or target-indexed layer: one pair, that language's ``(scale_l B_l, A_l)``;
- weight learning (eq. 5): two pairs, ``(w_src scale B_src, A_src)`` and ``(w_tgt scale B_tgt, A_tgt)``;
  stacked they are one LoRA whose rank is the sum;
- the paper's sliced fc adapters: ``B`` gets zero rows outside the output slice (fc1), ``A`` zero
  columns outside the input slice (fc2), so the pair has the matrix's full shape;
- pruning masks are applied (``LSLoLinear.effective``) and every scale (alpha / r_l, the learned
  weights) is folded into ``B``: the LoRA needs no scaling (PEFT: lora_alpha = r).

Modular checkpoints are the next case here (Setting 1 stacks the input and output adapters, Setting 2
is one pair); :func:`direction_factors` refuses them until then.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Tuple

import torch

from ..checkpoints.merge import lang_row
from ..config import LSLoConfigError

Pair = Tuple[torch.Tensor, torch.Tensor]  # (B: out x r, A: r x in)


def language_pair(layer, lang: int, bank: str, weight: float = 1.0) -> Pair:
    """Full-shape (B, A) of language row ``lang`` in ``bank`` (float64, masks and scales applied)."""
    lo, hi = layer.lang_columns(lang)
    a = layer.effective(layer.param_name("A", bank))[lo:hi].double()
    b = layer.effective(layer.param_name("B", bank))[:, lo:hi].double()
    out_f, in_f = layer.base_layer.weight.shape
    full_a = torch.zeros(hi - lo, in_f, dtype=torch.float64)
    full_b = torch.zeros(out_f, hi - lo, dtype=torch.float64)
    full_a[:, layer.in_span[0]:layer.in_span[1]] = a
    full_b[layer.out_span[0]:layer.out_span[1]] = b * (weight * layer.scale(lang))
    return full_b, full_a


@torch.no_grad()
def direction_factors(model, src: str, tgt: str) -> "OrderedDict[str, List[Pair]]":
    """fairseq module path of every LSLo layer -> the (B, A) pairs of its update for src -> tgt."""
    cfg = model.lslo_config
    if getattr(cfg, "modular", False):
        raise LSLoConfigError("--checkpoint: a modular (--lslo-modular) checkpoint: its PEFT export is not "
                              "implemented yet; use lslo-export merge for one direction")
    rows = {"src": lang_row(cfg, src, "--directions (source)"), "tgt": lang_row(cfg, tgt, "--directions (target)")}
    out: "OrderedDict[str, List[Pair]]" = OrderedDict()
    for path, layer in model.lslo_layers.items():
        if layer.index == "learned":
            w = layer.index_weights().double().tolist()
            out[path] = [language_pair(layer, rows[bank], bank, w[i]) for i, bank in enumerate(("src", "tgt"))]
        elif layer.index in rows:
            out[path] = [language_pair(layer, rows[layer.index], layer.index)]
        else:
            raise LSLoConfigError(f"--checkpoint: layer {path} has index {layer.index!r}, which the PEFT export "
                                  "does not handle")
    return out


def stacked(pairs: List[Pair]) -> Pair:
    """One LoRA of the summed rank: ``B = [B_1 B_2 ...]``, ``A = [A_1; A_2; ...]``."""
    return torch.cat([b for b, _ in pairs], 1), torch.cat([a for _, a in pairs], 0)


def direction_lora(model, src: str, tgt: str) -> Dict[str, Pair]:
    """fairseq module path -> one (B, A) per LSLo layer for src -> tgt; ``B @ A`` is the layer's update."""
    return OrderedDict((path, stacked(pairs)) for path, pairs in direction_factors(model, src, tgt).items())
