"""Which adapter matrices are pruned together, and the pruning step itself, on
``torch.nn.utils.prune``.

A *member* is one language's A or B matrix in one LSLo layer: a row block of ``lora_A`` or a column
block of ``lora_B``. A *pool* is a set of members pruned together by magnitude (L1):

- ``gps`` (section 3.2): each B matrix of each target language alone (``l1_unstructured``);
- ``ise`` (section 4.2): per layer, encoder and decoder layers apart, the B matrices of every
  language and module (``global_unstructured``); eq. 6 then scores each matrix;
- ``lsp`` (section 7.3): per language, all of its B matrices across layers and modules.

Every step is ``prune.global_unstructured``'s L1 rule restricted to the pool: among the pool's live
entries (mask 1), the ``extra`` of smallest |w| (``torch.topk``, as ``prune.L1Unstructured``) get
mask 0, so the pool's pruned count rises to exactly round(ratio x size). The masks are those
``global_unstructured`` over the whole tensors (|w| in the pool, +inf outside) gives, except which
of several entries with exactly equal |w| at the cut is pruned (``topk`` leaves that open). Only the pool's blocks are
read (one language's block of a shared tensor is pruned alone); the masks are the buffers that
``torch.nn.utils.prune`` set up (:func:`make_prunable`) and its forward hook applies. Pruned entries
stay pruned (masks only ever lose ones), as in Zhu & Gupta's gradual schedule.
"""
from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch
from torch.nn.utils import prune

from ..config import LSLoConfig
from ..modules.lslo_linear import LSLoLinear

logger = logging.getLogger(__name__)


@dataclass
class Member:
    layer: LSLoLinear
    name: str  # parameter name, e.g. lora_B
    matrix: str  # "A" or "B"
    lang: int  # adapter row

    def block(self, t: torch.Tensor) -> torch.Tensor:
        lo, hi = self.layer.lang_columns(self.lang)
        return t[:, lo:hi] if self.matrix == "B" else t[lo:hi]

    @property
    def numel(self) -> int:
        return self.block(self.layer.raw(self.name)).numel()

    def n_pruned(self) -> int:
        mask = getattr(self.layer, self.name + "_mask", None)
        return 0 if mask is None else int((self.block(mask) == 0).sum())


@dataclass
class Pool:
    name: str
    members: List[Member]

    @property
    def size(self) -> int:
        return sum(m.numel for m in self.members)

    def n_pruned(self) -> int:
        return sum(m.n_pruned() for m in self.members)


def make_prunable(layers: Dict[str, LSLoLinear], cfg: LSLoConfig) -> None:
    """Put the pruning reparametrisation (all-ones masks) in place at build time, so that the
    parameter order and the optimizer see the same tensors before and after pruning starts."""
    for lslo in layers.values():
        for bank in lslo.banks:
            for matrix in cfg.prune.matrices:
                name = lslo.param_name(matrix, bank)
                if not hasattr(lslo, name + "_orig"):
                    prune.identity(lslo, name)


def build_pools(layers: Dict[str, LSLoLinear], cfg: LSLoConfig) -> List[Pool]:
    kind = cfg.prune.kind
    if kind == "none":
        return []
    targets = set(cfg.prune.targets) if kind == "gps" else set(cfg.languages)
    pools: "OrderedDict[str, Pool]" = OrderedDict()
    for path, lslo in layers.items():
        side, layer_idx, _ = lslo.site
        for lang_row, lang in enumerate(cfg.languages):
            if lang not in targets:
                continue
            for bank in lslo.banks:
                for matrix in cfg.prune.matrices:
                    m = Member(lslo, lslo.param_name(matrix, bank), matrix, lang_row)
                    key = {"gps": f"{path}.{m.name}:{lang}", "ise": f"{side}.layers.{layer_idx}",
                           "lsp": lang}[kind]
                    pools.setdefault(key, Pool(key, [])).members.append(m)
    return list(pools.values())


def _pool_entries(pool: Pool):
    """The pool's entries per tensor, in the order ``global_unstructured`` flattens them: tensors in
    order of first appearance, each tensor's pool entries row-major (language blocks merged)."""
    tensors: "OrderedDict[Tuple[int, str], Tuple[LSLoLinear, str, str, List[int]]]" = OrderedDict()
    for m in pool.members:
        entry = tensors.setdefault((id(m.layer), m.name), (m.layer, m.name, m.matrix, []))
        lo, hi = m.layer.lang_columns(m.lang)
        entry[3].extend(range(lo, hi))
    for layer, name, matrix, idx in tensors.values():
        idx = sorted(set(idx))
        if idx == list(range(idx[0], idx[-1] + 1)):
            index = slice(idx[0], idx[-1] + 1)
        else:
            index = torch.tensor(idx, device=layer.raw(name).device)
        yield layer, name, ((slice(None), index) if matrix == "B" else (index,))


def prune_pool(pool: Pool, ratio: float, refresh: bool = True) -> int:
    """Raise ``pool``'s pruned count to round(ratio x size) by L1 magnitude among its live entries;
    returns how many entries this call pruned. ``refresh=False`` leaves recomputing the pruned
    tensors (``orig * mask``) to the caller (the forward hook does it anyway)."""
    extra = int(round(ratio * pool.size)) - pool.n_pruned()
    if extra <= 0:
        return 0
    parts, scores = [], []
    for layer, name, index in _pool_entries(pool):
        if not hasattr(layer, name + "_mask"):
            prune.identity(layer, name)
        mask = getattr(layer, name + "_mask")
        live = (mask[index] == 1).reshape(-1).nonzero().squeeze(1)
        scores.append(layer.raw(name).detach()[index].abs().reshape(-1)[live])
        parts.append((layer, name, index, live))
    chosen = torch.topk(torch.cat(scores), k=extra, largest=False).indices
    start = 0
    for (layer, name, index, live), s in zip(parts, scores):
        here = chosen[(chosen >= start) & (chosen < start + s.numel())] - start
        start += s.numel()
        if here.numel():
            mask = getattr(layer, name + "_mask")
            block = mask[index].contiguous()  # a copy unless a contiguous view: written back below
            block.view(-1)[live[here]] = 0
            mask[index] = block
            if refresh:
                _refresh(layer, name)
    return extra


def _refresh(layer: LSLoLinear, name: str) -> None:
    """What torch's pruning hook computes before each forward: the tensor the layer uses."""
    mask = getattr(layer, name + "_mask")
    setattr(layer, name, layer.raw(name) * mask.to(dtype=layer.raw(name).dtype))


def _prune_blocks(members: List[Member], ratio: float) -> int:
    """``prune_pool`` for many one-member pools (GPS) of one tensor whose blocks have one rank r,
    in a few batched ops: each block's pruned count rises to round(ratio x block size)."""
    layer, name, matrix = members[0].layer, members[0].name, members[0].matrix
    if not hasattr(layer, name + "_mask"):
        prune.identity(layer, name)
    mask, raw = getattr(layer, name + "_mask"), layer.raw(name).detach()
    n, r = len(members), members[0].layer.ranks[members[0].lang]
    index = torch.tensor([i for m in members for i in range(*layer.lang_columns(m.lang))], device=mask.device)
    dim = 1 if matrix == "B" else 0

    def blocks(t):  # (n, block size), each block row-major as Member.block(t).reshape(-1)
        sub = t.index_select(dim, index)
        return (sub.view(-1, n, r).transpose(0, 1) if dim == 1 else sub.view(n, r, -1)).reshape(n, -1)

    masks = blocks(mask)
    extra = int(round(ratio * masks.size(1))) - (masks == 0).sum(dim=1)
    k = int(extra.max())
    if k <= 0:
        return 0
    scores = blocks(raw).abs_().masked_fill_(masks != 1, float("inf"))  # pruned: not candidates
    smallest = torch.topk(scores, k=k, dim=1, largest=False).indices  # ascending per row
    take = torch.arange(k, device=mask.device).unsqueeze(0) < extra.unsqueeze(1)
    rows = torch.arange(n, device=mask.device).unsqueeze(1).expand(-1, k)
    masks[rows[take], smallest[take]] = 0
    if dim == 1:
        mask.index_copy_(1, index, masks.view(n, -1, r).transpose(0, 1).reshape(-1, n * r))
    else:
        mask.index_copy_(0, index, masks.view(n * r, -1))
    return int(extra.clamp(min=0).sum())


def apply_ratio(pools: List[Pool], ratio: float) -> int:
    """Raise every pool to ``ratio``; one-member pools (GPS) of one tensor are pruned together."""
    with torch.no_grad():
        newly = 0
        batched: "OrderedDict[Tuple[int, str, int], List[Member]]" = OrderedDict()
        for pool in pools:
            if len(pool.members) == 1:
                m = pool.members[0]
                batched.setdefault((id(m.layer), m.name, m.layer.ranks[m.lang]), []).append(m)
            else:
                newly += prune_pool(pool, ratio, refresh=False)
        for members in batched.values():
            newly += _prune_blocks(members, ratio)
        for layer, name in {(m.layer, m.name) for pool in pools for m in pool.members}:
            _refresh(layer, name)
        return newly


def records(pools: List[Pool], cfg: LSLoConfig) -> List[dict]:
    """One record per pruned matrix, in the format of ``pruning_counts.json``
    (:mod:`lslo_fairseq.runfiles.pruning_counts`)."""
    out = []
    for pool in pools:
        for m in pool.members:
            side, layer_idx, module = m.layer.site
            lang = cfg.languages[m.lang]
            bank = m.name.rsplit("_", 1)[-1] if len(m.layer.banks) > 1 else ""  # lora_A_src -> A_src
            out.append(dict(side=side, layer=layer_idx, module=module, language=lang,
                            group=cfg.groups.get(lang), matrix=m.matrix + (f"_{bank}" if bank else ""),
                            pool=pool.name, n_params=m.numel, n_pruned=m.n_pruned()))
    return out


def sparsity_by_group(layers: Dict[str, LSLoLinear], cfg: LSLoConfig) -> Dict[str, float]:
    """Measured share of pruned entries of the prunable matrices (``--lslo-prune-matrices``) per
    resource group (per language without groups), unpruned languages included."""
    size, pruned = defaultdict(int), defaultdict(int)
    for path, lslo in layers.items():
        for bank in lslo.banks:
            for matrix in cfg.prune.matrices:
                for row, lang in enumerate(cfg.languages):
                    m = Member(lslo, lslo.param_name(matrix, bank), matrix, row)
                    key = cfg.groups.get(lang, lang)
                    size[key] += m.numel
                    pruned[key] += m.n_pruned()
    return {k: pruned[k] / size[k] for k in size}
