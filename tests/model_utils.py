"""Build small LSLo models directly (no data on disk) for layer- and model-level tests."""
import argparse

import torch
from fairseq.data import Dictionary

from lslo_fairseq.checkpoints.reading import StandInTask
from lslo_fairseq.models.lslo_transformer import LSLoTransformerModel, lslo_transformer_tiny

LANGS = ["en", "fr", "ko", "oc"]


def word_dictionary(n_words=40) -> Dictionary:
    """fairseq's specials and the words w0 ... w{n_words-1} (the language tokens follow)."""
    d = Dictionary()
    for i in range(n_words):
        d.add_symbol(f"w{i}")
    return d


def build_tiny_model(langs=LANGS, ranks="en:2,fr:2,ko:3,oc:5", enc_index="src,tgt", dec_index="tgt,src",
                     modules="all", seed=0, extra=()):
    torch.manual_seed(seed)
    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    LSLoTransformerModel.add_args(parser)
    args = parser.parse_args(["--lslo-ranks", ranks, "--lslo-modules", modules,
                              "--lslo-encoder-index", enc_index, "--lslo-decoder-index", dec_index, *extra])
    args.arch = "lslo_transformer_tiny"
    args.lang_pairs = [f"{a}-{b}" for a in langs for b in langs if a != b]
    args.langs = list(langs)
    args.lang_tok_style = "multilingual"
    args.max_source_positions = args.max_target_positions = 64
    args.dropout = args.attention_dropout = args.activation_dropout = 0.0
    lslo_transformer_tiny(args)
    task = StandInTask(langs, dictionary=word_dictionary())  # words, then the language tokens
    model = LSLoTransformerModel.build_model(args, task)
    model.eval()
    return model, task


def randomize_adapters(model, scale=0.5, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.lslo_layers.values():
            for name in layer.param_names():
                if "_B" in name:
                    raw = layer.raw(name)
                    raw.copy_(torch.randn(raw.shape, generator=g) * scale)


def mixed_batch(task, rows):
    """rows: (src_lang, tgt_lang, src_words, tgt_words) -> src_tokens (left-padded, as fairseq),
    src_lengths, prev_output_tokens (EOS, __tgt__, words...) and the target (__tgt__, words, EOS)."""
    d = task.source_dictionary
    srcs = [[task.lang_token(s)] + [d.index(f"w{i}") for i in sw] + [d.eos()] for s, _, sw, _ in rows]
    tgts = [[task.lang_token(t)] + [d.index(f"w{i}") for i in tw] + [d.eos()] for _, t, _, tw in rows]
    slen, tlen = max(map(len, srcs)), max(map(len, tgts))
    src = torch.tensor([[d.pad()] * (slen - len(s)) + s for s in srcs])
    target = torch.tensor([t + [d.pad()] * (tlen - len(t)) for t in tgts])
    prev = torch.tensor([[d.eos()] + t[:-1] + [d.pad()] * (tlen - len(t)) for t in tgts])
    return src, torch.tensor([len(s) for s in srcs]), prev, target


ROWS_FOR_TRAINING = [("en", "fr", [1, 2, 3], [4, 5]), ("oc", "ko", [6, 7, 8, 9, 10, 11], [12, 13, 14, 15]),
                     ("fr", "en", [16], [17, 18, 19]), ("ko", "oc", [20, 21], [22])]
