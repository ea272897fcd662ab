"""Rebuild the demo's stand-in pretrained model from scratch: ``bash scripts/rebuild-stand-in.sh``.

Steps (each skipped when its output exists, so an interrupted build resumes where it stopped;
``fairseq-train`` itself resumes from ``checkpoint_last.pt``):

1. text: :mod:`.corpus` pairs (help paragraphs + interface strings, demo rows excluded);
2. a SentencePiece model trained on a per-language-capped sample of that text, its ``dict.txt``;
3. binarized pretraining data (90 directions) + the demo's table split with that vocabulary, whose
   valid rows are fairseq's valid set and whose first ``curve_rows`` valid rows give the curve;
4. ``fairseq-train`` of a plain pre-norm transformer (``--arch transformer``, no plugin);
5. the curve: greedy spBLEU AVG on the curve rows for every saved checkpoint;
6. the package: fp16 weights without optimizer state, the SentencePiece model, the dictionary,
   ``manifest.json`` (recipe, data counts, curve, run times) and ``SHA256SUMS``.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..groups import PRESETS
from ..shapes import PRENORM_SHARED_ARGS, TINY_SHAPE, shape_args
from ..errors import LSLoError
from ..files import write_json_atomic
from . import package
from ..data.commands import fairseq_bin, task_args
from .corpus import build_corpus, read_rows

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LANGS = ("en", "fr", "de", "it", "nl", "zh", "ja", "ko", "oc", "or")
HELP_TSV = "libreoffice-help.8langs.tsv.xz"
UI_TSV = "libreoffice.all.tsv"
# The demo's split of its table (lslo-demo uses the same): the stand-in's valid set and curve come
# from its valid rows; its test rows are the demo's test rows.
DEMO_SPLIT = dict(n_valid=100, n_test=40, seed=1)
# The demo table's test directions: every pair of two languages per resource group (30 of the 90),
# so that every cell has at least two directions; the curve is measured on the same directions.
EVAL_LANGS = ("en", "fr", "nl", "zh", "oc", "or")


@dataclass(frozen=True)
class Recipe:
    """Everything the stand-in depends on; recorded in its manifest."""

    help_sources_per_target: int = 1
    ui_sources_per_target: int = 3  # interface strings are the demo's domain: three sources each
    max_words: int = 40
    max_pieces: int = 100
    vocab_size: int = 8000
    spm_sentences_per_lang: int = 30000
    character_coverage: float = 0.9995
    layers: int = 3
    dim: int = 256
    ffn: int = 1024
    heads: int = 4
    dropout: float = 0.1
    lr: float = 0.0025
    warmup: int = 300
    max_tokens: int = 4096
    max_update: int = 1200
    save_interval: int = 300
    label_smoothing: float = 0.1
    sampling_temperature: float = 1.0
    curve_rows: int = 25
    curve_langs: Tuple[str, ...] = EVAL_LANGS  # the quick build: four
    seed: int = 1
    rows_per_source: Optional[int] = None  # quick builds (tests) only


QUICK = Recipe(vocab_size=2500, spm_sentences_per_lang=400, layers=TINY_SHAPE["layers"],
               dim=TINY_SHAPE["dim"], ffn=TINY_SHAPE["ffn"], heads=TINY_SHAPE["heads"],
               max_update=12, save_interval=6, warmup=4, max_tokens=1500, curve_rows=5,
               curve_langs=("en", "fr", "ko", "oc"), rows_per_source=300)


def log(msg: str) -> None:
    print(f"[stand-in {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def write_text(work: Path, r: Recipe, data: Path) -> dict:
    """Step 1: the pretraining pairs, one ``train.{src}-{tgt}.{lang}`` text file per side."""
    demo = read_rows(package.DEMO_TSV, LANGS)
    sources = [("help", data / HELP_TSV, r.help_sources_per_target),
               ("ui", data / UI_TSV, r.ui_sources_per_target)]
    if r.rows_per_source:  # quick: the first rows of each table
        tmp = work / "quick-tables"
        tmp.mkdir(parents=True, exist_ok=True)
        cut = []
        for name, path, k in sources:
            rows = read_rows(path, LANGS)[: r.rows_per_source]
            out = tmp / f"{name}.tsv"
            with open(out, "w", encoding="utf-8") as f:
                f.write("id\torigin\t" + "\t".join(LANGS) + "\n")
                for i, row in enumerate(rows):
                    f.write(f"{i}\tquick\t" + "\t".join(row.get(l, "") for l in LANGS) + "\n")
            cut.append((name, out, k))
        sources = cut
    corpus = build_corpus(sources, demo, LANGS, r.max_words, r.seed)
    text = work / "text"
    text.mkdir(parents=True, exist_ok=True)
    for (src, tgt), pairs in corpus.pairs.items():
        for side, lang in ((0, src), (1, tgt)):
            with open(text / f"train.{src}-{tgt}.{lang}", "w", encoding="utf-8") as f:
                f.writelines(p[side].replace("\n", " ") + "\n" for p in pairs)
    return dict(rows=corpus.rows, dropped=corpus.dropped, pairs_by_target=corpus.target_counts(),
                directions=len(corpus.pairs))


def read_text(work: Path) -> Dict[tuple, tuple]:
    out = {}
    for path in sorted((work / "text").glob("train.*-*.*")):
        _, pair, lang = path.name.split(".")
        src, tgt = pair.split("-")
        if lang == src:
            with open(path, encoding="utf-8") as f, \
                    open(path.with_name(f"train.{pair}.{tgt}"), encoding="utf-8") as g:
                out[src, tgt] = ([l.rstrip("\n") for l in f], [l.rstrip("\n") for l in g])
    return out


def train_vocabulary(work: Path, r: Recipe, pairs: Dict[tuple, tuple]) -> None:
    """Step 2: SentencePiece on at most ``spm_sentences_per_lang`` distinct sentences per language
    (so oc and or keep their characters), with byte fallback (no ``<unk>`` for rare CJK)."""
    from ..data.multiparallel import build_dictionary, encode_pieces, train_sentencepiece

    import sentencepiece as spm

    by_lang: Dict[str, set] = {}
    for (src, tgt), (s, t) in pairs.items():
        by_lang.setdefault(src, set()).update(s)
        by_lang.setdefault(tgt, set()).update(t)
    rng = random.Random(r.seed)
    sample = []
    for lang in sorted(by_lang):
        texts = sorted(by_lang[lang])
        sample += rng.sample(texts, min(len(texts), r.spm_sentences_per_lang))
    vocab = work / "vocab"
    model, _ = train_sentencepiece(sample, vocab / "sentencepiece.bpe", r.vocab_size,
                                   character_coverage=r.character_coverage, seed=r.seed,
                                   byte_fallback=True)
    sp = spm.SentencePieceProcessor(model_file=model)
    build_dictionary((p for lang in sorted(by_lang) for p in encode_pieces(sp, sorted(by_lang[lang]))),
                     vocab / "dict.txt")


def binarize_all(work: Path, r: Recipe, pairs: Dict[tuple, tuple]) -> dict:
    """Step 3: every direction's pairs of at most ``max_pieces`` pieces a side (the rest dropped and
    counted), and the demo table's split with this vocabulary."""
    import sentencepiece as spm
    from fairseq.data import Dictionary

    from ..data.multiparallel import binarize, encode_pieces, prepare, write_splits

    vocab = work / "vocab"
    sp = spm.SentencePieceProcessor(model_file=str(vocab / "sentencepiece.bpe.model"))
    d = Dictionary.load(str(vocab / "dict.txt"))
    out = work / "bin"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(vocab / "dict.txt", out / "dict.txt")
    kept = too_long = 0
    for (src, tgt), (s, t) in pairs.items():
        ps, pt = encode_pieces(sp, s), encode_pieces(sp, t)
        keep = [i for i in range(len(ps)) if len(ps[i]) <= r.max_pieces and len(pt[i]) <= r.max_pieces]
        too_long += len(ps) - len(keep)
        kept += len(keep)
        for lang, pieces in ((src, ps), (tgt, pt)):
            binarize((pieces[i] for i in keep), d, out / f"train.{src}-{tgt}.{lang}")
    demo_dir = work / "demo-data"
    info = prepare(package.DEMO_TSV, LANGS, demo_dir, DEMO_SPLIT["n_valid"], DEMO_SPLIT["n_test"], 0,
                   DEMO_SPLIT["seed"], spm_model=vocab / "sentencepiece.bpe.model",
                   dictionary=vocab / "dict.txt")
    # the curve's rows: the first curve_rows valid rows, as their own split
    raw = {"curve": {}}
    for lang in LANGS:
        with open(demo_dir / f"valid.raw.{lang}", encoding="utf-8") as f:
            raw["curve"][lang] = [l.rstrip("\n") for l in f][: r.curve_rows]
    with open(demo_dir / "valid.ids", encoding="utf-8") as f:
        ids = {"curve": [l.rstrip("\n") for l in f][: r.curve_rows]}
    encoded = {("curve", lang): encode_pieces(sp, raw["curve"][lang]) for lang in LANGS}
    write_splits(demo_dir, LANGS, ids, raw, encoded, d)
    for split in ("valid", "curve"):
        for path in glob.glob(str(demo_dir / f"{split}.*-*.*.bin")) + glob.glob(str(demo_dir / f"{split}.*-*.*.idx")):
            shutil.copyfile(path, out / os.path.basename(path))
    return dict(pairs_kept=kept, pairs_over_max_pieces=too_long, vocab=len(d),
                demo_rows={k: v for k, v in info["rows"].items()})


def train_command(work: Path, r: Recipe) -> List[str]:
    """Step 4's ``fairseq-train`` command (rerun as is to resume)."""
    data = str(work / "bin")
    trained = sorted({p.name.split(".")[1] for p in (work / "bin").glob("train.*-*.*.idx")})
    return [fairseq_bin("fairseq-train"), data, *task_args(data, LANGS, trained),
            "--sampling-method", "temperature", "--sampling-temperature", str(r.sampling_temperature),
            "--arch", "transformer", *shape_args(r.layers, r.dim, r.ffn, r.heads), *PRENORM_SHARED_ARGS,
            "--dropout", str(r.dropout), "--attention-dropout", str(r.dropout),
            "--max-source-positions", "256", "--max-target-positions", "256",
            "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--lr", str(r.lr),
            "--lr-scheduler", "inverse_sqrt", "--warmup-updates", str(r.warmup), "--warmup-init-lr", "1e-7",
            "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", str(r.label_smoothing),
            "--max-tokens", str(r.max_tokens), "--max-update", str(r.max_update), "--seed", str(r.seed),
            "--cpu", "--num-workers", "0", "--save-dir", str(work / "checkpoints"),
            "--no-epoch-checkpoints", "--save-interval-updates", str(r.save_interval),
            # no validation loss: 9,000 valid sentences cost ~1.7 min each time; the curve is greedy spBLEU
            "--keep-interval-updates", "-1", "--disable-validation",
            "--log-format", "simple", "--log-interval", "25"]


def train(work: Path, r: Recipe) -> float:
    """Step 4; fairseq's log appended to ``train.log``. Returns this call's wall time."""
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")  # resuming reads a fairseq pickle
    start = time.time()
    with open(work / "train.log", "a", encoding="utf-8") as f:
        f.write(" ".join(train_command(work, r)) + "\n")
        f.flush()
        rc = subprocess.run(train_command(work, r), stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    if rc != 0:
        raise LSLoError(f"fairseq-train failed ({rc}); see {work / 'train.log'}")
    return time.time() - start


def updates_saved(work: Path) -> int:
    """Updates of the newest interval checkpoint (0 if none): a build whose training reached its
    updates but stopped before recording it does not train again (a resumed fairseq-train at
    ``--max-update`` would take one more step)."""
    saved = checkpoints_by_update(work)
    return saved[-1][0] if saved else 0


def checkpoints_by_update(work: Path) -> List[tuple]:
    out = []
    for path in glob.glob(str(work / "checkpoints" / "checkpoint_*_*.pt")):
        m = re.search(r"checkpoint_\d+_(\d+)\.pt$", path)
        if m:
            out.append((int(m.group(1)), path))
    return sorted(out)


def curve(work: Path, r: Recipe) -> List[dict]:
    """Step 5: greedy spBLEU (per group and AVG) on the curve rows for every interval checkpoint."""
    from ..evaluation import generation, spbleu, tables
    from ..data.multiparallel import lang_pairs

    data = str(work / "bin")
    spm_model = str(work / "vocab" / "sentencepiece.bpe.model")
    langs = list(r.curve_langs)
    groups = {l: PRESETS["lang12"][l] for l in langs}
    points = []
    for updates, path in checkpoints_by_update(work):
        if updates > r.max_update:
            continue
        results = work / "curve" / str(updates)
        done = results / "scores.json"
        if not done.exists():
            generation.generate_all_directions(
                data, path, lang_pairs(langs), str(results), package.user_dir(),
                extra_args=task_args(data, LANGS)[2:] + ["--max-len-a", "1.2", "--max-len-b", "10",
                                                         "--batch-size", "64"],
                beam=1, gen_subset="curve", task="translation_multi_simple_epoch")
            scores = spbleu.score_run(str(results), spm_model, subset="curve")
            columns, values = tables.group_table(scores, groups)
            write_json_atomic(str(done), dict(zip(columns, values)))
        with open(done, encoding="utf-8") as f:
            points.append(dict(updates=updates, **json.load(f)))
        log(f"curve: {updates} updates, greedy spBLEU AVG {points[-1]['AVG']:.2f}")
    return points


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="rebuild-stand-in", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(SHARED_DATA),
                   help=f"folder with {HELP_TSV} and {UI_TSV} (default: ../shared/data)")
    p.add_argument("--work", default="runs/stand-in", help="build folder (resumable; default runs/stand-in)")
    p.add_argument("--out", default=str(package.STAND_IN_DIR),
                   help="where the package goes (default: the one lslo-demo uses)")
    p.add_argument("--quick", action="store_true", help="a tiny build that tests the pipeline (minutes)")
    p.add_argument("--max-update", type=int, default=None, help="override the recipe's updates")
    a = p.parse_args(argv)
    r = QUICK if a.quick else Recipe()
    if a.max_update:
        r = replace(r, max_update=a.max_update)
    data, work = Path(a.data), Path(a.work).resolve()
    for name in (HELP_TSV, UI_TSV):
        if not (data / name).is_file():
            raise SystemExit(f"rebuild-stand-in: --data {data}: {name} not found (expected the "
                             f"shared LibreOffice tables, ../shared/data)")
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "build.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    wanted = json.loads(json.dumps(asdict(r)))  # as build.json holds it (tuples become lists)
    # only --max-update may change (a longer build resumes a shorter one); fields added to the recipe
    # since a build started count as their defaults
    recorded = {**wanted, **(state.get("recipe") or {}), "max_update": r.max_update}
    if recorded != wanted:
        changed = sorted(k for k in wanted if recorded[k] != wanted[k])
        raise SystemExit(f"rebuild-stand-in: {work} holds a build of another recipe ({', '.join(changed)} "
                         "differ); use another --work")
    state["recipe"] = wanted
    times = state.setdefault("times_s", {})

    def step(name, fn):
        if name not in state:
            t = time.time()
            state[name] = fn()
            times[name] = round(time.time() - t, 1) + times.get(name, 0)
            write_json_atomic(str(state_path), state)
        return state[name]

    log(f"build folder {work}")
    step("text", lambda: write_text(work, r, data))
    pairs = None
    if "vocabulary" not in state or "binarized" not in state:
        pairs = read_text(work)
    step("vocabulary", lambda: train_vocabulary(work, r, pairs) or {"vocab": str(work / "vocab")})
    step("binarized", lambda: binarize_all(work, r, pairs))
    log(f"data ready; training (log: {work / 'train.log'})")
    if state.get("trained", 0) < r.max_update and updates_saved(work) < r.max_update:
        times["train"] = round(times.get("train", 0) + train(work, r), 1)
    state["trained"] = r.max_update
    write_json_atomic(str(state_path), state)
    points = curve(work, r)
    manifest = dict(recipe=asdict(r), data=dict(text=state["text"], binarized=state["binarized"]),
                    curve=points, times_s=times, train_command=train_command(work, r)[1:])
    final = dict(checkpoints_by_update(work)).get(r.max_update)
    if final is None:
        raise SystemExit(f"rebuild-stand-in: no checkpoint at {r.max_update} updates in {work / 'checkpoints'}")
    package.pack(Path(final), work / "vocab", Path(a.out), manifest)
    log(f"packed into {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
