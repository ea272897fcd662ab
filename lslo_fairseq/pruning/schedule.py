"""Gradual Pruning Schedule (paper eq. 4, after Zhu & Gupta 2017).

    P_e = 0                          for e <= E
    P_e = P - P (1 - (e - E) / k)^3  for E < e <= E + k
    P_e = P                          for E + k < e <= T

``e`` counts epochs from 1 (fairseq's numbering); the update-level variant applies the same curve
to update counts (E and k in updates).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional


from ..config import LSLoConfigError, check_prune_ratio


class ScheduleError(LSLoConfigError):
    """A pruning schedule that cannot run as asked."""


@dataclass(frozen=True)
class GradualPruningSchedule:
    ratio: float  # P, the target share of pruned entries
    start: int  # E: no pruning up to and including step E
    duration: int  # k: steps over which the ratio rises to P
    total: Optional[int] = None  # T, only checked (E + k <= T)
    unit: str = "epoch"  # or "update"

    def __post_init__(self):
        check_prune_ratio(self.ratio)
        if self.start < 0:
            raise ScheduleError(f"--lslo-prune-start: must be >= 0, got {self.start}")
        if self.duration < 1:
            raise ScheduleError(f"--lslo-prune-duration: must be >= 1, got {self.duration}")
        if self.total is not None and self.start + self.duration > self.total:
            raise ScheduleError(
                f"--lslo-prune-start + --lslo-prune-duration = {self.start + self.duration} exceeds the "
                f"run's length T = {self.total} {self.unit}s (--max-{self.unit}): the target ratio would never be reached"
            )
        if self.unit not in ("epoch", "update"):
            raise ScheduleError(f"--lslo-prune-unit: 'epoch' or 'update', got {self.unit!r}")

    def ratio_at(self, step: int) -> float:
        """P_e of eq. 4 for epoch (or update) ``step``."""
        if step <= self.start:
            return 0.0
        if step <= self.start + self.duration:
            return self.ratio - self.ratio * (1.0 - (step - self.start) / self.duration) ** 3
        return self.ratio

    def ratios(self, steps: int) -> List[float]:
        return [self.ratio_at(e) for e in range(1, steps + 1)]
