"""fairseq checkpoints read into LSLo models, without data.

- :func:`options` (the recorded training options, ``cfg`` before legacy ``args``, as fairseq itself
  reads them), :func:`is_lslo`.
- :class:`StandInTask`: what ``build_model`` reads from a task, without data. The models of the
  plugin's tools (export, attach, ``lslo-params``, tests, benchmarks) are built with it.
- :func:`build_lslo_model`/:func:`load_lslo_checkpoint`: an LSLo checkpoint's model, rebuilt from its
  own options with a stand-in dictionary of the checkpoint's vocabulary size that holds the language
  tokens (folding and attaching adapters never look at other tokens).

Reading the files themselves (safe ``torch.load``, adapter-only checkpoints completed from their
frozen base) is :mod:`lslo_fairseq.layout.loading` and :mod:`lslo_fairseq.layout.frozen_base`.
"""
from __future__ import annotations

import argparse
import copy
from typing import Any, Dict, Iterable, Optional, Sequence

from ..config import as_list
from ..errors import CheckpointError, LSLoError  # noqa: F401 (CheckpointError: re-exported)
from ..layout.frozen_base import read_fairseq_checkpoint
from ..layout.keys import is_adapter_key
from ..layout.record import layout_in


def to_plain(value):
    """``argparse.Namespace`` (fairseq's legacy model/task options) -> dict, recursively."""
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value


def options(state: Dict[str, Any], sections: Sequence[str] = ("model",)) -> Dict[str, Any]:
    """The options a checkpoint was trained with, as a dict: the ``sections`` of ``cfg`` (merged in
    that order), or the legacy ``args`` when there is no ``cfg`` (fairseq < 0.10, e.g. the released
    M2M-100 checkpoints). The same priority as fairseq's own loader."""
    cfg = state.get("cfg")
    if cfg is not None and any(cfg.get(s) is not None for s in sections):
        merged: Dict[str, Any] = {}
        for section in sections:
            if cfg.get(section) is not None:
                merged.update(to_plain(cfg[section]))
        return merged
    if state.get("args") is not None:
        return to_plain(state["args"])
    raise CheckpointError("checkpoint has neither cfg nor args: cannot tell how its model was built")


def is_lslo(state: Dict[str, Any]) -> bool:
    """A checkpoint with LSLo adapters."""
    return any(is_adapter_key(k) for k in state["model"])


class StandInTask:
    """What ``build_model`` reads from a task (dictionaries, languages), without data.

    The dictionary is ``dictionary`` (default: fairseq's 4 specials) with one language token per
    language appended as fairseq's multilingual task does (``get_lang_tok``), then stand-in symbols up
    to ``vocab_size`` rows."""

    def __init__(self, langs: Iterable[str], lang_tok_style: str = "multilingual", dictionary=None,
                 vocab_size: Optional[int] = None, token_ids: Optional[Dict[str, int]] = None):
        from fairseq.data import Dictionary
        from fairseq.data.multilingual.multilingual_utils import get_lang_tok

        d = dictionary if dictionary is not None else Dictionary()
        self.langs = list(langs)
        self.lang_tok_style = lang_tok_style
        if token_ids:  # the language tokens where the checkpoint's dictionary has them
            at = {int(i): get_lang_tok(lang, lang_tok_style) for lang, i in token_ids.items()}
            while len(d) <= max(at):
                d.add_symbol(at.get(len(d), f"<lslo-stand-in-{len(d)}>"))
        for lang in self.langs:
            if not token_ids or lang in token_ids:
                d.add_symbol(get_lang_tok(lang, lang_tok_style))
        if vocab_size is not None:
            if len(d) > vocab_size:
                raise CheckpointError(f"embedding has {vocab_size} rows, fewer than the dictionary's {len(d)} "
                                      f"entries with the {len(self.langs)} language tokens")
            for i in range(vocab_size - len(d)):
                d.add_symbol(f"<lslo-stand-in-{i}>")
        self.source_dictionary = self.target_dictionary = d

    def lang_token(self, lang: str) -> int:
        from fairseq.data.multilingual.multilingual_utils import get_lang_tok

        return self.source_dictionary.index(get_lang_tok(lang, self.lang_tok_style))


def build_lslo_model(options: Dict[str, Any], vocab_size: int, where: str, layout: Optional[Dict] = None):
    """An LSLo model (CPU, eval mode, fresh weights) built from recorded model options; ``where``
    names the file they come from, for errors. ``layout`` (the checkpoint's ``lslo_layout``) puts the
    language tokens at their recorded ids."""
    # deferred, not a cycle (checkpoints sit above models): the model imports fairseq, which
    # lslo-score's reading of checkpoints does not need
    from ..models.lslo_transformer import LSLoTransformerModel

    args = argparse.Namespace(**copy.deepcopy(options))
    if not str(getattr(args, "arch", "")).startswith("lslo_") or not getattr(args, "lslo_ranks", None):
        raise CheckpointError(
            f"{where} is not an LSLo checkpoint (arch {getattr(args, 'arch', None)!r}); give the "
            "checkpoint of an LSLo run (fairseq-train --arch lslo_*)"
        )
    if not getattr(args, "lslo_langs", None):
        raise CheckpointError(f"{where} does not record --lslo-langs (written by an older lslo-fairseq)")
    langs = as_list(args.lslo_langs)
    langs += [lang for lang in as_list(getattr(args, "langs", None)) if lang not in langs]
    token_ids = None
    if layout and layout.get("token_ids") is not None:
        token_ids = dict(zip(layout["languages"], layout["token_ids"]))
    task = StandInTask(langs, getattr(args, "lang_tok_style", "multilingual"), vocab_size=vocab_size,
                       token_ids=token_ids)
    return LSLoTransformerModel.build_model(args, task).eval()


def vocab_size(model_state: Dict[str, Any]) -> int:
    return model_state["encoder.embed_tokens.weight"].shape[0]


def load_lslo_checkpoint(path: str, what: str):
    """(state, model): a training checkpoint and its LSLo model with the weights loaded (strict).
    The file is mapped, not read (``mmap``): the model holds the one copy of the weights in memory."""
    state = read_fairseq_checkpoint(path, what, mmap=True)
    model = build_lslo_model(options(state), vocab_size(state["model"]), f"{what}: {path}", layout_in(state["model"]))
    model.load_state_dict(dict(state["model"]), strict=True)
    return state, model
