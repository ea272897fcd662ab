"""The JSON files the plugin writes for a later step (analysis, generation, the demo, export), one
module per format, each with its writer, its reader and its validator:

- :mod:`.pruning_counts`: ``SAVE_DIR/pruning_counts.json``, the pruned count of every adapter
  matrix (written by the pruning controller; read by eq. 6 and the figures);
- :mod:`.weight_learning`: ``SAVE_DIR/weight_learning.json``, the learned (w_src, w_tgt) of every
  layer and the index each one chooses (written by the task; read by ``--lslo-encoder-index`` and
  ``lslo-plot weights``);
- :mod:`.merge_weights`: the merge-weights JSON, the (w_in, w_out) of a modular checkpoint's
  directions (written by ``lslo-score --merge-search``; read by ``--lslo-merge-weights FILE``);
- :mod:`.prepared`: ``DATA_DIR/prepared.json``, what a prepared data directory holds (written by
  both preparers, ``data.multiparallel`` and ``data.flores101``; read by ``lslo-demo``);
- :mod:`.stand_in_manifest`: the stand-in's ``manifest.json`` (written by ``stand_in.package``;
  read by ``lslo-demo`` for the model's shape);
- :mod:`.export_info`: ``OUT/lslo_export.json``, the record of ``lslo-export hf`` or ``peft``
  (``kind`` says which; read by ``lslo-export peft --base-model``).

Plain Python (no torch, no fairseq): the CLIs and option checks read them cheaply. Writes are
atomic (:mod:`lslo_fairseq.files`).
"""
import json
import numbers
import os
from typing import Any, Callable

from ..errors import LSLoError
from ..files import write_json_atomic


class RunFileError(LSLoError):
    """A run file that is missing, unreadable or breaks its format; the message names the file and
    the item."""


def read_json(path: str):
    """A JSON file's content; a missing or unreadable file is a :class:`RunFileError` naming it."""
    if not os.path.isfile(path):
        raise RunFileError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise RunFileError(f"{path}: not a readable JSON file: {e}") from None


def is_int(x) -> bool:
    """An integer of JSON (not a bool)."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def is_number(x) -> bool:
    """A number of JSON (not a bool)."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def load_checked(path: str, validate: Callable[[Any, str], Any]):
    """``validate(content, path)`` of the JSON file at ``path``: errors name the file."""
    return validate(read_json(path), path)


def write_checked(path: str, doc, validate: Callable[[Any, str], Any]) -> str:
    """``validate(doc, path)`` first (a file that exists can always be read back), then ``doc`` at
    ``path``, atomically; returns ``path``."""
    validate(doc, path)
    write_json_atomic(path, doc)
    return path
