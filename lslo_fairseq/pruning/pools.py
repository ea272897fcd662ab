"""Which adapter matrices are pruned together, and the pruning step itself, on
``torch.nn.utils.prune``.

A *member* is one language's A or B matrix in one LSLo layer: a row block of ``lora_A`` or a column
block of ``lora_B``. A *pool* is a set of members pruned together by magnitude (L1):

- ``gps`` (section 3.2): each B matrix of each target language alone (``l1_unstructured``);
- ``ise`` (section 4.2): per layer, encoder and decoder layers apart, the B matrices of every
  language and module (``global_unstructured``); eq. 6 then scores each matrix;
- ``lsp`` (section 7.3): per language, all of its B matrices across layers and modules.

Every step calls ``prune.global_unstructured`` with L1 importance equal to |w| inside the pool and
+inf outside it (so one language's block of a shared tensor can be pruned alone), with an integer
amount: the pool's pruned count rises to exactly round(ratio x size). Pruned entries stay pruned
(masks only ever lose ones), as in Zhu & Gupta's gradual schedule.
"""
from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

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
    path: str  # module path, e.g. decoder.layers.3.encoder_attn.k_proj

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
                    m = Member(lslo, lslo.param_name(matrix, bank), matrix, lang_row, path)
                    key = {"gps": f"{path}.{m.name}:{lang}", "ise": f"{side}.layers.{layer_idx}",
                           "lsp": lang}[kind]
                    pools.setdefault(key, Pool(key, [])).members.append(m)
    return list(pools.values())


def prune_pool(pool: Pool, ratio: float) -> int:
    """Raise ``pool``'s pruned count to round(ratio x size) by L1 magnitude among its live entries;
    returns how many entries this call pruned."""
    extra = int(round(ratio * pool.size)) - pool.n_pruned()
    if extra <= 0:
        return 0
    params: "OrderedDict[Tuple[int, str], Tuple[LSLoLinear, str]]" = OrderedDict()
    scores: Dict[Tuple[LSLoLinear, str], torch.Tensor] = {}
    for m in pool.members:
        key = (m.layer, m.name)
        if (id(m.layer), m.name) not in params:
            params[(id(m.layer), m.name)] = key
            scores[key] = torch.full_like(m.layer.raw(m.name), float("inf"))
        m.block(scores[key]).copy_(m.block(m.layer.raw(m.name)).detach().abs())
    prune.global_unstructured(list(params.values()), pruning_method=prune.L1Unstructured,
                              importance_scores=scores, amount=extra)
    return extra


def apply_ratio(pools: List[Pool], ratio: float) -> int:
    with torch.no_grad():
        return sum(prune_pool(pool, ratio) for pool in pools)


def records(pools: List[Pool], cfg: LSLoConfig, ratio: Optional[float] = None) -> List[dict]:
    """One record per pruned matrix, in the schema of ``pruning_counts.json`` (analysis/)."""
    out = []
    for pool in pools:
        for m in pool.members:
            side, layer_idx, module = m.layer.site
            lang = cfg.languages[m.lang]
            bank = "" if m.layer.index != "learned" else m.name.rsplit("_", 1)[-1]
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
                    m = Member(lslo, lslo.param_name(matrix, bank), matrix, row, path)
                    key = cfg.groups.get(lang, lang)
                    size[key] += m.numel
                    pruned[key] += m.n_pruned()
    return {k: pruned[k] / size[k] for k in size}
