"""Before ``fairseq-train`` loads a checkpoint: is it the complete fairseq checkpoint it should be?

fairseq writes the first checkpoint of a save atomically (``X.pt.tmp``, then rename) but *copies*
it to the others (``checkpoint_last.pt`` after ``checkpoint_E_U.pt``/``checkpoint_best.pt``) with
``shutil.copyfile``, which is not atomic: a run killed during that copy leaves a truncated
``checkpoint_last.pt``, and the next launch would resume from it. torch then fails without naming
the file, and a foreign file gives ``KeyError: 101`` or ``KeyError: 'best_loss'``. These checks
name the flag and the file instead, and point to the newest intact checkpoint.

The check is :func:`lslo_fairseq.layout.loading.problem`: the zip directory at the end of the file (a truncated copy
has none) and the pickled top level with ``mmap=True`` (tensor data is not read), so it is cheap for
GB checkpoints. An adapter-only checkpoint's frozen base is checked too (present, same SHA-256).
"""
from __future__ import annotations

import glob
import os
from typing import Optional, Tuple

from ..errors import CheckpointError
from ..layout import frozen_base
from ..layout.frozen_base import frozen_base_path
from ..layout.loading import load, problem


class CheckpointFileError(CheckpointError):
    """A checkpoint to load that is missing, truncated or not a fairseq checkpoint."""


def file_to_load(args) -> Optional[Tuple[str, str]]:
    """(path, what) of the file ``fairseq-train`` will load, by fairseq's rule
    (``checkpoint_utils.load_checkpoint``): SAVE_DIR/checkpoint_last.pt when it exists, else
    ``--finetune-from-model``; a non-default ``--restore-file`` always. None: nothing is loaded."""
    restore = getattr(args, "restore_file", "checkpoint_last.pt") or "checkpoint_last.pt"
    suffix = getattr(args, "checkpoint_suffix", "") or ""
    if restore != "checkpoint_last.pt":
        return restore.replace(".pt", suffix + ".pt"), "--restore-file"
    last = os.path.join(getattr(args, "save_dir", "checkpoints"), f"checkpoint_last{suffix}.pt")
    if os.path.exists(last):
        return last, "--save-dir (resuming from its checkpoint_last.pt)"
    finetune = getattr(args, "finetune_from_model", None)
    if finetune:
        return finetune, "--finetune-from-model"
    return None


def newest_intact(folder: str, exclude: str) -> Optional[str]:
    """The loadable ``checkpoint*.pt`` in ``folder`` (other than ``exclude``) with the most updates;
    of equals, an update/epoch checkpoint before ``checkpoint_best.pt``."""
    best = None
    for path in glob.glob(os.path.join(folder, "checkpoint*.pt")):
        if os.path.abspath(path) == os.path.abspath(exclude) or problem(path) is not None:
            continue
        try:
            updates = load(path, "--restore-file", mmap=True)["optimizer_history"][-1]["num_updates"]
        except Exception:  # noqa: BLE001 - an unreadable candidate is simply not proposed
            continue
        key = (updates, "best" not in os.path.basename(path), os.path.getmtime(path))
        if best is None or key > best[0]:
            best = (key, path)
    return None if best is None else best[1]


def check_checkpoint_to_load(args) -> None:
    """Raise :class:`CheckpointFileError` naming the flag and file if the checkpoint that
    ``fairseq-train`` is about to load is missing, truncated or foreign."""
    target = file_to_load(args)
    if target is None:
        return
    path, what = target
    why = problem(path)
    if why is None:
        ref = frozen_base.reference_of(load(path, what, mmap=True)["model"])
        if ref is not None:
            frozen_base_path(ref, f"{what}: {path}")
        return
    msg = f"{what}: cannot load {path}: {why}"
    if why != "no such file" and what.startswith("--save-dir"):
        msg += ("; a run killed while fairseq copied checkpoint_last.pt leaves such a file (the copy is "
                "not atomic)")
        other = newest_intact(os.path.dirname(path), path)
        msg += (f". Resume from the newest intact checkpoint with --restore-file {other}" if other
                else ". No other intact checkpoint in that folder: delete it to start afresh")
    elif why == "no such file" and what == "--restore-file":
        msg += " (fairseq would silently start from scratch)"
    raise CheckpointFileError(msg)
