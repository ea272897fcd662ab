"""``lslo-lens``: the logit lens of a checkpoint (follow-up paper: why English is a good bridge).

For every direction, the reference translations of ``--gen-subset`` are teacher-forced through the
model; each decoder layer's state goes through the model's final layer norm and output projection,
and the top-k tokens of every target position are sorted into source / target / bridge / other /
shared / unseen by the token-language rule of :mod:`lslo_fairseq.analysis.logit_lens` (a token's
language: its relative frequency in each language's training text)::

    lslo-lens --data-dir data-bin --checkpoint ckpt/checkpoint_best.pt --pairs fr-oc,oc-fr \\
        --out lens.json -- --encoder-langtok src --decoder-langtok --langs en,fr,oc \\
        --fixed-dictionary data-bin/dict.txt
    lslo-plot logit-lens lens.json --out figs/lens

The model and data are read as ``lslo-score --generate`` reads them (fairseq's task, one process;
a modular checkpoint merges per direction as with ``--lslo-merge``/``--lslo-merge-weights`` after
``--``). Works for plain transformer checkpoints (``--task translation_multi_simple_epoch``) too.
The training text of a language is ``--train-text`` with ``{lang}`` filled in (default:
``DATA_DIR/train.spm.{lang}``, the pieces files of a prepared data folder). Writes the JSON (the
rule, per direction the per-layer counts and shares) and prints each direction's table. Every
input is checked before the model is loaded; errors name the flag at fault (exit status 2).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional, Sequence

from ..analysis import logit_lens as lens
from ..evaluation import DEFAULT_TASK, Direction
from ..evaluation.generation import Translator, parse_pairs
from ..files import write_json_atomic
from ..layout.frozen_base import read_fairseq_checkpoint
from ..runfiles import RunFileError, prepared
from ..runner import run
from .score import _default_user_dir, _option_value, _split_extra

PROG = "lslo-lens"
DEFAULT_TEXT = "{data_dir}/train.spm.{lang}"


def build_parser() -> argparse.ArgumentParser:
    """The ``lslo-lens`` parser (fairseq's task arguments follow ``--``)."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                epilog="fairseq task arguments (--langs, --fixed-dictionary, langtok flags, "
                                "--lslo-merge-weights ...) follow '--'.")
    p.add_argument("--data-dir", required=True, metavar="DIR", help="fairseq binarized data directory (data-bin).")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="the model checkpoint (one, no ensemble).")
    p.add_argument("--pairs", required=True, metavar="PAIRS", help="directions, comma separated: fr-oc,oc-fr.")
    p.add_argument("--out", required=True, metavar="FILE.json", help="where the JSON goes.")
    p.add_argument("--bridge", default=lens.DEFAULT_BRIDGE, metavar="LANG",
                   help=f"the bridge language's column (default {lens.DEFAULT_BRIDGE}).")
    p.add_argument("--top-k", type=int, default=lens.DEFAULT_TOP_K, metavar="K",
                   help=f"tokens per position and layer (default {lens.DEFAULT_TOP_K}).")
    p.add_argument("--ratio", type=float, default=lens.DEFAULT_RATIO, metavar="X",
                   help="a token is language l's when l's relative frequency is at least X times the next "
                   f"language's (default {lens.DEFAULT_RATIO:g}).")
    p.add_argument("--min-count", type=int, default=lens.DEFAULT_MIN_COUNT, metavar="N",
                   help=f"... and it occurs at least N times in l's text (default {lens.DEFAULT_MIN_COUNT}).")
    p.add_argument("--train-text", default=DEFAULT_TEXT, metavar="PATTERN",
                   help="a language's training text (space-separated pieces), {lang} and {data_dir} filled "
                   f"in (default {DEFAULT_TEXT}).")
    p.add_argument("--text-langs", metavar="LANGS",
                   help="the token table's languages (default: 'langs' of DATA_DIR/prepared.json, else those "
                   "of --pairs and --bridge); each needs its --train-text file.")
    p.add_argument("--gen-subset", default="test", help="the subset whose references are teacher-forced (default test).")
    p.add_argument("--max-positions", type=int, metavar="N",
                   help="per direction, stop after the batch that reaches N target positions (default: all).")
    p.add_argument("--task", default=DEFAULT_TASK,
                   help=f"fairseq task (default {DEFAULT_TASK}; translation_multi_simple_epoch for a plain model).")
    p.add_argument("--user-dir", metavar="DIR",
                   help=f"fairseq --user-dir (default: the lslo_fairseq package when --task is {DEFAULT_TASK}).")
    return p


def text_languages(args, pairs: Sequence[Direction]) -> List[str]:
    """--text-langs, else the prepared data's languages, else those of the directions and the bridge."""
    if args.text_langs:
        return [x.strip() for x in args.text_langs.split(",") if x.strip()]
    if os.path.isfile(os.path.join(args.data_dir, prepared.FILENAME)):
        try:
            return list(prepared.load(args.data_dir)["langs"])
        except RunFileError as e:
            raise lens.LensError(f"{e}; give --text-langs") from None
    return list(dict.fromkeys([lang for p in pairs for lang in p] + [args.bridge]))


def text_files(args, langs: Sequence[str]) -> Dict[str, str]:
    """Each table language's training-text file; refused when one is missing."""
    files = {lang: args.train_text.format(lang=lang, data_dir=args.data_dir) for lang in langs}
    missing = [f"{lang} ({path})" for lang, path in files.items() if not os.path.isfile(path)]
    if missing:
        raise lens.LensError(f"--train-text: no training text for {', '.join(missing)}; give the pieces files "
                             "(PATTERN with {lang}) or leave the language out of --text-langs")
    return files


def check_request(args, extra: Sequence[str]):
    """Every check that needs no model: options, files, directions in the data; returns the pairs,
    the table's text files and the user dir."""
    if not os.path.isdir(args.data_dir):
        raise lens.LensError(f"--data-dir: {args.data_dir} is not a directory")
    if not os.path.isfile(args.checkpoint):
        raise lens.LensError(f"--checkpoint: {args.checkpoint} not found")
    if args.top_k < 1:
        raise lens.LensError(f"--top-k: at least 1, got {args.top_k}")
    if args.max_positions is not None and args.max_positions < 1:
        raise lens.LensError(f"--max-positions: at least 1, got {args.max_positions}")
    if args.ratio < 1:
        raise lens.LensError(f"--ratio: at least 1, got {args.ratio:g}")
    if args.min_count < 1:
        raise lens.LensError(f"--min-count: at least 1, got {args.min_count}")
    if not args.out.endswith(".json"):
        raise lens.LensError(f"--out: a .json file, got {args.out}")
    pairs = parse_pairs(args.pairs)
    langs = text_languages(args, pairs)
    lens.check_languages(langs, pairs, args.bridge, "--pairs/--bridge")
    files = text_files(args, langs)
    for src, tgt in pairs:
        here = [os.path.join(args.data_dir, f"{args.gen_subset}.{a}-{b}.{src}.idx") for a, b in ((src, tgt), (tgt, src))]
        if not any(os.path.isfile(p) for p in here):
            raise lens.LensError(f"--pairs: {src}-{tgt} is not in --data-dir {args.data_dir} for --gen-subset "
                                 f"{args.gen_subset} (no {os.path.basename(here[0])})")
    dictionary = _option_value(extra, "--fixed-dictionary") or os.path.join(args.data_dir, "dict.txt")
    if not os.path.isfile(dictionary):
        raise lens.LensError(f"the dictionary {dictionary} (--fixed-dictionary after '--', else DATA_DIR/dict.txt) "
                             "does not exist: the lens reads tokens through the checkpoint's dictionary")
    check_vocabulary(args.checkpoint, dictionary, _option_value(extra, "--langs"), _option_value(extra, "--lang-tok-style"))
    user_dir = args.user_dir or _default_user_dir(args.task)
    if user_dir and not os.path.isdir(user_dir):
        raise lens.LensError(f"--user-dir: {user_dir} does not exist")
    return pairs, files, user_dir


def check_vocabulary(checkpoint: str, dictionary: str, langs: Optional[str], style: Optional[str]) -> None:
    """The checkpoint's output layer has as many rows as ``dictionary`` plus the ``--langs`` tokens
    (as the multilingual task builds it); without ``--langs`` only the checkpoint is read."""
    from fairseq.data import Dictionary
    from fairseq.data.multilingual.multilingual_utils import get_lang_tok

    state = read_fairseq_checkpoint(checkpoint, "--checkpoint", mmap=True)
    weights = state["model"].get("decoder.output_projection.weight", state["model"].get("decoder.embed_tokens.weight"))
    if weights is None or not langs:
        return
    d = Dictionary.load(dictionary)
    for lang in langs.split(","):
        d.add_symbol(get_lang_tok(lang.strip(), style or "multilingual"))
    if weights.shape[0] != len(d):
        raise lens.LensError(
            f"--checkpoint {checkpoint}: its output layer has {weights.shape[0]} rows, but {dictionary} with the "
            f"language tokens of --langs has {len(d)} entries: give the dictionary (--fixed-dictionary) and --langs "
            "the checkpoint was trained with")


def compute(args, extra: Sequence[str]) -> dict:
    """The logit-lens JSON document for ``args`` (checked first), printed per direction and written."""
    import torch
    from fairseq import utils
    from fairseq.data.multilingual.multilingual_utils import get_lang_tok

    pairs, files, user_dir = check_request(args, extra)
    translator = Translator(args.data_dir, args.checkpoint, pairs, user_dir, extra, beam=1,
                            gen_subset=args.gen_subset, task=args.task)
    if len(translator.models) != 1:
        raise lens.LensError(f"--checkpoint: one checkpoint, not an ensemble of {len(translator.models)}")
    model, task = translator.models[0], translator.task
    dictionary = task.target_dictionary
    style = getattr(task.args, "lang_tok_style", "multilingual")
    lang_ids = [i for i in (dictionary.indices.get(get_lang_tok(x, style)) for x in task.langs) if i is not None]
    excluded = lens.excluded_tokens(dictionary, lang_ids)
    counts, oov = {}, {}
    for lang, path in files.items():
        counts[lang], oov[lang] = lens.read_token_counts(path, dictionary)
    table = lens.token_languages(counts, excluded, args.ratio, args.min_count)
    ignore = torch.from_numpy(excluded)
    entries = {}
    for src, tgt in pairs:
        categories = torch.from_numpy(lens.direction_categories(table, src, tgt, args.bridge))
        _, batches = translator.batches(src, tgt)
        if translator.use_cuda:
            batches = (utils.move_to_cuda(b) for b in batches)
        c, n = lens.lens_counts(model, batches, categories, ignore, args.top_k, args.max_positions)
        entries[f"{src}-{tgt}"] = lens.direction_entry(c.numpy(), n, args.top_k)
        print(lens.format_shares(f"{src}-{tgt}", entries[f"{src}-{tgt}"], args.bridge), end="\n\n", flush=True)
    meta = {"checkpoint": os.path.abspath(args.checkpoint), "data_dir": os.path.abspath(args.data_dir),
            "gen_subset": args.gen_subset, "task": args.task, "user_dir": user_dir, "extra_args": list(extra),
            "train_text": {lang: os.path.abspath(p) for lang, p in files.items()},
            "pieces_not_in_dictionary": oov, "max_positions": args.max_positions}
    doc = lens.lens_document(entries, table, args.bridge, meta)
    write_json_atomic(args.out, doc)
    print(f"rule: {doc['rule']}")
    print(f"wrote {args.out}")
    return doc


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``lslo-lens``; bad input exits with status 2 before the model is loaded."""
    own, extra = _split_extra(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(own)
    return run(PROG, lambda: compute(args, extra) and None)


if __name__ == "__main__":
    sys.exit(main())
