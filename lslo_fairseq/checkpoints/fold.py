"""Folding (``lslo-export fold``): the adapters of one direction (src -> tgt) folded into the base
weights, a plain fairseq ``transformer``.

Every LSLo projection becomes a dense weight for that direction (W plus the B A of the factors its
mode gives for the direction, ``lslo_fairseq.modules.modes``), with the pruning masks applied
(the effective factors are ``A * mask_A`` and ``B * mask_B``, see ``LSLoLinear.effective``):

    fixed index:    W' = W + B_l A_l,       l = src (source-indexed layer) or tgt (target-indexed)
    weight learning: W' = W + w_src B_src[src] A_src[src] + w_tgt B_tgt[tgt] A_tgt[tgt]   (eq. 5)
    modular, outputs: W' = W + w_in B_in[src] A_in[src] + w_out B_out[tgt] A_out[tgt]  (follow-up eq. 3)
    modular, ab:      W' = W + (sqrt w_in B_in[src] + sqrt w_out B_out[tgt])
                               (sqrt w_in A_in[src] + sqrt w_out A_out[tgt])        (follow-up eq. 4)

with (w_src, w_tgt) the softmax of the transformer layer's logits; in the paper adapter shape each
B_l A_l lands in its slice of W (fc1: rows [s, s+d), fc2: columns [s, s+d)), and with
``--lslo-alpha`` it is scaled by alpha / r_l (``LSLoLinear.direction_weight``). The product is formed in float64
and stored in the checkpoint's dtype, one layer at a time; biases are unchanged (LoRA has none). Every
other tensor is the rebuilt model's own (no copy), so tensors tied in the model (the encoder and
decoder embeddings and the output projection under ``--share-all-embeddings``) stay one tensor and
are written once: the file is about the size of the base checkpoint. The result is a stock
fairseq checkpoint: ``arch``/``_name`` ``transformer``, task ``translation_multi_simple_epoch``,
no ``--lslo-*`` option, no ``--user-dir``, no optimizer state, options stored as plain dicts (so
torch's ``weights_only`` loader of a stock fairseq accepts it). It is valid for this one direction
only; ``lslo_export`` in the checkpoint records which.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any, Dict

import torch

from ..layout.keys import is_lslo_key
from .reading import CheckpointError, StandInTask, to_plain

PLAIN_ARCH, PLAIN_TASK = "transformer", "translation_multi_simple_epoch"
EXPORT_KEY = "lslo_export"
# what fairseq-train's --finetune-from-model reads from extra_state when a checkpoint has none
FRESH_ITERATOR = {"epoch": 1, "iterations_in_epoch": 0, "version": 2}


def lang_row(cfg, lang: str, flag: str) -> int:
    if lang not in cfg.languages:
        raise CheckpointError(f"{flag}: '{lang}' has no adapters in this checkpoint (its LSLo languages: "
                              f"{', '.join(cfg.languages)})")
    return cfg.languages.index(lang)


def _rows(model, src: str, tgt: str) -> Dict[str, int]:
    cfg = model.lslo_config
    return {"src": lang_row(cfg, src, "--source-lang"), "tgt": lang_row(cfg, tgt, "--target-lang")}


@torch.no_grad()
def _fold(layer, rows: Dict[str, int]) -> torch.Tensor:
    """One LSLo layer's dense weight (float64) for the language rows ``rows``: W plus the sum of
    its mode's factors for the direction (``LSLoLinear.direction_weight``)."""
    return layer.base_layer.weight.double() + layer.direction_weight(rows["src"], rows["tgt"])


def folded_weights(model, src: str, tgt: str) -> "OrderedDict[str, torch.Tensor]":
    """Module path of every LSLo layer -> its dense weight for the direction src -> tgt (float64).
    A modular model uses the merge its router is configured with (``LanguageRouter.configure_merge``:
    the pivot's directions their one adapter, the others the merge weights)."""
    rows = _rows(model, src, tgt)
    return OrderedDict((path, _fold(layer, rows)) for path, layer in model.lslo_layers.items())


def storage_key(t: torch.Tensor) -> tuple:
    """What makes two tensors one in a ``torch.save`` file: the same bytes of the same storage."""
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def shared_cast(cache: Dict[tuple, torch.Tensor], t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` in ``dtype``: ``t`` itself when it has that dtype, else one cast per storage, so that
    tensors tied in the model (M2M-100's three embedding matrices) stay one tensor in the file."""
    if t.dtype == dtype:
        return t
    key = storage_key(t) + (dtype,)
    if key not in cache:
        cache[key] = t.to(dtype)
    return cache[key]


def plain_state_dict(model, source_state: Dict[str, torch.Tensor], src: str, tgt: str) -> "OrderedDict[str, torch.Tensor]":
    """The stock transformer's state dict: the model's own base tensors (no copies; tied ones stay
    tied, so ``torch.save`` writes their storage once), with the folded weight (formed in float64
    one layer at a time) in place of every ``X.base_layer.weight``; key order and dtypes as in the
    source checkpoint."""
    rows = _rows(model, src, tgt)
    own = model.state_dict()
    cache: Dict[tuple, torch.Tensor] = {}
    out = OrderedDict()
    for key, value in source_state.items():
        if is_lslo_key(key):
            continue
        path, sep, leaf = key.partition(".base_layer.")
        if sep and leaf == "weight":
            out[f"{path}.weight"] = _fold(model.lslo_layers[path], rows).to(value.dtype)
        else:
            out[key.replace(".base_layer.", ".")] = shared_cast(cache, own[key], value.dtype)
    return out


def plain_options(options: Dict[str, Any]) -> Dict[str, Any]:
    """Model or task options without the plugin: no ``lslo_*``, no ``user_dir``, stock names."""
    out = {k: v for k, v in options.items() if not k.startswith("lslo_")}
    if "arch" in out:
        out["arch"] = PLAIN_ARCH
    if "task" in out:
        out["task"] = PLAIN_TASK
    if "user_dir" in out:
        out["user_dir"] = None
    return out


def plain_cfg(cfg: Dict[str, Any], src: str, tgt: str) -> Dict[str, Any]:
    cfg = to_plain(copy.deepcopy(cfg))
    cfg["model"] = dict(plain_options(cfg["model"]), _name=PLAIN_ARCH)
    if isinstance(cfg.get("task"), dict):
        cfg["task"] = dict(plain_options(cfg["task"]), _name=PLAIN_TASK, source_lang=src, target_lang=tgt)
    if isinstance(cfg.get("common"), dict):
        cfg["common"]["user_dir"] = None
    return cfg


def export_direction(model, state: Dict[str, Any], src: str, tgt: str, source_path: str) -> Dict[str, Any]:
    """The exported checkpoint (a dict for ``torch.save``)."""
    if src == tgt:
        raise CheckpointError(f"--source-lang and --target-lang are both '{src}': give a direction")
    if state.get("cfg") is None:
        raise CheckpointError(f"{source_path}: no cfg in the checkpoint (written by a fairseq older than 0.10)")
    history = [{k: v for k, v in h.items() if k != "optimizer"} for h in state.get("optimizer_history", [])[-1:]]
    extra = state.get("extra_state") or {}
    return {
        "args": None,
        "cfg": plain_cfg(state["cfg"], src, tgt),
        "model": plain_state_dict(model, state["model"], src, tgt),
        "criterion": None,
        "optimizer_history": history,
        "task_state": {},
        "extra_state": dict({k: extra[k] for k in ("val_loss", "previous_training_time") if k in extra},
                            train_iterator=extra.get("train_iterator") or FRESH_ITERATOR),
        EXPORT_KEY: {
            "direction": f"{src}-{tgt}", "source_lang": src, "target_lang": tgt,
            "from_checkpoint": source_path,
            "lslo_languages": list(model.lslo_config.languages),
            **({"merge": model.lslo_router.merge, "merge_weights": model.lslo_router.direction_record(
                model.lslo_config.languages.index(src), model.lslo_config.languages.index(tgt))}
               if model.lslo_config.modular else {}),
            "note": f"adapters folded for {src}->{tgt} only: translating any other direction with this "
                    "model uses the wrong adapters",
        },
    }


def check_loads_as_stock_transformer(exported: Dict[str, Any]) -> None:
    """Build fairseq's own transformer from the exported options (on the meta device: no memory)
    and require the same keys and shapes (what ``load_state_dict(strict=True)`` needs)."""
    import argparse

    from fairseq.models import ARCH_CONFIG_REGISTRY
    from fairseq.models.transformer import TransformerModel

    args = argparse.Namespace(**copy.deepcopy(exported["cfg"]["model"]))
    ARCH_CONFIG_REGISTRY[PLAIN_ARCH](args)
    vocab = exported["model"]["encoder.embed_tokens.weight"].shape[0]
    task = StandInTask([], vocab_size=vocab)
    with torch.device("meta"):
        stock = TransformerModel.build_model(args, task)
    want = {k: tuple(v.shape) for k, v in stock.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in exported["model"].items()}
    if want != have:
        missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        shapes = sorted(k for k in set(want) & set(have) if want[k] != have[k])
        raise CheckpointError(f"internal error: exported weights do not fit fairseq's transformer "
                              f"(missing {missing[:3]}, unexpected {extra[:3]}, shape {shapes[:3]})")
