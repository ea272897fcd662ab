"""The three LSLo modes as variants of one small interface (as PEFT's ``LoraVariant``).

A mode says which adapter banks a layer holds and supplies two things; everything else (the layer's
forward, folding into the base weights, the PEFT export, the adapter pool) uses only these:

- :meth:`Mode.delta`: what the adapters add for a mixed-language batch, ``x`` (T, B, k) -> (T, B, d);
- :meth:`Mode.pairs`: the LoRA factors (B, A) of one direction's update, on the adapter's spans, with
  every scale and weight folded in, so that ``sum B @ A`` is what the layer adds to W for src -> tgt.

The modes (``index`` of a layer):

    src / tgt (fixed index, eq. 3):   delta = s_l B_l A_l x,  l = the sentence's source / target
    learned (weight learning, eq. 5): delta = w_src s B_src A_src x + w_tgt s B_tgt A_tgt x
    modular (the follow-up's eq. 3, 4), per sentence (w_in, w_out) from the router:
        outputs: delta = w_in s B_in A_in x + w_out s B_out A_out x
        ab:      delta = (sqrt(w_in) B_in + sqrt(w_out) B_out)(sqrt(w_in) s A_in + sqrt(w_out) s A_out) x

with s = s_l the language's scale (1, or alpha / r_l) and (w_src, w_tgt) the softmax of the
transformer layer's two logits (:class:`IndexWeights`). Adding a mode means adding a class here and
an entry in :data:`MODES`.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..config import LSLoConfigError

Pair = Tuple[Tensor, Tensor]  # (B: d x r, A: r x k)


class IndexWeights(nn.Module):
    """Two logits per transformer layer, softmax-normalised to (w_src, w_tgt) (eq. 5); equal at
    initialisation."""

    def __init__(self):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(2))

    def forward(self) -> Tensor:
        return torch.softmax(self.logits.float(), dim=0)


def language_factors(layer, lang: int, bank: str, dtype: Optional[torch.dtype] = None) -> Pair:
    """(B_l, A_l) of language row ``lang`` in ``bank``, pruning masks applied, in ``dtype`` (default:
    the parameters')."""
    lo, hi = layer.lang_columns(lang)
    a = layer.effective(layer.param_name("A", bank))[lo:hi]
    b = layer.effective(layer.param_name("B", bank))[:, lo:hi]
    return (b, a) if dtype is None else (b.to(dtype), a.to(dtype))


class Mode:
    """One way of choosing and combining a layer's adapters for a sentence."""

    name: str = ""
    banks: Tuple[str, ...] = ()
    needs_index_weights = False  # the transformer layer's IndexWeights (weight learning)
    allows_dense = True  # the dense kernel (a GEMM over every language's ranks) may serve this mode

    def delta(self, layer, x: Tensor) -> Tensor:
        raise NotImplementedError

    def pairs(self, layer, src: int, tgt: int, dtype: Optional[torch.dtype] = None) -> List[Pair]:
        raise NotImplementedError


class FixedIndex(Mode):
    """Every sentence uses the adapter of its source (``src``) or target (``tgt``) language (eq. 3)."""

    def __init__(self, side: str):
        self.name, self.banks = side, (side,)

    def delta(self, layer, x: Tensor) -> Tensor:
        return layer.lora_delta(x, layer.router.ids(self.name, x.size(1)), self.name)

    def pairs(self, layer, src: int, tgt: int, dtype: Optional[torch.dtype] = None) -> List[Pair]:
        lang = src if self.name == "src" else tgt
        if layer.ranks[lang] == 0:
            return []
        b, a = language_factors(layer, lang, self.name, dtype)
        return [(b * layer.scale(lang), a)]


class LearnedIndex(Mode):
    """A source- and a target-indexed bank mixed by the layer's learned softmax weights (eq. 5)."""

    name, banks, needs_index_weights = "learned", ("src", "tgt"), True

    def delta(self, layer, x: Tensor) -> Tensor:
        w = layer.index_weights()
        return sum(w[i] * layer.lora_delta(x, layer.router.ids(bank, x.size(1)), bank)
                   for i, bank in enumerate(self.banks))

    def pairs(self, layer, src: int, tgt: int, dtype: Optional[torch.dtype] = None) -> List[Pair]:
        w = layer.index_weights().to(dtype or torch.float64).tolist()
        out = []
        for weight, lang, bank in zip(w, (src, tgt), self.banks):
            if layer.ranks[lang] > 0:
                b, a = language_factors(layer, lang, bank, dtype)
                out.append((b * (weight * layer.scale(lang)), a))
        return out


class Modular(Mode):
    """The follow-up's modular fine-tuning: input adapters routed by the source language, output
    adapters by the target language, mixed per sentence by the router's (w_in, w_out) and merge mode.
    A direction's result must not depend on which other languages exist, so it never uses the
    ``dense`` kernel (its GEMM spans every language's ranks: adding one changes its rounding)."""

    name, banks, allows_dense = "modular", ("in", "out"), False

    def delta(self, layer, x: Tensor) -> Tensor:
        """In eval mode without autograd, a batch of one direction (as fairseq-generate decodes) applies
        that direction's :meth:`pairs` stacked into one LoRA: two small GEMMs, no gather (with autograd,
        e.g. learning merge weights, the weights must stay tensors); in eval mode a bank whose weight
        is 0 for the whole batch is skipped."""
        router = layer.router
        batch = x.size(1)
        src, tgt = router.ids("src", batch), router.ids("tgt", batch)
        one_direction = torch.equal(src, src[:1].expand(batch)) and torch.equal(tgt, tgt[:1].expand(batch))
        if not layer.training and not torch.is_grad_enabled() and one_direction:
            s0, t0 = int(src[0]), int(tgt[0])
            w_in, w_out = router.direction_weights(s0, t0, layer.site).tolist()
            if router.merge == "ab" and w_in > 0 and w_out > 0 and layer.ranks[s0] != layer.ranks[t0]:
                router.merge_weights(batch, layer.site)  # raises the router's error, naming --lslo-merge ab
            pairs = self.pairs(layer, s0, t0)
            if not pairs:
                return x.new_zeros(x.shape[:-1] + (layer.adapter_out,))
            a_m, b_m = torch.cat([a for _, a in pairs], 0), torch.cat([b for b, _ in pairs], 1)
            z = nn.functional.linear(x, a_m.to(x.dtype))
            return nn.functional.linear(z, b_m.to(z.dtype))
        w = router.merge_weights(batch, layer.site, layer.training)  # (B, 2): this layer's weights
        if router.merge == "ab":
            return self._delta_ab(layer, x, src, tgt, w)
        delta = None
        for i, (bank, langs) in enumerate(zip(self.banks, (src, tgt))):
            if not layer.training and not bool(w[:, i].any()):
                continue
            d = layer.lora_delta(x, langs, bank) * w[:, i].to(x.dtype).view(1, -1, 1)
            delta = d if delta is None else delta + d
        return x.new_zeros(x.shape[:-1] + (layer.adapter_out,)) if delta is None else delta

    def _delta_ab(self, layer, x: Tensor, src: Tensor, tgt: Tensor, w: Tensor) -> Tensor:
        """The gather kernel with each sentence's A rows and B^T rows mixed before the two bmm (the
        router has checked that the ranks agree wherever both weights are > 0)."""
        a, b_t = 0, 0
        for i, (bank, langs) in enumerate(zip(self.banks, (src, tgt))):
            lora_a = getattr(layer, layer.param_name("A", bank))
            lora_b = getattr(layer, layer.param_name("B", bank))
            rows, mask = layer.rank_rows[langs], layer.rank_mask[langs].to(lora_a.dtype).unsqueeze(-1)
            root = w[:, i].sqrt().to(lora_a.dtype).view(-1, 1, 1)
            a = a + root * lora_a[rows] * mask  # (B, R, k); the mask holds the scale
            b_t = b_t + root * lora_b.t()[rows] * (mask != 0)  # (B, R, d)
        xb = x.transpose(0, 1)
        z = torch.bmm(xb, a.transpose(1, 2).to(xb.dtype))
        return torch.bmm(z, b_t.to(z.dtype)).transpose(0, 1)

    def pairs(self, layer, src: int, tgt: int, dtype: Optional[torch.dtype] = None) -> List[Pair]:
        """``outputs``: one pair per bank with a weight > 0 and a rank > 0, (B_in, w_in s A_in) and
        (B_out, w_out s A_out); ``ab``: one pair (sqrt(w_in) B_in + sqrt(w_out) B_out,
        sqrt(w_in) s A_in + sqrt(w_out) s A_out), which needs equal ranks. The weights are the
        router's for the direction at this layer (:func:`lslo_fairseq.merging.apply_merge` sets them)."""
        merge = layer.router.merge
        w_in, w_out = layer.router.direction_weights(src, tgt, layer.site).tolist()
        parts = [(lang, bank, float(w)) for lang, bank, w in zip((src, tgt), self.banks, (w_in, w_out))
                 if w > 0 and layer.ranks[lang] > 0]
        if merge == "ab" and len({layer.ranks[lang] for lang, _, _ in parts}) > 1:
            r_in, r_out = (layer.ranks[lang] for lang, _, _ in parts)
            raise LSLoConfigError(f"--lslo-merge ab needs equal ranks of the input and output adapters (ranks {r_in} "
                                  f"and {r_out} here); use --lslo-merge outputs")
        pairs = []
        for lang, bank, w in parts:
            b, a = language_factors(layer, lang, bank, dtype)
            root = math.sqrt(w) if merge == "ab" else 1.0
            pairs.append((b * root, a * ((root if merge == "ab" else w) * layer.scale(lang))))
        if merge == "ab" and len(pairs) == 2:
            pairs = [(pairs[0][0] + pairs[1][0], pairs[0][1] + pairs[1][1])]
        return pairs


MODES: Dict[str, Mode] = {m.name: m for m in (FixedIndex("src"), FixedIndex("tgt"), LearnedIndex(), Modular())}
INDEXES = tuple(MODES)
