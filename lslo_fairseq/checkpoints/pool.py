"""A per-language adapter pool: adapters files that hold some languages only, and their union.

``lslo-export adapters --langs X`` keeps language X's block of every adapter tensor (rows of
``lora_A*`` and columns of ``lora_B*``, with their pruning masks; under ``--lslo-modular`` both its
input and output adapters) and the layout of X alone (plus the pivot, which has no adapters).
``lslo-export attach --adapters F1 F2 ...`` unites any set of such files trained on the same base with
the same configuration, languages in the order given, into one adapters file, which it attaches.
Weight learning's per-layer weights are shared by all languages, so such runs cannot be split.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Dict, List, Sequence

import torch

from ..layout.languages import block, lang_offsets, rank_axis
from ..layout.record import LAYOUT_KEY, encode_layout, layout_differences
from .reading import CheckpointError

KEEP_LAYOUT_FIELDS = ("languages:", "ranks:", "token_ids:")


def _cat(parts: List[torch.Tensor], key: str) -> torch.Tensor:
    return torch.cat(parts, dim=rank_axis(key))


def _sub_layout(layout: Dict, langs: Sequence[str]) -> Dict:
    idx = [layout["languages"].index(l) for l in langs]
    out = dict(layout, languages=list(langs), ranks=[layout["ranks"][i] for i in idx])
    if layout.get("token_ids") is not None:
        out["token_ids"] = [layout["token_ids"][i] for i in idx]
    return out


def _with_layout(data: Dict, layout: Dict, tensors: "OrderedDict[str, torch.Tensor]") -> Dict:
    """``data`` with another layout and tensors: the layout tensor and the recorded model options
    (languages, per-language ranks) follow."""
    out = dict(data, layout=layout)
    tensors[LAYOUT_KEY] = encode_layout(layout)
    out["tensors"] = tensors
    cfg = copy.deepcopy(data["cfg"])
    model = cfg["model"]
    model["lslo_langs"] = ",".join(layout["languages"])
    # per language; the pivot's rank is 0 by --lslo-modular whatever is written here
    model["lslo_ranks"] = ",".join(f"{l}:{max(1, r)}" for l, r in zip(layout["languages"], layout["ranks"]))
    model["lslo_train_langs"] = None
    out["cfg"] = cfg
    return out


def select_languages(data: Dict, langs: Sequence[str], path: str) -> Dict:
    """The adapters file ``data`` (of ``path``) restricted to ``langs`` (and the modular pivot)."""
    layout = data["layout"]
    unknown = [l for l in langs if l not in layout["languages"]]
    if unknown or not langs:
        raise CheckpointError(f"--langs: {unknown or list(langs)} are not LSLo languages of {path} "
                              f"({', '.join(layout['languages'])})")
    if any(k.endswith("lslo_index_weights.logits") for k in data["tensors"]):
        raise CheckpointError(f"--langs: {path} was trained with --lslo-weight-learning, whose per-layer weights "
                              "all languages share; export all languages (no --langs)")
    pivot = layout.get("pivot")
    keep = [l for l in layout["languages"] if l in langs or l == pivot]
    at = lang_offsets(layout)
    tensors = OrderedDict()
    for key, value in data["tensors"].items():
        if key == LAYOUT_KEY:
            continue
        tensors[key] = _cat([block(value, key, *at[l]) for l in keep], key)  # a new, compact tensor
    return _with_layout(data, _sub_layout(layout, keep), tensors)


def combine(files: Sequence[Dict], paths: Sequence[str]) -> Dict:
    """One adapters file from several of the same base and configuration, languages in file order
    (the pivot first); every check names the file that does not fit."""
    first, where = files[0], paths[0]
    pivot = first["layout"].get("pivot")
    langs: List[str] = [pivot] if pivot else []
    owner: Dict[str, int] = {}
    for i, (data, path) in enumerate(zip(files, paths)):
        diff = [d for d in layout_differences(data["layout"], first["layout"], path, where)
                if not d.startswith(KEEP_LAYOUT_FIELDS)]
        if diff:
            raise CheckpointError(f"--adapters: {path} has another LSLo configuration than {where}: " + "; ".join(diff))
        if data["base_fingerprint"] != first["base_fingerprint"] or data["vocab_size"] != first["vocab_size"]:
            raise CheckpointError(f"--adapters: {path} was trained on another base model than {where}")
        for lang in data["layout"]["languages"]:
            if lang == pivot:
                continue
            if lang in owner:
                raise CheckpointError(f"--adapters: language {lang} is in both {paths[owner[lang]]} and {path}")
            owner[lang] = i
            langs.append(lang)
    layout = dict(first["layout"], languages=langs, ranks=[], token_ids=[])
    for lang in langs:
        src = files[owner.get(lang, 0)]["layout"]
        j = src["languages"].index(lang)
        layout["ranks"].append(src["ranks"][j])
        layout["token_ids"].append(None if src.get("token_ids") is None else src["token_ids"][j])
    if None in layout["token_ids"]:
        layout["token_ids"] = None
    at = [lang_offsets(data["layout"]) for data in files]
    tensors = OrderedDict()
    for key in first["tensors"]:
        if key == LAYOUT_KEY:
            continue
        i = [owner.get(lang, 0) for lang in langs]
        tensors[key] = _cat([block(files[f]["tensors"][key], key, *at[f][lang]) for f, lang in zip(i, langs)], key)
    return _with_layout(first, layout, tensors)
