"""Routing kernels of an LSLo layer: ``delta = B_l A_l x`` for every sentence of a mixed-language
batch, ``x`` time-major (T, B, k), ``langs`` (B,) adapter rows. Plain functions of the tensors they
need; :meth:`LSLoLinear.lora_delta` picks one (``LSLoLinear.kernel``).

- ``gather``: each sentence gathers its rows of A and B^T padded to the largest rank R (a
  per-sentence copy, (B, R, k) and (B, R, d), ``index_select``), two ``bmm`` whose results are
  written time-major in place; padded rows meet a zero of the mask. One autograd node
  (:class:`GatherDelta`): backward is four ``bmm`` and two ``index_add_``. Cost ~ max_r per token
  plus the copies, which grow with d and do not shrink with T.
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
  a shared LoRA's. BLAS runs each of these small products on one thread, so on CPU the loop runs
  in C++ (``csrc/grouped_routing.cpp``, built on first use by :mod:`.native`), spread over ATen's
  intra-op threads: by sentence for the forward and the input gradient, by language for the A and
  B gradients (a language's sentences accumulate into its slices on one thread, in batch order).
  Without a compiler the same loop runs in Python on one core. The price of
  either is 2 (forward) + 4 (backward) small products per sentence: per-call overhead that matters
  for short inputs (incremental decoding: ``gather``/``dense`` there).

Every kernel gives each sentence ``scale_l B_l A_l x_b`` exactly: neither padding nor another
language reaches its output or its gradients, and a sentence's result does not depend on which other
languages the batch or the model holds (``grouped`` and ``gather``; ``dense`` rounds over all ranks).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import Tensor, nn

from . import native

# (sentence, first row, end row, first row in the batch's copy of B^T, scale) of every sentence with an
# adapter, grouped by language
SentenceRows = List[Tuple[int, int, int, int, float]]


def delta_gather(x: Tensor, langs: Tensor, lora_a: Tensor, lora_b: Tensor, rank_rows: Tensor,
                 rank_mask: Tensor) -> Tensor:
    """Each sentence gathers its A_l, B_l padded to max rank R (``rank_rows`` (N, R) row indices,
    ``rank_mask`` (N, R) the scale on real rows, 0 on padding); two bmm (:class:`GatherDelta`).

    Mixed precision as the other kernels: under ``torch.autocast`` the products run in the autocast
    dtype (x, A, B cast to it; the casts' backward returns fp32 gradients to fp32 adapters)."""
    device = x.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
    with torch.autocast(device, enabled=False):
        return GatherDelta.apply(x.to(dtype), lora_a.to(dtype), lora_b.to(dtype), rank_rows.index_select(0, langs),
                                 rank_mask.index_select(0, langs).to(dtype))


class GatherDelta(torch.autograd.Function):
    """``gather`` as one autograd node: z_b = (x_b A_b^T) * mask_b, out_b = z_b B_b^T over the batch
    with two ``bmm``, A_b / B_b^T the sentence's rows (``index_select``, padded to R); backward is four
    ``bmm`` and two ``index_add_`` into the A and B gradients. Padded rows meet a zero of the mask in z
    and in its gradient, so they add exact zeros to the row they point at."""

    @staticmethod
    def forward(ctx, x: Tensor, lora_a: Tensor, lora_b: Tensor, rows: Tensor, mask: Tensor) -> Tensor:
        batch, rank = mask.shape
        flat = rows.reshape(-1)
        a = lora_a.index_select(0, flat).view(batch, rank, -1)  # (B, R, k)
        b_t = lora_b.index_select(1, flat).view(-1, batch, rank).permute(1, 2, 0)  # (B, R, d) view, d outermost
        z = torch.bmm(x.transpose(0, 1), a.transpose(1, 2))  # (B, T, R); x read in place, time-major
        z.mul_(mask.unsqueeze(1))
        ctx.save_for_backward(x, a, b_t, z, flat, mask)
        ctx.shapes = lora_a.shape, lora_b.shape
        return time_major_bmm(z, b_t)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        x, a, b_t, z, flat, mask = ctx.saved_tensors
        need_x, need_a, need_b = ctx.needs_input_grad[:3]
        a_shape, b_shape = ctx.shapes
        grad_x = grad_a = grad_b = None
        with torch.autocast(grad.device.type, enabled=False):
            g = grad.to(x.dtype).transpose(0, 1)  # (B, T, d)
            if need_b:
                grad_b_t = torch.bmm(z.transpose(1, 2), g).view(-1, b_shape[0])  # (B R, d)
                grad_b = g.new_zeros(b_shape[1], b_shape[0]).index_add_(0, flat, grad_b_t).t()
            if need_a or need_x:
                gz = torch.bmm(g, b_t.transpose(1, 2))  # (B, T, R)
                gz.mul_(mask.unsqueeze(1))
                if need_a:
                    grad_a_rows = torch.bmm(gz.transpose(1, 2), x.transpose(0, 1)).view(-1, a_shape[1])
                    grad_a = g.new_zeros(a_shape).index_add_(0, flat, grad_a_rows)
                if need_x:
                    grad_x = time_major_bmm(gz, a)
        return grad_x, grad_a, grad_b, None, None


def time_major_bmm(left: Tensor, right: Tensor) -> Tensor:
    """``bmm(left, right)`` ((B, T, n)) returned time-major and contiguous, (T, B, n), as fairseq's
    activations are: written in place through a transposed view (``baddbmm_`` with beta 0), which
    costs what ``bmm`` costs; ``bmm(...).transpose(0, 1)`` would leave a transposed gradient or output
    for the next op to copy."""
    out = left.new_empty(left.size(1), left.size(0), right.size(2))
    out.transpose(0, 1).baddbmm_(left, right, beta=0)
    return out


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

        ops = native.grouped_ops() if x.device.type == "cpu" and rows else None
        if ops is not None:
            table = torch.tensor([r[:4] for r in rows], dtype=torch.long)
            scales = torch.tensor([r[4] for r in rows], dtype=torch.float64)
            ops.forward(x, lora_a, b_t, table, scales, z, out)
        else:
            table = scales = None
            for b, lo, hi, c, scale in rows:
                zb = z[b, :, :hi - lo]
                torch.mm(x[:, b], lora_a[lo:hi].t(), out=zb)
                if scale != 1.0:
                    zb.mul_(scale)
                torch.mm(zb, b_t[c:c + hi - lo], out=out[:, b])
        ctx.save_for_backward(x, lora_a, b_t, cols, z)
        ctx.b_shape = lora_b.shape
        ctx.rows, ctx.partial, ctx.native = rows, partial, (ops, table, scales)
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
            grad_a = torch.zeros_like(lora_a) if need_a else None
            grad_b_t = torch.zeros_like(b_t) if need_b else None

            ops, table, scales = ctx.native
            if ops is not None:
                gz = z.new_empty(z.shape)
                ops.backward(x, lora_a, b_t, z, grad, table, scales, gz, grad_x, grad_a, grad_b_t)
            else:
                for b, lo, hi, c, scale in ctx.rows:
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

            grad_b = None
            if need_b:
                grad_b = grad_b_t.new_zeros(ctx.b_shape)
                grad_b.t().index_copy_(0, cols, grad_b_t)
        return grad_x, grad_a if need_a else None, grad_b, None, None, None
