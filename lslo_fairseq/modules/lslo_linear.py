"""The LSLo layer: a frozen ``nn.Linear`` plus one LoRA per language (paper eq. 2-3, 5).

    h = W x + B_l A_l x,   A_l: r_l x k,  B_l: d x r_l,  B_l initialised to zero,        (eq. 3)

with ``l`` the source or target language of the sentence ``x`` belongs to. Under weight learning
(index ``learned``) the layer holds a source- and a target-indexed bank and mixes them with the
softmax weights its transformer layer shares among all its LSLo modules:

    h = W x + w_src B_src A_src x + w_tgt B_tgt A_tgt x                                   (eq. 5)

Under modular fine-tuning (index ``modular``) the two banks are the follow-up's input adapters (routed
by the source language) and output adapters (routed by the target language), and each sentence has
its own weights (w_in, w_out) from the router: (1, 0) into the pivot, (0, 1) out of it, the merge
weights otherwise. The router's merge mode decides how the two are combined (the follow-up's eq. 3, 4):

    outputs: h = W x + w_in B_in A_in x + w_out B_out A_out x
    ab:      h = W x + (sqrt(w_in) B_in + sqrt(w_out) B_out)(sqrt(w_in) A_in + sqrt(w_out) A_out) x

Each of these modes is a variant in :mod:`.modes` that supplies the delta for a batch and the
factors of one direction; the layer itself does not branch on the mode.

The adapters of all languages are stored concatenated along the rank axis, ``lora_A``
(sum_l r_l x k) and ``lora_B`` (d x sum_l r_l), so parameter counts are exact and
``torch.nn.utils.prune`` acts on them directly. The forward serves a whole mixed-language batch
by one of three kernels (``modules/kernels.py``): ``grouped`` (the batch ordered by language once per
forward by the router; two small products per sentence on views of x, A_l, B_l, no copies),
``gather`` (each sentence gathers its rows of A/B padded to the largest rank, two ``bmm``; padded
rows are multiplied by zero before use) or ``dense`` (two GEMMs over all languages' ranks, other
languages' columns zeroed per sentence). None lets padding or another language reach a sentence's
output or gradients.

Adapter shape (``--lslo-adapter-shape``). ``full``: the adapter spans the whole matrix, A_l: r_l x k,
B_l: d x r_l (LoRA, PEFT). ``paper``: the authors' released code, where every adapter is
d_model x d_model: for fc1 (d_model -> ffn) A_l reads the whole input and B_l A_l x is added to
output columns [s, s + d_model) only; for fc2 (ffn -> d_model) A_l reads input columns
[s, s + d_model) only and adds to the whole output; square matrices are unaffected. With the
slices written x[in] and h[out]:

    h[out] = W x + B_l A_l x[in]                                                     (eq. 3, sliced)

Scaling (``--lslo-alpha``): without alpha the delta is unscaled, as in the paper; with it each
language's delta is multiplied by alpha / r_l (PEFT's LoRA scale), folded into the routing masks.

Checkpoint keys are the same whether or not pruning is active: ``lora_A``, ``lora_B`` (the raw
parameters) and ``lora_A_mask``, ``lora_B_mask`` (boolean; all true when unpruned).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..config import ADAPTER_SHAPES, INITS
from ..routing import LanguageRouter
from . import kernels, native
from .modes import INDEXES, MODES, IndexWeights, Pair, language_factors  # noqa: F401 (IndexWeights: re-exported)

Span = Tuple[int, int]


def adapter_spans(in_features: int, out_features: int, shape: str = "full", offset: int = 0) -> Tuple[Span, Span]:
    """The input columns the adapter reads and the output columns it writes, as half-open spans.

    ``full``: everything. ``paper``: a d x d adapter with d = min(in, out) (= d_model for fc1/fc2,
    the authors' ``--dim``); the wider side is sliced at [offset, offset + d), the other is whole."""
    if shape not in ADAPTER_SHAPES:
        raise ValueError(f"adapter shape must be one of {ADAPTER_SHAPES}, got {shape!r}")
    whole_in, whole_out = (0, in_features), (0, out_features)
    if shape == "full" or in_features == out_features:
        return whole_in, whole_out
    d, wide = min(in_features, out_features), max(in_features, out_features)
    if offset < 0 or offset + d > wide:
        raise ValueError(f"an offset of {offset} puts the {d}-wide adapter outside the matrix's {wide} columns "
                         f"(needs 0 <= offset <= {wide - d})")
    window = (offset, offset + d)
    return (window, whole_out) if in_features > out_features else (whole_in, window)


class LSLoLinear(nn.Module):
    def __init__(self, base_layer: nn.Linear, ranks: Sequence[int], router: LanguageRouter, index: str,
                 index_weights: Optional[IndexWeights] = None, in_span: Optional[Span] = None,
                 out_span: Optional[Span] = None, init: str = "lora", alpha: Optional[float] = None):
        super().__init__()
        if index not in INDEXES:
            raise ValueError(f"index must be one of {INDEXES}, got {index!r}")
        self.mode = MODES[index]
        if self.mode.needs_index_weights != (index_weights is not None):
            raise ValueError(f"index {index!r}: the layer's IndexWeights are needed by weight learning (index "
                             "'learned'), and only by it")
        self.base_layer = base_layer
        self.ranks: List[int] = [int(r) for r in ranks]
        self.index = index
        object.__setattr__(self, "router", router)  # shared; registered once on the model
        object.__setattr__(self, "index_weights", index_weights)  # registered on the layer
        self.banks = list(self.mode.banks)
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if alpha is not None and not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.site = None  # (side, layer, module name), set by the model that places this layer
        self.in_span = tuple(in_span or (0, base_layer.in_features))
        self.out_span = tuple(out_span or (0, base_layer.out_features))
        for (lo, hi), width, what in ((self.in_span, base_layer.in_features, "in_span"),
                                      (self.out_span, base_layer.out_features, "out_span")):
            if not 0 <= lo < hi <= width:
                raise ValueError(f"{what} {(lo, hi)} is not a column span of a {width}-wide side")
        self.init, self.alpha = init, alpha
        in_f, out_f = self.adapter_in, self.adapter_out
        total, max_rank = sum(self.ranks), max(max(self.ranks), 1)
        dtype = base_layer.weight.dtype
        for bank in self.banks:
            self.register_parameter(self.param_name("A", bank), nn.Parameter(torch.empty(total, in_f, dtype=dtype)))
            self.register_parameter(self.param_name("B", bank), nn.Parameter(torch.zeros(out_f, total, dtype=dtype)))
        self.offsets = [0]
        for r in self.ranks:
            self.offsets.append(self.offsets[-1] + r)
        # routing masks, holding each language's scale (1, or alpha / r_l) in place of the ones
        rows = torch.zeros(len(self.ranks), max_rank, dtype=torch.long)
        mask = torch.zeros(len(self.ranks), max_rank)
        cols = torch.zeros(len(self.ranks), total)
        for lang, r in enumerate(self.ranks):
            rows[lang, :r] = torch.arange(self.offsets[lang], self.offsets[lang] + r)
            mask[lang, :r] = self.scale(lang)
            cols[lang, self.offsets[lang]:self.offsets[lang + 1]] = self.scale(lang)
        self.register_buffer("rank_rows", rows, persistent=False)
        self.register_buffer("rank_mask", mask, persistent=False)
        self.register_buffer("col_mask", cols, persistent=False)
        # the grouped kernel's (first row, end row, scale) of every language
        self.lang_rows = [(self.offsets[lang], self.offsets[lang + 1], self.scale(lang))
                          for lang in range(len(self.ranks))]
        self.reset_lora_parameters()

    def param_name(self, matrix: str, bank: str) -> str:
        """``lora_B`` for a fixed-index layer; ``lora_B_src``/``lora_B_tgt`` under weight learning,
        ``lora_B_in``/``lora_B_out`` under modular fine-tuning."""
        return f"lora_{matrix}" if len(self.banks) == 1 else f"lora_{matrix}_{bank}"

    def param_names(self) -> List[str]:
        return [self.param_name(m, b) for b in self.banks for m in ("A", "B")]

    @property
    def adapter_in(self) -> int:
        """k of the adapter: the width of the input columns A reads."""
        return self.in_span[1] - self.in_span[0]

    @property
    def adapter_out(self) -> int:
        """d of the adapter: the width of the output columns B writes."""
        return self.out_span[1] - self.out_span[0]

    def scale(self, lang: int) -> float:
        """The factor of language row ``lang``'s delta: 1 (the paper), or alpha / r_l (PEFT); a
        language without adapters (rank 0, the modular pivot) has nothing to scale."""
        return 1.0 if self.alpha is None or self.ranks[lang] == 0 else self.alpha / self.ranks[lang]

    def reset_lora_parameters(self) -> None:
        """B = 0, so the model starts as the base; A by ``init``:

        - ``lora``: Kaiming-uniform (a = sqrt 5) over the whole A, fan-in = k: U(-1/sqrt k, 1/sqrt k), as
          LoRA/PEFT;
        - ``paper``: the authors' ``Lora`` (A stored k x r_l, Kaiming-uniform, so fan-in = r_l):
          U(-1/sqrt r_l, 1/sqrt r_l) per language block (the paper's text says Gaussian; its code is
          uniform)."""
        for bank in self.banks:
            lora_a = self.raw(self.param_name("A", bank))
            with torch.no_grad():
                if self.init == "lora":
                    nn.init.kaiming_uniform_(lora_a, a=math.sqrt(5))
                else:
                    for lang, r in enumerate(self.ranks):
                        if r == 0:
                            continue
                        lo, hi = self.lang_columns(lang)
                        lora_a[lo:hi].uniform_(-1.0 / math.sqrt(r), 1.0 / math.sqrt(r))
            nn.init.zeros_(self.raw(self.param_name("B", bank)))

    def raw(self, name: str) -> Tensor:
        """The trainable tensor behind ``name`` (``name_orig`` once ``torch.nn.utils.prune`` has
        reparametrised it)."""
        return getattr(self, name + "_orig") if hasattr(self, name + "_orig") else getattr(self, name)

    def effective(self, name: str) -> Tensor:
        """What the forward uses: the parameter times its pruning mask, if any."""
        mask = getattr(self, name + "_mask", None)
        return self.raw(name) if mask is None else self.raw(name) * mask

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

    def lora_delta(self, x: Tensor, langs: Tensor, bank: Optional[str] = None) -> Tensor:
        """B_l A_l x for every sentence; ``x`` is (T, B, k), ``langs`` (B,) adapter rows. The kernels
        are in ``modules/kernels.py``."""
        bank = bank or self.banks[0]
        lora_a = getattr(self, self.param_name("A", bank))
        lora_b = getattr(self, self.param_name("B", bank))
        kernel = self.kernel(x)
        if kernel == "grouped":
            rows = kernels.sentence_rows(self.router.plan(langs), self.lang_rows)
            return kernels.delta_grouped(x, lora_a, lora_b, rows, self.rank_rows.size(1))
        if kernel == "dense":
            return kernels.delta_dense(x, langs, lora_a, lora_b, self.col_mask)
        return kernels.delta_gather(x, langs, lora_a, lora_b, self.rank_rows, self.rank_mask)

    kernel_choice = "auto"  # "grouped" | "dense" | "gather" | "auto": set on the class, or on one layer
    dense_max_ratio = 8
    grouped_min_tokens = 4
    grouped_min_width = 1024  # k + d of the adapter
    grouped_over_dense_min_width = 2048  # k + d from which grouped's C++ loop beats dense

    def kernel(self, x: Optional[Tensor] = None) -> str:
        """``dense`` costs ~ sum_r per token (two GEMMs over all languages' ranks), ``gather`` ~ max_r
        plus a per-sentence copy of A and B, ``grouped`` ~ r_l with no copy but 6 small products per
        sentence (fwd+bwd). ``auto``:

        - ``grouped`` on CPU for inputs of >= 4 tokens (``x``; training and full-sentence passes) with
          k + d >= 2048 (M2M-124's projections), when its C++ loop is built (:mod:`.native`): it then
          costs less than ``dense`` from 2 languages on (and less than one shared LoRA); on narrower
          layers dense's two GEMMs win while sum_r is small (256<->1024, 128x24 tokens, 10-12
          languages: grouped 116-117 ms, dense 95-109);
        - else ``dense`` while sum_r <= 8 max_r (not under ``modular``, where a direction's result must
          not depend on which other languages exist: dense's GEMM spans every language's ranks);
        - else ``grouped`` (its Python loop) on such CPU inputs, and ``gather`` for the rest: incremental
          decoding; narrow layers, where per-product overhead dominates (64<->128 wide, 8x4 tokens, 30
          languages: grouped 4.9 ms with the C++ loop, 8.1 with Python, gather 4.8); CUDA, where small
          products cost a launch each (unmeasured).

        Measured at the M2M 615M shapes (fwd+bwd, 64x16 tokens, adapter cost above the frozen base vs a
        shared LoRA): the "grouped kernel" section of benchmarks/RESULTS.md."""
        if self.kernel_choice != "auto":
            return self.kernel_choice
        tokens = self.grouped_min_tokens if x is None else x.size(0)
        device = self.rank_rows.device if x is None else x.device
        width = self.adapter_in + self.adapter_out
        grouped_fits = device.type == "cpu" and tokens >= self.grouped_min_tokens and width >= self.grouped_min_width
        if grouped_fits and width >= self.grouped_over_dense_min_width and native.grouped_ops() is not None:
            return "grouped"
        # dense's GEMM spans every language's ranks: a mode whose results must not depend on which other
        # languages exist (modular) does not use it
        if self.mode.allows_dense and self.offsets[-1] <= self.dense_max_ratio * self.rank_rows.size(1):
            return "dense"
        return "grouped" if grouped_fits else "gather"

    @property
    def full_shape(self) -> bool:
        return self.adapter_in == self.base_layer.in_features and self.adapter_out == self.base_layer.out_features

    def forward(self, x: Tensor) -> Tensor:
        """Mixed precision: the output has the dtype ``base_layer(x)`` has (bf16 under
        ``torch.autocast``, or with a bf16 base); the adapters keep their own dtype (fp32) and are
        cast to the input's dtype for the matmuls, so their gradients arrive in fp32."""
        out = self.base_layer(x)
        x_in = x if self.adapter_in == x.size(-1) else x[..., self.in_span[0]:self.in_span[1]]
        delta = self.mode.delta(self, x_in)
        if self.adapter_out == out.size(-1):
            return out + delta.to(out.dtype)
        out[..., self.out_span[0]:self.out_span[1]] += delta.to(out.dtype)  # base output: not needed by autograd
        return out

    def extra_repr(self) -> str:
        shape = "" if self.full_shape else f", in_span={self.in_span}, out_span={self.out_span}"
        alpha = "" if self.alpha is None else f", alpha={self.alpha}"
        return f"index={self.index}, ranks={self.ranks}{shape}{alpha}"

    def delta_weight(self, lang: int, bank: Optional[str] = None, dtype: torch.dtype = torch.float64) -> Tensor:
        """scale_l B_l A_l (pruning masks applied) placed at the adapter's spans of a zero matrix of
        the base weight's shape: what language row ``lang`` adds to W (in ``dtype``)."""
        b, a = language_factors(self, lang, bank or self.banks[0], dtype)
        out = torch.zeros(self.base_layer.weight.shape, dtype=dtype, device=a.device)
        out[self.out_span[0]:self.out_span[1], self.in_span[0]:self.in_span[1]] = self.scale(lang) * (b @ a)
        return out

    def direction_pairs(self, src: int, tgt: int, dtype: Optional[torch.dtype] = None) -> List[Pair]:
        """The (B, A) factors of this layer's update for language rows src -> tgt, on the adapter's
        spans (masks applied, scales and weights folded in, in ``dtype``, default the parameters'):
        the mode's :meth:`~lslo_fairseq.modules.modes.Mode.pairs`."""
        return self.mode.pairs(self, src, tgt, dtype)

    def direction_weight(self, src: int, tgt: int, dtype: torch.dtype = torch.float64) -> Tensor:
        """What this layer adds to W for the direction src -> tgt, at the adapter's spans of a zero
        matrix of the base weight's shape: sum of :meth:`direction_pairs`' B A (the dense form of the
        forward's delta)."""
        out = torch.zeros(self.base_layer.weight.shape, dtype=dtype, device=self.base_layer.weight.device)
        for b, a in self.direction_pairs(src, tgt, dtype):
            out[self.out_span[0]:self.out_span[1], self.in_span[0]:self.in_span[1]] += b @ a
        return out

    # -- checkpoints: the same keys with and without pruning ------------------------------------
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for name in self.param_names():
            orig = destination.pop(prefix + name + "_orig", None)
            mask = destination.pop(prefix + name + "_mask", None)
            if orig is not None:
                destination[prefix + name] = orig
            value = destination[prefix + name]
            destination[prefix + name + "_mask"] = (
                torch.ones(value.shape, dtype=torch.bool, device=value.device) if mask is None else mask.bool()
            )

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        from torch.nn.utils import prune

        for name in self.param_names():
            key = prefix + name
            mask = state_dict.pop(key + "_mask", None)
            pruned_here = hasattr(self, name + "_orig")
            if mask is not None and not pruned_here and not bool(mask.all()):
                # a pruned checkpoint into a model built without pruning: keep its masks
                prune.custom_from_mask(self, name, mask.to(device=self.raw(name).device))
                pruned_here = True
            if pruned_here:
                if key in state_dict:
                    state_dict[key + "_orig"] = state_dict.pop(key)
                live = torch.ones_like(self.raw(name)) if mask is None else mask
                state_dict[key + "_mask"] = live.to(self.raw(name).dtype)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
