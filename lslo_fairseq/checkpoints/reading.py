"""Read a fairseq checkpoint (safely, with clear errors) and rebuild its LSLo model without data.

``torch.load`` runs with ``weights_only=True`` (the plugin allows ``argparse.Namespace``), so a
foreign pickle never executes code; a missing, truncated or foreign file raises
:class:`CheckpointError` naming the file and what was expected. The model is rebuilt from the
checkpoint's own options with a stand-in dictionary of the checkpoint's vocabulary size that holds
the language tokens (folding and attaching adapters never look at other tokens).
"""
from __future__ import annotations

import argparse
import copy
import os
import pickle
import zipfile
from typing import Any, Dict

import torch

from ..config import as_list


class CheckpointError(ValueError):
    """A file that is not what the command expects (missing, truncated, foreign, wrong kind)."""


def read_torch_file(path: str, what: str) -> Any:
    """``torch.load(weights_only=True)`` with errors that name ``what`` (e.g. ``--checkpoint``)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{what}: {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{what}: {path} cannot be read as a torch checkpoint (truncated, still being written, or "
            f"not a torch file): {first}"
        ) from None


def to_plain(value):
    """``argparse.Namespace`` (fairseq's legacy model/task options) -> dict, recursively."""
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value


def read_fairseq_checkpoint(path: str, what: str) -> Dict[str, Any]:
    state = read_torch_file(path, what)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        kind = "an LSLo adapters file" if isinstance(state, dict) and state.get("format") else type(state).__name__
        raise CheckpointError(f"{what}: {path} is not a fairseq checkpoint (no 'model' state; found {kind})")
    return state


def model_options(state: Dict[str, Any]) -> Dict[str, Any]:
    """The model options a checkpoint was built with (``cfg.model``, or legacy ``args``)."""
    cfg = state.get("cfg")
    if cfg is not None and cfg.get("model") is not None:
        return to_plain(cfg["model"])
    if state.get("args") is not None:
        return to_plain(state["args"])
    raise CheckpointError("checkpoint has neither cfg.model nor args: cannot tell how its model was built")


def is_lslo(state: Dict[str, Any]) -> bool:
    return any(k.rsplit(".", 1)[-1].startswith("lora_") for k in state["model"])


class _StandInTask:
    """What ``LSLoTransformerModel.build_model`` reads from a task."""

    def __init__(self, vocab_size: int, langs, lang_tok_style: str):
        from fairseq.data import Dictionary
        from fairseq.data.multilingual.multilingual_utils import get_lang_tok

        d = Dictionary()
        for lang in langs:
            d.add_symbol(get_lang_tok(lang, lang_tok_style))
        if len(d) > vocab_size:
            raise CheckpointError(f"embedding has {vocab_size} rows, fewer than the {len(langs)} language tokens")
        for i in range(vocab_size - len(d)):
            d.add_symbol(f"<lslo-stand-in-{i}>")
        self.source_dictionary = self.target_dictionary = d
        self.langs = list(langs)


def build_lslo_model(options: Dict[str, Any], vocab_size: int, where: str):
    """An LSLo model (CPU, eval mode, fresh weights) built from recorded model options; ``where``
    names the file they come from, for errors."""
    from ..models.lslo_transformer import LSLoTransformerModel

    args = argparse.Namespace(**copy.deepcopy(options))
    if not str(getattr(args, "arch", "")).startswith("lslo_") or not getattr(args, "lslo_ranks", None):
        raise CheckpointError(
            f"{where} is not an LSLo checkpoint (arch {getattr(args, 'arch', None)!r}); give the "
            "checkpoint of an LSLo run (fairseq-train --arch lslo_*)"
        )
    if not getattr(args, "lslo_langs", None):
        raise CheckpointError(f"{where} does not record --lslo-langs (written by an older lslo-fairseq)")
    task = _StandInTask(vocab_size, as_list(args.lslo_langs), getattr(args, "lang_tok_style", "multilingual"))
    return LSLoTransformerModel.build_model(args, task).eval()


def vocab_size(model_state: Dict[str, Any]) -> int:
    return model_state["encoder.embed_tokens.weight"].shape[0]


def load_lslo_checkpoint(path: str, what: str):
    """(state, model): a training checkpoint and its LSLo model with the weights loaded (strict)."""
    state = read_fairseq_checkpoint(path, what)
    model = build_lslo_model(model_options(state), vocab_size(state["model"]), f"{what}: {path}")
    model.load_state_dict(dict(state["model"]), strict=True)
    return state, model
