"""``lslo-score``: spBLEU (and chrF++) of many directions, grouped by resource type (H2H, H2M, ...,
AVG) and per language (l→: the directions out of l, →l: into l).

Score existing ``fairseq-generate`` outputs::

    lslo-score --run Pretrain=runs/pretrain --run LSLo=runs/lslo --spm flores101.spm \\
        --lang-groups lang12 --out results/table1

or translate every direction first (in one process) and score the result::

    lslo-score --generate --data-dir data-bin --checkpoint ckpt/checkpoint_best.pt \\
        --pairs en-fr,fr-en --results-dir runs/lslo --spm flores101.spm --lang-groups lang12 \\
        -- --encoder-langtok src --decoder-langtok --langs en,fr --fixed-dictionary dict.txt

``--metric spbleu,chrf++`` scores with several metrics (default: spbleu). Every table is printed
and written per metric, under a heading naming it. Result files of a metric, for ``--out PREFIX``:

- spBLEU: ``PREFIX.csv`` and ``PREFIX.json`` (the names lslo-score has always written), and
  ``PREFIX.langs.csv`` (the per-language averages);
- chrF++: ``PREFIX.chrfpp.csv``, ``PREFIX.chrfpp.json``, ``PREFIX.chrfpp.langs.csv``.

Without ``--out`` the prefix is named after the metric: ``spbleu`` and ``chrfpp``, in
``--results-dir`` with ``--generate``, else in the working directory. Each JSON holds its
metric's table, per-direction and per-language scores, and the metric's definition and sacrebleu
signature under ``meta``.

Search the merge ratio of a modular checkpoint (``--lslo-modular``) on validation data instead
(:mod:`..evaluation.merge_search`: w_in in [0, 1], w_out = 1 - w_in, spBLEU of ``--gen-subset valid``)::

    lslo-score --merge-search [grid|bayes] --data-dir data-bin --checkpoint ckpt/checkpoint_last.pt \
        --pairs fr-oc,oc-fr --results-dir runs/merge --spm flores101.spm [--merge-search-scope global] \
        -- --encoder-langtok src --decoder-langtok --langs en,fr,oc --fixed-dictionary dict.txt

writes ``<results-dir>/merge_weights.json`` (for ``--lslo-merge-weights FILE``), ``.csv`` and ``.png``.
``--learn-merge-weights`` (same inputs; :mod:`..evaluation.merge_learning`) learns one (w_in, w_out) per
direction and layer instead, the follow-up's weight learning, into ``merge_weights.json``.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from ..config import MERGE_MODES, parse_lang_groups
from ..evaluation import DEFAULT_TASK, Direction, ScoringError
from ..evaluation.bootstrap import compare_runs, format_intervals, run_stats, significance_summary
from ..evaluation.generation import generate_all_directions, parse_pairs
from ..evaluation.merge_learning import DEFAULT_EPOCHS, DEFAULT_LR
from ..evaluation.merge_search import DEFAULT_GRID, DEFAULT_TRIALS, METHODS, SCOPES
from ..evaluation.metrics import DEFAULT_METRIC, METRICS, Metric, parse_metrics, results_prefix
from ..evaluation.outputs import find_direction_outputs, missing_ids, read_generate_output
from ..evaluation.paper import difference, paper_rows
from ..evaluation.spbleu import load_spm, resolve_spm
from ..evaluation.tables import (check_grouped, format_language_table, format_table, group_table, language_table,
                                 merge_tables, write_language_results, write_results)
from . import progress
from ..runner import run

PROG = "lslo-score"


def build_parser() -> argparse.ArgumentParser:
    """The ``lslo-score`` argument parser (extra fairseq arguments after ``--`` are split off
    before it runs)."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="spBLEU (FLORES-101 definition, offline) and chrF++ of translation directions, "
        "averaged by resource group of source and target language (one table row per run) and per "
        "language (l->: the directions out of l, ->l: into l).",
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
        "--metric", default=DEFAULT_METRIC, metavar="M[,M]",
        help=f"metrics, comma separated, from {', '.join(METRICS)} (default: {DEFAULT_METRIC}): "
        "spbleu is BLEU on the --spm model's SentencePiece pieces (FLORES-101); chrf++ is sacrebleu's "
        "CHRF with word_order=2 (character 6-grams and word 1-2-grams, beta 2) on the detokenized text. "
        "Every table, interval and file is made per metric.",
    )
    p.add_argument(
        "--spm", metavar="PATH",
        help="SentencePiece model that splits hypotheses and references for spBLEU, or 'flores101' "
        "for the FLORES-101 tokenizer model (sacrebleu's cached copy in $SACREBLEU/models, "
        "downloaded there if missing and a network is up); its path and md5 are recorded. Required "
        "with --metric spbleu (the default); chrf++ uses none.",
    )
    p.add_argument(
        "--paper", metavar="TABLE:ROW",
        help="print the paper's row beside ours and our row minus the paper's: 'TABLE:ROW' for "
        "every run (e.g. 'table1:2;2;8+WL+GPS(0.9)'), or 'TABLE' to match runs to rows by name "
        "(tables table1-4 and table8; rows named as in the paper).",
    )
    p.add_argument(
        "--lang-groups", metavar="SPEC",
        help="language -> resource group: a preset (lang12, lang30), a list like 'en:H,fr:H,oc:V', "
        "or a file of 'lang group' lines (required, except with --merge-search).",
    )
    p.add_argument(
        "--out", metavar="PREFIX",
        help="write spBLEU's PREFIX.csv, PREFIX.json and PREFIX.langs.csv (per-language averages); "
        "chrF++'s go to PREFIX.chrfpp.csv, .json, .langs.csv (default PREFIX: the metric's name, "
        "spbleu or chrfpp, in <results-dir> with --generate, in the working directory otherwise).",
    )
    p.add_argument(
        "--bootstrap", type=int, default=0, metavar="N",
        help="also print every cell's 95%% confidence interval from N paired bootstrap resamples of the "
        "test sentences (e.g. 1000; default 0: off), and each run's difference to --baseline with its "
        "interval, for every --metric (the same resamples for each); the JSON records them, and those "
        "of the per-language averages.",
    )
    p.add_argument(
        "--baseline", metavar="RUN",
        help="with --bootstrap: the run the others are compared with (default: the first run).",
    )
    p.add_argument("--bootstrap-seed", type=int, default=1, metavar="S",
                   help="seed of the bootstrap draws (default 1): the same seed gives the same intervals.")
    p.add_argument(
        "--gen-subset", default=None, metavar="SUBSET",
        help="data subset to translate and whose generate-<SUBSET>.txt files are scored (default: test; "
        "valid with --merge-search, which refuses test).",
    )
    g = p.add_argument_group("generation", "translate every direction first (one process), then score it")
    g.add_argument("--generate", action="store_true",
                   help="run fairseq generation for every --pairs direction before scoring (the checkpoint is "
                   "loaded once for all of them; each direction's generate-<subset>.txt is what fairseq-generate "
                   "writes for it).")
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
    m = p.add_argument_group(
        "merge search", "modular checkpoints (--lslo-modular): search the merge weights of directions without "
        "the pivot on validation data, one number w_in in [0, 1] with w_out = 1 - w_in; uses --data-dir, "
        "--checkpoint, --pairs, --results-dir, --spm, --beam and the arguments after '--' (add '--lslo-merge "
        "ab' there for eq. 4; outputs, eq. 3, by default)")
    m.add_argument("--merge-search", nargs="?", const="grid", default=None, choices=METHODS,
                   help="search instead of scoring a table: grid (the default) translates every --merge-grid "
                   "point; bayes is Gaussian-process Bayesian optimisation over --merge-trials points (needs "
                   "the bayesian-optimization package: pip install -e '.[search]').")
    m.add_argument("--merge-grid", default=",".join(f"{w:g}" for w in DEFAULT_GRID), metavar="W,W,...",
                   help="grid search: the w_in values, each in [0, 1] (default: 0,0.1,...,1, 11 points).")
    m.add_argument("--merge-trials", type=int, default=DEFAULT_TRIALS, metavar="N",
                   help=f"bayes: distinct points per search (default {DEFAULT_TRIALS}; the first is 0.5).")
    m.add_argument("--merge-search-scope", default="direction", choices=SCOPES,
                   help="direction (default): each direction its best w_in (bayes: one search each); global: "
                   "one w_in for all, the best average spBLEU over the directions.")
    m.add_argument("--merge-seed", type=int, default=1, metavar="S",
                   help="bayes, and --learn-merge-weights' batch order: random seed (default 1).")
    m.add_argument("--learn-merge-weights", action="store_true",
                   help="learn instead of searching: per direction and per layer (w_in, w_out) = softmax(w0, w1), "
                   "w0 = w1 = 1.0 at the start, shared by the layer's LoRA modules (the follow-up's weight "
                   "learning), by teacher-forced cross-entropy on --gen-subset with the base and the adapters "
                   "frozen; writes <results-dir>/merge_weights.json (or --out PREFIX.json) for "
                   "--lslo-merge-weights and for lslo-plot merge-weights.")
    m.add_argument("--merge-epochs", type=int, default=DEFAULT_EPOCHS, metavar="N",
                   help=f"--learn-merge-weights: passes over the data (default {DEFAULT_EPOCHS}).")
    m.add_argument("--merge-lr", type=float, default=DEFAULT_LR, metavar="LR",
                   help=f"--learn-merge-weights: Adam's learning rate for the logits (default {DEFAULT_LR}).")
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


def check_metrics(spec: str) -> List[Metric]:
    """The --metric list, checked before anything else."""
    return parse_metrics(spec, flag="--metric")


def check_spm(spec: Optional[str], metrics: Sequence[Metric] = (METRICS[DEFAULT_METRIC],)) -> Optional[str]:
    """The SentencePiece model's path (``flores101`` resolved), loaded once to prove it works;
    None when no metric needs one and none is given."""
    if spec is None:
        needing = [m.name for m in metrics if m.needs_spm]
        if needing:
            raise ScoringError(f"--spm is required with --metric {needing[0]}"
                               f"{' (the default)' if needing[0] == DEFAULT_METRIC else ''}: give a "
                               "SentencePiece model or 'flores101'")
        return None
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
    if args.paper and DEFAULT_METRIC not in [m.name for m in args.metrics]:
        raise ScoringError(f"--paper: the paper's rows are spBLEU; add spbleu to --metric (got {args.metric})")


def check_baseline(args, names: List[str]) -> Optional[str]:
    """The --bootstrap baseline: --baseline (a run's name) or the first run."""
    if not args.bootstrap:
        return None
    if args.baseline and args.baseline not in names:
        raise ScoringError(f"--baseline: no run named {args.baseline!r}; the runs are {', '.join(names)}")
    return args.baseline or names[0]


def bootstrap_intervals(args, metric: Metric, stats, lang_groups, columns, baseline: str) -> dict:
    """Print the metric's table with 95% paired-bootstrap intervals and the significance summary;
    return what the JSON records (the per-language averages' intervals included)."""
    cells, diffs, record = compare_runs(None, args.spm, lang_groups, baseline, args.bootstrap, args.bootstrap_seed,
                                        metric=metric, stats=stats, by_language=True)
    print()
    print(f"{metric.label}: 95% confidence intervals, {args.bootstrap} paired bootstrap resamples "
          f"(seed {args.bootstrap_seed}); * = the difference to {baseline} excludes 0:")
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


def warn_unpaired(texts) -> None:
    """A warning when the runs score different sets of directions."""
    direction_sets = {name: frozenset(by_dir) for name, by_dir in texts.items()}
    if len(set(direction_sets.values())) > 1:
        sizes = ", ".join(f"{n}: {len(s)}" for n, s in direction_sets.items())
        print(f"lslo-score: warning: runs score different directions ({sizes}); rows are not "
              "directly comparable", file=sys.stderr)


def score_tables(stats, metric: Metric, lang_groups, paper):
    """One metric's score per run and direction (from the sentence statistics ``stats`` of
    :func:`..evaluation.bootstrap.run_stats`: exactly sacrebleu's corpus score), the grouped table
    (columns, rows), the paper comparison (spBLEU only: the paper's rows are spBLEU) and the
    per-language averages (run -> language -> {"out_of", "into"})."""
    per_direction = {
        name: {d: metric.score_from_stats(s.sum(axis=0)) for d, s in by_dir.items()}
        for name, by_dir in stats.items()
    }
    tables = [(name, *group_table(scores, lang_groups)) for name, scores in per_direction.items()]
    columns, rows = merge_tables(tables)
    comparison: List[Tuple[str, List[Optional[float]]]] = []
    for name, values in rows:
        if metric.name != DEFAULT_METRIC or name not in paper:
            continue
        label, paper_columns, paper_values = paper[name]
        aligned, diff = difference(values, columns, paper_columns, paper_values)
        comparison += [(label, aligned), (f"{name} - paper", diff)]
        unscored = [c for c in paper_columns if c not in columns]
        if unscored:
            print(f"lslo-score: warning: the paper's row has columns run {name} does not score "
                  f"({', '.join(unscored)}): its languages are not the paper's subset", file=sys.stderr)
    per_language = {name: language_table(scores, lang_groups) for name, scores in per_direction.items()}
    return per_direction, columns, rows, comparison, per_language


def results_meta(args, metric: Metric, extra, lang_groups, paper, runs, gen, files, texts, per_direction) -> dict:
    """What a metric's JSON records beside the scores: the metric (for spBLEU its tokenizer),
    groups, paper rows (spBLEU), inputs per run."""
    meta = metric.meta(args.spm)
    meta["lang_groups"] = {"spec": args.lang_groups, "groups": lang_groups}
    meta["gen_subset"] = args.gen_subset
    if paper and metric.name == DEFAULT_METRIC:
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


def _arrow() -> str:
    """``→`` where stdout can print it, else ``->``."""
    try:
        "\u2192".encode(getattr(sys.stdout, "encoding", None) or "ascii")
        return "\u2192"
    except (LookupError, UnicodeEncodeError):
        return "->"


def report_metric(args, metric: Metric, stats, lang_groups, paper, baseline, meta_inputs, first: bool):
    """One metric's tables printed (group table, intervals, per-language averages) and its files
    written; returns the paths written."""
    per_direction, columns, rows, comparison, per_language = score_tables(stats, metric, lang_groups, paper)
    meta = results_meta(args, metric, *meta_inputs, per_direction)
    if not first:
        print()
    print(f"{metric.label} by resource group (each cell: the mean over its directions; AVG: over all directions):")
    print(format_table([*rows, *comparison], columns))
    if baseline is not None:
        meta["bootstrap"] = bootstrap_intervals(args, metric, stats, lang_groups, columns, baseline)
    arrow = _arrow()
    print()
    print(f"{metric.label} per language (l{arrow}: the mean over the directions out of l; {arrow}l: into l):")
    print(format_language_table(per_language, lang_groups, arrow))
    default_dir = args.results_dir if args.generate else ""
    prefix = results_prefix(args.out, default_dir, metric)
    csv_path, json_path = write_results(prefix, rows, columns, per_direction, meta, comparison, per_language)
    langs_path = write_language_results(prefix + ".langs.csv", per_language, lang_groups)
    if metric.needs_spm:
        print(f"{metric.label}: spm {meta['spm_model']['path']} (md5 {meta['spm_model']['md5']}); "
              f"{meta['sacrebleu']['spbleu_signature']}", file=sys.stderr)
    else:
        print(f"{metric.label}: {meta['sacrebleu']['signature']}", file=sys.stderr)
    print(f"wrote {csv_path}, {json_path} and {langs_path}", file=sys.stderr)
    return csv_path, json_path, langs_path


def _option_value(extra: Sequence[str], flag: str) -> Optional[str]:
    """The value of ``flag`` among the extra fairseq arguments (``--flag V`` or ``--flag=V``; the last wins)."""
    value = None
    for i, a in enumerate(extra):
        if a == flag and i + 1 < len(extra):
            value = extra[i + 1]
        elif a.startswith(flag + "="):
            value = a.split("=", 1)[1]
    return value


def check_merge_tuning(args, extra: List[str], what: str):
    """Inputs shared by ``--merge-search`` and ``--learn-merge-weights`` (``what``), checked before any
    work: no table scoring in the same command, validation data (never test), a modular checkpoint,
    directions without the pivot that have data, the merge mode. Returns (checkpoint, directions,
    merge mode, user dir)."""
    from ..evaluation import merge_search as ms

    if args.run or args.generate:
        raise ScoringError(f"{what} tunes the merge weights on validation data; score a table "
                           "separately (--generate ... -- --lslo-merge-weights <the JSON it writes>), not with "
                           f"{'--run' if args.run else '--generate'} in the same command")
    if args.gen_subset == "test":
        raise ScoringError(f"--gen-subset test: {what} tunes the merge weights, which on the test set would "
                           "make its scores optimistic; tune on valid (the default) and score test afterwards")
    args.gen_subset = args.gen_subset or "valid"
    for flag in ("data_dir", "checkpoint", "pairs", "results_dir"):
        if not getattr(args, flag):
            raise ScoringError(f"{what} needs --{flag.replace('_', '-')}")
    if _option_value(extra, "--lslo-merge-weights") is not None:
        raise ScoringError(f"--lslo-merge-weights (after '--'): {what} sets the weights itself; drop it")
    merge = _option_value(extra, "--lslo-merge") or "outputs"
    if merge not in MERGE_MODES:
        raise ScoringError(f"--lslo-merge: outputs or ab, got {merge!r}")
    if not os.path.isdir(args.data_dir.split(os.pathsep)[0]):
        raise ScoringError(f"--data-dir: {args.data_dir} does not exist")
    ckpt = ms.read_modular_checkpoint(args.checkpoint, what=what)
    try:
        pairs = parse_pairs(args.pairs)
    except ScoringError as e:
        raise ScoringError(f"--pairs: {e}") from None
    ms.check_directions(pairs, ckpt, merge, args.merge_grid_values, what=what)
    ms.check_valid_data(args.data_dir, pairs, args.gen_subset)
    user_dir = args.user_dir if args.user_dir else _default_user_dir(args.task)
    if user_dir and not os.path.isdir(user_dir):
        raise ScoringError(f"--user-dir: {user_dir} does not exist")
    return ckpt, pairs, merge, user_dir


def merge_search(args, extra: List[str]) -> None:
    """``--merge-search``: every input checked before the first translation (a modular checkpoint,
    directions without the pivot and with validation data, the grid, the library), then search,
    print the choice and write PREFIX.json, .csv and the plot."""
    from ..evaluation import merge_search as ms

    if args.metric != DEFAULT_METRIC:
        raise ScoringError(f"--metric: --merge-search maximises spBLEU only, got {args.metric}")
    if args.merge_trials < 1:
        raise ScoringError(f"--merge-trials must be >= 1, got {args.merge_trials}")
    if args.beam < 1:
        raise ScoringError(f"--beam must be >= 1, got {args.beam}")
    args.merge_grid_values = grid = ms.parse_grid(args.merge_grid) if args.merge_search == "grid" else None
    if args.merge_search == "bayes":
        ms.bayes_library()
    ckpt, pairs, merge, user_dir = check_merge_tuning(args, extra, "--merge-search")
    spm = check_spm(args.spm)
    os.makedirs(args.results_dir, exist_ok=True)
    log = os.path.join(args.results_dir, "generate.log")
    if not args.verbose:
        print(f"fairseq's generation log: {log}", file=sys.stderr)
    points = (len(grid) if grid is not None else args.merge_trials) * len(pairs)  # translations of one direction
    with progress.bar(f"merge search ({args.merge_search})", points, "translations", args.verbose) as b, \
            progress.logs_to(log, args.verbose):
        scorer = ms.generation_scorer(args.data_dir, args.checkpoint, args.results_dir, user_dir, extra, spm,
                                      beam=args.beam, gen_subset=args.gen_subset, task=args.task,
                                      progress=None if args.verbose else (lambda *_: b.update(1)))
        result = ms.search(pairs, scorer, args.merge_search, args.merge_search_scope,
                           grid if grid is not None else DEFAULT_GRID, args.merge_trials, args.merge_seed)
    prefix = args.out or os.path.join(args.results_dir, "merge_weights")
    meta = {"merge": merge, "gen_subset": args.gen_subset, "beam": args.beam,
            "checkpoint": os.path.abspath(args.checkpoint), "data_dir": os.path.abspath(args.data_dir),
            "spm_model": spm, "extra_args": list(extra), "pivot": ckpt.pivot,
            **({"grid": grid} if grid is not None else {"trials": args.merge_trials, "seed": args.merge_seed})}
    json_path, csv_path, plots = ms.write_outputs(result, prefix, meta)
    print(f"merge search ({args.merge_search}, scope {args.merge_search_scope}, --lslo-merge {merge}), spBLEU on "
          f"{args.gen_subset}; w_out = 1 - w_in:")
    print(ms.format_result(result))
    print(f"wrote {json_path} (use: --lslo-merge {merge} --lslo-merge-weights {json_path}), {csv_path} and "
          f"{', '.join(plots)}", file=sys.stderr)


def learn_merge_weights(args, extra: List[str]) -> None:
    """``--learn-merge-weights``: inputs checked as for the merge search, then the per-(direction,
    layer) merge weights learned with the base and the adapters frozen; writes PREFIX.json and prints
    the learned target weights."""
    from ..evaluation import merge_learning as ml
    from ..evaluation.generation import Translator

    if args.merge_epochs < 1:
        raise ScoringError(f"--merge-epochs must be >= 1, got {args.merge_epochs}")
    if not args.merge_lr > 0:
        raise ScoringError(f"--merge-lr must be > 0, got {args.merge_lr}")
    args.merge_grid_values = None
    ckpt, pairs, merge, user_dir = check_merge_tuning(args, extra, "--learn-merge-weights")
    os.makedirs(args.results_dir, exist_ok=True)
    log = os.path.join(args.results_dir, "learn.log")
    if not args.verbose:
        print(f"fairseq's log: {log}", file=sys.stderr)
    with progress.logs_to(log, args.verbose):
        translator = Translator(args.data_dir, args.checkpoint, pairs, user_dir, extra, beam=1,
                                gen_subset=args.gen_subset, task=args.task)
        with progress.bar("learning merge weights", None, "batches", args.verbose) as b:
            result = ml.learn(translator, pairs, args.merge_epochs, args.merge_lr, args.merge_seed,
                              None if args.verbose else (lambda: b.update(1)))
    path = (args.out or os.path.join(args.results_dir, "merge_weights")) + ".json"
    meta = {"merge": merge, "gen_subset": args.gen_subset, "epochs": args.merge_epochs, "lr": args.merge_lr,
            "seed": args.merge_seed, "checkpoint": os.path.abspath(args.checkpoint),
            "data_dir": os.path.abspath(args.data_dir), "extra_args": list(extra), "pivot": ckpt.pivot}
    ml.write(result, path, meta)
    print(f"learned merge weights (--lslo-merge {merge}), {args.gen_subset}, {args.merge_epochs} epochs; "
          "w_in + w_out = 1:")
    print(ml.format_result(result))
    print(f"wrote {path} (use: --lslo-merge {merge} --lslo-merge-weights {path}; plot: lslo-plot merge-weights "
          f"{path} --out PREFIX)", file=sys.stderr)


def score(args, extra: List[str]) -> None:
    """lslo-score: every input is checked before any work; existing outputs are read before
    generation (a broken file stops the run first); then generate, score, print and write, one
    metric after the other."""
    if args.merge_search and args.learn_merge_weights:
        raise ScoringError("--merge-search and --learn-merge-weights: one of them per command")
    if args.merge_search:
        return merge_search(args, extra)
    if args.learn_merge_weights:
        return learn_merge_weights(args, extra)
    args.gen_subset = args.gen_subset or "test"
    if not args.lang_groups:
        raise ScoringError("--lang-groups is required: a preset (lang12, lang30), a list like 'en:H,fr:H,oc:V' "
                           "or a file of 'lang group' lines")
    args.metrics = check_metrics(args.metric)
    args.spm = check_spm(args.spm, args.metrics)
    lang_groups = parse_lang_groups(args.lang_groups, flag="--lang-groups")
    check_request(args, extra)
    runs, files = existing_runs(args, lang_groups)
    gen = generation_plan(args, files, lang_groups)
    names = [name for name, _ in runs] + ([gen.name] if gen else [])
    paper = paper_rows(args.paper, names) if args.paper else {}
    baseline = check_baseline(args, names)
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
    warn_unpaired(texts)
    for i, metric in enumerate(args.metrics):
        stats = run_stats(texts, args.spm, metric)
        report_metric(args, metric, stats, lang_groups, paper, baseline,
                      (extra, lang_groups, paper, runs, gen, files, texts), first=i == 0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``lslo-score``; return the exit status (bad input: 2, with the message)."""
    argv, extra = _split_extra(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    return run(PROG, lambda: score(args, extra))


if __name__ == "__main__":
    sys.exit(main())
