"""Per-sentence language ids: read from the batch's language tokens, carried with the encoder
output (so that beam search reorders them), handed to every LSLo layer.

Hard routing (paper eq. 3): sentence ``b`` of a batch uses the adapter of ``src[b]`` in a
source-indexed layer and of ``tgt[b]`` in a target-indexed one.

Modular fine-tuning: the router also holds the merge table, (w_in, w_out) for every (source,
target) language row pair: (1, 0) into the pivot (X -> pivot uses LoRA_in(X) alone, as it trained),
(0, 1) out of it, and the merge weights elsewhere (one pair for all directions, or one per
direction); ``merge_weights`` looks up every sentence's pair with one gather. The weights may also
differ per transformer layer (the follow-up's learned weights: one pair per direction and layer,
shared by all LSLo modules of the layer): then the table has one slice per layer, and a layer's
modules read their own.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from .errors import LSLoError

ENC_OUT_SRC = "lslo_src_lang"
ENC_OUT_TGT = "lslo_tgt_lang"
PLAN_CACHE = 4  # plans kept by a router: both sides, the beam-reduced ids, one spare


class RoutingError(LSLoError, RuntimeError):
    pass


class LanguageRouter(nn.Module):
    """Maps language tokens (``__en__``) to adapter rows and holds the ids of the current batch.

    One router per model, shared by its encoder, decoder and all LSLo layers. The lookup table is a
    non-persistent buffer (it follows ``.to(device)`` but never enters a checkpoint).
    """

    def __init__(self, languages: Sequence[str], lang_token_ids: Sequence[int], vocab_size: int):
        super().__init__()
        self.languages = list(languages)
        table = torch.full((vocab_size,), -1, dtype=torch.long)
        for row, tok in enumerate(lang_token_ids):
            table[tok] = row
        self.register_buffer("token_to_lang", table, persistent=False)
        n = len(self.languages)
        self.register_buffer("pair_weights", torch.zeros(n, n, 2), persistent=False)
        # per-layer merge weights, (encoder layers + decoder layers, n, n, 2), or None: pair_weights everywhere
        self.register_buffer("layer_weights", None, persistent=False)
        self.layer_counts: Dict[str, int] = {}
        self.register_buffer("lang_ranks", torch.zeros(n, dtype=torch.long), persistent=False)
        # training: the English-centric pairs use one adapter each (1, 0) / (0, 1), whatever the merge
        self.register_buffer("train_weights", torch.zeros(n, n, 2), persistent=False)
        self.pivot_row: Optional[int] = None
        self.pivot_adapters = False
        self.merge = "outputs"
        self.src: Optional[Tensor] = None
        self.tgt: Optional[Tensor] = None
        self.beam_size = 1
        self._plans: List[tuple] = []  # (ids, version, plan), newest first
        self._first_beams: Optional[tuple] = None

    # -- reading languages from tokens -------------------------------------------------------
    def lookup(self, tokens: Tensor, what: str) -> Tensor:
        ids = self.token_to_lang[tokens]
        if bool((ids < 0).any()):
            bad = sorted(set(tokens[ids < 0].tolist()))
            raise RoutingError(
                f"{what}: token id(s) {bad[:5]} are not language tokens of the LSLo languages "
                f"{self.languages}; train and decode with --encoder-langtok src --decoder-langtok"
            )
        return ids

    def source_langs(self, src_tokens: Tensor, pad: int) -> Tensor:
        """The language of each source: its first non-pad token (``--encoder-langtok src``;
        works for left- and right-padded sources)."""
        first = (src_tokens.ne(pad)).long().argmax(dim=1, keepdim=True)
        return self.lookup(src_tokens.gather(1, first).squeeze(1), "source language token")

    def target_langtoks(self, prev_output_tokens: Tensor) -> Tensor:
        """The target language token of each sentence in teacher forcing: the decoder input starts
        with ``__tgt__`` (``--lang-tok-replacing-bos-eos``) or with EOS then ``__tgt__`` (the
        default ``--decoder-langtok``)."""
        head = prev_output_tokens[:, : min(2, prev_output_tokens.size(1))]
        is_lang = self.token_to_lang[head] >= 0
        toks = torch.where(is_lang[:, 0], head[:, 0], head[:, -1])
        if not bool(is_lang.any(dim=1).all()):
            raise RoutingError(
                "target language token: the decoder input does not start with a language token "
                f"of {self.languages}; train with --decoder-langtok"
            )
        return toks

    # -- modular fine-tuning: per-sentence merge weights ----------------------------------------
    def set_layer_counts(self, encoder: int, decoder: int) -> None:
        """The model's numbers of encoder and decoder layers (the slices of per-layer merge weights)."""
        self.layer_counts = {"encoder": int(encoder), "decoder": int(decoder)}

    def configure_merge(self, pivot: str, ranks: Sequence[int], mode: str = "outputs",
                        weights=(0.5, 0.5), per_direction: Optional[Dict[tuple, tuple]] = None,
                        per_layer: Optional[Dict[Optional[tuple], Dict[str, Sequence]]] = None) -> None:
        """Fill the merge table: ``weights`` (w_in, w_out) for every direction without the pivot,
        ``per_direction[(src, tgt)]`` where given; (1, 0) into and (0, 1) out of the pivot.

        ``per_layer`` maps a direction (src, tgt), or None for every direction, to
        ``{"encoder": [(w_in, w_out)] * encoder layers, "decoder": [...] * decoder layers}``. From
        the most general to the most specific, each overriding the one before: ``weights``, the
        per-layer profile of all directions (``per_layer[None]``), ``per_direction``, the direction's
        own per-layer weights. Without adapters of the pivot (rank 0) its directions stay (1, 0) /
        (0, 1) in every layer; with them (``--lslo-pivot-rank``) they merge like any other direction at
        generation, and keep (1, 0) / (0, 1) in training (:meth:`merge_weights`)."""
        from .config import MERGE_MODES

        if mode not in MERGE_MODES:
            raise RoutingError(f"--lslo-merge: one of {', '.join(MERGE_MODES)}, got {mode!r}")
        self.merge, pivot_row = mode, self.languages.index(pivot)
        self.pivot_row, self.pivot_adapters = pivot_row, int(ranks[pivot_row]) > 0
        rows = {l: i for i, l in enumerate(self.languages)}
        known = {d: w for d, w in (per_direction or {}).items() if d[0] in rows and d[1] in rows}
        layered = {d: w for d, w in (per_layer or {}).items() if d is None or (d[0] in rows and d[1] in rows)}

        def pin(table: Tensor, always: bool = False) -> Tensor:
            return pin_pivot(table, pivot_row) if always or not self.pivot_adapters else table

        self.train_weights.copy_(pin(torch.zeros_like(self.train_weights, device="cpu"), always=True))
        table = torch.empty_like(self.pair_weights, device="cpu")
        table[:, :] = torch.tensor([float(w) for w in weights])
        for (s, t), w in known.items():
            table[rows[s], rows[t]] = torch.tensor([float(x) for x in w])
        self.pair_weights.copy_(pin(table))
        self.lang_ranks.copy_(torch.tensor([int(r) for r in ranks]))
        self.layer_weights = None
        if not layered:
            return
        counts = self.layer_counts
        if not counts:
            raise RoutingError("per-layer merge weights need the model's layer counts (set_layer_counts)")
        sides = [(side, i) for side in ("encoder", "decoder") for i in range(counts[side])]
        per_site = table.unsqueeze(0).repeat(len(sides), 1, 1, 1)
        profile = layered.get(None)
        own = torch.zeros(table.shape[:2], dtype=torch.bool)  # directions with a pair of their own
        for s, t in known:
            own[rows[s], rows[t]] = True
        for k, (side, i) in enumerate(sides):
            if profile is not None:
                per_site[k][~own] = torch.tensor([float(x) for x in profile[side][i]])
            for d, w in layered.items():
                if d is not None:
                    per_site[k, rows[d[0]], rows[d[1]]] = torch.tensor([float(x) for x in w[side][i]])
        self.layer_weights = pin(per_site).to(self.pair_weights.device)

    def site_table(self, site=None) -> Tensor:
        """The (n, n, 2) merge table that the LSLo modules at ``site`` = (side, layer, ...) use."""
        if self.layer_weights is None or site is None:
            return self.pair_weights
        side, layer = site[0], int(site[1])
        return self.layer_weights[layer + (self.layer_counts["encoder"] if side == "decoder" else 0)]

    def direction_weights(self, src: int, tgt: int, site=None) -> Tensor:
        """(w_in, w_out) of language rows src -> tgt at ``site``."""
        return self.site_table(site)[src, tgt]

    def direction_record(self, src: int, tgt: int):
        """What a direction's merge weights are, for a record: [w_in, w_out], or with per-layer weights
        ``{"encoder": [[w_in, w_out], ...], "decoder": [...]}``."""
        if self.layer_weights is None:
            return [float(w) for w in self.pair_weights[src, tgt].tolist()]
        per = self.layer_weights[:, src, tgt].tolist()
        e = self.layer_counts["encoder"]
        return {"encoder": per[:e], "decoder": per[e:]}

    def merge_weights(self, batch_size: int, site=None, training: bool = False) -> Tensor:
        """(w_in, w_out) of every sentence at ``site`` (a layer's modules: their own weights when the
        weights are per layer), (batch_size, 2). Under ``ab`` a sentence that mixes two adapters of
        different ranks is refused (eq. 4 adds A and B matrices row by row).

        In training with the pivot's own adapters, every pair keeps one adapter: X->pivot (1, 0),
        pivot->Y (0, 1), and the pivot->pivot copies alternate, even sentences of the batch training
        LoRA_in(pivot) alone (1, 0) and odd ones LoRA_out(pivot) alone (0, 1)."""
        src, tgt = self.ids("src", batch_size), self.ids("tgt", batch_size)
        if training and self.pivot_adapters:
            w = self.train_weights[src, tgt].clone()
            copies = (src == self.pivot_row) & (tgt == self.pivot_row)
            odd = torch.arange(batch_size, device=src.device) % 2 == 1
            w[copies & ~odd] = torch.tensor([1.0, 0.0], device=w.device)
            w[copies & odd] = torch.tensor([0.0, 1.0], device=w.device)
            return w
        w = self.site_table(site)[src, tgt]
        if self.merge == "ab":
            bad = (self.lang_ranks[src] != self.lang_ranks[tgt]) & (w > 0).all(dim=1)
            if bool(bad.any()):
                i = int(bad.nonzero()[0, 0])
                s, t = self.languages[int(src[i])], self.languages[int(tgt[i])]
                raise RoutingError(
                    f"--lslo-merge ab adds the input and output adapters' A and B matrices, which needs "
                    f"equal ranks: {s} has rank {int(self.lang_ranks[src[i]])} and {t} rank "
                    f"{int(self.lang_ranks[tgt[i]])} ({s}-{t}); use --lslo-merge outputs (any ranks)"
                )
        return w

    # -- the current batch ---------------------------------------------------------------------
    def set(self, src: Optional[Tensor], tgt: Optional[Tensor]) -> None:
        self.src, self.tgt = src, tgt
        self._plans, self._first_beams = [], None

    def set_from_encoder_out(self, encoder_out: Optional[Dict[str, List[Tensor]]]) -> None:
        if encoder_out is None:
            raise RoutingError("LSLo decoder called without encoder output: no languages to route by")
        src = encoder_out.get(ENC_OUT_SRC) or [None]
        tgt = encoder_out.get(ENC_OUT_TGT) or [None]
        self.set(src[0], tgt[0])

    def ids(self, index: str, batch_size: int) -> Tensor:
        """Language row of every sentence of a layer input with ``batch_size`` sentences.

        Cross-attention under ``set_beam_size(k)`` projects one beam per sentence (``bsz`` rows
        instead of ``bsz*k``); beams of one sentence share its languages, so the first is taken.
        """
        ids = self.src if index == "src" else self.tgt
        if ids is None:
            raise RoutingError(
                f"a {index}-indexed LSLo layer needs the {'source' if index == 'src' else 'target'} "
                "language of every sentence; use the task translation_multi_simple_epoch_lslo "
                "(it hands the target language to the encoder at inference)"
            )
        if ids.numel() == batch_size:
            return ids
        if self.beam_size > 1 and ids.numel() == batch_size * self.beam_size:
            first = self._first_beams
            if first is None or first[0] is not ids or first[1] != (ids._version, self.beam_size):
                # one tensor per batch (not a new view per layer), so that plan() finds it again
                first = self._first_beams = (ids, (ids._version, self.beam_size),
                                             ids.view(batch_size, self.beam_size)[:, 0])
            return first[2]
        raise RoutingError(f"{ids.numel()} language ids for a batch of {batch_size} sentences")

    def plan(self, langs: Tensor) -> List[Tuple[int, int]]:
        """The batch grouped by adapter: (sentence, language row) pairs of ``langs`` (a tensor from
        :meth:`ids`) ordered by language, stably (a language's sentences in batch order).

        Computed once per forward and side, with one host copy of the ids, and reused by every layer
        of that side: cached by tensor identity and version (an in-place edit recomputes it); the
        cache is emptied by :meth:`set` and keeps the last ``PLAN_CACHE`` tensors."""
        for seen, version, order in self._plans:
            if seen is langs and version == langs._version:
                return order
        order = sorted(enumerate(langs.tolist()), key=lambda pair: pair[1])
        self._plans = [(langs, langs._version, order)] + self._plans[:PLAN_CACHE - 1]
        return order


def pin_pivot(table: Tensor, pivot_row: int) -> Tensor:
    """In place on a (..., n, n, 2) merge table: (1, 0) into the pivot (X -> pivot uses LoRA_in(X)
    alone, as it trained), then (0, 1) out of it (pivot -> Y uses LoRA_out(Y) alone; pivot -> pivot
    included). Returns ``table``."""
    table[..., :, pivot_row, :] = torch.tensor([1.0, 0.0])
    table[..., pivot_row, :, :] = torch.tensor([0.0, 1.0])
    return table


def reorder(values: List[Tensor], new_order: Tensor) -> List[Tensor]:
    return [v.index_select(0, new_order) for v in values]
