"""The stand-in's ``manifest.json`` (``lslo_fairseq/resources/stand_in/``): how the shipped base model
was built and what it is.

Written by :func:`lslo_fairseq.stand_in.package.pack` at the end of ``lslo-stand-in build``; read by
``lslo-demo`` (the model's shape for fairseq's flags) and the tests::

    {"recipe": {"layers": 3, "dim": 256, "ffn": 1024, "heads": 4, "dropout": 0.1, ...},
     "data": {...}, "curve": [{"updates": 300, "AVG": 12.3, ...}, ...], "times_s": {...},
     "train_command": [...], "parameters": N, "bytes": N, "fairseq_training_time_s": 123.4}

``SHA256SUMS`` does not cover it (it is a record, not an input of the model).
"""
import os
from typing import Mapping

from . import RunFileError, is_int, is_number, load_checked, write_checked

FILENAME = "manifest.json"
SHAPE_KEYS = ("layers", "dim", "ffn", "heads")


def validate(doc, where: str = FILENAME) -> dict:
    """Check the recipe's model shape (layers, dim, ffn, heads > 0; dropout in [0, 1)), the curve
    (points with their ``updates``) and the sizes (parameters, bytes); return ``doc``."""
    if not isinstance(doc, Mapping):
        raise RunFileError(f"{where}: expected a JSON object with recipe, curve, parameters and bytes")
    missing = [k for k in ("recipe", "curve", "parameters", "bytes") if k not in doc]
    if missing:
        raise RunFileError(f"{where}: missing key(s) {missing}; rebuild the stand-in")
    recipe = doc["recipe"]
    if not isinstance(recipe, Mapping):
        raise RunFileError(f"{where}: recipe must be an object, got {type(recipe).__name__}")
    for key in SHAPE_KEYS:
        if not is_int(recipe.get(key)) or recipe[key] <= 0:
            raise RunFileError(f"{where}: recipe.{key} must be an integer > 0, got {recipe.get(key)!r}")
    dropout = recipe.get("dropout")
    if not is_number(dropout) or not 0 <= dropout < 1:
        raise RunFileError(f"{where}: recipe.dropout must be a number in [0, 1), got {dropout!r}")
    curve = doc["curve"]
    if not isinstance(curve, list) or not all(isinstance(p, Mapping) and is_int(p.get("updates")) for p in curve):
        raise RunFileError(f"{where}: curve must be a list of points with their 'updates', got {curve!r}")
    for key in ("parameters", "bytes"):
        if not is_int(doc[key]) or doc[key] <= 0:
            raise RunFileError(f"{where}: {key} must be an integer > 0, got {doc[key]!r}")
    return dict(doc)


def load(folder: str) -> dict:
    """Read and validate ``folder/manifest.json``; errors name the file."""
    return load_checked(os.path.join(folder, FILENAME), validate)


def write(out_dir: str, manifest: dict) -> str:
    """Write (atomically) and return ``out_dir/manifest.json``; validated first."""
    return write_checked(os.path.join(out_dir, FILENAME), manifest, validate)
