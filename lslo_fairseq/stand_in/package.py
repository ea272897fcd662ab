"""The shipped stand-in: where it lives, how it is packed, and the SHA-256 check before use.

``lslo_fairseq/resources/stand_in/`` holds ``checkpoint.pt`` (fp16 weights, no optimizer state),
``sentencepiece.bpe.model``, ``dict.txt``, ``manifest.json`` (recipe, data, curve, run times) and
``SHA256SUMS`` (``sha256sum`` format) over the first three.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict

from ..errors import LSLoError
from ..files import copy_file_atomic, file_digest, torch_save_atomic, write_text_atomic
from ..runfiles import stand_in_manifest

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
DEMO_TSV = RESOURCES / "libreoffice" / "libreoffice.complete10.tsv"
STAND_IN_DIR = RESOURCES / "stand_in"
CHECKPOINT, SPM_MODEL, DICT = "checkpoint.pt", "sentencepiece.bpe.model", "dict.txt"
FILES = (CHECKPOINT, SPM_MODEL, DICT)
SUMS = "SHA256SUMS"
REBUILD = "bash scripts/rebuild-stand-in.sh"


class StandInError(LSLoError):
    """The stand-in's files are missing or do not match their recorded SHA-256."""


def user_dir() -> str:
    return str(Path(__file__).resolve().parents[1])


def sha256(path: Path) -> str:
    return file_digest(path, "sha256")


def read_sums(folder: Path) -> Dict[str, str]:
    path = folder / SUMS
    if not path.is_file():
        raise StandInError(f"{path} not found: the stand-in has no recorded checksums; rebuild it "
                           f"with `{REBUILD}`")
    sums = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest
    return sums


def verify(folder: Path = STAND_IN_DIR) -> Dict[str, Path]:
    """Paths of the stand-in's files after checking each against ``SHA256SUMS``; a missing or
    changed file raises :class:`StandInError` naming it and the rebuild command."""
    folder = Path(folder)
    sums = read_sums(folder)
    paths = {}
    for name in FILES:
        path = folder / name
        if name not in sums:
            raise StandInError(f"{folder / SUMS} has no line for {name}; rebuild with `{REBUILD}`")
        if not path.is_file():
            raise StandInError(f"{path} is missing; restore it (git checkout) or rebuild with `{REBUILD}`")
        got = sha256(path)
        if got != sums[name]:
            raise StandInError(
                f"{path} is corrupted or changed: SHA-256 {got}, expected {sums[name]} "
                f"(from {folder / SUMS}); restore it (git checkout) or rebuild with `{REBUILD}`")
        paths[name] = path
    return paths


def pack(checkpoint: Path, vocab: Path, out: Path, manifest: dict) -> None:
    """fp16 copy of ``checkpoint``'s model (optimizer state dropped) + the vocabulary + manifest +
    ``SHA256SUMS`` into ``out``."""

    from ..layout.frozen_base import read_fairseq_checkpoint

    state = read_fairseq_checkpoint(str(checkpoint), "stand-in checkpoint")
    # tied weights (shared embeddings, output projection) stay one tensor: converted once each
    halves: Dict[tuple, object] = {}
    model = {}
    for k, v in state["model"].items():
        key = (v.data_ptr(), tuple(v.shape), v.stride(), v.dtype)
        if key not in halves:
            halves[key] = v.half() if v.is_floating_point() else v
        model[k] = halves[key]
    state["model"] = model
    state["last_optimizer_state"] = None
    out.mkdir(parents=True, exist_ok=True)
    torch_save_atomic(str(out / CHECKPOINT), state)
    copy_file_atomic(str(vocab / SPM_MODEL), str(out / SPM_MODEL))
    copy_file_atomic(str(vocab / DICT), str(out / DICT))
    n_params = sum(v.numel() for v in halves.values())  # each tied tensor once, as fairseq counts
    # fairseq's own clock of training (summed over resumed runs, start-up and saving excluded)
    trained_s = (state.get("extra_state") or {}).get("previous_training_time")
    stand_in_manifest.write(str(out), dict(manifest, parameters=n_params, bytes=os.path.getsize(out / CHECKPOINT),
                                           fairseq_training_time_s=trained_s))
    write_text_atomic(str(out / SUMS), "".join(f"{sha256(out / n)}  {n}\n" for n in FILES))
