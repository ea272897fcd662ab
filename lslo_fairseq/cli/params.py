"""``lslo-params``: trainable-parameter counts of an LSLo configuration, without weights.

The model is built on PyTorch's ``meta`` device by the same code that trains it, so the counts are
those of the real model: sum over adapted matrices of r_l (k + d), with k x d the adapter's shape.
In ``--lslo-adapter-shape paper`` (the authors' code) every adapter is d_model x d_model, which gives
the paper's #Params (15,335,424 for lang12 All 2;2;8); in ``full`` fc1/fc2 adapters span
d_model x ffn, and the paper-shape count of the same configuration is printed beside it.
``--checkpoint`` counts a trained LSLo checkpoint's model instead (full or adapter-only), with its
real dictionary size and pruned share.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

import torch

from ..checkpoints.reading import StandInTask, load_lslo_checkpoint
from ..config import LSLoConfigError, parse_lang_groups, parse_ranks
from ..runner import run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lslo-params", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="lslo_m2m100_615m",
                   help="an lslo_transformer architecture (default: lslo_m2m100_615m)")
    p.add_argument("--checkpoint", default=None, metavar="PT",
                   help="count a trained LSLo checkpoint (checkpoint*.pt, full or adapter-only) instead of a "
                        "configuration; the --lslo-* options then come from it")
    p.add_argument("--lslo-ranks", default=None, help="as for fairseq-train, e.g. H:2,M:2,V:8 (required "
                                                      "without --checkpoint)")
    p.add_argument("--lslo-lang-groups", default=None, help="preset (lang12, lang30), list or file")
    p.add_argument("--lslo-modules", default="all", help="all, fc, attn or a list of q,k,v,c-q,c-k,c-v,fc1,fc2")
    p.add_argument("--lslo-adapter-shape", default="full", choices=["full", "paper"],
                   help="full (LoRA over each whole matrix) or paper (the authors' d_model x d_model adapters)")
    p.add_argument("--lslo-fc-offset", type=int, default=0, metavar="START",
                   help="paper shape: first FFN column of the fc1/fc2 slice (no effect on the count)")
    p.add_argument("--langs", default=None,
                   help="languages with adapters (default: every language of the group or rank map)")
    p.add_argument("--dict", default=None, metavar="DICT_TXT",
                   help="the model's dict.txt, to include embeddings in the model total "
                        "(without it the share is of the transformer body, embeddings excluded)")
    p.add_argument("--model-arg", action="append", default=[], metavar="ARG",
                   help="extra fairseq model option, e.g. --model-arg=--encoder-layers=6 (repeatable)")
    return p


def build_meta_model(arch: str, ranks: str, groups: Optional[str], modules: str,
                     langs: List[str], dict_path: Optional[str], model_args: List[str],
                     shape: str = "full", fc_offset: int = 0):
    from fairseq.data import Dictionary
    from fairseq.models import ARCH_MODEL_REGISTRY, ARCH_CONFIG_REGISTRY

    if arch not in ARCH_CONFIG_REGISTRY or ARCH_MODEL_REGISTRY[arch].__name__ != "LSLoTransformerModel":
        raise LSLoConfigError(f"--arch: {arch!r} is not an lslo_transformer architecture")
    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    ARCH_MODEL_REGISTRY[arch].add_args(parser)
    args = parser.parse_args(["--lslo-ranks", ranks, "--lslo-modules", modules, "--lslo-adapter-shape", shape,
                              "--lslo-fc-offset", str(fc_offset),
                              *(["--lslo-lang-groups", groups] if groups else []), *model_args])
    args.arch, args.langs, args.lang_pairs, args.lang_tok_style = arch, langs, [], "multilingual"
    ARCH_CONFIG_REGISTRY[arch](args)
    task = StandInTask(langs, dictionary=Dictionary.load(dict_path) if dict_path else None)
    with torch.device("meta"):
        return ARCH_MODEL_REGISTRY[arch].build_model(args, task)


def count(model) -> dict:
    """``adapters``: the model's LoRA parameters, sum of r_l (k + d) per bank at each adapter's own
    shape; ``paper_shape``: the same configuration with every adapter d_model x d_model."""
    cfg = model.lslo_config
    d_model = model.encoder.embed_tokens.embedding_dim
    total = paper_shape = 0
    per_lang = {lang: 0 for lang in cfg.languages}
    for layer in model.lslo_layers.values():
        for row, lang in enumerate(cfg.languages):
            n = len(layer.banks) * cfg.ranks[row] * (layer.adapter_in + layer.adapter_out)
            per_lang[lang] += n
            total += n
            paper_shape += len(layer.banks) * cfg.ranks[row] * 2 * d_model
    embed = {id(p): p.numel() for n, p in model.named_parameters() if "embed" in n}
    body = sum(p.numel() for p in model.parameters()) - sum(embed.values()) - total
    return dict(adapters=total, paper_shape=paper_shape, per_lang=per_lang, base_body=body,
                base_embed=sum(embed.values()), matrices=len(model.lslo_layers), d_model=d_model,
                shape=cfg.adapter_shape)


def configured_model(a):
    """The meta-device model of the --lslo-* options given."""
    if a.dict and not os.path.isfile(a.dict):
        raise LSLoConfigError(f"--dict: {a.dict} does not exist")
    if not a.lslo_ranks:
        raise LSLoConfigError("--lslo-ranks is required (or give --checkpoint)")
    if a.langs:
        langs = [x for x in a.langs.split(",") if x]
    elif a.lslo_lang_groups:
        langs = list(parse_lang_groups(a.lslo_lang_groups))
    else:
        langs = list(parse_ranks(a.lslo_ranks))
    return build_meta_model(a.arch, a.lslo_ranks, a.lslo_lang_groups, a.lslo_modules, langs,
                            a.dict, a.model_arg, a.lslo_adapter_shape, a.lslo_fc_offset)


def pruned_share(model) -> Optional[float]:
    """Share of adapter entries that the pruning masks zero (None without masks)."""
    masks = [b for n, b in model.named_buffers() if n.endswith("_mask")]
    return None if not masks else sum(int((m == 0).sum()) for m in masks) / sum(m.numel() for m in masks)


def report(a) -> None:
    import lslo_fairseq.models  # noqa: F401  (registers the architectures)

    if a.checkpoint:
        state, model = load_lslo_checkpoint(a.checkpoint, "--checkpoint")
        arch, a.dict = options_arch(state), a.dict or "(the checkpoint's dictionary)"
    else:
        model, arch = configured_model(a), a.arch
    c = count(model)
    cfg = model.lslo_config
    print(f"{arch}: {len(cfg.languages)} languages, modules {','.join(cfg.modules)}, "
          f"{c['matrices']} adapted matrices")
    print(f"{'language':<10}{'group':<7}{'rank':>5}{'parameters':>14}")
    for lang, rank in zip(cfg.languages, cfg.ranks):
        print(f"{lang:<10}{cfg.groups.get(lang, '-'):<7}{rank:>5}{c['per_lang'][lang]:>14,}")
    print(f"LSLo trainable parameters (--lslo-adapter-shape {c['shape']}): {c['adapters']:,}")
    if c["shape"] != "paper":
        print(f"  the same configuration in the authors' shape (--lslo-adapter-shape paper, every adapter "
              f"{c['d_model']}x{c['d_model']}): {c['paper_shape']:,}")
    base = c["base_body"] + c["base_embed"]
    what = "base model" if a.dict else "base transformer body (embeddings excluded; give --dict to include them)"
    print(f"{what}: {base:,}; LSLo = {100.0 * c['adapters'] / base:.2f}% of it")
    if a.checkpoint and pruned_share(model) is not None:
        print(f"pruned by the masks: {100.0 * pruned_share(model):.2f}% of the masked adapter entries")


def options_arch(state) -> str:
    from ..checkpoints.reading import options

    return str(options(state).get("arch"))


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    return run("lslo-params", lambda: report(a))


if __name__ == "__main__":
    sys.exit(main())
