"""The LSLo layer: a frozen ``nn.Linear`` plus one LoRA per language (paper eq. 2-3).

    h = W x + B_l A_l x,   A_l: r_l x k,  B_l: d x r_l,  B_l initialised to zero,

with ``l`` the source or target language of the sentence ``x`` belongs to. The adapters of all
languages are stored concatenated along the rank axis, ``lora_A`` (sum_l r_l x k) and ``lora_B``
(d x sum_l r_l), so parameter counts are exact and ``torch.nn.utils.prune`` can act on ``lora_B``.
The forward serves a whole mixed-language batch with one gather and two ``bmm``: each sentence
gathers its rows of A/B, padded to the largest rank; padded rows are multiplied by zero before use,
so they reach neither outputs nor gradients.
"""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..routing import LanguageRouter


class LSLoLinear(nn.Module):
    def __init__(self, base_layer: nn.Linear, ranks: Sequence[int], router: LanguageRouter, index: str):
        super().__init__()
        if index not in ("src", "tgt"):
            raise ValueError(f"index must be 'src' or 'tgt', got {index!r}")
        self.base_layer = base_layer
        self.ranks: List[int] = [int(r) for r in ranks]
        self.index = index
        object.__setattr__(self, "router", router)  # shared, registered once on the model
        in_f, out_f = base_layer.in_features, base_layer.out_features
        total, max_rank = sum(self.ranks), max(self.ranks)
        self.lora_A = nn.Parameter(torch.empty(total, in_f, dtype=base_layer.weight.dtype))
        self.lora_B = nn.Parameter(torch.zeros(out_f, total, dtype=base_layer.weight.dtype))
        offsets = [0]
        for r in self.ranks:
            offsets.append(offsets[-1] + r)
        self.offsets = offsets
        rows = torch.zeros(len(self.ranks), max_rank, dtype=torch.long)
        mask = torch.zeros(len(self.ranks), max_rank)
        for lang, r in enumerate(self.ranks):
            rows[lang, :r] = torch.arange(offsets[lang], offsets[lang] + r)
            mask[lang, :r] = 1.0
        self.register_buffer("rank_rows", rows, persistent=False)
        self.register_buffer("rank_mask", mask, persistent=False)
        self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        """A as in LoRA/PEFT (Kaiming-uniform, fan-in k), B = 0: the model starts as the base."""
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    # fairseq code that reads ``proj.weight``/``proj.bias`` keeps working on the base weights
    @property
    def weight(self) -> Tensor:
        return self.base_layer.weight

    @property
    def bias(self) -> Tensor:
        return self.base_layer.bias

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    def lang_columns(self, lang: int) -> Tuple[int, int]:
        """Columns of ``lora_B`` (rows of ``lora_A``) that belong to language row ``lang``."""
        return self.offsets[lang], self.offsets[lang + 1]

    def lora_delta(self, x: Tensor, langs: Tensor) -> Tensor:
        """B_l A_l x for every sentence; ``x`` is (T, B, k), ``langs`` (B,) adapter rows."""
        rows = self.rank_rows[langs]  # (B, R)
        mask = self.rank_mask[langs].to(self.lora_A.dtype).unsqueeze(-1)  # (B, R, 1)
        a = self.lora_A[rows] * mask  # (B, R, k), padded rows zeroed
        b_t = self.lora_B.t()[rows]  # (B, R, d) = B_l^T, padded rows meet zeros of a
        xb = x.transpose(0, 1)  # (B, T, k)
        z = torch.bmm(xb, a.transpose(1, 2).to(xb.dtype))  # (B, T, R)
        return torch.bmm(z, b_t.to(z.dtype)).transpose(0, 1)  # (T, B, d)

    def forward(self, x: Tensor) -> Tensor:
        out = self.base_layer(x)
        langs = self.router.ids(self.index, x.size(1))
        return out + self.lora_delta(x, langs).to(out.dtype)

    def extra_repr(self) -> str:
        return f"index={self.index}, ranks={self.ranks}"

    def merged_weight(self, lang: int) -> Tensor:
        """W + B_l A_l: the dense weight this layer applies to language row ``lang``."""
        lo, hi = self.lang_columns(lang)
        return self.base_layer.weight + self.lora_B[:, lo:hi] @ self.lora_A[lo:hi]
