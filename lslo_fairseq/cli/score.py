"""``lslo-score``: spBLEU of many directions, grouped by resource type (H2H, H2M, ..., AVG).

Score existing ``fairseq-generate`` outputs::

    lslo-score --run Pretrain=runs/pretrain --run LSLo=runs/lslo --spm flores101.spm \\
        --lang-groups lang12 --out results/table1

or translate every direction first (in one process) and score the result::

    lslo-score --generate --data-dir data-bin --checkpoint ckpt/checkpoint_best.pt \\
        --pairs en-fr,fr-en --results-dir runs/lslo --spm flores101.spm --lang-groups lang12 \\
        -- --encoder-langtok src --decoder-langtok --langs en,fr --fixed-dictionary dict.txt
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from ..config import parse_lang_groups
from ..evaluation import DEFAULT_TASK, Direction, ScoringError
from ..evaluation.bootstrap import compare_runs, format_intervals, significance_summary
from ..evaluation.generation import generate_all_directions, parse_pairs
from ..evaluation.outputs import find_direction_outputs, missing_ids, read_generate_output
from ..evaluation.paper import difference, paper_rows
from ..evaluation.spbleu import load_spm, resolve_spm, scoring_meta, spbleu
from ..evaluation.tables import check_grouped, format_table, group_table, merge_tables, write_results
from . import progress
from .runner import run

PROG = "lslo-score"


def build_parser() -> argparse.ArgumentParser:
    """The ``lslo-score`` argument parser (extra fairseq arguments after ``--`` are split off
    before it runs)."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="spBLEU (FLORES-101 definition, offline) of translation directions, averaged "
        "by resource group of source and target language, one table row per run.",
        epilog="Arguments after a lone '--' are passed to fairseq's generation (--generate only), "
        "e.g. '-- --encoder-langtok src --decoder-langtok --langs en,fr,... --fixed-dictionary D'.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--run", action="append", default=[], metavar="NAME=DIR",
        help="a run to score: NAME is its table row, DIR holds one fairseq-generate output per "
        "direction (DIR/<src>-<tgt>/generate-<subset>.txt, DIR/generate-<src>-<tgt>.txt or "
        "DIR/<src>-<tgt>.txt). Repeat for several rows, printed in the order given.",
    )
    p.add_argument(
        "--spm", required=True, metavar="PATH",
        help="SentencePiece model that splits hypotheses and references for spBLEU, or 'flores101' "
        "for the FLORES-101 tokenizer model (sacrebleu's cached copy in $SACREBLEU/models, "
        "downloaded there if missing and a network is up); its path and md5 are recorded.",
    )
    p.add_argument(
        "--paper", metavar="TABLE:ROW",
        help="print the paper's row beside ours and our row minus the paper's: 'TABLE:ROW' for "
        "every run (e.g. 'table1:2;2;8+WL+GPS(0.9)'), or 'TABLE' to match runs to rows by name "
        "(tables table1-4 and table8; rows named as in the paper).",
    )
    p.add_argument(
        "--lang-groups", required=True, metavar="SPEC",
        help="language -> resource group: a preset (lang12, lang30), a list like 'en:H,fr:H,oc:V', "
        "or a file of 'lang group' lines.",
    )
    p.add_argument(
        "--out", metavar="PREFIX",
        help="write PREFIX.csv and PREFIX.json (default: <results-dir>/spbleu with --generate, "
        "./spbleu otherwise).",
    )
    p.add_argument(
        "--bootstrap", type=int, default=0, metavar="N",
        help="also print every cell's 95%% confidence interval from N paired bootstrap resamples of the "
        "test sentences (e.g. 1000; default 0: off), and each run's difference to --baseline with its "
        "interval; the JSON records them.",
    )
    p.add_argument(
        "--baseline", metavar="RUN",
        help="with --bootstrap: the run the others are compared with (default: the first run).",
    )
    p.add_argument("--bootstrap-seed", type=int, default=1, metavar="S",
                   help="seed of the bootstrap draws (default 1): the same seed gives the same intervals.")
    p.add_argument(
        "--gen-subset", default="test", metavar="SUBSET",
        help="data subset to translate and whose generate-<SUBSET>.txt files are scored (default: test).",
    )
    g = p.add_argument_group("generation", "translate every direction first (one process), then score it")
    g.add_argument("--generate", action="store_true",
                   help="run fairseq generation for every --pairs direction before scoring.")
    g.add_argument("--data-dir", metavar="DIR", help="fairseq binarized data directory (data-bin).")
    g.add_argument("--checkpoint", metavar="CKPT", help="model checkpoint to translate with (--path).")
    g.add_argument("--pairs", metavar="PAIRS",
                   help="directions to translate, comma separated: en-fr,fr-en,...; also fairseq's --lang-pairs.")
    g.add_argument("--results-dir", metavar="DIR",
                   help="where the outputs go: DIR/<src>-<tgt>/generate-<subset>.txt.")
    g.add_argument("--task", default=DEFAULT_TASK,
                   help=f"fairseq task (default: {DEFAULT_TASK}; use translation_multi_simple_epoch "
                   "for a plain multilingual model).")
    g.add_argument("--beam", type=int, default=5, help="beam size (default: 5).")
    g.add_argument("--user-dir", metavar="DIR",
                   help="fairseq --user-dir (default: the lslo_fairseq package when --task is "
                   f"{DEFAULT_TASK}, none otherwise).")
    g.add_argument("--name", help="table row name of the generated run (default: the checkpoint's file stem).")
    g.add_argument("--verbose", action="store_true",
                   help="print fairseq's generation log instead of a progress bar (default: the log goes "
                   "to <results-dir>/generate.log).")
    return p


def _split_extra(argv: List[str]) -> Tuple[List[str], List[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def _parse_run(spec: str) -> Tuple[str, str]:
    name, sep, folder = spec.partition("=")
    if not sep or not name.strip() or not folder.strip():
        raise ScoringError(f"--run: expected NAME=DIR, got {spec!r}")
    name, folder = name.strip(), folder.strip()
    if not os.path.isdir(folder):
        raise ScoringError(f"--run {spec}: directory {folder} does not exist")
    return name, folder


def _default_user_dir(task: str) -> Optional[str]:
    if task != DEFAULT_TASK:
        return None
    import lslo_fairseq

    return os.path.dirname(os.path.abspath(lslo_fairseq.__file__))


class Generation(NamedTuple):
    """What --generate translates: the run's row name, its directions and fairseq's --user-dir."""

    name: str
    pairs: List[Direction]
    user_dir: Optional[str]


# ---- the steps of lslo-score, in order; each raises an LSLoError naming the flag at fault --------


def check_spm(spec: str) -> str:
    """The SentencePiece model's path (``flores101`` resolved), loaded once to prove it works."""
    try:
        path = resolve_spm(spec)
        load_spm(path)
    except ScoringError as e:
        raise ScoringError(str(e) if str(e).startswith("--spm") else f"--spm: {e}") from None
    return path


def check_request(args, extra: List[str]) -> None:
    if extra and not args.generate:
        raise ScoringError(f"extra fairseq arguments after '--' ({' '.join(extra)}) need --generate")
    if not args.run and not args.generate:
        raise ScoringError("nothing to score: give --run NAME=DIR (repeatable) or --generate")
    if args.bootstrap < 0 or args.bootstrap == 1:
        raise ScoringError(f"--bootstrap: 0 (off) or a number of resamples >= 2, got {args.bootstrap}")
    if args.baseline and not args.bootstrap:
        raise ScoringError("--baseline compares runs by bootstrap resampling: give --bootstrap N too")


def check_baseline(args, names: List[str]) -> Optional[str]:
    """The --bootstrap baseline: --baseline (a run's name) or the first run."""
    if not args.bootstrap:
        return None
    if args.baseline and args.baseline not in names:
        raise ScoringError(f"--baseline: no run named {args.baseline!r}; the runs are {', '.join(names)}")
    return args.baseline or names[0]


def bootstrap_intervals(args, texts, lang_groups, columns, baseline: str) -> dict:
    """Print the table with 95% paired-bootstrap intervals and the significance summary; return
    what the JSON records."""
    cells, diffs, record = compare_runs(texts, args.spm, lang_groups, baseline, args.bootstrap,
                                        args.bootstrap_seed)
    print()
    print(f"95% confidence intervals, {args.bootstrap} paired bootstrap resamples (seed {args.bootstrap_seed}); "
          f"* = the difference to {baseline} excludes 0:")
    print(format_intervals(cells, columns, diffs, baseline))
    for line in significance_summary(diffs, baseline):
        print(line)
    return record


def existing_runs(args, lang_groups) -> Tuple[List[Tuple[str, str]], Dict[str, Dict[Direction, str]]]:
    """The --run NAME=DIR pairs and each one's output file per direction (every language grouped)."""
    runs = [_parse_run(spec) for spec in args.run]
    files: Dict[str, Dict[Direction, str]] = {}
    for name, folder in runs:
        if name in files:
            raise ScoringError(f"--run: the name {name!r} is used twice")
        try:
            files[name] = find_direction_outputs(folder, args.gen_subset)
            check_grouped(files[name], lang_groups)
        except ScoringError as e:
            raise ScoringError(f"--run {name}={folder}: {e}") from None
    return runs, files


def generation_plan(args, taken_names, lang_groups) -> Optional[Generation]:
    """--generate's inputs, all checked before anything is translated (None without --generate)."""
    if not args.generate:
        return None
    for flag in ("data_dir", "checkpoint", "pairs", "results_dir"):
        if not getattr(args, flag):
            raise ScoringError(f"--generate needs --{flag.replace('_', '-')}")
    if not os.path.isdir(args.data_dir):
        raise ScoringError(f"--data-dir: {args.data_dir} does not exist")
    if not os.path.isfile(args.checkpoint):
        raise ScoringError(f"--checkpoint: {args.checkpoint} does not exist")
    if args.beam < 1:
        raise ScoringError(f"--beam must be >= 1, got {args.beam}")
    try:
        pairs = parse_pairs(args.pairs)
    except ScoringError as e:
        raise ScoringError(f"--pairs: {e}") from None
    try:
        check_grouped(pairs, lang_groups)
    except ScoringError as e:
        raise ScoringError(f"--pairs/--lang-groups: {e}") from None
    user_dir = args.user_dir if args.user_dir else _default_user_dir(args.task)
    if user_dir and not os.path.isdir(user_dir):
        raise ScoringError(f"--user-dir: {user_dir} does not exist")
    name = args.name or os.path.splitext(os.path.basename(args.checkpoint))[0]
    if name in taken_names:
        raise ScoringError(f"--name: {name!r} is also a --run name")
    return Generation(name, pairs, user_dir)


def read_outputs(files: Dict[str, Dict[Direction, str]]) -> Dict[str, Dict[Direction, tuple]]:
    """(hypotheses, references) of every run and direction."""
    return {name: {d: read_generate_output(p) for d, p in f.items()} for name, f in files.items()}


def warn_missing_ids(files: Dict[str, Dict[Direction, str]]) -> None:
    for name, by_dir in files.items():
        for (s, t), path in by_dir.items():
            gaps = missing_ids(path)
            if gaps:
                print(f"lslo-score: warning: run {name} {s}-{t}: {len(gaps)} sentence id(s) missing "
                      f"from {path} (ids {gaps[:10]}): fairseq skipped them; the score covers the "
                      "rest only", file=sys.stderr)


def score_tables(texts, spm: str, lang_groups, paper):
    """spBLEU per run and direction, the grouped table (columns, rows) and the paper comparison."""
    per_direction = {
        name: {d: spbleu(hyps, refs, spm) for d, (hyps, refs) in by_dir.items()}
        for name, by_dir in texts.items()
    }
    tables = [(name, *group_table(scores, lang_groups)) for name, scores in per_direction.items()]
    columns, rows = merge_tables(tables)
    comparison: List[Tuple[str, List[Optional[float]]]] = []
    for name, values in rows:
        if name not in paper:
            continue
        label, paper_columns, paper_values = paper[name]
        aligned, diff = difference(values, columns, paper_columns, paper_values)
        comparison += [(label, aligned), (f"{name} - paper", diff)]
        unscored = [c for c in paper_columns if c not in columns]
        if unscored:
            print(f"lslo-score: warning: the paper's row has columns run {name} does not score "
                  f"({', '.join(unscored)}): its languages are not the paper's subset", file=sys.stderr)
    direction_sets = {name: frozenset(s) for name, s in per_direction.items()}
    if len(set(direction_sets.values())) > 1:
        sizes = ", ".join(f"{n}: {len(s)}" for n, s in direction_sets.items())
        print(f"lslo-score: warning: runs score different directions ({sizes}); rows are not "
              "directly comparable", file=sys.stderr)
    return per_direction, columns, rows, comparison


def results_meta(args, extra, lang_groups, paper, runs, gen, files, texts, per_direction) -> dict:
    """What the JSON records beside the scores: tokenizer, groups, paper rows, inputs per run."""
    meta = scoring_meta(args.spm)
    meta["lang_groups"] = {"spec": args.lang_groups, "groups": lang_groups}
    meta["gen_subset"] = args.gen_subset
    if paper:
        meta["paper"] = {
            "spec": args.paper,
            "rows": {run: {"row": label, "columns": cols, "spbleu": vals} for run, (label, cols, vals) in paper.items()},
            "note": "paper rows: FLORES-101 devtest, spBLEU with the FLORES-101 SentencePiece model, beam 5",
        }
    meta["runs"] = {
        name: {
            "dir": os.path.abspath(dict(runs).get(name, args.results_dir or "")),
            "files": {f"{s}-{t}": os.path.abspath(p) for (s, t), p in files[name].items()},
            "sentences": {f"{s}-{t}": len(texts[name][s, t][0]) for (s, t) in files[name]},
        }
        for name in per_direction
    }
    if gen is not None:
        meta["runs"][gen.name]["generation"] = {
            "checkpoint": os.path.abspath(args.checkpoint), "data_dir": os.path.abspath(args.data_dir),
            "task": args.task, "beam": args.beam, "user_dir": gen.user_dir, "extra_args": extra,
        }
    return meta


def score(args, extra: List[str]) -> None:
    """lslo-score: every input is checked before any work; existing outputs are read before
    generation (a broken file stops the run first); then generate, score, print and write."""
    args.spm = check_spm(args.spm)
    lang_groups = parse_lang_groups(args.lang_groups, flag="--lang-groups")
    check_request(args, extra)
    runs, files = existing_runs(args, lang_groups)
    gen = generation_plan(args, files, lang_groups)
    names = [name for name, _ in runs] + ([gen.name] if gen else [])
    paper = paper_rows(args.paper, names) if args.paper else {}
    baseline = check_baseline(args, names)
    out_prefix = args.out or (os.path.join(args.results_dir, "spbleu") if args.generate else "spbleu")
    texts = read_outputs(files)
    if gen is not None:
        os.makedirs(args.results_dir, exist_ok=True)
        log = os.path.join(args.results_dir, "generate.log")
        if not args.verbose:
            print(f"fairseq's generation log: {log}", file=sys.stderr)
        with progress.bar(f"translate {gen.name}", len(gen.pairs), "directions", args.verbose) as b, \
                progress.logs_to(log, args.verbose):
            files[gen.name] = generate_all_directions(
                args.data_dir, args.checkpoint, gen.pairs, args.results_dir, gen.user_dir, extra,
                beam=args.beam, gen_subset=args.gen_subset, task=args.task,
                progress=None if args.verbose else (lambda *_: b.update(1)),
            )
        texts.update(read_outputs({gen.name: files[gen.name]}))
    warn_missing_ids(files)
    per_direction, columns, rows, comparison = score_tables(texts, args.spm, lang_groups, paper)
    meta = results_meta(args, extra, lang_groups, paper, runs, gen, files, texts, per_direction)
    print(format_table([*rows, *comparison], columns))
    if baseline is not None:
        meta["bootstrap"] = bootstrap_intervals(args, texts, lang_groups, columns, baseline)
    csv_path, json_path = write_results(out_prefix, rows, columns, per_direction, meta, comparison)
    print(f"spm: {meta['spm_model']['path']} (md5 {meta['spm_model']['md5']}); "
          f"{meta['sacrebleu']['spbleu_signature']}", file=sys.stderr)
    print(f"wrote {csv_path} and {json_path}", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``lslo-score``; return the exit status (bad input: 2, with the message)."""
    argv, extra = _split_extra(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    return run(PROG, lambda: score(args, extra))


if __name__ == "__main__":
    sys.exit(main())
