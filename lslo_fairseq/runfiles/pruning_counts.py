"""``SAVE_DIR/pruning_counts.json``: how many entries of every adapter matrix are pruned.

Written by the pruning controller after every step of the schedule (eq. 4), read by the eq. 6
analysis and ``lslo-plot ise|lsp``::

    {"kind": "ise"|"lsp"|"gps", "ratio": 0.7, "target_ratio": 0.7, "unit": "epoch", "position": 10,
     "sparsity": {"H": 0.7, ...},
     "records": [{"side": "encoder", "layer": 0, "module": "q", "language": "en", "group": "H",
                  "matrix": "B", "pool": "encoder.layers.0", "n_params": 2048, "n_pruned": 1500}, ...]}

Layers are 0-based. ``matrix`` is ``B``/``A``, with ``_src``/``_tgt`` for the banks of a
weight-learning layer.
"""
import os
from typing import List, Mapping

from ..names import DECODER_MODULES, ENCODER_MODULES
from . import RunFileError, is_int, is_number, load_checked, write_checked

FILENAME = "pruning_counts.json"
KINDS = ("ise", "lsp", "gps")
SIDES = ("encoder", "decoder")
MATRICES = ("B", "A", "B_src", "B_tgt", "A_src", "A_tgt")
SIDE_MODULES = {"encoder": ENCODER_MODULES, "decoder": DECODER_MODULES}
RECORD_KEYS = ("side", "layer", "module", "language", "group", "matrix", "pool", "n_params", "n_pruned")


def write(out_dir: str, kind: str, ratio: float, target_ratio: float, unit: str, position: int,
          sparsity: Mapping[str, float], records: List[dict]) -> str:
    """Write (atomically) and return ``out_dir/pruning_counts.json``; the records are validated
    first, so a file that exists can always be read back."""
    path = os.path.join(out_dir, FILENAME)
    doc = dict(kind=kind, ratio=ratio, target_ratio=target_ratio, unit=unit, position=position,
               sparsity=dict(sparsity), records=records)
    return write_checked(path, doc, validate)


def validate_records(records, where: str = "records") -> List[dict]:
    """Check every record against the ``pruning_counts.json`` schema; return them as a list.

    Raises :class:`RunFileError` naming ``where`` and the record's index on the first problem
    (missing key, unknown side/module/matrix, negative or too large counts, a matrix given twice).
    """
    if not isinstance(records, (list, tuple)):
        raise RunFileError(f"{where}: expected a list of records, got {type(records).__name__}")
    if not records:
        raise RunFileError(f"{where}: no records")
    seen = {}
    out = []
    for i, rec in enumerate(records):
        at = f"{where}[{i}]"
        if not isinstance(rec, Mapping):
            raise RunFileError(f"{at}: expected an object, got {type(rec).__name__}")
        missing = [k for k in RECORD_KEYS if k not in rec]
        if missing:
            raise RunFileError(f"{at}: missing key(s) {missing}; a record has {list(RECORD_KEYS)}")
        side, module = rec["side"], rec["module"]
        if side not in SIDES:
            raise RunFileError(f"{at}: side {side!r} is not one of {list(SIDES)}")
        if module not in SIDE_MODULES[side]:
            raise RunFileError(
                f"{at}: module {module!r} is not a {side} module ({', '.join(SIDE_MODULES[side])})"
            )
        if not is_int(rec["layer"]) or rec["layer"] < 0:
            raise RunFileError(f"{at}: layer must be an integer >= 0 (0-based), got {rec['layer']!r}")
        if not isinstance(rec["language"], str) or not rec["language"]:
            raise RunFileError(f"{at}: language must be a non-empty string, got {rec['language']!r}")
        if rec["group"] is not None and not isinstance(rec["group"], str):
            raise RunFileError(f"{at}: group must be a string or null, got {rec['group']!r}")
        if rec["matrix"] not in MATRICES:
            raise RunFileError(f"{at}: matrix {rec['matrix']!r} is not one of {list(MATRICES)}")
        if not isinstance(rec["pool"], str) or not rec["pool"]:
            raise RunFileError(f"{at}: pool must be a non-empty string, got {rec['pool']!r}")
        n, k = rec["n_params"], rec["n_pruned"]
        if not is_int(n) or n <= 0:
            raise RunFileError(f"{at}: n_params must be an integer > 0, got {n!r}")
        if not is_int(k) or not 0 <= k <= n:
            raise RunFileError(f"{at}: n_pruned must be an integer in [0, n_params={n}], got {k!r}")
        key = (side, rec["layer"], module, rec["language"], rec["matrix"])
        if key in seen:
            raise RunFileError(
                f"{at}: {side} layer {rec['layer']} {module} {rec['language']} {rec['matrix']} is "
                f"also {where}[{seen[key]}]; one record per matrix"
            )
        seen[key] = i
        out.append(dict(rec))
    return out


def validate(doc, where: str = "pruning counts") -> dict:
    """Check a whole ``pruning_counts.json`` document (kind, ratio, records); return it."""
    if not isinstance(doc, Mapping):
        raise RunFileError(f"{where}: expected a JSON object with kind, ratio and records")
    for key in ("kind", "ratio", "records"):
        if key not in doc:
            raise RunFileError(f"{where}: missing key {key!r} (expected kind, ratio, records)")
    if doc["kind"] not in KINDS:
        raise RunFileError(f"{where}: kind {doc['kind']!r} is not one of {list(KINDS)}")
    ratio = doc["ratio"]
    if not is_number(ratio) or not 0.0 <= float(ratio) <= 1.0:
        raise RunFileError(f"{where}: ratio must be a number in [0, 1], got {ratio!r}")
    records = validate_records(doc["records"], f"{where}: records")
    return {**doc, "ratio": float(ratio), "records": records}


def load(path: str) -> dict:
    """Read and validate a ``pruning_counts.json``; errors name the file."""
    return load_checked(path, validate)
