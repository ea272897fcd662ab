"""The merge-weights JSON (``--lslo-merge-weights FILE``): the (w_in, w_out) of a modular checkpoint's
input and output adapters, one pair for every direction and one per direction where it differs.

Written by ``lslo-score --merge-search`` (``<results-dir>/merge_weights.json``, or ``--out
PREFIX``.json), read by generation, ``lslo-export fold`` and ``lslo-export peft``::

    {"weights": [w_in, w_out],                          one pair for every direction
     "directions": {"fr-oc": [w_in, w_out], ...},       one pair per direction
     "layers": {"encoder": [[w_in, w_out], ...], "decoder": [...]},
                                                        one pair per layer, for every direction
     "direction_layers": {"fr-oc": {"encoder": [...], "decoder": [...]}},
                                                        one pair per direction and layer
     "search": {...}}                                   the search's or learning's record

``lslo-score --learn-merge-weights`` writes ``direction_layers``. The most specific entry wins:
``direction_layers`` > ``directions`` > ``layers`` > ``weights``. ``weights`` defaults to 0.5,0.5
unless the file has only per-direction entries of ``direction_layers``: then a direction the file
does not name has no weights (None; generation refuses it). ``search`` is read by nobody. A pair is
two numbers in [0, 1], not both 0 (:func:`pair`).
"""
import math
from typing import Dict, List, Mapping, Optional, Tuple

from . import RunFileError, load_checked, write_checked

Weights = Tuple[float, float]
LayerWeights = Dict[str, List[Weights]]  # {"encoder": [(w_in, w_out)] * layers, "decoder": [...]}
Direction = Tuple[str, str]
DEFAULT_WEIGHTS: Weights = (0.5, 0.5)
SIDES = ("encoder", "decoder")
PAIR_EXPECTED = "two weights W_IN,W_OUT in [0, 1], not both 0 (e.g. 0.5,0.5)"


def pair(spec, where: str) -> Weights:
    """``W_IN,W_OUT`` (a string, or a list of two numbers) -> (w_in, w_out); anything else is a
    :class:`RunFileError` ``"{where}: two weights W_IN,W_OUT in [0, 1], not both 0 ..., got {spec!r}"``."""
    if isinstance(spec, (tuple, list)):
        values = list(spec)
    else:
        values = [item.strip() for item in str(spec).replace(";", ",").split(",") if item.strip()]
    try:
        w = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        w = ()
    if len(w) != 2 or not all(math.isfinite(x) and 0 <= x <= 1 for x in w) or w == (0.0, 0.0):
        raise RunFileError(f"{where}: {PAIR_EXPECTED}, got {spec!r}")
    return w


def direction(key, where: str) -> Tuple[str, str]:
    """A ``directions`` key ``SRC-TGT`` -> (src, tgt)."""
    parts = key.split("-") if isinstance(key, str) else []
    if len(parts) != 2 or not all(parts):
        raise RunFileError(f"{where}: direction {key!r} is not SRC-TGT (e.g. fr-oc)")
    return parts[0], parts[1]


def layers(value, where: str) -> LayerWeights:
    """``{"encoder": [[w_in, w_out], ...], "decoder": [...]}`` (one pair per layer), every pair checked."""
    if not isinstance(value, Mapping) or set(value) != set(SIDES) or \
            not all(isinstance(value[side], list) for side in SIDES):
        raise RunFileError(f"{where}: per-layer weights are {{\"encoder\": [[W_IN, W_OUT], ...], \"decoder\": "
                           f"[...]}} (one pair per layer), got {str(value)[:80]}")
    return {side: [pair(w, f"{where} {side} layer {i}") for i, w in enumerate(value[side])] for side in SIDES}


def _mapping(doc, key: str, example: str, where: str) -> Mapping:
    value = doc.get(key) or {}
    if not isinstance(value, Mapping):
        raise RunFileError(f"{where}: {key!r} must be an object {example}, got {type(value).__name__}")
    return value


def validate(doc, where: str) -> Tuple[Optional[Weights], Dict[Direction, Weights],
                                       Dict[Optional[Direction], LayerWeights]]:
    """Check a merge-weights document; return ((w_in, w_out) or None, {(src, tgt): (w_in, w_out)},
    {(src, tgt), or None for every direction: per-layer weights}). Errors name ``where`` and the
    item: ``{where}: 'weights': ...``, ``{where}: direction fr-oc: ...``."""
    if not isinstance(doc, Mapping):
        raise RunFileError(f"{where}: expected a JSON object with 'weights', 'directions', 'layers' or "
                           f"'direction_layers', got {type(doc).__name__}")
    weights = pair(doc.get("weights", DEFAULT_WEIGHTS), f"{where}: 'weights'")
    per = {direction(d, where): pair(w, f"{where}: direction {d}")
           for d, w in _mapping(doc, "directions", '{"fr-oc": [w_in, w_out]}', where).items()}
    layered: Dict[Optional[Direction], LayerWeights] = {}
    if doc.get("layers") is not None:
        layered[None] = layers(doc["layers"], f"{where}: 'layers'")
    for d, w in _mapping(doc, "direction_layers", '{"fr-oc": {"encoder": [...], "decoder": [...]}}', where).items():
        layered[direction(d, where)] = layers(w, f"{where}: direction_layers {d}")
    if layered and "weights" not in doc and "layers" not in doc:
        weights = None  # no default: a direction without weights of its own is refused
    return weights, per, layered


def load(path: str):
    """Read and validate a merge-weights JSON (:func:`validate`'s three values); errors name the file."""
    return load_checked(path, validate)


def write(path: str, doc: dict) -> str:
    """Write (atomically) and return ``path``; the document is validated first, so the file written
    can always be read back."""
    return write_checked(path, doc, validate)
