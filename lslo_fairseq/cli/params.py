"""``lslo-params``: trainable-parameter counts of an LSLo configuration, without weights.

The model is built on PyTorch's ``meta`` device by the same code that trains it, so the counts are
those of the real model. Two totals are printed, each labelled: the true one (every adapted
matrix at its own shape, d x r + r x k) and the paper's convention (every adapted matrix counted
as d_model x d_model, which gives the paper's 15.3M for lang12 2;2;8).
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

import torch

from ..config import LSLoConfigError, PRESETS, parse_lang_groups, parse_ranks


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lslo-params", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="lslo_m2m100_615m",
                   help="an lslo_transformer architecture (default: lslo_m2m100_615m)")
    p.add_argument("--lslo-ranks", required=True, help="as for fairseq-train, e.g. H:2,M:2,V:8")
    p.add_argument("--lslo-lang-groups", default=None, help="preset (lang12, lang30), list or file")
    p.add_argument("--lslo-modules", default="all", help="all, fc, attn or a list of q,k,v,c-q,c-k,c-v,fc1,fc2")
    p.add_argument("--langs", default=None,
                   help="languages with adapters (default: every language of the group or rank map)")
    p.add_argument("--dict", default=None, metavar="DICT_TXT",
                   help="the model's dict.txt, to include embeddings in the model total "
                        "(without it the share is of the transformer body, embeddings excluded)")
    p.add_argument("--model-arg", action="append", default=[], metavar="ARG",
                   help="extra fairseq model option, e.g. --model-arg=--encoder-layers=6 (repeatable)")
    return p


def build_meta_model(arch: str, ranks: str, groups: Optional[str], modules: str,
                     langs: List[str], dict_path: Optional[str], model_args: List[str]):
    from fairseq.data import Dictionary
    from fairseq.models import ARCH_MODEL_REGISTRY, ARCH_CONFIG_REGISTRY

    if arch not in ARCH_CONFIG_REGISTRY or ARCH_MODEL_REGISTRY[arch].__name__ != "LSLoTransformerModel":
        raise LSLoConfigError(f"--arch: {arch!r} is not an lslo_transformer architecture")
    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    ARCH_MODEL_REGISTRY[arch].add_args(parser)
    args = parser.parse_args(["--lslo-ranks", ranks, "--lslo-modules", modules,
                              *(["--lslo-lang-groups", groups] if groups else []), *model_args])
    args.arch, args.langs, args.lang_pairs, args.lang_tok_style = arch, langs, [], "multilingual"
    ARCH_CONFIG_REGISTRY[arch](args)
    dictionary = Dictionary.load(dict_path) if dict_path else Dictionary()
    for lang in langs:
        dictionary.add_symbol(f"__{lang}__")

    class _Task:  # what build_model reads from a task
        source_dictionary = target_dictionary = dictionary

    _Task.langs = langs
    with torch.device("meta"):
        return ARCH_MODEL_REGISTRY[arch].build_model(args, _Task())


def count(model) -> dict:
    cfg = model.lslo_config
    d_model = model.encoder.embed_tokens.embedding_dim
    true_total = paper_total = 0
    per_lang = {lang: 0 for lang in cfg.languages}
    for layer in model.lslo_layers.values():
        for row, lang in enumerate(cfg.languages):
            n = cfg.ranks[row] * (layer.in_features + layer.out_features)
            per_lang[lang] += n
            true_total += n
            paper_total += cfg.ranks[row] * 2 * d_model
    embed = {id(p): p.numel() for n, p in model.named_parameters() if "embed" in n}
    body = sum(p.numel() for p in model.parameters()) - sum(embed.values()) - true_total
    return dict(true=true_total, paper=paper_total, per_lang=per_lang, base_body=body,
                base_embed=sum(embed.values()), matrices=len(model.lslo_layers), d_model=d_model)


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    try:
        import lslo_fairseq.models  # noqa: F401  (registers the architectures)

        if a.langs:
            langs = [x for x in a.langs.split(",") if x]
        elif a.lslo_lang_groups:
            langs = list(parse_lang_groups(a.lslo_lang_groups))
        else:
            langs = list(parse_ranks(a.lslo_ranks))
        model = build_meta_model(a.arch, a.lslo_ranks, a.lslo_lang_groups, a.lslo_modules, langs,
                                 a.dict, a.model_arg)
    except (LSLoConfigError, FileNotFoundError) as e:
        print(f"lslo-params: error: {e}", file=sys.stderr)
        return 2
    c = count(model)
    cfg = model.lslo_config
    print(f"{a.arch}: {len(cfg.languages)} languages, modules {','.join(cfg.modules)}, "
          f"{c['matrices']} adapted matrices")
    print(f"{'language':<10}{'group':<7}{'rank':>5}{'parameters':>14}")
    for lang, rank in zip(cfg.languages, cfg.ranks):
        print(f"{lang:<10}{cfg.groups.get(lang, '-'):<7}{rank:>5}{c['per_lang'][lang]:>14,}")
    print(f"LSLo parameters, true count (each matrix at its own shape): {c['true']:,}")
    print(f"LSLo parameters, paper convention (each matrix as {c['d_model']}x{c['d_model']}): {c['paper']:,}")
    base = c["base_body"] + c["base_embed"]
    what = "base model" if a.dict else "base transformer body (embeddings excluded; give --dict to include them)"
    print(f"{what}: {base:,}; LSLo true count = {100.0 * c['true'] / base:.2f}% of it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
