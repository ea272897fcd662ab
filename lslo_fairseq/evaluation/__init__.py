"""Evaluation in the paper's format: translate every direction, score it with spBLEU (or chrF++),
group the scores by resource level (H2H ... V2V, AVG) and per language (l→, →l) and set the
paper's rows beside them.

- :mod:`.outputs`: ``fairseq-generate`` output files: finding them per direction, reading them;
- :mod:`.spbleu`: spBLEU (FLORES-101 definition) with a given SentencePiece model;
- :mod:`.metrics`: the metrics ``lslo-score --metric`` offers (spBLEU, chrF++) behind one interface,
  and their result file names;
- :mod:`.bootstrap`: paired-bootstrap confidence intervals of any of them;
- :mod:`.tables`: the group and per-language tables, and the files ``lslo-score`` writes (their
  writer and readers);
- :mod:`.generation`: every direction translated with fairseq, in this process;
- :mod:`.paper`: the paper's published rows (tables 1-4 and 8).
"""
from typing import Tuple

from ..errors import LSLoError

Direction = Tuple[str, str]
DEFAULT_TASK = "translation_multi_simple_epoch_lslo"


class ScoringError(LSLoError):
    """Bad scoring input: an unreadable generate file, missing outputs, ungrouped languages."""
