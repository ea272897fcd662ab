"""``lslo-prepare-flores``: FLORES-101 -> fairseq data for fine-tuning a released M2M-124 model
(:mod:`lslo_fairseq.data.flores101` does the work)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, Optional, Sequence

from ..groups import PRESETS
from ..data.flores101 import FLORES101_URL, FloresError, describe, prepare_flores101, resolve_langs
from ..runner import run

PROG = "lslo-prepare-flores"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Encode and binarize FLORES-101 (dev -> train, devtest -> test) for fine-tuning a "
        "released M2M-124 checkpoint, for every direction of a language subset.",
    )
    p.add_argument("--flores", metavar="PATH",
                   help="flores101_dataset directory or flores101_dataset.tar.gz (default: download "
                   f"{FLORES101_URL} into --out)")
    p.add_argument("--model-dir", required=True, metavar="DIR",
                   help="the released model directory: model.pt, dict.txt, sentencepiece.bpe.model "
                   "(and language_pairs.txt)")
    p.add_argument("--out", required=True, metavar="DIR", help="fairseq data directory to write")
    p.add_argument("--subset", choices=sorted(PRESETS), help="the paper's language subset (tables 5-6)")
    p.add_argument("--langs", metavar="LIST", help="or any languages (M2M codes), comma separated")
    p.add_argument("--lang-groups", metavar="SPEC",
                   help="resource group of each --langs language: a preset, 'en:H,fr:H,oc:V' or a file")
    p.add_argument("--flores-code", action="append", default=[], metavar="LANG=STEM",
                   help="FLORES-101 file stem of a language (e.g. zh=zho_simpl); repeatable")
    p.add_argument("--model-langs", metavar="FILE",
                   help="the checkpoint's languages in the order of its language tokens, one per line "
                   "(default: its recorded --langs/--lang-dict, else the sorted languages of its recorded "
                   "--lang-pairs when they fit its embedding and language_pairs.txt; otherwise refused)")
    return p


def flores_codes(items: Sequence[str]) -> Dict[str, str]:
    """``--flores-code LANG=STEM`` (repeatable) -> {lang: stem}."""
    codes = {}
    for item in items:
        lang, sep, stem = item.partition("=")
        if not sep or not lang.strip() or not stem.strip():
            raise FloresError(f"--flores-code: expected LANG=STEM, got {item!r}")
        codes[lang.strip()] = stem.strip()
    return codes


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Print the summary of the prepared data; bad input exits with status 2 and the reason."""
    a = build_parser().parse_args(argv)

    def body():
        langs, groups = resolve_langs(a.subset, a.langs, a.lang_groups)
        def found(model):  # what the checkpoint records, before any text is read
            print(f"{PROG}: {model['checkpoint']}: {describe(model['model_report'])}", file=sys.stderr)

        info = prepare_flores101(a.flores, a.model_dir, a.out, langs, groups, flores_codes(a.flores_code),
                                 a.model_langs, on_model=found)
        print(json.dumps(info, indent=1, ensure_ascii=False))

    return run(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
