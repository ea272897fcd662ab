"""``DATA_DIR/prepared.json``: what a prepared data directory holds, written by both preparers.

Written by :func:`lslo_fairseq.data.multiparallel.prepare` (a multi-parallel TSV: ``tsv``,
``test_raw``/``test_spm``, ``rows.table``, ...) and :func:`lslo_fairseq.data.flores101.prepare`
(FLORES-101 for a pretrained model: ``flores``, ``groups``, ``model_dir``, ...); read by
``lslo-demo`` (is the data directory current?), the rehearsal's measures and the tests. Both share::

    {"data_dir": "...", "langs": ["en", "fr", ...], "lang_pairs": ["en-fr", ...],
     "rows": {"train": N, "valid": N, "test": N, ...}, "spm_model": "...", "dict": "...",
     "lang_dict": "...", "tokens": {...}, "unk_tokens": {...}, "elapsed_s": 1.2, ...}

Only those shared keys are checked; each preparer's own keys are passed through.
"""
import os
from typing import Mapping

from . import RunFileError, is_int, load_checked, write_checked

FILENAME = "prepared.json"
PATH_KEYS = ("data_dir", "spm_model", "dict", "lang_dict")
SPLITS = ("train", "valid", "test")


def validate(doc, where: str = FILENAME) -> dict:
    """Check the keys both preparers write (paths, languages, pairs, row counts); return ``doc``.
    Errors name ``where`` and the key."""
    if not isinstance(doc, Mapping):
        raise RunFileError(f"{where}: expected a JSON object (a prepared data directory's summary), "
                           f"got {type(doc).__name__}")
    missing = [k for k in (*PATH_KEYS, "langs", "lang_pairs", "rows") if k not in doc]
    if missing:
        raise RunFileError(f"{where}: missing key(s) {missing}; prepare the data directory again")
    for key in PATH_KEYS:
        if not isinstance(doc[key], str) or not doc[key]:
            raise RunFileError(f"{where}: {key} must be a path (a non-empty string), got {doc[key]!r}")
    langs = doc["langs"]
    if not isinstance(langs, list) or not langs or not all(isinstance(l, str) and l for l in langs):
        raise RunFileError(f"{where}: langs must be a non-empty list of language codes, got {langs!r}")
    pairs = doc["lang_pairs"]
    if not isinstance(pairs, list) or not all(
            isinstance(p, str) and len(p.split("-")) == 2 and all(x in langs for x in p.split("-")) for p in pairs):
        raise RunFileError(f"{where}: lang_pairs must be a list of SRC-TGT pairs of langs {langs}, got {pairs!r}")
    rows = doc["rows"]
    if not isinstance(rows, Mapping) or not all(
            is_int(rows.get(s)) and rows[s] >= 0 for s in SPLITS):
        raise RunFileError(f"{where}: rows must give the number of train, valid and test rows, got {rows!r}")
    return dict(doc)


def write(out_dir: str, info: dict) -> str:
    """Write (atomically) and return ``out_dir/prepared.json``; ``info`` is validated first."""
    return write_checked(os.path.join(out_dir, FILENAME), info, validate)


def load(data_dir: str) -> dict:
    """Read and validate ``data_dir/prepared.json``; errors name the file."""
    return load_checked(os.path.join(data_dir, FILENAME), validate)
