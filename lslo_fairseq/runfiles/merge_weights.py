"""The merge-weights JSON (``--lslo-merge-weights FILE``): the (w_in, w_out) of a modular checkpoint's
input and output adapters, one pair for every direction and one per direction where it differs.

Written by ``lslo-score --merge-search`` (``<results-dir>/merge_weights.json``, or ``--out
PREFIX``.json), read by generation, ``lslo-export merge`` and ``lslo-export peft``::

    {"weights": [w_in, w_out], "directions": {"fr-oc": [w_in, w_out], ...}, "search": {...}}

``weights`` (default 0.5,0.5) applies to the directions not listed; ``search`` is the search's
record (read by nobody). A pair is two numbers >= 0, not both 0 (:func:`pair`).
"""
import math
from typing import Dict, Mapping, Tuple

from . import RunFileError, load_checked, write_checked

Weights = Tuple[float, float]
DEFAULT_WEIGHTS: Weights = (0.5, 0.5)
PAIR_EXPECTED = "two weights W_IN,W_OUT >= 0, not both 0 (e.g. 0.5,0.5)"


def pair(spec, where: str) -> Weights:
    """``W_IN,W_OUT`` (a string, or a list of two numbers) -> (w_in, w_out); anything else is a
    :class:`RunFileError` ``"{where}: two weights W_IN,W_OUT >= 0, not both 0 ..., got {spec!r}"``."""
    if isinstance(spec, (tuple, list)):
        values = list(spec)
    else:
        values = [item.strip() for item in str(spec).replace(";", ",").split(",") if item.strip()]
    try:
        w = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        w = ()
    if len(w) != 2 or not all(math.isfinite(x) and x >= 0 for x in w) or w == (0.0, 0.0):
        raise RunFileError(f"{where}: {PAIR_EXPECTED}, got {spec!r}")
    return w


def direction(key, where: str) -> Tuple[str, str]:
    """A ``directions`` key ``SRC-TGT`` -> (src, tgt)."""
    parts = key.split("-") if isinstance(key, str) else []
    if len(parts) != 2 or not all(parts):
        raise RunFileError(f"{where}: direction {key!r} is not SRC-TGT (e.g. fr-oc)")
    return parts[0], parts[1]


def validate(doc, where: str) -> Tuple[Weights, Dict[Tuple[str, str], Weights]]:
    """Check a merge-weights document; return ((w_in, w_out), {(src, tgt): (w_in, w_out)}). Errors
    name ``where`` and the item: ``{where}: 'weights': ...``, ``{where}: direction fr-oc: ...``."""
    if not isinstance(doc, Mapping):
        raise RunFileError(f"{where}: expected a JSON object with 'weights' and 'directions', "
                           f"got {type(doc).__name__}")
    weights = pair(doc.get("weights", DEFAULT_WEIGHTS), f"{where}: 'weights'")
    directions = doc.get("directions") or {}
    if not isinstance(directions, Mapping):
        raise RunFileError(f"{where}: 'directions' must be an object {{\"fr-oc\": [w_in, w_out]}}, "
                           f"got {type(directions).__name__}")
    per = {direction(d, where): pair(w, f"{where}: direction {d}") for d, w in directions.items()}
    return weights, per


def load(path: str) -> Tuple[Weights, Dict[Tuple[str, str], Weights]]:
    """Read and validate a merge-weights JSON; errors name the file."""
    return load_checked(path, validate)


def write(path: str, doc: dict) -> str:
    """Write (atomically) and return ``path``; the document is validated first, so the file written
    can always be read back."""
    return write_checked(path, doc, validate)
