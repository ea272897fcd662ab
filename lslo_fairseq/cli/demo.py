"""``lslo-demo``: a mini table 1 on a CPU. The paper's setting in miniature: a pretrained
many-to-many model, fine-tuned on a small multi-parallel set whose V languages it saw little of.

1. the shipped stand-in (``lslo_fairseq/resources/stand_in``: a 7.5M-parameter transformer pretrained
   on LibreOffice help and interface text without this table's rows; oc and or rare in it), checked
   against its SHA-256;
2. the shipped LibreOffice table (10 languages, 90 directions) split and binarized with the
   stand-in's SentencePiece model and dictionary;
3. fine-tuning of the stand-in, each from the same start, with fairseq-train: Ft-all (every
   parameter), LSLo H:2,M:2,V:8 (base frozen) and LSLo H:2,M:2,V:8 + GPS(0.9);
4. beam-5 translation (as the paper; ``--beam 1`` for greedy) of the test rows of every direction by
   the four models;
5. the table (rows Pretrain, Ft-all, LSLo, LSLo+GPS; columns H2H ... V2V, AVG), each cell with its
   95% paired-bootstrap interval, the differences to Pretrain and which ones are significant.

fairseq's logs go to ``OUT/logs/*.log``; ``--verbose`` prints them as well. This is a demonstration
on short interface strings with a small model; it does not reproduce the paper's FLORES-101 numbers.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Dict, List, Optional

from ..errors import LSLoError
from ..evaluation import spbleu, tables
from ..evaluation.bootstrap import compare_runs, format_intervals, significance_summary
from ..evaluation.outputs import find_direction_outputs, read_generate_output
from ..groups import PRESETS
from ..runfiles import RunFileError, prepared, stand_in_manifest
from ..stand_in import package
from ..stand_in.build import DEMO_SPLIT, EVAL_LANGS, LANGS
from .. import runner
from . import demo_modular, plot, progress
from .demo_runs import FT_ALL_LR, LSLO_LR, Run, generate_run, lslo_options, train_run

QUICK_LANGS = ["en", "fr", "ko", "oc"]
# The table's test directions (stand_in.build.EVAL_LANGS): two languages per resource group, so that
# decoding of four models fits the demo's time on two CPU cores; --eval-langs all decodes all 90.
# Beam 5 as the paper; --beam 1 (greedy) decodes the four models' 1,200 test rows each in 144 s
# against about 250 s for beam 5 (measured, README).
DEFAULT_BEAM = 5
RANKS = "H:2,M:2,V:8"
GPS_RATIO = 0.9


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lslo-demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="lslo-demo", help="output folder (default: ./lslo-demo)")
    p.add_argument("--quick", action="store_true",
                   help="test mode: 4 languages (en fr ko oc), 200 fine-tuning rows, a few updates (minutes)")
    p.add_argument("--updates", type=int, default=None,
                   help="fine-tuning updates of every run (default 100; 12 with --quick)")
    p.add_argument("--eval-langs", default=None, metavar="LANGS",
                   help="languages whose directions the table scores, comma separated, or 'all' (default: "
                        f"{','.join(EVAL_LANGS)}: every cell gets at least two directions; with --quick: all four)")
    p.add_argument("--beam", type=int, default=DEFAULT_BEAM, metavar="K",
                   help=f"beam size of the table's translations (default {DEFAULT_BEAM}, as the paper; 1 = greedy, "
                        "about twice as fast here)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="paired bootstrap resamples for the 95%% intervals (default 1000)")
    p.add_argument("--stand-in", default=None, metavar="DIR",
                   help="the pretrained stand-in's folder (default: the shipped one; a folder written by "
                        "scripts/rebuild-stand-in.sh --out DIR also works); checked against its SHA256SUMS")
    p.add_argument("--analysis", action="store_true",
                   help="also run the paper's architecture learning on the demo data: weight learning "
                        "(figure 1), intrinsic subspace estimation (figures 2, 5), language-specific "
                        "pruning (figures 4, 6) and LSLo+WL+GPS(0.9) as a fifth row; about twice the time")
    p.add_argument("--modular", action="store_true",
                   help="modular fine-tuning instead of the mini table 1: English-centric input/output adapters "
                        "(one run on en<->X), zero-shot directions by merging (LoRA_in only, LoRA_out only, "
                        "Setting 1 and 2 at a weight searched on the validation rows) against Pretrain and "
                        "multi-parallel LSLo; then 'or' added without touching the others (hypotheses compared)")
    p.add_argument("--verbose", action="store_true", help="print fairseq's full logs instead of progress bars")
    p.add_argument("--seed", type=int, default=2, help="training seed (default 2, the authors' command's)")
    p.add_argument("--force", action="store_true", help="redo every step even if its output exists")
    return p


def settings(a) -> Dict:
    quick = a.quick
    updates = a.updates if a.updates is not None else (12 if quick else 100)
    if updates < 1:
        raise LSLoError(f"--updates must be >= 1, got {updates}")
    if a.modular and a.analysis:
        raise LSLoError("--modular and --analysis are separate demos; run one, then the other")
    if a.beam < 1:
        raise LSLoError(f"--beam must be >= 1, got {a.beam}")
    if a.bootstrap < 2:
        raise LSLoError(f"--bootstrap: a number of resamples >= 2, got {a.bootstrap}")
    langs = QUICK_LANGS if quick else list(LANGS)
    if a.eval_langs in (None, "all"):
        eval_langs = langs if (quick or a.eval_langs == "all") else list(EVAL_LANGS)
    else:
        eval_langs = [l for l in a.eval_langs.split(",") if l]
        unknown = [l for l in eval_langs if l not in langs]
        if unknown or len(eval_langs) < 2:
            raise LSLoError(f"--eval-langs: two or more of {','.join(langs)} (or 'all'), got {a.eval_langs!r}")
    return dict(
        langs=langs,
        eval_langs=eval_langs,
        n_valid=10 if quick else DEMO_SPLIT["n_valid"],
        n_test=12 if quick else DEMO_SPLIT["n_test"],
        split_seed=DEMO_SPLIT["seed"],
        max_train_rows=200 if quick else None,
        updates=updates,
        max_tokens=1024 if quick else 2048,
        prune_start=max(1, updates // 5),
        prune_duration=max(1, updates // 2),
    )


def planned_runs(s: Dict, analysis: bool, modular: bool = False) -> List[Run]:
    prune = ["--lslo-prune-unit", "update", "--lslo-prune-start", str(s["prune_start"]),
             "--lslo-prune-duration", str(s["prune_duration"])]
    runs = [
        Run("Pretrain", "pretrain", "translation_multi_simple_epoch"),
        Run("Ft-all", "ft_all", "translation_multi_simple_epoch",
            # the plugin only for its checkpoint-loading policy (fairseq's pickles under torch>=2.6)
            ["--user-dir", package.user_dir(), "--task", "translation_multi_simple_epoch",
             "--arch", "transformer"], FT_ALL_LR),
        Run(f"LSLo {RANKS}", "lslo", "translation_multi_simple_epoch_lslo",
            lslo_options(["--lslo-ranks", RANKS]), LSLO_LR),
        Run(f"LSLo {RANKS} + GPS({GPS_RATIO})", "gps", "translation_multi_simple_epoch_lslo",
            lslo_options(["--lslo-ranks", RANKS, "--lslo-prune", "gps", "--lslo-prune-ratio", str(GPS_RATIO),
                          *prune]), LSLO_LR),
    ]
    if analysis:
        runs += analysis_runs(prune)
    if modular:  # the modular table compares with Pretrain and multi-parallel LSLo only
        runs = [r for r in runs if r.key in ("pretrain", "lslo")]
    return runs


def analysis_runs(prune: List[str]) -> List[Run]:
    """Weight learning, then ISE and LSP (8;8;8) and 2;2;8+WL+GPS(0.9) with the learned indexes."""
    return [
        Run("weight learning", "wl", "translation_multi_simple_epoch_lslo",
            lslo_options(["--lslo-ranks", RANKS, "--lslo-weight-learning"]), LSLO_LR,
            extra={"row": False, "validate": True}),
        Run("ISE 8;8;8", "ise", "translation_multi_simple_epoch_lslo",
            lslo_options(["--lslo-ranks", "H:8,M:8,V:8", "--lslo-prune", "ise", *prune]), LSLO_LR,
            extra={"row": False, "learned": True}),
        Run("LSP 8;8;8", "lsp", "translation_multi_simple_epoch_lslo",
            lslo_options(["--lslo-ranks", "H:8,M:8,V:8", "--lslo-prune", "lsp", *prune]), LSLO_LR,
            extra={"row": False, "learned": True}),
        Run(f"LSLo {RANKS} +WL+GPS({GPS_RATIO})", "wl_gps", "translation_multi_simple_epoch_lslo",
            lslo_options(["--lslo-ranks", RANKS, "--lslo-prune", "gps", "--lslo-prune-ratio", str(GPS_RATIO),
                          *prune]), LSLO_LR, extra={"learned": True}),
    ]


def short_count(n: Optional[int]) -> str:
    if not n:
        return "0"
    for div, unit in ((1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}{unit}" if n < 10 * div else f"{n / div:.1f}{unit}"
    return str(n)


def ft_all_comparison(cells, runs: List[Run]) -> List[str]:
    """For each LSLo row: its share of Ft-all's trainable parameters, and the cells whose value lies
    inside Ft-all's 95% interval."""
    ft = next((r for r in runs if r.name == "Ft-all"), None)
    if ft is None or not ft.trainable:
        return []
    out = []
    for r in runs:
        if r.name.startswith("LSLo") and r.name in cells:
            inside = [c for c, i in cells[r.name].items()
                      if cells[ft.name][c].low <= i.value <= cells[ft.name][c].high]
            outside = [c for c in cells[r.name] if c not in inside]
            out.append(f"{r.name}: {100 * r.trainable / ft.trainable:.2f}% of Ft-all's trainable parameters; "
                       f"inside Ft-all's interval on {', '.join(inside) or 'no cell'}"
                       + (f"; outside on {', '.join(outside)}" if outside else ""))
    return out


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    return runner.run("lslo-demo", lambda: demo(a))


def demo(a) -> int:
    from ..data.multiparallel import lang_pairs, prepare  # deferred: imports sentencepiece, torch and fairseq

    s = settings(a)
    t0 = time.time()
    stand_in_dir = a.stand_in or package.STAND_IN_DIR
    if a.stand_in and not os.path.isdir(a.stand_in):
        raise LSLoError(f"--stand-in {a.stand_in}: no such folder")
    stand_in = package.verify(stand_in_dir)  # before any work
    manifest = stand_in_manifest.load(str(stand_in_dir))
    groups = {l: PRESETS["lang12"][l] for l in s["eval_langs"]}
    out = os.path.abspath(a.out)
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    print(f"lslo-demo: stand-in {stand_in_dir} (SHA-256 checked); fairseq's logs in {out}/logs", flush=True)
    timings: Dict[str, float] = {}

    data_dir = os.path.join(out, "data")
    try:
        info = prepared.load(data_dir)
    except RunFileError:
        info = None
    fresh = info is not None and info.get("langs") == s["langs"] and info["rows"]["test"] == s["n_test"] \
        and os.path.exists(info["spm_model"]) \
        and package.sha256(info["spm_model"]) == package.sha256(stand_in[package.SPM_MODEL])
    if a.force or not fresh:
        with progress.logs_to(os.path.join(out, "logs", "data.log"), a.verbose):
            prepare(package.DEMO_TSV, s["langs"], data_dir, s["n_valid"], s["n_test"], 0, s["split_seed"],
                    max_train_rows=s["max_train_rows"], spm_model=stand_in[package.SPM_MODEL],
                    dictionary=stand_in[package.DICT])
    info = prepared.load(data_dir)
    data = dict(dir=data_dir, pairs=lang_pairs(s["langs"]))
    test_data = dict(data, pairs=lang_pairs(s["eval_langs"]))
    spm_model = info["spm_model"]
    timings["data"] = time.time() - t0
    print(f"data: {info['rows']['train']} fine-tuning rows x {len(data['pairs'])} directions; the table: "
          f"{info['rows']['test']} test rows x {len(test_data['pairs'])} directions "
          f"({' '.join(s['eval_langs'])})", flush=True)

    runs = planned_runs(s, a.analysis, a.modular)
    for run in runs:
        t = time.time()
        if run.train is None:
            run.checkpoint, run.trainable = str(stand_in[package.CHECKPOINT]), 0
        else:
            train_run(run, a, s, data, stand_in, out, manifest)
        if run.key == "wl":
            figures = os.path.join(out, "figures")
            os.makedirs(figures, exist_ok=True)
            plot.main(["weights", os.path.join(out, "wl", "weight_learning.json"),
                       "--out", os.path.join(figures, "weight_learning")])
        if run.key in ("ise", "lsp"):
            plot.main([run.key, os.path.join(out, run.key, "pruning_counts.json"),
                       "--out", os.path.join(out, "figures", run.key),
                       *(["--lang-groups", "lang12"] if run.key == "ise" else [])])
        timings[f"train_{run.key}"] = time.time() - t
    rows = [r for r in runs if r.extra.get("row", True)]
    texts, per_direction = {}, {}
    for run in rows:
        t = time.time()
        results = generate_run(run, a, data, test_data, out)
        timings[f"generate_{run.key}"] = time.time() - t
        files = find_direction_outputs(results, "test")
        texts[run.name] = {d: read_generate_output(p) for d, p in files.items()}
        per_direction[run.name] = {d: spbleu.spbleu(h, r, spm_model) for d, (h, r) in texts[run.name].items()}

    grouped = [(name, *tables.group_table(sc, groups)) for name, sc in per_direction.items()]
    columns, table_rows = tables.merge_tables(grouped)
    cells, diffs, record = compare_runs(texts, spm_model, groups, "Pretrain", a.bootstrap, a.seed)
    timings["total"] = time.time() - t0
    params = {r.name: short_count(r.trainable) for r in rows}
    print()
    decoding = "greedy" if a.beam == 1 else f"beam {a.beam}"
    print(f"spBLEU on {info['rows']['test']} test rows per direction ({decoding}); [95% interval], "
          f"{a.bootstrap} paired bootstrap resamples; * = differs significantly from Pretrain")
    print(format_intervals(cells, columns, diffs, "Pretrain", digits=1, params=params, stacked=True))
    print()
    for line in significance_summary(diffs, "Pretrain") + ft_all_comparison(cells, rows):
        print(line)
    meta = dict(spbleu.scoring_meta(spm_model), bootstrap=record, timings_s=timings, settings=dict(s, beam=a.beam),
                stand_in=dict(dir=str(stand_in_dir), recipe=manifest["recipe"]),
                trainable={r.name: r.trainable for r in rows},
                learning_rates={r.name: r.lr for r in rows if r.train is not None},
                note="LibreOffice interface-text demo with a small stand-in; not the paper's FLORES-101 numbers")
    if a.modular:
        lslo = next(r for r in rows if r.key == "lslo")
        result = demo_modular.run_modular(a, s, data, stand_in, out, manifest, lslo, spm_model, timings)
        demo_modular.report(a, result, texts, lslo.name, spm_model, s["eval_langs"])
        meta["modular"] = result["record"]
        timings["total"] = time.time() - t0
    prefix = os.path.join(out, "results")
    tables.write_results(prefix, table_rows, columns, per_direction, meta)
    plot_table(columns, table_rows, prefix + ".png")
    print(f"\n{prefix}.csv {prefix}.json {prefix}.png; total {timings['total'] / 60:.1f} min", flush=True)
    return 0


def plot_table(columns: List[str], rows, path_png: str) -> None:
    import logging

    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(columns), 3.6))
    width = 0.8 / len(rows)
    for i, (name, values) in enumerate(rows):
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(columns))]
        ax.bar(xs, [v or 0.0 for v in values], width, label=name)
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(columns)
    ax.set_ylabel("spBLEU")
    ax.set_title("lslo-demo: spBLEU by resource-group direction (LibreOffice UI text)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path_png, dpi=120)
    fig.savefig(os.path.splitext(path_png)[0] + ".pdf")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
