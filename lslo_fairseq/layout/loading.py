"""Safe, cheap reading of torch/fairseq checkpoint files, with errors that name the flag and the file.

- :func:`allow_fairseq_pickles`: what fairseq checkpoints need beyond tensors (``argparse.Namespace``,
  numpy scalars of older versions) added to torch's ``weights_only`` allow-list; called explicitly where the
  plugin is registered with fairseq (``lslo_fairseq/__init__.py``) and by :func:`load`.
- :func:`load`: ``torch.load(weights_only=True)`` (a foreign pickle never runs code), with
  ``mmap=True`` when only the top level is needed (a GB checkpoint costs no memory); errors name
  ``what`` (the flag) and the file. :func:`problem` is the cheap check behind the training guard
  (:mod:`lslo_fairseq.checkpoints.guard`): the zip directory, then the top level.
- :func:`is_fairseq_checkpoint`.

Torch only (no fairseq): the model, the guard and the tools read checkpoints through it.
"""
from __future__ import annotations

import argparse
import os
import pickle
import zipfile
from typing import Any, Optional

import torch

from ..errors import CheckpointError


def allow_fairseq_pickles() -> None:
    """Let ``torch.load(weights_only=True)`` (torch >= 2.6's default) read fairseq checkpoints: they
    hold their training options as an ``argparse.Namespace``; older fairseq also pickled numpy scalars
    (e.g. ``best_loss``), plain data that torch's documentation allows the same way. Idempotent."""
    if hasattr(torch.serialization, "add_safe_globals"):
        import numpy as np

        scalar = getattr(getattr(np, "_core", np.core), "multiarray").scalar
        dtypes = [type(np.dtype(t)) for t in (np.float64, np.float32, np.float16, np.int64, np.int32)]
        torch.serialization.add_safe_globals([argparse.Namespace, scalar, np.dtype, *dtypes])


def refused_globals(path: str) -> str:
    """What torch's weights-only loading refuses in ``path``, as 'module.name, ...' ('' if unknown)."""
    try:
        return ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - only used to word an error
        return ""


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def load(path: str, what: str, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; ``mmap`` maps tensors instead of reading
    them. A missing or unreadable file raises :class:`CheckpointError` naming ``what`` (e.g.
    ``--checkpoint``) and ``path``."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{what}: {path} does not exist")
    allow_fairseq_pickles()
    try:
        # torch maps only its zip format; a legacy (pre-1.6) file is read instead
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        names = refused_globals(path) if zipfile.is_zipfile(path) else ""
        if names:
            raise CheckpointError(
                f"{what}: {path} holds Python objects that torch's safe (weights_only) loading refuses: {names}. "
                "A checkpoint written by another fairseq version may; if you trust the file (e.g. the release "
                "downloaded from fairseq), run the command again with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 in "
                "its environment (fairseq's own loading needs it too)") from None
        raise CheckpointError(f"{what}: {path} cannot be read as a torch checkpoint: {_first_line(e)}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise CheckpointError(
            f"{what}: {path} cannot be read as a torch checkpoint (truncated, still being written, or "
            f"not a torch file): {_first_line(e)}"
        ) from None


def is_fairseq_checkpoint(obj: Any) -> bool:
    """A dict with a ``model`` state dict, as fairseq writes."""
    return isinstance(obj, dict) and isinstance(obj.get("model"), dict)


def problem(path: str) -> Optional[str]:
    """Why ``path`` is not a loadable fairseq checkpoint, or None when it looks complete. Cheap: the
    zip directory at the end of the file (a truncated copy has none), then the pickled top level
    with ``mmap`` (tensor data is not read)."""
    if not os.path.isfile(path):
        return "no such file"
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if not zipfile.is_zipfile(path):
        if head == b"PK\x03\x04":
            return f"truncated: a zip (torch) file without its end directory ({size:,} bytes)"
        if head[:2] == b"\x80\x02":
            return None  # torch's pre-1.6 format: no cheap check, torch.load reports problems itself
        return f"not a PyTorch checkpoint ({size:,} bytes, starting {head!r})"
    try:
        with zipfile.ZipFile(path) as z:
            if not any(n.endswith("data.pkl") for n in z.namelist()):
                return "a zip file but not a PyTorch checkpoint (no data.pkl)"
    except (zipfile.BadZipFile, OSError) as e:
        return f"unreadable zip: {e}"
    allow_fairseq_pickles()
    try:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except pickle.UnpicklingError:
        return None  # a class outside the weights_only allow-list: torch.load's own message says what to do
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        return f"unreadable: {_first_line(e)}"
    if not is_fairseq_checkpoint(state):
        keys = sorted(state)[:5] if isinstance(state, dict) else type(state).__name__
        return f"a torch file but not a fairseq checkpoint (no 'model' state dict; has {keys})"
    return None
