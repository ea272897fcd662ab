"""Adding languages to a trained LSLo model: a checkpoint whose adapter layout differs from the
model's only by languages the model adds loads with every old language's adapters in their new rows
and fresh adapters (B = 0) for the new ones.

Language ``l``'s adapter is rows [o_l, o_l + r_l) of each ``lora_A*`` tensor (and its mask) and the same
columns of each ``lora_B*``; the offsets o_l change when languages are added, so the blocks are moved
by language name, never by position.
"""
from __future__ import annotations

from typing import Dict, List, Optional

from ..config import LSLoConfigError
from .record import layout_differences


def added_languages(theirs: Dict, ours: Dict) -> Optional[List[str]]:
    """The languages ``ours`` adds, when everything else agrees (the old languages keep their ranks
    and, where both layouts record them, their language-token ids); None otherwise."""
    old, new = list(theirs.get("languages", [])), list(ours.get("languages", []))
    if not old or not set(old) < set(new):
        return None
    same_rest = not [d for d in layout_differences(theirs, ours, "a", "b")
                     if not d.startswith(("languages:", "ranks:", "token_ids:"))]
    ranks_kept = all(theirs["ranks"][i] == ours["ranks"][new.index(l)] for i, l in enumerate(old))
    if not (same_rest and ranks_kept):
        return None
    check_token_ids(theirs, ours)
    return [l for l in new if l not in old]


def check_token_ids(theirs: Dict, ours: Dict) -> None:
    """The old languages' ``__xx__`` tokens must keep their ids, or the base's embeddings and the
    adapters' routing would disagree."""
    if theirs.get("token_ids") is None or ours.get("token_ids") is None:
        return
    moved = [f"{l}: {theirs['token_ids'][i]} -> {ours['token_ids'][ours['languages'].index(l)]}"
             for i, l in enumerate(theirs["languages"])
             if theirs["token_ids"][i] != ours["token_ids"][ours["languages"].index(l)]]
    if moved:
        raise LSLoConfigError(
            "the language tokens moved in the dictionary (" + "; ".join(moved) + "): keep --langs (or "
            "--lang-dict) exactly as in the checkpoint's run, with the new language listed there from the "
            "start (M2M-100's fixed --lang-dict never moves them)")


def lang_offsets(layout: Dict) -> Dict[str, tuple]:
    """Each language's [lo, hi) on the rank axis of every adapter tensor of ``layout``."""
    out, at = {}, 0
    for lang, r in zip(layout["languages"], layout["ranks"]):
        out[lang] = (at, at + r)
        at += r
    return out


def rank_axis(key: str) -> int:
    """The axis that holds the languages' blocks: rows of ``lora_A*``, columns of ``lora_B*``."""
    return 0 if key.rsplit(".", 1)[-1].startswith("lora_A") else 1


def block(t, key: str, lo: int, hi: int):
    """A language's block [lo, hi) of adapter tensor ``t`` (state-dict key ``key``)."""
    return t[lo:hi] if rank_axis(key) == 0 else t[:, lo:hi]


def expand_state(state_dict: Dict, prefix: str, layers: Dict, theirs: Dict, ours: Dict, own: Dict) -> None:
    """Rewrite every adapter tensor of ``state_dict`` from ``theirs`` layout to ``ours``: old languages'
    blocks copied by name into the model's own (freshly initialised) tensors ``own``."""
    old_at, new_at = lang_offsets(theirs), lang_offsets(ours)
    for path, lslo in layers.items():
        for name in lslo.param_names():
            for key in (f"{path}.{name}", f"{path}.{name}_mask"):
                if prefix + key not in state_dict or key not in own:
                    continue
                old = state_dict[prefix + key]
                new = own[key].clone().to(old.dtype)
                for lang, (lo, hi) in old_at.items():
                    block(new, key, *new_at[lang]).copy_(block(old, key, lo, hi))
                state_dict[prefix + key] = new
