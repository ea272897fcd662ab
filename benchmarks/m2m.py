"""M2M-124 615M-shaped models with random weights, and mixed-language batches, for the whole-model
and decoding benchmarks.

``build(kind, ...)``: ``lslo`` is ``--arch lslo_m2m100_615m`` built by the plugin's own
``build_model`` (adapters in place, base frozen); ``plain`` is fairseq's ``TransformerModel`` of the
same shape (the base model), built from the same arguments. ``layers`` overrides the 12+12 layers
(CPU runs use fewer) and ``shape`` the widths (``--quick``). The dictionary has ``vocab`` entries
(fairseq's 4 specials and word types), then one ``__xx__`` token per language: by default
:data:`M2M_VOCAB`, the size of the released M2M-124 615M's dictionary.
"""
from __future__ import annotations

import argparse
from typing import Tuple

import torch
from fairseq.data import Dictionary
from fairseq.models.transformer import TransformerModel

import lslo_fairseq.models  # noqa: F401  (registers the architectures)
from lslo_fairseq.checkpoints.reading import StandInTask
from lslo_fairseq.groups import PRESETS
from lslo_fairseq.models.lslo_transformer import LSLoTransformerModel, lslo_m2m100_615m

# The released M2M-124 615M (flores101_mm100_615M): a fairseq dictionary of 256,000 entries, fairseq's 4
# specials included; the embedding adds one row per language token (256,101 rows with its 101).
M2M_VOCAB = 256000


def word_dictionary(vocab: int) -> Dictionary:
    """fairseq's 4 specials and word types up to ``vocab`` entries (the language tokens follow)."""
    d = Dictionary()
    for i in range(vocab - len(d)):
        d.add_symbol(f"w{i}")
    return d


def add_shape_args(parser: argparse.ArgumentParser, batch_help: str, length_help: str) -> None:
    """The model and batch options the whole-model and decoding benchmarks share."""
    parser.add_argument("--layers", type=int, default=2, help="encoder and decoder layers (default 2; M2M 615M: 12)")
    parser.add_argument("--vocab", type=int, default=M2M_VOCAB,
                        help=f"dictionary entries before the language tokens, fairseq's 4 specials included (default "
                             f"{M2M_VOCAB:,}: the released M2M-124 615M's; its embedding then has {M2M_VOCAB:,} + one "
                             "row per language)")
    parser.add_argument("--groups", default="lang12", help="language groups (default lang12)")
    parser.add_argument("--ranks", default="H:2,M:2,V:8", help="ranks (default H:2,M:2,V:8)")
    parser.add_argument("--batch", type=int, default=16, help=batch_help)
    parser.add_argument("--length", type=int, default=24, help=length_help)


def model_args(groups: str, ranks: str, layers: int, modules: str = "all", shape=None) -> argparse.Namespace:
    """fairseq arguments of ``lslo_m2m100_615m`` with ``layers``+``layers`` layers; ``shape`` =
    (dim, ffn, heads) shrinks it (the scripts' ``--quick`` mode)."""
    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    LSLoTransformerModel.add_args(parser)
    extra = []
    if shape:
        for side in ("encoder", "decoder"):
            extra += [f"--{side}-embed-dim", str(shape[0]), f"--{side}-ffn-embed-dim", str(shape[1]),
                      f"--{side}-attention-heads", str(shape[2])]
    args = parser.parse_args(["--lslo-ranks", ranks, "--lslo-lang-groups", groups, "--lslo-modules", modules,
                              "--encoder-layers", str(layers), "--decoder-layers", str(layers), *extra])
    langs = list(PRESETS[groups]) if groups in PRESETS else [x.split(":")[0] for x in groups.split(",")]
    args.arch, args.langs, args.lang_pairs, args.lang_tok_style = "lslo_m2m100_615m", langs, [], "multilingual"
    args.max_source_positions = args.max_target_positions = 1024
    lslo_m2m100_615m(args)
    return args


def build(kind: str, groups: str = "lang12", ranks: str = "H:2,M:2,V:8", layers: int = 12,
          vocab: int = M2M_VOCAB, seed: int = 0, shape=None) -> Tuple[torch.nn.Module, StandInTask]:
    """A random-weight model: ``lslo`` (adapters B random, so they take effect) or ``plain``."""
    if kind not in ("lslo", "plain"):
        raise ValueError(f"kind must be lslo or plain, got {kind!r}")
    args = model_args(groups, ranks, layers, shape=shape)
    task = StandInTask(args.langs, dictionary=word_dictionary(vocab))
    torch.manual_seed(seed)
    if kind == "plain":
        return TransformerModel.build_model(args, task), task
    model = LSLoTransformerModel.build_model(args, task)
    with torch.no_grad():
        for layer in model.lslo_layers.values():
            for name in layer.param_names():
                if "_B" in name:
                    layer.raw(name).normal_(std=0.01)
    return model, task


def mixed_batch(task: StandInTask, batch: int, length: int, seed: int = 0):
    """``batch`` sentences of ``length`` random words, source and target languages cycling through
    the task's languages (shifted, so pairs differ): src_tokens (``__src__`` first, as
    ``--encoder-langtok src``), src_lengths, prev_output_tokens (EOS, ``__tgt__``, words) and target."""
    g = torch.Generator().manual_seed(seed)
    d = task.source_dictionary
    n = len(task.langs)
    n_words = len(d) - d.nspecial - n  # word types (language tokens are the last n entries)
    words = torch.randint(d.nspecial, d.nspecial + min(1000, n_words), (batch, length - 2), generator=g)
    src_lang = torch.tensor([task.lang_token(task.langs[b % n]) for b in range(batch)])
    tgt_lang = torch.tensor([task.lang_token(task.langs[(b + 1 + b // n) % n]) for b in range(batch)])
    eos = torch.full((batch, 1), d.eos())
    src = torch.cat([src_lang[:, None], words, eos], dim=1)
    target = torch.cat([tgt_lang[:, None], words.flip(1), eos], dim=1)
    prev = torch.cat([eos, target[:, :-1]], dim=1)
    return src, torch.full((batch,), length), prev, target, tgt_lang
