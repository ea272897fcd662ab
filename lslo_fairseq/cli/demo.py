"""``lslo-demo``: LSLo end to end on the shipped LibreOffice UI text, on a CPU.

1. SentencePiece + binarized many-to-many data for en fr de it nl zh ja ko oc or (90 directions);
2. a small plain fairseq transformer trained from scratch: the stand-in for the pretrained
   M2M-124 (no weights can be downloaded here);
3. LSLo fine-tuning of it (``--finetune-from-model``, base frozen, ranks H:2,M:2,V:8 with groups
   H = en fr de it, M = nl zh ja ko, V = oc or);
4. beam-5 generation of the held-out test rows for every direction, by both models;
5. the spBLEU table (rows: base, LSLo; columns H2H ... V2V, AVG), CSV/JSON and a plot.

This demonstrates the pipeline on UI strings; it does not reproduce the paper's FLORES-101 numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List

from ..evaluation import generation, spbleu, tables
from ..config import PRENORM_SHARED_ARGS, PRESETS, TINY_SHAPE, shape_args
from ..errors import LSLoError
from . import runner

DEMO_LANGS = ["en", "fr", "de", "it", "nl", "zh", "ja", "ko", "oc", "or"]
QUICK_LANGS = ["en", "fr", "ko", "oc"]


def resource_tsv() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources", "libreoffice",
                        "libreoffice.complete10.tsv")


def user_dir() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# The stand-in base model: full mode and quick (test) mode. The LSLo run uses the same shape.
ARCH = {
    "full": shape_args(layers=3, dim=128, ffn=512, heads=4),
    "quick": shape_args(**TINY_SHAPE),
}
# Hypotheses of at most 1.2 x source + 10 tokens (UI strings are short; an undertrained model would
# otherwise run to fairseq's default limit of 200 tokens and dominate the demo's time).
GENERATION_LIMITS = ["--max-len-a", "1.2", "--max-len-b", "10", "--batch-size", "64"]
COMMON_MODEL = [*PRENORM_SHARED_ARGS, "--dropout", "0.1", "--attention-dropout", "0.1"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lslo-demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="lslo-demo", help="output folder (default: ./lslo-demo)")
    p.add_argument("--quick", action="store_true",
                   help="tiny mode for tests: 4 languages (en fr ko oc), few rows, a 64-dim model")
    p.add_argument("--tsv", default=None, help="multi-parallel TSV (default: the shipped LibreOffice rows)")
    p.add_argument("--langs", default=None, help="comma list of languages (default: all ten)")
    p.add_argument("--base-updates", type=int, default=None, help="updates for the base model")
    p.add_argument("--lslo-updates", type=int, default=None, help="updates for LSLo fine-tuning")
    p.add_argument("--lslo-ranks", default="H:2,M:2,V:8", help="LSLo ranks (default H:2,M:2,V:8)")
    p.add_argument("--n-test", type=int, default=None, help="held-out test rows per language")
    p.add_argument("--analysis", action="store_true",
                   help="also run the paper's architecture learning on the demo data: weight learning "
                        "(figure 1), intrinsic subspace estimation (figures 2, 5; tables 9-10), "
                        "language-specific pruning (figures 4, 6) and LSLo+WL+GPS(0.9) (a table row); "
                        "about three times the main demo's time")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--force", action="store_true", help="redo every step even if its output exists")
    return p


def settings(a) -> Dict:
    quick = a.quick
    s = dict(
        langs=(a.langs.split(",") if a.langs else (QUICK_LANGS if quick else DEMO_LANGS)),
        n_valid=20 if quick else 100,
        n_test=a.n_test or (20 if quick else 40),
        max_train_rows=200 if quick else None,
        vocab=600 if quick else 2000,
        arch=ARCH["quick" if quick else "full"],
        base_updates=a.base_updates or (150 if quick else 1000),
        lslo_updates=a.lslo_updates or (60 if quick else 500),
        max_tokens=1500 if quick else 2048,
    )
    return s


def run(cmd: List[str], log_path: str) -> float:
    """Run a CLI command, its output to ``log_path``; raise with the log's tail on failure."""
    start = time.time()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = open(log_path, encoding="utf-8").read()[-3000:]
        raise RuntimeError(f"command failed ({proc.returncode}); log {log_path}:\n{tail}")
    return time.time() - start


def fairseq_bin(name: str) -> str:
    exe = os.path.join(os.path.dirname(sys.executable), name)
    return exe if os.path.exists(exe) else (shutil.which(name) or name)


def task_args(data: Dict) -> List[str]:
    langs = ",".join(data["langs"])
    return ["--lang-pairs", ",".join(data["pairs"]), "--langs", langs,
            "--encoder-langtok", "src", "--decoder-langtok",
            "--fixed-dictionary", os.path.join(data["data_dir"], "dict.txt")]


def train_args(data: Dict, s: Dict, save_dir: str, lr: float, updates: int, seed: int) -> List[str]:
    """The FLORES-101 recipes' settings (``examples/flores101/lib.sh``, ``fairseq_train``) at the
    demo's scale: the same temperature sampling, label smoothing, Adam betas and inverse-sqrt
    schedule; a fixed number of updates on the CPU, a shorter warm-up, and no layerdrop (the demo's
    models have 2-3 layers)."""
    return [data["data_dir"], *task_args(data), "--sampling-method", "temperature",
            "--sampling-temperature", "5", "--optimizer", "adam", "--adam-betas", "(0.9,0.98)",
            "--lr", str(lr), "--lr-scheduler", "inverse_sqrt", "--warmup-updates", str(max(10, min(100, updates // 10))),
            "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.2",
            "--max-tokens", str(s["max_tokens"]), "--max-update", str(updates), "--seed", str(seed),
            "--cpu", "--num-workers", "0", "--save-dir", save_dir, "--no-epoch-checkpoints",
            "--save-interval-updates", str(updates), "--validate-interval-updates", str(updates),
            "--log-format", "simple", "--log-interval", "50", "--keep-interval-updates", "1"]


def lslo_train_cmd(data: Dict, s: Dict, save_dir: str, updates: int, seed: int, base_ckpt: str,
                   extra: List[str]) -> List[str]:
    """fairseq-train of an LSLo model on the base checkpoint (lr 3e-3 as the paper)."""
    return [fairseq_bin("fairseq-train"), *train_args(data, s, save_dir, 3e-3, updates, seed),
            "--user-dir", user_dir(), "--task", "translation_multi_simple_epoch_lslo",
            "--arch", "lslo_transformer", *s["arch"], *COMMON_MODEL,
            "--finetune-from-model", base_ckpt, "--lslo-lang-groups", "lang12", *extra]


def run_analysis(a, s, data, out, base_ckpt, timings) -> List[tuple]:
    """Weight learning -> ISE, LSP, GPS with the learned indexes. Returns extra (name, ckpt, task)
    runs to score; writes figures 1, 2, 4, 5, 6 under ``out/figures``."""
    from . import plot

    updates = s["lslo_updates"]
    schedule = ["--lslo-prune-unit", "update", "--lslo-prune-start", str(max(1, updates // 5)),
                "--lslo-prune-duration", str(max(1, updates // 2))]
    figures = os.path.join(out, "figures")
    os.makedirs(figures, exist_ok=True)

    def train(name, extra):
        save = os.path.join(out, name)
        if a.force or not os.path.exists(os.path.join(save, "checkpoint_last.pt")):
            timings[f"{name}_train"] = run(lslo_train_cmd(data, s, save, updates, a.seed, base_ckpt, extra),
                                           os.path.join(out, f"{name}_train.log"))
        return save

    wl = os.path.join(train("wl", ["--lslo-ranks", a.lslo_ranks, "--lslo-weight-learning"]), "weight_learning.json")
    plot.main(["weights", wl, "--out", os.path.join(figures, "weight_learning")])
    learned = ["--lslo-encoder-index", wl, "--lslo-decoder-index", wl]
    for kind in ("ise", "lsp"):
        save = train(kind, ["--lslo-ranks", "H:8,M:8,V:8", *learned, "--lslo-prune", kind, *schedule])
        plot.main([kind, os.path.join(save, "pruning_counts.json"), "--out", os.path.join(figures, kind),
                   *(["--lang-groups", "lang12"] if kind == "ise" else [])])
    gps = train("gps", ["--lslo-ranks", a.lslo_ranks, *learned, "--lslo-prune", "gps", "--lslo-prune-ratio", "0.9",
                        *schedule])
    print(f"[analysis] figures in {figures}", flush=True)
    return [(f"LSLo {a.lslo_ranks.replace(',', ' ')} +WL+GPS(0.9)", os.path.join(gps, "checkpoint_last.pt"),
             "translation_multi_simple_epoch_lslo")]


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
    ax.legend()
    fig.tight_layout()
    fig.savefig(path_png, dpi=120)
    fig.savefig(os.path.splitext(path_png)[0] + ".pdf")
    plt.close(fig)


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    return runner.run("lslo-demo", lambda: demo(a))


def demo(a) -> int:
    s = settings(a)
    tsv = a.tsv or resource_tsv()
    if not os.path.isfile(tsv):
        raise LSLoError(f"--tsv {tsv} does not exist")
    groups = {l: PRESETS["lang12"][l] for l in s["langs"] if l in PRESETS["lang12"]}
    unknown = [l for l in s["langs"] if l not in groups]
    if unknown:
        raise LSLoError(f"--langs {unknown} have no resource group in lang12")
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    timings = {}
    t0 = time.time()

    # 1. data
    from ..data.multiparallel import prepare

    data_dir = os.path.join(out, "data")
    prepared = os.path.join(data_dir, "prepared.json")
    if a.force or not os.path.exists(prepared):
        prepare(tsv, s["langs"], data_dir, s["n_valid"], s["n_test"], s["vocab"], a.seed,
                max_train_rows=s["max_train_rows"])
    with open(prepared, encoding="utf-8") as f:
        info = json.load(f)
    data = dict(data_dir=data_dir, langs=s["langs"], pairs=info["lang_pairs"])
    spm_model = info["spm_model"]
    timings["data"] = time.time() - t0
    print(f"[1/5] data: {len(data['pairs'])} directions in {data_dir} ({timings['data']:.0f} s)", flush=True)

    # 2. base model (plain fairseq transformer, no plugin)
    base_dir = os.path.join(out, "base")
    base_ckpt = os.path.join(base_dir, "checkpoint_last.pt")
    if a.force or not os.path.exists(base_ckpt):
        cmd = [fairseq_bin("fairseq-train"), *train_args(data, s, base_dir, 3e-3, s["base_updates"], a.seed),
               "--task", "translation_multi_simple_epoch", "--arch", "transformer", *s["arch"], *COMMON_MODEL]
        timings["base_train"] = run(cmd, os.path.join(out, "base_train.log"))
    print(f"[2/5] base model: {base_ckpt}", flush=True)

    # 3. LSLo fine-tuning of the base
    lslo_dir = os.path.join(out, "lslo")
    lslo_ckpt = os.path.join(lslo_dir, "checkpoint_last.pt")
    if a.force or not os.path.exists(lslo_ckpt):
        cmd = lslo_train_cmd(data, s, lslo_dir, s["lslo_updates"], a.seed, base_ckpt, ["--lslo-ranks", a.lslo_ranks])
        timings["lslo_train"] = run(cmd, os.path.join(out, "lslo_train.log"))
    print(f"[3/5] LSLo model: {lslo_ckpt}", flush=True)
    runs = [("base", base_ckpt, "translation_multi_simple_epoch"),
            ("LSLo " + a.lslo_ranks.replace(",", " "), lslo_ckpt, "translation_multi_simple_epoch_lslo")]
    if a.analysis:
        runs += run_analysis(a, s, data, out, base_ckpt, timings)

    # 4. beam-5 generation, all directions, every model
    scores = {}
    for name, ckpt, task in runs:
        key = os.path.basename(os.path.dirname(ckpt))
        results = os.path.join(out, "generate", key)
        t = time.time()
        generation.generate_all_directions(data_dir, ckpt, data["pairs"], results, user_dir(),
                                        extra_args=task_args(data) + GENERATION_LIMITS, beam=5, task=task)
        timings[f"generate_{key}"] = time.time() - t
        scores[name] = spbleu.score_run(results, spm_model)
    print("[4/5] generated and scored every direction", flush=True)

    # 5. table, files, plot
    grouped = [(name, *tables.group_table(sc, groups)) for name, sc in scores.items()]
    columns, rows = tables.merge_tables(grouped)
    print(tables.format_table(rows, columns))
    timings["total"] = time.time() - t0
    meta = dict(spbleu.scoring_meta(spm_model), timings_s=timings, settings={k: v for k, v in s.items()},
                note="LibreOffice UI text demo; not a reproduction of the paper's FLORES-101 numbers")
    prefix = os.path.join(out, "results")
    tables.write_results(prefix, rows, columns, scores, meta)
    plot_table(columns, rows, prefix + ".png")
    print(f"[5/5] {prefix}.csv {prefix}.json {prefix}.png  (total {timings['total']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
