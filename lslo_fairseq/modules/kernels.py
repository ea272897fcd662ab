"""Routing kernels of an LSLo layer: ``delta = B_l A_l x`` for every sentence of a mixed-language
batch, ``x`` time-major (T, B, k), ``langs`` (B,) adapter rows. Plain functions of the tensors they
need; :meth:`LSLoLinear.lora_delta` picks one (``LSLoLinear.kernel``).

- ``gather``: each sentence gathers its rows of A and B^T padded to the largest rank R (a
  per-sentence copy, (B, R, k) and (B, R, d)), two ``bmm``; padded rows are multiplied by zero.
  Cost ~ max_r per token plus the copies and, in backward, their scatter into A and B.
- ``dense``: two GEMMs over all languages' ranks, other languages' columns zeroed per sentence.
  Cost ~ sum_r per token: best while sum_r is a small multiple of max_r.
- ``grouped``: no per-sentence copy. The router orders the batch's sentences by language once per
  forward (:meth:`LanguageRouter.plan`); every sentence then runs two matrix products on views:
  ``x[:, b]`` (T x k, a strided view of the time-major input) times ``A_l^T`` (a slice of the
  concatenated A), and that times ``B_l^T``, written straight into ``delta[:, b]``. B^T is copied
  once per call for the languages present (at most sum_r x d, per language, not per sentence):
  a language's columns of B are d strided reads, which made each product 2-7x slower (measured).
  One autograd node per call (:class:`GroupedDelta`) whose backward is four products per sentence
  on the same views, accumulating into the language's slices of the A and B^T gradients. FLOPs equal
  a shared LoRA's; the price is 2 (forward) + 4 (backward) small products per sentence: per-call
  overhead that matters for short inputs (incremental decoding: ``gather``/``dense`` there), and
  BLAS does not spread such small products over several threads.

Every kernel gives each sentence ``scale_l B_l A_l x_b`` exactly: neither padding nor another
language reaches its output or its gradients, and a sentence's result does not depend on which other
languages the batch or the model holds (``grouped`` and ``gather``; ``dense`` rounds over all ranks).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import Tensor, nn

# (sentence, first row, end row, first row in the batch's copy of B^T, scale) of every sentence with an
# adapter, grouped by language
SentenceRows = List[Tuple[int, int, int, int, float]]


def delta_gather(x: Tensor, langs: Tensor, lora_a: Tensor, lora_b: Tensor, rank_rows: Tensor,
                 rank_mask: Tensor) -> Tensor:
    """Each sentence gathers its A_l, B_l padded to max rank R (``rank_rows`` (N, R) row indices,
    ``rank_mask`` (N, R) the scale on real rows, 0 on padding); two bmm."""
    rows = rank_rows[langs]  # (B, R)
    mask = rank_mask[langs].to(lora_a.dtype).unsqueeze(-1)  # (B, R, 1)
    a = lora_a[rows] * mask  # (B, R, k), padded rows zeroed
    b_t = lora_b.t().contiguous()[rows]  # (B, R, d) = B_l^T; padded rows meet the zeros of a
    xb = x.transpose(0, 1)  # (B, T, k)
    z = torch.bmm(xb, a.transpose(1, 2).to(xb.dtype))  # (B, T, R)
    return torch.bmm(z, b_t.to(z.dtype)).transpose(0, 1)  # (T, B, d)


def delta_dense(x: Tensor, langs: Tensor, lora_a: Tensor, lora_b: Tensor, col_mask: Tensor) -> Tensor:
    """z = A_all x for all languages' ranks, zero every column not of the sentence's language
    (``col_mask`` (N, sum_r) holds the scale on its own columns), then B_all z: two GEMMs; other
    languages' rows get no output and no gradient."""
    z = nn.functional.linear(x, lora_a.to(x.dtype))  # (T, B, sum_r); autocast may make it bf16
    z = z * col_mask[langs].to(z.dtype).unsqueeze(0)  # in z's dtype: no fp32 copy under autocast
    return nn.functional.linear(z, lora_b.to(z.dtype))  # (T, B, d)


def sentence_rows(order: Sequence[Tuple[int, int]], lang_rows: Sequence[Tuple[int, int, float]]
                  ) -> Tuple[SentenceRows, List[int]]:
    """The ``grouped`` kernel's work list and the columns of B its languages use: ``order`` the
    router's (sentence, language) pairs sorted by language, ``lang_rows[l]`` = (first row, end row,
    scale) of language l in this layer's A (its columns of B); sentences of a rank-0 language (no
    adapter) are left out."""
    rows, cols, first = [], [], {}
    for b, lang in order:
        lo, hi, scale = lang_rows[lang]
        if hi > lo:
            if lang not in first:
                first[lang] = len(cols)
                cols.extend(range(lo, hi))
            rows.append((b, lo, hi, first[lang], scale))
    return rows, cols


def delta_grouped(x: Tensor, lora_a: Tensor, lora_b: Tensor, work: Tuple[SentenceRows, List[int]],
                  max_rank: int) -> Tensor:
    """``grouped``: scale_l B_l A_l x_b per sentence, products on views (see the module docstring).

    Mixed precision as the other kernels: under ``torch.autocast`` the products run in the autocast
    dtype (x, A, B cast to it; the casts' backward returns fp32 gradients to fp32 adapters)."""
    device = x.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
    with torch.autocast(device, enabled=False):
        rows, cols = work
        cols = torch.tensor(cols, dtype=torch.long).to(x.device, non_blocking=True)
        return GroupedDelta.apply(x.to(dtype), lora_a.to(dtype), lora_b.to(dtype), rows, cols, max_rank)


class GroupedDelta(torch.autograd.Function):
    """Forward and backward of the ``grouped`` kernel as one autograd node."""

    @staticmethod
    def forward(ctx, x: Tensor, lora_a: Tensor, lora_b: Tensor, rows: SentenceRows, cols: Tensor,
                max_rank: int) -> Tensor:
        steps, batch, _ = x.shape
        partial = len(rows) < batch  # some sentence has no adapter: its delta is 0
        out = x.new_zeros(steps, batch, lora_b.size(0)) if partial else x.new_empty(steps, batch, lora_b.size(0))
        z = x.new_empty(batch, steps, max(max_rank, 1))  # z[b, :, :r_l] = scale_l A_l x_b
        # B_l^T of the batch's languages, contiguous: B's columns of one language are d strided
        # reads, which the products would otherwise repeat per sentence (forward and twice backward)
        b_t = lora_b.t().index_select(0, cols)

        def forward_rows(part: SentenceRows) -> None:
            for b, lo, hi, c, scale in part:
                zb = z[b, :, :hi - lo]
                torch.mm(x[:, b], lora_a[lo:hi].t(), out=zb)
                if scale != 1.0:
                    zb.mul_(scale)
                torch.mm(zb, b_t[c:c + hi - lo], out=out[:, b])

        forward_rows(rows)
        ctx.save_for_backward(x, lora_a, b_t, cols, z)
        ctx.b_shape = lora_b.shape
        ctx.rows, ctx.partial = rows, partial
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        x, lora_a, b_t, cols, z = ctx.saved_tensors
        need_x, need_a, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_a = grad_b = None
        with torch.autocast(grad.device.type, enabled=False):
            grad = grad.to(x.dtype)
            if need_x:
                grad_x = torch.zeros_like(x) if ctx.partial else torch.empty_like(x)
            grad_a = torch.zeros_like(lora_a) if need_a or need_x else None
            grad_b_t = torch.zeros_like(b_t) if need_b else None

            def backward_rows(part: SentenceRows) -> None:
                for b, lo, hi, c, scale in part:
                    gb = grad[:, b]  # (T, d)
                    if need_b:
                        grad_b_t[c:c + hi - lo].addmm_(z[b, :, :hi - lo].t(), gb)
                    if not (need_a or need_x):
                        continue
                    gz = gb @ b_t[c:c + hi - lo].t()  # (T, r)
                    if scale != 1.0:
                        gz.mul_(scale)
                    if need_a:
                        grad_a[lo:hi].addmm_(gz.t(), x[:, b])
                    if need_x:
                        torch.mm(gz, lora_a[lo:hi], out=grad_x[:, b])

            backward_rows(ctx.rows)
            grad_b = None
            if need_b:
                grad_b = grad_b_t.new_zeros(ctx.b_shape)
                grad_b.t().index_copy_(0, cols, grad_b_t)
        return grad_x, grad_a if need_a else None, grad_b, None, None, None
