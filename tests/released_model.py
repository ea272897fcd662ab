"""Untrained fairseq transformer checkpoints in the layouts released M2M models come in, without
fairseq-train: legacy ``args`` (one argparse.Namespace) or ``cfg`` (model and task sections), the
language options recorded or not, float32 or float16 weights."""
from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Optional, Sequence

import torch

from lslo_fairseq.shapes import PRENORM_SHARED_ARGS, TINY_SHAPE, shape_args

TASK_KEYS = ("task", "langs", "lang_pairs", "lang_dict", "encoder_langtok", "decoder_langtok", "lang_tok_style",
             "fixed_dictionary", "data")


def untrained_checkpoint(path, dict_path, langs: Sequence[str], pairs: Sequence[str], *, fmt: str = "args",
                         record: Sequence[str] = ("langs", "lang_pairs"), lang_dict: Optional[str] = None,
                         dtype=torch.float32, seed: int = 0) -> Path:
    """A pre-norm, shared-embedding ``transformer`` (tiny shape, random weights, layer norms included)
    on ``dict_path`` whose language tokens follow ``langs``, saved at ``path``. ``record``: which of
    ``langs``, ``lang_pairs``, ``lang_dict`` the options keep (``lang_dict``: that path); ``fmt``:
    ``args`` (fairseq < 0.10: one Namespace) or ``cfg`` (model Namespace, task as a plain dict)."""
    from fairseq.data import Dictionary
    from fairseq.models.transformer import TransformerModel, base_architecture

    from lslo_fairseq.checkpoints.reading import StandInTask

    torch.manual_seed(seed)
    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    TransformerModel.add_args(parser)
    args = parser.parse_args([*PRENORM_SHARED_ARGS, *shape_args(**TINY_SHAPE)])
    args.arch = "transformer"
    args.max_source_positions = args.max_target_positions = 256
    args.dropout = args.attention_dropout = args.activation_dropout = 0.0
    base_architecture(args)
    model = TransformerModel.build_model(args, StandInTask(langs, dictionary=Dictionary.load(str(dict_path))))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    task = dict(task="translation_multi_simple_epoch", encoder_langtok="src", decoder_langtok=True,
                lang_tok_style="multilingual", fixed_dictionary=str(dict_path), data=str(Path(dict_path).parent),
                langs=list(langs) if "langs" in record else None,
                lang_pairs=",".join(pairs) if "lang_pairs" in record else None,
                lang_dict=lang_dict if "lang_dict" in record else None)
    history = {"optimizer_history": [{"criterion_name": "LabelSmoothedCrossEntropyCriterion", "optimizer_name": "Adam",
                                      "lr_scheduler_state": {}, "num_updates": 0}],
               "extra_state": {"train_iterator": {"epoch": 1}}, "last_optimizer_state": None}
    if fmt == "args":
        ckpt = {"args": argparse.Namespace(**vars(args), **task), "model": state, **history}
    elif fmt == "cfg":
        ckpt = {"args": None, "cfg": {"model": copy.deepcopy(args), "task": dict(task, _name=task["task"])},
                "model": state, **history}
    else:
        raise ValueError(fmt)
    torch.save(ckpt, path)
    return Path(path)
