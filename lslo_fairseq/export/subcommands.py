"""``lslo-export hf | peft | ct2``: the subcommands that leave fairseq, added to ``lslo-export`` (whose
fairseq subcommands are :mod:`lslo_fairseq.cli.export`).

  lslo-export hf   --checkpoint CKPT --out DIR [--dict dict.txt] [--spm spm.model]
      the frozen base as a Hugging Face M2M100ForConditionalGeneration directory (with a fast tokenizer
      holding every language token of the model, at fairseq's ids)
  lslo-export peft --checkpoint CKPT --directions fr-oc,oc-en --out DIR [--base-model HF_DIR]
                   [--lslo-merge outputs|ab --lslo-merge-weights W_IN,W_OUT|FILE]   (modular checkpoints)
      one PEFT LoRA adapter per direction, in DIR/<src>-<tgt>/
  lslo-export ct2  --checkpoint CKPT -s SRC -t TGT --out DIR [--quantization int8]
      the folded direction as a CTranslate2 model, its SentencePiece model beside it
"""
from __future__ import annotations

from ..merging import add_merge_options

COMMANDS = ("hf", "peft", "ct2")


def _sources(p) -> None:
    p.add_argument("--checkpoint", required=True, help="fairseq checkpoint (plain transformer or LSLo)")
    p.add_argument("--dict", default=None, help="dict.txt of the model (default: the one its training recorded)")
    p.add_argument("--spm", default=None, help="SentencePiece model (default: the one beside the dictionary)")
    p.add_argument("--out", required=True, help="output directory")


def add_parsers(sub) -> None:
    h = sub.add_parser("hf", help="frozen base as a Hugging Face M2M100 directory")
    _sources(h)
    p = sub.add_parser("peft", help="one PEFT LoRA adapter per direction")
    _sources(p)
    p.add_argument("--directions", required=True, help="comma-separated SRC-TGT, e.g. fr-oc,oc-en")
    p.add_argument("--base-model", default=None, help="the directory lslo-export hf wrote (recorded in the adapters)")
    add_merge_options(p, "modular checkpoints: how input and output adapters merge, as at generation (outputs: "
                         "two stacked LoRAs, the ranks add; ab: one LoRA of the common rank)",
                      "modular checkpoints: merge weights (default 0.5,0.5) or lslo-score --merge-search's JSON")
    c = sub.add_parser("ct2", help="one folded direction as a CTranslate2 model")
    _sources(c)
    c.add_argument("--source-lang", "-s", required=True)
    c.add_argument("--target-lang", "-t", required=True)
    c.add_argument("--quantization", default=None, help="CTranslate2 weight type: int8, int8_float32, float16, ...")


def run(args) -> None:
    import os

    from ..checkpoints.reading import CheckpointError
    from . import imports
    from .source import read_source

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CheckpointError(f"--out: {args.out} exists and is not a directory")
    if args.command == "hf":
        from .hf import check_hf, export_hf

        imports.transformers()
        src = read_source(args.checkpoint, args.dict, args.spm)
        check_hf(src)
        info = export_hf(src, args.out)
        outside = len(info["pieces_outside_dict"])
        print(f"wrote {args.out}: M2M100ForConditionalGeneration ({info['vocab_size']} ids: fairseq's "
              f"{info['fairseq_vocab_size']} as they are, {len(info['languages'])} language tokens among them"
              + (f", and {outside} SentencePiece pieces outside dict.txt, read as <unk>" if outside else "")
              + f") and its fast tokenizer; log-probabilities within "
              f"{info['max_logprob_difference_to_fairseq']:.1g} of fairseq's; {info['note']}")
        runs = info["dict_entries_of_unknown_characters"]
        if runs:
            print(f"note: {len(runs)} dict.txt entries ({', '.join(runs[:5])}{', ...' if len(runs) > 5 else ''}) are "
                  "runs of characters the SentencePiece model does not know: fairseq looks such a run up whole, the "
                  "tokenizer reads it character by character (or as one <unk>), so text holding them is tokenized "
                  "differently (all other text: fairseq's ids)")
    elif args.command == "peft":
        from .hf import read_info
        from .peft import export_peft, parse_directions

        imports.peft()
        src = read_source(args.checkpoint, args.dict, args.spm)
        directions = parse_directions(args.directions, src)
        if args.base_model is not None:
            read_info(args.base_model)
        written = export_peft(src, directions, args.out, args.base_model, args.lslo_merge, args.lslo_merge_weights)
        for name, info in written.items():
            print(f"wrote {os.path.join(args.out, name)}: LoRA on {info['modules']} modules, ranks {info['ranks']}")
    else:
        from .ct2 import QUANTIZATIONS, check_direction, export_ct2

        if args.quantization is not None and args.quantization not in QUANTIZATIONS:
            raise CheckpointError(f"--quantization: one of {', '.join(QUANTIZATIONS)}, got {args.quantization!r}")
        imports.ctranslate2()
        src = read_source(args.checkpoint, args.dict, args.spm, load_weights=False)
        check_direction(src, args.source_lang, args.target_lang)
        export_ct2(src, args.source_lang, args.target_lang, args.out, args.quantization)
        print(f"wrote {args.out}: CTranslate2 model of {args.source_lang}->{args.target_lang} only"
              f"{' (' + args.quantization + ')' if args.quantization else ''}, SentencePiece model beside it")
