"""Adapter-only checkpoints: what an LSLo run changes, and a reference to the frozen base it started from.

An LSLo run freezes every weight of the checkpoint it starts from (``--finetune-from-model``, the
released ``model.pt``). With ``--lslo-checkpoint adapters`` (the default) every ``checkpoint*.pt`` of
``fairseq-train`` holds, of the model, only what training changes or what is not in that file:
adapters, weight-learning logits, pruning masks, the layout and other buffers; the optimizer and
trainer state as fairseq writes them; and under ``model[BASE_KEY]`` a reference to the frozen base:

    {"path": absolute path, "size": bytes, "sha256": hex digest,
     "keys": [[name in this model, dtype], ...]}  # the frozen tensors left out

Reading one (:func:`complete_frozen_base`, :func:`read_fairseq_checkpoint`: fairseq-train ``--restore-file``, fairseq-generate
``--path``, every lslo-* tool) puts those tensors back from the referenced file, in the dtype the
model had, after checking its size and digest; ``$LSLO_FROZEN_BASE`` names the file where it has moved.
Tensors shared in the base file (M2M-100's tied embeddings) stay shared.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Dict, Iterable, Optional

import torch

from ..errors import CheckpointError
from ..files import file_digest
from . import json_buffer
from .loading import is_fairseq_checkpoint, load

BASE_KEY = "lslo_frozen_base"
ENV = "LSLO_FROZEN_BASE"
CHECKPOINT_MODES = ("adapters", "full")
_DIGESTS: Dict[tuple, str] = {}


def sha256(path: str) -> str:
    """SHA-256 of a file, computed once per process for a given (path, size, mtime)."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_digest(path, "sha256")
    return _DIGESTS[key]


def reference_of(model_state) -> Optional[dict]:
    """The frozen-base reference of a checkpoint's model state (None for a full checkpoint)."""
    t = model_state.get(BASE_KEY)
    return None if t is None else json_buffer.decode(t)


def new_reference(path: str) -> dict:
    """The reference to ``path`` (the keys are filled in by :func:`strip`)."""
    path = os.path.abspath(path)
    return {"path": path, "size": os.path.getsize(path), "sha256": sha256(path), "keys": []}


def strip(state: "OrderedDict[str, torch.Tensor]", frozen: Iterable[str], ref: dict) -> "OrderedDict[str, torch.Tensor]":
    """``state`` without the ``frozen`` keys, with the reference (which records them) under BASE_KEY."""
    frozen = set(frozen)
    out = OrderedDict((k, v) for k, v in state.items() if k not in frozen)
    ref = dict(ref, keys=[[k, str(v.dtype).replace("torch.", "")] for k, v in state.items() if k in frozen])
    out[BASE_KEY] = json_buffer.encode(ref)
    return out


def base_key(name: str, base_state) -> Optional[str]:
    """The key of this model's frozen tensor ``name`` in the base file: the same, or, for a projection
    that LSLo wraps, the plain transformer's (``X.base_layer.weight`` -> ``X.weight``)."""
    if name in base_state:
        return name
    plain = name.replace(".base_layer.", ".")
    return plain if plain in base_state else None


def fill(model_state, ref: dict, base_state, base_path: str, where: str) -> "OrderedDict[str, torch.Tensor]":
    """``model_state`` with the frozen tensors of ``ref`` taken from ``base_state``, cast once per
    shared storage so that tied tensors stay tied."""
    out = OrderedDict((k, v) for k, v in model_state.items() if k != BASE_KEY)
    cast: Dict[tuple, torch.Tensor] = {}
    for name, dtype in ref["keys"]:
        key = base_key(name, base_state)
        if key is None:
            raise CheckpointError(f"{where}: its frozen base {base_path} has no tensor {name!r} (nor "
                                     f"{name.replace('.base_layer.', '.')!r}); it is not the file the run started from")
        t = base_state[key]
        want = getattr(torch, dtype)
        if t.dtype != want:
            ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), dtype)
            if ident not in cast:
                cast[ident] = t.to(want)
            t = cast[ident]
        out[name] = t
    return out


def read_fairseq_checkpoint(path: str, what: str, mmap: bool = False) -> Dict[str, Any]:
    """A fairseq checkpoint; an adapter-only one (this module) with its frozen base put back."""
    state = load(path, what, mmap=mmap)
    if not is_fairseq_checkpoint(state):
        kind = "an LSLo adapters file" if isinstance(state, dict) and state.get("format") else type(state).__name__
        raise CheckpointError(f"{what}: {path} is not a fairseq checkpoint (no 'model' state; found {kind})")
    state["model"] = complete_frozen_base(state["model"], f"{what}: {path}", mmap=mmap)
    return state


def frozen_base_path(ref: Dict[str, Any], where: str) -> str:
    """The file holding an adapter-only checkpoint's frozen base (``$LSLO_FROZEN_BASE``, else the
    recorded path), refused unless its size and SHA-256 are the recorded ones."""
    override = os.environ.get(ENV)
    path = override or ref["path"]
    origin = f"from ${ENV}" if override else "the path recorded in it"
    fix = (f"put that file back, or set {ENV}=/path/to/model.pt: the file the run's fairseq-train "
           f"--finetune-from-model read ({ref['size']:,} bytes, sha256 {ref['sha256']})")
    if not os.path.isfile(path):
        raise CheckpointError(f"{where} holds adapters only, and its frozen base {path} ({origin}) does not exist: {fix}")
    size = os.path.getsize(path)
    digest = sha256(path) if size == ref["size"] else None
    if digest != ref["sha256"]:
        found = f"{size:,} bytes" + (f", sha256 {digest}" if digest else "")
        raise CheckpointError(f"{where} holds adapters only, and {path} ({origin}) is not its frozen base: "
                              f"{found}; {fix}")
    return path


def complete_frozen_base(model_state: Dict[str, Any], where: str, mmap: bool = True) -> Dict[str, Any]:
    """``model_state`` with the frozen tensors an adapter-only checkpoint leaves out read back from its
    base (checked by :func:`frozen_base_path`); any other state as it is."""
    ref = reference_of(model_state)
    if ref is None:
        return model_state
    path = frozen_base_path(ref, where)
    base = read_fairseq_checkpoint(path, f"the frozen base of {where}", mmap=mmap)
    return fill(model_state, ref, base["model"], path, where)
