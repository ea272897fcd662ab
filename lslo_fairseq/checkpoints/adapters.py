"""Adapters-only files: the LSLo tensors of a run (A, B, pruning masks, weight-learning logits and
the layout), its options, and a fingerprint of the base model they were trained on.

A file is a few MB where the base is GBs. ``attach`` puts it back on a base checkpoint and writes a
normal LSLo checkpoint (for ``fairseq-generate --user-dir lslo_fairseq`` or
``fairseq-train --finetune-from-model``); :func:`load_adapters` puts it into a built model.

Base fingerprint: for every frozen base parameter (LSLo tensors excluded; ``X.base_layer.weight``
named ``X.weight`` so plain and LSLo checkpoints agree) its shape and the SHA-256 (first 16 hex
digits) of its values cast to float16. All tensors are hashed, not a sample, because a base that
differs anywhere (another fine-tune of the same release, another language list) gives adapters a
different meaning; float16 makes the fp32 release and an fp16 training copy of it agree. Hashing
is linear in the model size (measured: see the README).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from ..config import LSLoConfigError
from ..layout.frozen_base import read_fairseq_checkpoint
from ..layout.keys import is_lslo_key
from ..layout.loading import load
from ..layout.record import LAYOUT_KEY, decode_layout, layout_differences, layout_of
from . import pool
from .fold import EXPORT_KEY, FRESH_ITERATOR, shared_cast
from .reading import CheckpointError, build_lslo_model, load_lslo_checkpoint, to_plain, vocab_size

FORMAT, VERSION = "lslo-adapters", 1
FINGERPRINT_METHOD = "sha256[:16] of float16 values, every base parameter"


def canonical_name(key: str) -> str:
    return key.replace(".base_layer.", ".")


def tensor_digest(t: torch.Tensor) -> str:
    data = t.detach().to(device="cpu", dtype=torch.float16).contiguous().view(torch.int16).numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


def base_fingerprint(model) -> Dict[str, Any]:
    """{name: [shape, digest]} over the model's non-LSLo parameters."""
    tensors = OrderedDict()
    for name, p in model.named_parameters():
        if is_lslo_key(name):
            continue
        tensors[canonical_name(name)] = [list(p.shape), tensor_digest(p)]
    return dict(method=FINGERPRINT_METHOD, tensors=tensors)


def fingerprint_differences(theirs: Dict[str, Any], ours: Dict[str, Any]) -> List[str]:
    a, b = theirs["tensors"], ours["tensors"]
    out = []
    missing, extra = [k for k in a if k not in b], [k for k in b if k not in a]
    if missing:
        out.append(f"{len(missing)} tensor(s) missing from the base (e.g. {missing[0]})")
    if extra:
        out.append(f"{len(extra)} tensor(s) the adapters' base did not have (e.g. {extra[0]})")
    shapes = [k for k in a if k in b and a[k][0] != b[k][0]]
    if shapes:
        k = shapes[0]
        out.append(f"{len(shapes)} shape(s) differ (e.g. {k}: {tuple(a[k][0])} vs {tuple(b[k][0])})")
    values = [k for k in a if k in b and a[k][0] == b[k][0] and a[k][1] != b[k][1]]
    if values:
        out.append(f"{len(values)} of {len(a)} tensors have other values (e.g. {', '.join(values[:3])})")
    return out


def lslo_tensors(model, state_model: Dict[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """The model's LSLo-only state (keys as in its state dict), values as stored in the checkpoint."""
    out = OrderedDict()
    for key, value in model.state_dict().items():
        if is_lslo_key(key):
            out[key] = state_model.get(key, value).detach().clone()
    return out


def extract(path: str, langs: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The adapters file of the LSLo training checkpoint ``path`` (a dict for ``torch.save``); with
    ``langs``, those languages' adapters only (:mod:`.pool`)."""
    data = extract_all(path)
    return data if not langs else pool.select_languages(data, langs, path)


def extract_all(path: str) -> Dict[str, Any]:
    state, model = load_lslo_checkpoint(path, "--checkpoint")
    if state.get("cfg") is None:
        raise CheckpointError(f"--checkpoint: {path} has no cfg (written by a fairseq older than 0.10)")
    cfg = state["cfg"]
    history = [{k: v for k, v in h.items() if k != "optimizer"} for h in state.get("optimizer_history", [])[-1:]]
    return {
        "format": FORMAT,
        "version": VERSION,
        "layout": layout_of(model.lslo_config),
        "tensors": lslo_tensors(model, state["model"]),
        "base_fingerprint": base_fingerprint(model),
        "vocab_size": vocab_size(state["model"]),
        "cfg": to_plain(cfg),
        "namespace_sections": [k for k, v in cfg.items() if isinstance(v, argparse.Namespace)],
        "optimizer_history": history,
        "train_iterator": (state.get("extra_state") or {}).get("train_iterator"),
        "from_checkpoint": path,
    }


def read_adapters(path: str, what: str = "--adapters") -> Dict[str, Any]:
    """An adapters file, checked for completeness; anything else is a :class:`CheckpointError`."""
    data = load(path, what)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        kind = "a fairseq checkpoint" if isinstance(data, dict) and "model" in data else type(data).__name__
        raise CheckpointError(f"{what}: {path} is not an LSLo adapters file (found {kind}); write one with "
                              "lslo-export adapters --checkpoint CKPT --out FILE")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{what}: {path} has adapters format version {data.get('version')}; this "
                              f"lslo-fairseq reads version {VERSION}")
    need = ("layout", "tensors", "base_fingerprint", "vocab_size", "cfg", "namespace_sections")
    missing = [k for k in need if k not in data]
    if missing:
        raise CheckpointError(f"{what}: {path} is incomplete (no {', '.join(missing)})")
    stored = data["tensors"].get(LAYOUT_KEY)
    if stored is None or decode_layout(stored) != data["layout"]:
        raise CheckpointError(f"{what}: {path} is inconsistent (its layout tensor does not match its layout)")
    return data


def check_against(model, data: Dict[str, Any], path: str) -> None:
    """The file's layout and base fingerprint must be the model's; errors name what differs."""
    diff = layout_differences(data["layout"], layout_of(model.lslo_config), f"adapters file {path}")
    if diff:
        raise LSLoConfigError(f"{path}: these adapters have another LSLo configuration than the model they "
                              "are loaded into: " + "; ".join(diff))
    diff = fingerprint_differences(data["base_fingerprint"], base_fingerprint(model))
    if diff:
        raise CheckpointError(f"{path}: these adapters were trained on another base model than this one: "
                              + "; ".join(diff) + ". Attach them to the base they were trained from")
    own = {k: tuple(v.shape) for k, v in model.state_dict().items() if is_lslo_key(k)}
    have = {k: tuple(v.shape) for k, v in data["tensors"].items()}
    if own != have:
        bad = sorted(set(own) ^ set(have)) or sorted(k for k in own if own[k] != have[k])
        raise CheckpointError(f"{path}: its LSLo tensors do not fit the model (e.g. {bad[0]})")


def load_adapters(model, path: str) -> None:
    """Put the adapters file ``path`` into a built LSLo model whose base weights are loaded."""
    data = read_adapters(path)
    check_against(model, data, path)
    state = model.state_dict()
    state.update(data["tensors"])
    model.load_state_dict(state, strict=True)


def plain_base_state(state_model: Dict[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """A checkpoint's base weights under plain transformer names (its own adapters dropped)."""
    return OrderedDict((canonical_name(k), v) for k, v in state_model.items() if not is_lslo_key(k))


def attach(base_path: str, adapters_path: Union[str, Sequence[str]]) -> Dict[str, Any]:
    """A normal LSLo checkpoint (dict for ``torch.save``): the base of ``base_path`` (a plain or an
    LSLo fairseq checkpoint) with the adapters of ``adapters_path``, after both checks; several
    (per-language) adapters files are united first (:func:`.pool.combine`)."""
    paths = [adapters_path] if isinstance(adapters_path, str) else list(adapters_path)
    files = [read_adapters(p) for p in paths]
    data = files[0] if len(files) == 1 else pool.combine(files, paths)
    adapters_path = ", ".join(paths)
    base = read_fairseq_checkpoint(base_path, "--base", mmap=True)  # mapped: the model holds the one copy
    if EXPORT_KEY in base:
        raise CheckpointError(f"--base: {base_path} is a folded export ({base[EXPORT_KEY]['direction']}) whose "
                              "weights already hold adapters; attach to the base the adapters were trained on")
    cfg = copy.deepcopy(data["cfg"])
    if vocab_size(base["model"]) != data["vocab_size"]:
        raise CheckpointError(
            f"{adapters_path}: these adapters were trained on another base model than {base_path}: its "
            f"vocabulary has {vocab_size(base['model'])} entries, the adapters' base had {data['vocab_size']} "
            "(another dict.txt or language list)")
    model = build_lslo_model(cfg["model"], data["vocab_size"], f"--adapters: {adapters_path}", data.get("layout"))
    base_state = plain_base_state(base["model"])
    try:
        model.load_state_dict(base_state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"--base: {base_path} does not fit the adapters' model "
                              f"({str(e).strip().splitlines()[0]})") from None
    check_against(model, data, adapters_path)
    model_state = model.state_dict()
    model_state.update(data["tensors"])
    model.load_state_dict(model_state, strict=True)  # through the layers' own loading (masks, pruning)
    out = OrderedDict()
    cache: Dict[tuple, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if is_lslo_key(key):
            value = data["tensors"][key]
        elif canonical_name(key) in base_state:  # the model's own tensor: tied ones stay tied (written once)
            value = shared_cast(cache, value, base_state[canonical_name(key)].dtype)
        out[key] = value
    for section in data["namespace_sections"]:
        cfg[section] = argparse.Namespace(**cfg[section])
    history = data.get("optimizer_history") or [{}]
    history = [dict(dict(criterion_name="LabelSmoothedCrossEntropyCriterion", optimizer_name="none",
                         lr_scheduler_state={}, num_updates=0), **history[-1])]
    return {"args": None, "cfg": cfg, "model": out, "criterion": None, "optimizer_history": history,
            "task_state": {}, "extra_state": {"train_iterator": data.get("train_iterator") or FRESH_ITERATOR},
            "lslo_attached": dict(base=base_path, adapters=adapters_path)}
