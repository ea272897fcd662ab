"""Evaluation in the paper's format: translate every direction, score it with spBLEU, group the
scores by resource level (H2H ... V2V, AVG) and set the paper's rows beside them.

- :mod:`.outputs`: ``fairseq-generate`` output files: finding them per direction, reading them;
- :mod:`.spbleu`: spBLEU (FLORES-101 definition) with a given SentencePiece model;
- :mod:`.tables`: the group tables, and the files ``lslo-score`` writes (their writer and readers);
- :mod:`.generation`: every direction translated with fairseq, in this process;
- :mod:`.paper`: the paper's published rows (tables 1-4 and 8).
"""
from typing import Tuple

from ..errors import LSLoError

Direction = Tuple[str, str]
DEFAULT_TASK = "translation_multi_simple_epoch_lslo"


class ScoringError(LSLoError):
    """Bad scoring input: an unreadable generate file, missing outputs, ungrouped languages."""
