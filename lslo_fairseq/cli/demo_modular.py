"""``lslo-demo --modular``: the follow-up's modular fine-tuning in miniature, on the demo's data and
stand-in.

1. one fairseq-train run on the English-centric pairs only (en<->X for every language but the held-back
   ``or``) with ``--lslo-modular``: LoRA_in(X) learns from X->en, LoRA_out(Y) from en->Y;
2. the merge weight w_in (w_out = 1 - w_in) searched on the validation rows of the zero-shot directions
   (no en on either side), for Setting 1 (``outputs``, eq. 3) and Setting 2 (``ab``, eq. 4);
3. the table on the test rows of the zero-shot directions: Pretrain, LSLo trained on all 90
   multi-parallel directions (the main demo's run), LoRA_in only (1,0), LoRA_out only (0,1),
   Setting 1 and Setting 2 at the searched weight, with 95% paired-bootstrap intervals and each row's
   AVG as a percentage of multi-parallel LSLo's;
4. ``or`` added: its two adapters trained on en<->or alone (``--lslo-train-langs or``) from the modular
   checkpoint; every old direction's hypotheses are compared with those before;
5. the follow-up papers' variants: English's own adapters (``--lslo-pivot-rank``, trained on en->en
   copies) in a second run, compared with ours on the English-centric and zero-shot directions; the
   per-direction searched ratio and the learned per-layer weights (``lslo-score --learn-merge-weights``)
   as rows of the table, and the learned weights' figure (the follow-up's figure 2);
6. the logit lens (``lslo-lens``, the 2026 follow-up's bridge analysis) of Pretrain, multi-parallel
   LSLo and the modular run (Setting 1 at the searched weight) on the zero-shot directions' test rows:
   which language each decoder layer's top-5 tokens belong to, pooled over the directions
   (``figures/logit_lens_lens_models.png``; per model and direction ``figures/logit_lens_<run>_lens.png``).
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Dict, List

from ..data.commands import task_args
from ..evaluation import merge_search as ms
from ..evaluation import spbleu, tables
from ..evaluation.bootstrap import compare_runs, format_intervals, significance_summary
from ..groups import PRESETS
from ..stand_in import package
from ..stand_in.build import LANGS
from ..evaluation.outputs import find_direction_outputs, read_generate_output
from ..files import write_json_atomic
from ..runfiles import merge_weights
from ..analysis import logit_lens as lens
from . import demo_runs, plot, progress

PIVOT = "en"
HELD_BACK = "or"
# equal ranks, so that Setting 2 (which adds the input and output adapters' A and B) applies to every
# direction; 4 lies between the main demo's ranks 2 (H, M) and 8 (V)
MODULAR_RANKS = "H:4,M:4,V:4"
GRID = [0.25, 0.5, 0.75]  # w_in; 0 and 1 are the LoRA_out-only and LoRA_in-only rows
PIVOT_RANK = 4  # English's own adapters in the papers' variant: the rank of the others
LEARN_EPOCHS, LEARN_LR = 5, 0.05  # --learn-merge-weights on the validation rows


def english_centric(langs: List[str]) -> List[str]:
    return [p for x in langs if x != PIVOT for p in (f"{PIVOT}-{x}", f"{x}-{PIVOT}")]


def zero_shot(langs: List[str]) -> List[str]:
    return [f"{s}-{t}" for s in langs for t in langs if s != t and PIVOT not in (s, t)]


def held_back(langs: List[str]) -> str:
    """``or``, or (--quick) the last language."""
    return HELD_BACK if HELD_BACK in langs else langs[-1]


def modular_runs(langs: List[str]) -> Dict[str, demo_runs.Run]:
    held = held_back(langs)
    old = [l for l in langs if l != held]
    modular = demo_runs.lslo_options(["--lslo-modular", "--lslo-pivot", PIVOT, "--lslo-ranks", MODULAR_RANKS])
    task = "translation_multi_simple_epoch_lslo"
    return {
        "modular": demo_runs.Run(f"modular {MODULAR_RANKS}", "modular", task, [*modular, "--lslo-langs", ",".join(old)],
                                 demo_runs.LSLO_LR, extra={"pairs": english_centric(old)}),
        "added": demo_runs.Run(f"modular + {held}", "modular_added", task,
                               [*modular, "--lslo-langs", ",".join(langs), "--lslo-train-langs", held],
                               demo_runs.LSLO_LR, extra={"pairs": english_centric([PIVOT, held]), "from": "modular"}),
        "english": demo_runs.Run(f"modular + {PIVOT} adapters (rank {PIVOT_RANK}, {PIVOT}->{PIVOT})", "modular_english",
                                 task, [*modular, "--lslo-langs", ",".join(old), "--lslo-pivot-rank", str(PIVOT_RANK)],
                                 demo_runs.LSLO_LR, extra={"pairs": english_centric(old) + [f"{PIVOT}-{PIVOT}"]}),
    }


def decode(run: demo_runs.Run, a, data, pairs: List[str], out: str, key: str, merge: List[str], subset: str = "test",
           name: str = ""):
    """Translate ``subset`` of ``pairs`` with ``run``'s checkpoint and the merge options ``merge``
    into OUT/generate/KEY; returns {direction: (hypotheses, references)}."""
    gen = demo_runs.Run(name or key, key, run.task, checkpoint=run.checkpoint, extra={"generate": merge, "subset": subset})
    results = demo_runs.generate_run(gen, a, data, dict(data, pairs=pairs), out)
    return {d: read_generate_output(p) for d, p in find_direction_outputs(results, subset).items()}


def merge_search(run, a, data, pairs, out, spm_model):
    """Per mode, the mean spBLEU of the zero-shot directions' validation rows at every w_in of GRID and
    the w_in with the best mean (:func:`..evaluation.merge_search.search`, global scope)."""
    found: Dict[str, Dict[float, float]] = {}
    best: Dict[str, float] = {}
    per_direction: Dict[str, Dict[str, float]] = {}
    directions = [tuple(p.split("-")) for p in pairs]
    for mode in ("outputs", "ab"):
        with progress.bar(f"merge search {mode} (valid)", len(GRID) * len(pairs), "directions", a.verbose) as b, \
                progress.logs_to(os.path.join(out, "logs", f"merge_search_{mode}.log"), a.verbose):
            scorer = ms.generation_scorer(
                data["dir"], run.checkpoint, os.path.join(out, "search", mode), package.user_dir(),
                [*task_args(data["dir"], LANGS, data["pairs"])[2:], *demo_runs.GENERATION_LIMITS, "--lslo-merge", mode],
                spm_model, beam=a.beam, gen_subset="valid", task=run.task, progress=lambda *_: b.update(1))
            result = ms.search(directions, scorer, "grid", "global", grid=GRID)
        found[mode] = {w: sum(t.score for t in result.trials if t.w_in == w) / len(directions) for w in GRID}
        best[mode] = result.weights
        # each direction's best point of the same trials (ties: the first in GRID's order)
        per_direction[mode] = {f"{s}-{t}": max(GRID, key=lambda w: (result.score_at((s, t), w), -GRID.index(w)))
                               for s, t in directions}
    return found, best, per_direction


def learn_weights(run, a, data, pairs, out) -> str:
    """The per-(direction, layer) merge weights of the zero-shot directions learned on their validation
    rows (:mod:`..evaluation.merge_learning`); writes and returns OUT/learned_merge_weights.json and draws
    the follow-up's figure 2 into OUT/figures/modular_merge_weights.png."""
    from ..analysis import plots  # deferred: matplotlib
    from ..evaluation import merge_learning as ml  # deferred: torch
    from ..evaluation.generation import Translator  # deferred: fairseq

    directions = [tuple(p.split("-")) for p in pairs]
    with progress.logs_to(os.path.join(out, "logs", "learn_merge_weights.log"), a.verbose), \
            progress.bar("learning merge weights (valid)", None, "batches", a.verbose) as b:
        translator = Translator(data["dir"], run.checkpoint, directions, package.user_dir(),
                                [*task_args(data["dir"], LANGS, data["pairs"])[2:], *demo_runs.GENERATION_LIMITS],
                                beam=1, gen_subset="valid", task=run.task)
        result = ml.learn(translator, directions, LEARN_EPOCHS, LEARN_LR, a.seed, lambda: b.update(1))
    path = ml.write(result, os.path.join(out, "learned_merge_weights.json"),
                    {"gen_subset": "valid", "epochs": LEARN_EPOCHS, "lr": LEARN_LR, "checkpoint": run.checkpoint})
    plots.plot_merge_weights(result.weights, os.path.join(out, "figures", "modular_merge_weights"))
    return path


@contextlib.contextmanager
def _quiet(log: str, verbose: bool):
    """Log records and (unless ``verbose``) printed output of the block go to the file ``log``."""
    with progress.logs_to(log, verbose), open(log, "a", encoding="utf-8") as f, \
            (contextlib.nullcontext() if verbose else contextlib.redirect_stdout(f)):
        yield


def logit_lens(a, data, pairs: List[str], out: str, models: Dict[str, tuple]) -> Dict[str, dict]:
    """Step 6: ``lslo-lens`` of every model ``{name: (checkpoint, task, merge options)}`` on the test rows
    of ``pairs`` (OUT/lens/<n>.json; the per-direction tables go to OUT/logs/logit_lens.log), then
    ``lslo-plot logit-lens`` of them all (OUT/figures/logit_lens_*). Returns {name: document}."""
    from . import lens as lens_cli  # deferred: imports fairseq

    docs = {}
    files = []
    log = os.path.join(out, "logs", "logit_lens.log")
    os.makedirs(os.path.join(out, "lens"), exist_ok=True)
    with progress.bar("logit lens (test)", len(models), "models", a.verbose) as b:
        for i, (name, (checkpoint, task, merge)) in enumerate(models.items()):
            path = os.path.join(out, "lens", f"{i}.json")
            args = lens_cli.build_parser().parse_args(["--data-dir", data["dir"], "--checkpoint", checkpoint,
                                                       "--pairs", ",".join(pairs), "--out", path, "--task", task])
            extra = [*task_args(data["dir"], LANGS, data["pairs"])[2:], *demo_runs.GENERATION_LIMITS, *merge]
            with _quiet(log, a.verbose):
                print(f"== {name}", flush=True)
                docs[name] = lens_cli.compute(args, extra)
            files.append(f"{name}={path}")
            b.update(1)
    with _quiet(log, a.verbose):
        if plot.main(["logit-lens", *files, "--out", os.path.join(out, "figures", "logit_lens")]) != 0:
            raise RuntimeError(f"lslo-plot logit-lens failed; see {log}")
    return docs


def lens_table(docs: Dict[str, dict]) -> str:
    """Per model, the share of the bridge language's and the target language's tokens among each
    decoder layer's top-k lens tokens, all directions pooled."""
    pooled = {name: lens.pooled_entry(doc) for name, doc in docs.items()}
    first = next(iter(pooled.values()))
    bridge = next(iter(docs.values())).get("bridge", PIVOT)
    lines = [f"\nLogit lens on the zero-shot directions' test rows (top-{first['top_k']} tokens of every decoder layer, "
             f"directions pooled): share of {bridge} tokens / target-language tokens"]
    lines.append(f"{'layer':34s}" + "".join(f"{l:>12s}" for l in first["layers"]))
    at = {c: lens.CATEGORIES.index(c) for c in ("bridge", "target")}
    for name, entry in pooled.items():
        lines.append(f"{name[:34]:34s}" + "".join(f"{row[at['bridge']]:6.2f} /{row[at['target']]:4.2f}"
                                                  for row in entry["shares"]))
    return "\n".join(lines)


def hypothesis_lines(path: str) -> List[str]:
    """fairseq-generate's H-, D- and P- lines (hypotheses, detokenized, positional scores), sorted by
    sentence; the file's other lines hold timings."""
    with open(path, encoding="utf-8") as f:
        return sorted(line for line in f if line[:2] in ("H-", "D-", "P-"))


def run_modular(a, s, data, stand_in, out, manifest, lslo_run: demo_runs.Run, spm_model: str, timings) -> Dict:
    """Steps 1-6 of the module docstring; returns the rows' texts, parameter counts, the English-adapter
    comparison, the logit-lens documents and the record."""
    langs = s["langs"]
    runs = modular_runs(langs)
    from ..data.multiparallel import add_copy_pair  # deferred: imports sentencepiece, torch and fairseq

    add_copy_pair(data["dir"], PIVOT)  # en->en copies for the run with English's own adapters
    for key in ("modular", "added", "english"):
        run = runs[key]
        t = time.time()
        start = runs[run.extra["from"]].checkpoint if run.extra.get("from") else None
        demo_runs.train_run(run, a, s, dict(data, pairs=run.extra["pairs"]), stand_in, out, manifest, start=start)
        timings[f"train_{run.key}"] = time.time() - t
    held = held_back(langs)
    eval_old = [l for l in s["eval_langs"] if l != held]
    pairs = zero_shot(eval_old)
    t = time.time()
    search, best, per_direction = merge_search(runs["modular"], a, data, pairs, out, spm_model)
    timings["merge_search"] = time.time() - t
    t = time.time()
    learned = learn_weights(runs["modular"], a, data, pairs, out)
    timings["learn_merge_weights"] = time.time() - t
    chosen = os.path.join(out, "per_direction_merge_weights.json")
    merge_weights.write(chosen, {"weights": [best["outputs"], round(1 - best["outputs"], 6)], "directions": {
        d: [w, round(1 - w, 6)] for d, w in per_direction["outputs"].items()}})
    rows = {
        "LoRA_in only (1,0)": ["--lslo-merge-weights", "1,0"],
        "LoRA_out only (0,1)": ["--lslo-merge-weights", "0,1"],
        **{f"Setting {i} ({mode}, w_in={best[mode]})": ["--lslo-merge", mode, "--lslo-merge-weights",
                                                       ms.weights_arg(best[mode])]
           for i, mode in ((1, "outputs"), (2, "ab"))},
        "Setting 1, w_in per direction (searched)": ["--lslo-merge", "outputs", "--lslo-merge-weights", chosen],
        "Setting 1, learned per-layer weights": ["--lslo-merge", "outputs", "--lslo-merge-weights", learned],
    }
    t = time.time()
    texts = {}
    for i, (name, merge) in enumerate(rows.items()):
        texts[name] = decode(runs["modular"], a, data, pairs, out, f"modular_row{i}", merge, name=name)
    timings["generate_modular"] = time.time() - t
    # 4. or added: every old direction (zero-shot and English-centric) decoded again, hypotheses compared
    t = time.time()
    setting1 = list(rows.values())[2]
    old_pairs = pairs + english_centric(eval_old)
    folders = {}
    for key, when in (("modular", "before"), ("added", "after")):
        check = demo_runs.Run(f"old directions, {when} {held}", f"{when}_added", runs[key].task,
                         checkpoint=runs[key].checkpoint, extra={"generate": setting1})
        folders[when] = demo_runs.generate_run(check, a, data, dict(data, pairs=old_pairs), out)
    before, after = folders["before"], folders["after"]
    same = [d for d in old_pairs if hypothesis_lines(os.path.join(before, d, "generate-test.txt"))
            == hypothesis_lines(os.path.join(after, d, "generate-test.txt"))]
    new_pairs = [p for p in zero_shot(s["eval_langs"]) if held in p.split("-")]
    texts_new = decode(runs["added"], a, data, new_pairs, out, "added_new", setting1, name=f"{held}'s directions")
    timings["add_language_check"] = time.time() - t
    # 5. English's own adapters (the papers' en->en setting) against ours, at the searched Setting 1 weight
    t = time.time()
    centric = english_centric(eval_old)
    english = {
        "pivot without adapters (ours)": decode(runs["modular"], a, data, centric + pairs, out, "english_ours",
                                                setting1, name="ours"),
        runs["english"].name: decode(runs["english"], a, data, centric + pairs, out, "english_papers", setting1,
                                     name=runs["english"].name),
    }
    timings["english_adapters"] = time.time() - t
    # 6. the logit lens of the base, multi-parallel LSLo and the modular run
    t = time.time()
    lenses = logit_lens(a, data, pairs, out, {
        "Pretrain": (str(stand_in[package.CHECKPOINT]), "translation_multi_simple_epoch", []),
        lslo_run.name: (lslo_run.checkpoint, lslo_run.task, []),
        f"modular, Setting 1 (w_in={best['outputs']})": (runs["modular"].checkpoint, runs["modular"].task, setting1),
    })
    timings["logit_lens"] = time.time() - t
    record = dict(search=search, best=best, per_direction=per_direction, learned_weights=learned,
                  pivot_rank_variant=PIVOT_RANK, ranks=MODULAR_RANKS, pivot=PIVOT, held_back=held,
                  trainable={r.name: r.trainable for r in runs.values()},
                  old_directions=len(old_pairs), identical_after_adding=len(same),
                  differing_after_adding=[d for d in old_pairs if d not in same],
                  logit_lens={name: {"checkpoint": doc["meta"]["checkpoint"], **lens.pooled_entry(doc)}
                              for name, doc in lenses.items()})
    write_json_atomic(os.path.join(out, "modular.json"), record)
    return dict(texts=texts, pairs=pairs, new_pairs=new_pairs, texts_new=texts_new, record=record, runs=runs,
                english=english, centric=centric, lenses=lenses)


def report(a, result, base_texts, lslo_name: str, spm_model: str, eval_langs: List[str]) -> None:
    """The zero-shot table with intervals against Pretrain, % of multi-parallel LSLo, and the check of
    the added language."""
    pairs = [tuple(p.split("-")) for p in result["pairs"]]
    texts = {name: {d: t[d] for d in pairs} for name, t in base_texts.items()}
    texts.update(result["texts"])
    rec = result["record"]
    groups = {l: PRESETS["lang12"][l] for l in eval_langs if l != rec["held_back"]}
    cells, diffs, _ = compare_runs(texts, spm_model, groups, "Pretrain", a.bootstrap, a.seed)
    columns = [c for c in next(iter(cells.values()))]
    per_run = {name: {d: spbleu.spbleu(h, r, spm_model) for d, (h, r) in t.items()} for name, t in texts.items()}
    avg = {name: tables.group_table(sc, groups)[1][-1] for name, sc in per_run.items()}
    print(f"\nModular fine-tuning: English-centric adapters (ranks {rec['ranks']}, pivot {rec['pivot']} without "
          f"adapters), zero-shot directions ({len(pairs)}: no en on either side); merge weight searched on "
          f"the validation rows (mean spBLEU at w_in): "
          + "; ".join(f"{mode} " + ", ".join(f"{w}: {v:.2f}" for w, v in rec["search"][mode].items())
                      for mode in ("outputs", "ab")))
    print(format_intervals(cells, columns, diffs, "Pretrain", digits=1, stacked=True))
    print()
    for line in significance_summary(diffs, "Pretrain"):
        print(line)
    for name in result["texts"]:
        print(f"{name}: AVG {avg[name]:.1f} = {100 * avg[name] / avg[lslo_name]:.0f}% of multi-parallel "
              f"{lslo_name} ({avg[lslo_name]:.1f})")
    new_scores = [spbleu.spbleu(h, r, spm_model) for h, r in result["texts_new"].values()]
    held = rec["held_back"]
    print(english_table(result, spm_model))
    print(lens_table(result["lenses"]))
    print(f"{held} added afterwards (its adapters alone trained, en<->{held}): "
          f"{rec['identical_after_adding']} of {rec['old_directions']} old directions' hypotheses and scores identical "
          f"before and after; {held}'s {len(new_scores)} zero-shot directions "
          f"{sum(new_scores) / len(new_scores):.1f} spBLEU on average")


def english_table(result, spm_model: str) -> str:
    """Mean spBLEU of X->en, en->Y and the zero-shot directions, with and without English's own
    adapters (both at the searched Setting 1 weight)."""
    pivot = result["record"]["pivot"]
    columns = {f"X->{pivot}": [d for d in result["centric"] if d.endswith(f"-{pivot}")],
               f"{pivot}->Y": [d for d in result["centric"] if d.startswith(f"{pivot}-")],
               "zero-shot": list(result["pairs"])}
    lines = [f"\nEnglish's own adapters (the follow-up papers' en->en setting) against none (ours), Setting 1 at "
             f"w_in={result['record']['best']['outputs']}; mean spBLEU on the test rows:",
             f"{'':44s}" + "".join(f"{c:>12s}" for c in columns)]
    for name, texts in result["english"].items():
        means = []
        for dirs in columns.values():
            scores = [spbleu.spbleu(*texts[tuple(d.split("-"))], spm_model) for d in dirs]
            means.append(sum(scores) / len(scores))
        lines.append(f"{name:44s}" + "".join(f"{m:12.1f}" for m in means))
    return "\n".join(lines)
