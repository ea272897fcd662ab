"""Drives the schedule during training: at each epoch (or update) it raises every pool to P_e,
logs the ratio applied and the sparsity measured per group, and writes ``pruning_counts.json``.

Nothing here is checkpointed separately: the masks live in the model's state dict and the schedule
position is the epoch/update counter fairseq restores, so a resumed run continues exactly.
"""
from __future__ import annotations

import logging
from typing import Optional

from ..runfiles import pruning_counts
from .pools import apply_ratio, build_pools, records, sparsity_by_group
from .schedule import GradualPruningSchedule

logger = logging.getLogger(__name__)


def is_master() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class PruningController:
    def __init__(self, model, total: Optional[int] = None, out_dir: Optional[str] = None):
        cfg = model.lslo_config
        p = cfg.prune
        self.cfg = cfg
        self.schedule = GradualPruningSchedule(p.ratio, p.start, p.duration, total, p.unit)
        self.layers = model.lslo_layers
        self.pools = build_pools(model.lslo_layers, cfg)
        self.out_dir = out_dir
        self.applied: Optional[float] = None

    def step(self, position: int) -> float:
        """Apply the schedule's ratio for epoch/update ``position`` (idempotent)."""
        ratio = self.schedule.ratio_at(position)
        if ratio == self.applied:
            return ratio
        newly = apply_ratio(self.pools, ratio)
        self.applied = ratio
        measured = sparsity_by_group(self.layers, self.cfg)
        logger.info(
            "LSLo %s pruning, %s %d: ratio %.4f applied (%d entries newly pruned); sparsity %s",
            self.cfg.prune.kind, self.schedule.unit, position, ratio, newly,
            ", ".join(f"{g}={s:.4f}" for g, s in measured.items()),
        )
        if self.out_dir and is_master():
            pruning_counts.write(self.out_dir, self.cfg.prune.kind, ratio, self.cfg.prune.ratio,
                                 self.schedule.unit, position, measured, records(self.pools, self.cfg))
        return ratio
