"""What the exports to other toolkits read from a fairseq checkpoint: its base weights and options,
the dictionary its task built (``dict.txt`` plus the language tokens, in fairseq's order) and the
SentencePiece model, each found from the recorded task options or given by a flag.

Every check happens here, before any conversion work, and each error names the flag or file.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch

from ..checkpoints.adapters import plain_base_state
from ..checkpoints.fold import EXPORT_KEY
from ..checkpoints.reading import CheckpointError, is_lslo, options
from ..layout.frozen_base import read_fairseq_checkpoint
from ..config import as_list

SPM_NAMES = ("sentencepiece.bpe.model", "spm.model", "spm.128k.model")


@dataclass
class Source:
    """A fairseq translation checkpoint prepared for export."""

    path: str
    state: Dict[str, Any]
    model_opts: Dict[str, Any]
    task_opts: Dict[str, Any]
    langs: List[str]
    dictionary: Any  # fairseq Dictionary: specials, dict.txt, language tokens (as the task built it)
    dict_path: str
    spm_path: str
    base: "OrderedDict[str, torch.Tensor]" = field(repr=False, default=None)

    @property
    def is_lslo(self) -> bool:
        return is_lslo(self.state)

    def lang_token(self, lang: str) -> str:
        from fairseq.data.multilingual.multilingual_utils import get_lang_tok

        return get_lang_tok(lang, self.task_opts.get("lang_tok_style") or "multilingual")

    def lang_index(self, lang: str) -> int:
        return self.dictionary.index(self.lang_token(lang))


def task_languages(task_opts: Dict[str, Any], where: str) -> List[str]:
    """The language list in the order the task appended its tokens (``--langs``, ``--lang-dict``,
    else the sorted languages of ``--lang-pairs``: fairseq's own rule)."""
    if task_opts.get("lang_dict"):
        path = task_opts["lang_dict"]
        if not os.path.isfile(path):
            raise CheckpointError(f"{where}: its --lang-dict {path} does not exist (it orders the language tokens)")
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    if task_opts.get("langs"):
        return as_list(task_opts["langs"])
    pairs = as_list(task_opts.get("lang_pairs") or [])
    if not pairs:
        raise CheckpointError(f"{where}: no --langs, --lang-dict or --lang-pairs recorded: cannot tell the "
                              "language tokens (train with translation_multi_simple_epoch)")
    return sorted({lang for pair in pairs for lang in pair.split("-")})


def default_dict_path(task_opts: Dict[str, Any], langs: List[str]) -> Optional[str]:
    if task_opts.get("fixed_dictionary"):
        return task_opts["fixed_dictionary"]
    data = str(task_opts.get("data") or "").split(os.pathsep)[0]
    for name in ["dict.txt", *(f"dict.{lang}.txt" for lang in langs)]:
        if data and os.path.isfile(os.path.join(data, name)):
            return os.path.join(data, name)
    return None


def default_spm_path(dict_path: str) -> Optional[str]:
    folder = os.path.dirname(os.path.abspath(dict_path))
    for name in SPM_NAMES:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    models = sorted(n for n in os.listdir(folder) if n.endswith(".model"))
    return os.path.join(folder, models[0]) if len(models) == 1 else None


def build_dictionary(dict_path: str, langs: List[str], task_opts: Dict[str, Any]):
    """fairseq's dictionary as ``translation_multi_simple_epoch`` builds it (its ``augment_dictionary``)."""
    from fairseq.data import Dictionary
    from fairseq.data.multilingual.multilingual_utils import augment_dictionary

    d = Dictionary.load(dict_path)
    augment_dictionary(d, langs, task_opts.get("lang_tok_style") or "multilingual",
                       as_list(task_opts.get("langtoks_specs") or ["main"]), task_opts.get("extra_data"))
    return d


def read_source(checkpoint: str, dict_path: Optional[str] = None, spm_path: Optional[str] = None,
                load_weights: bool = True) -> Source:
    """The checkpoint (``--checkpoint``), its dictionary (``--dict``) and SentencePiece model (``--spm``)."""
    state = read_fairseq_checkpoint(checkpoint, "--checkpoint", mmap=not load_weights)
    if EXPORT_KEY in state:
        raise CheckpointError(f"--checkpoint: {checkpoint} is a folded one-direction export (lslo-export fold) "
                              f"({state[EXPORT_KEY]['direction']}); give the checkpoint it was made from")
    model_opts = options(state, ("model",))
    try:
        task_opts = options(state, ("task",))
    except CheckpointError:
        task_opts = {}
    if state.get("cfg") is None:  # legacy args hold everything in one namespace
        task_opts = model_opts
    where = f"--checkpoint: {checkpoint}"
    langs = task_languages(task_opts, where)
    given = dict_path is not None
    dict_path = dict_path or default_dict_path(task_opts, langs)
    if dict_path is None:
        raise CheckpointError(f"{where} records no dictionary that exists here (--fixed-dictionary or the data "
                              "directory's dict.txt); give --dict FILE")
    if not os.path.isfile(dict_path):
        flag = "--dict" if given else "the checkpoint's dictionary (give --dict FILE)"
        raise CheckpointError(f"{flag}: {dict_path} does not exist")
    d = build_dictionary(dict_path, langs, task_opts)
    rows = state["model"]["encoder.embed_tokens.weight"].shape[0]
    if len(d) != rows:
        raise CheckpointError(
            f"--dict: {dict_path} with the {len(langs)} language tokens of {','.join(langs)} has {len(d)} entries, "
            f"but the checkpoint's embedding has {rows} rows: give the dictionary the model was trained with")
    given = spm_path is not None
    spm_path = spm_path or default_spm_path(dict_path)
    if spm_path is None:
        raise CheckpointError(f"--spm: no SentencePiece model beside {dict_path} (looked for {', '.join(SPM_NAMES)} "
                              "or a single *.model); give --spm FILE")
    if not os.path.isfile(spm_path):
        raise CheckpointError(f"--spm: {spm_path} does not exist" + ("" if given else " (found beside the dictionary)"))
    src = Source(checkpoint, state, model_opts, task_opts, langs, d, dict_path, spm_path)
    if load_weights:
        src.base = OrderedDict((k, v.float()) for k, v in plain_base_state(state["model"]).items())
    return src


def load_lslo_model(src: Source):
    """The LSLo model of an LSLo checkpoint (eval mode, weights loaded strictly), built on the real
    dictionary, so its language-token ids are the checkpoint's."""
    import argparse
    import copy

    from ..checkpoints.reading import StandInTask
    from ..models.lslo_transformer import LSLoTransformerModel

    if not src.is_lslo:
        raise CheckpointError(f"--checkpoint: {src.path} is not an LSLo checkpoint (no adapters); give the "
                              "checkpoint of an LSLo run (fairseq-train --arch lslo_*)")
    args = argparse.Namespace(**copy.deepcopy(src.model_opts))
    task = StandInTask([], dictionary=copy.deepcopy(src.dictionary))
    task.langs = list(src.langs)
    model = LSLoTransformerModel.build_model(args, task).eval()
    model.load_state_dict(dict(src.state["model"]), strict=True)
    return model
