"""``OUT/lslo_export.json``: the record ``lslo-export hf`` and ``lslo-export peft`` leave beside what
they write, one schema per command, told apart by ``kind``:

- ``"kind": "hf"`` (the frozen base as a Hugging Face directory)::

    {"kind": "hf", "from_checkpoint": "...", "languages": ["en", ...], "language_token_ids": {"en": 8, ...},
     "vocab_size": N, "fairseq_vocab_size": N, "files": ["config.json", ...], ...}

- ``"kind": "peft"`` (one PEFT LoRA adapter per direction)::

    {"kind": "peft", "from_checkpoint": "...", "base_model": "hf/" | null,
     "adapters": {"fr-oc": {"modules": N, "ranks": [2, 4]}, ...}, "merge": {...} (modular checkpoints)}

Read by ``lslo-export peft --base-model HF_DIR`` (which must be an ``hf`` record). Files written
before ``kind`` existed are told apart by their keys (``language_token_ids``: hf; ``adapters``: peft).
"""
import os
from typing import Mapping, Optional

from ..files import write_json_atomic
from . import RunFileError, is_int, read_json

FILENAME = "lslo_export.json"
REQUIRED = {
    "hf": ("from_checkpoint", "languages", "language_token_ids", "vocab_size", "files"),
    "peft": ("from_checkpoint", "base_model", "adapters"),
}
KINDS = tuple(REQUIRED)


def kind_of(doc: Mapping, where: str) -> str:
    """The record's ``kind``; for a file written before the field, the kind its keys show."""
    if "kind" in doc:
        kind = doc["kind"]
    elif "language_token_ids" in doc:
        kind = "hf"
    elif "adapters" in doc:
        kind = "peft"
    else:
        raise RunFileError(f"{where}: no 'kind' ({' or '.join(KINDS)}): not a record of lslo-export hf or peft")
    if kind not in REQUIRED:
        raise RunFileError(f"{where}: kind {kind!r} is not one of {list(KINDS)}")
    return kind


def validate(doc, where: str = FILENAME, kind: Optional[str] = None) -> dict:
    """Check a record (of ``kind``, if given: an ``hf`` directory must not hold a ``peft`` record);
    return it with its ``kind``. Errors name ``where`` and the key."""
    if not isinstance(doc, Mapping):
        raise RunFileError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    got = kind_of(doc, where)
    if kind is not None and got != kind:
        raise RunFileError(f"{where}: written by lslo-export {got}, not by lslo-export {kind}")
    missing = [k for k in REQUIRED[got] if k not in doc]
    if missing:
        raise RunFileError(f"{where}: missing key(s) {missing} of an lslo-export {got} record")
    if got == "hf":
        ids = doc["language_token_ids"]
        if not isinstance(ids, Mapping) or not all(isinstance(l, str) and is_int(i) for l, i in ids.items()):
            raise RunFileError(f"{where}: language_token_ids must map languages to token ids, got {ids!r}")
        if not is_int(doc["vocab_size"]) or doc["vocab_size"] <= 0:
            raise RunFileError(f"{where}: vocab_size must be an integer > 0, got {doc['vocab_size']!r}")
    else:
        adapters = doc["adapters"]
        if not isinstance(adapters, Mapping) or not all(
                isinstance(a, Mapping) and is_int(a.get("modules")) and isinstance(a.get("ranks"), list)
                for a in adapters.values()):
            raise RunFileError(f"{where}: adapters must map directions to {{modules, ranks}}, got {adapters!r}")
    return {"kind": got, **doc}


def write(out_dir: str, kind: str, info: Mapping) -> str:
    """Write (atomically) and return ``out_dir/lslo_export.json``: ``info`` with ``"kind": kind``,
    validated first."""
    path = os.path.join(out_dir, FILENAME)
    doc = validate({"kind": kind, **info}, path, kind)
    write_json_atomic(path, doc)
    return path


def load(out_dir: str, kind: Optional[str] = None) -> dict:
    """Read and validate ``out_dir/lslo_export.json`` (of ``kind``, if given); errors name the file."""
    path = os.path.join(out_dir, FILENAME)
    return validate(read_json(path), path, kind)
