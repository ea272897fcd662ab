"""The one place that reads fairseq checkpoints: safely, cheaply where it can, with clear errors.

- :func:`allow_fairseq_pickles`: the one class fairseq checkpoints need beyond tensors
  (``argparse.Namespace``) added to torch's ``weights_only`` allow-list; called explicitly where the
  plugin is registered with fairseq (``lslo_fairseq/__init__.py``) and by :func:`load`.
- :func:`load`: ``torch.load(weights_only=True)`` (a foreign pickle never runs code), with
  ``mmap=True`` when only the top level is needed (a GB checkpoint costs no memory); errors name
  ``what`` (the flag) and the file. :func:`problem` is the cheap check behind the training guard
  (:mod:`.guard`): the zip directory, then the top level.
- :func:`is_fairseq_checkpoint`, :func:`options` (the recorded training options, ``cfg`` before
  legacy ``args``, as fairseq itself reads them), :func:`is_adapter_key`/:func:`is_lslo_key`.
- :class:`StandInTask`: what ``build_model`` reads from a task, without data. The models of the
  plugin's tools (export, attach, ``lslo-params``, tests, benchmarks) are built with it.
- :func:`build_lslo_model`/:func:`load_lslo_checkpoint`: an LSLo checkpoint's model, rebuilt from its
  own options with a stand-in dictionary of the checkpoint's vocabulary size that holds the language
  tokens (folding and attaching adapters never look at other tokens).
"""
from __future__ import annotations

import argparse
import copy
import os
import pickle
import zipfile
from typing import Any, Dict, Iterable, Optional, Sequence

import torch

from ..config import LAYOUT_KEY, as_list
from ..errors import CheckpointError, LSLoError  # noqa: F401 (CheckpointError: re-exported)
from . import frozen_base


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


def read_fairseq_checkpoint(path: str, what: str, mmap: bool = False) -> Dict[str, Any]:
    """A fairseq checkpoint; an adapter-only one (:mod:`.frozen_base`) with its frozen base put back."""
    state = load(path, what, mmap=mmap)
    if not is_fairseq_checkpoint(state):
        kind = "an LSLo adapters file" if isinstance(state, dict) and state.get("format") else type(state).__name__
        raise CheckpointError(f"{what}: {path} is not a fairseq checkpoint (no 'model' state; found {kind})")
    state["model"] = complete_frozen_base(state["model"], f"{what}: {path}", mmap=mmap)
    return state


def frozen_base_path(ref: Dict[str, Any], where: str) -> str:
    """The file holding an adapter-only checkpoint's frozen base (``$LSLO_FROZEN_BASE``, else the
    recorded path), refused unless its size and SHA-256 are the recorded ones."""
    override = os.environ.get(frozen_base.ENV)
    path = override or ref["path"]
    origin = f"from ${frozen_base.ENV}" if override else "the path recorded in it"
    fix = (f"put that file back, or set {frozen_base.ENV}=/path/to/model.pt: the file the run's fairseq-train "
           f"--finetune-from-model read ({ref['size']:,} bytes, sha256 {ref['sha256']})")
    if not os.path.isfile(path):
        raise CheckpointError(f"{where} holds adapters only, and its frozen base {path} ({origin}) does not exist: {fix}")
    size = os.path.getsize(path)
    digest = frozen_base.sha256(path) if size == ref["size"] else None
    if digest != ref["sha256"]:
        found = f"{size:,} bytes" + (f", sha256 {digest}" if digest else "")
        raise CheckpointError(f"{where} holds adapters only, and {path} ({origin}) is not its frozen base: "
                              f"{found}; {fix}")
    return path


def complete_frozen_base(model_state: Dict[str, Any], where: str, mmap: bool = True) -> Dict[str, Any]:
    """``model_state`` with the frozen tensors an adapter-only checkpoint leaves out read back from its
    base (checked by :func:`frozen_base_path`); any other state as it is."""
    ref = frozen_base.reference_of(model_state)
    if ref is None:
        return model_state
    path = frozen_base_path(ref, where)
    base = read_fairseq_checkpoint(path, f"the frozen base of {where}", mmap=mmap)
    return frozen_base.fill(model_state, ref, base["model"], path, where)


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


def is_adapter_key(key: str) -> bool:
    """A trained LSLo tensor of a state dict: ``lora_A``/``lora_B`` (and ``_src``/``_tgt`` banks,
    ``_mask`` buffers) and the weight-learning logits."""
    return key.rsplit(".", 1)[-1].startswith("lora_") or key.endswith("lslo_index_weights.logits")


def is_lslo_key(key: str) -> bool:
    """Anything a plain transformer does not have: the adapter tensors and the layout buffer."""
    return is_adapter_key(key) or key == LAYOUT_KEY


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


def layout_in(model_state: Dict[str, Any]) -> Optional[Dict]:
    """The ``lslo_layout`` a checkpoint's weights record (None when absent)."""
    from ..models.lslo_transformer import decode_layout  # the model imports this module

    t = model_state.get(LAYOUT_KEY)
    return None if t is None else decode_layout(t)


def vocab_size(model_state: Dict[str, Any]) -> int:
    return model_state["encoder.embed_tokens.weight"].shape[0]


def load_lslo_checkpoint(path: str, what: str):
    """(state, model): a training checkpoint and its LSLo model with the weights loaded (strict).
    The file is mapped, not read (``mmap``): the model holds the one copy of the weights in memory."""
    state = read_fairseq_checkpoint(path, what, mmap=True)
    model = build_lslo_model(options(state), vocab_size(state["model"]), f"{what}: {path}", layout_in(state["model"]))
    model.load_state_dict(dict(state["model"]), strict=True)
    return state, model
