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
   checkpoint; every old direction's hypotheses are compared with those before.
"""
from __future__ import annotations

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
from . import demo_runs, progress

PIVOT = "en"
HELD_BACK = "or"
# equal ranks, so that Setting 2 (which adds the input and output adapters' A and B) applies to every
# direction; 4 lies between the main demo's ranks 2 (H, M) and 8 (V)
MODULAR_RANKS = "H:4,M:4,V:4"
GRID = [0.25, 0.5, 0.75]  # w_in; 0 and 1 are the LoRA_out-only and LoRA_in-only rows


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
    return {
        "modular": demo_runs.Run(f"modular {MODULAR_RANKS}", "modular", "translation_multi_simple_epoch_lslo",
                            [*modular, "--lslo-langs", ",".join(old)], demo_runs.LSLO_LR,
                            extra={"pairs": english_centric(old)}),
        "added": demo_runs.Run(f"modular + {held}", "modular_added", "translation_multi_simple_epoch_lslo",
                          [*modular, "--lslo-langs", ",".join(langs), "--lslo-train-langs", held],
                          demo_runs.LSLO_LR, extra={"pairs": english_centric([PIVOT, held]), "from": "modular"}),
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
    return found, best


def hypothesis_lines(path: str) -> List[str]:
    """fairseq-generate's H-, D- and P- lines (hypotheses, detokenized, positional scores), sorted by
    sentence; the file's other lines hold timings."""
    with open(path, encoding="utf-8") as f:
        return sorted(line for line in f if line[:2] in ("H-", "D-", "P-"))


def run_modular(a, s, data, stand_in, out, manifest, lslo_run: demo_runs.Run, spm_model: str, timings) -> Dict:
    """Steps 1-4 of the module docstring; returns the rows' texts, parameter counts and the record."""
    langs = s["langs"]
    runs = modular_runs(langs)
    for key in ("modular", "added"):
        run = runs[key]
        t = time.time()
        start = runs[run.extra["from"]].checkpoint if run.extra.get("from") else None
        demo_runs.train_run(run, a, s, dict(data, pairs=run.extra["pairs"]), stand_in, out, manifest, start=start)
        timings[f"train_{run.key}"] = time.time() - t
    held = held_back(langs)
    eval_old = [l for l in s["eval_langs"] if l != held]
    pairs = zero_shot(eval_old)
    t = time.time()
    search, best = merge_search(runs["modular"], a, data, pairs, out, spm_model)
    timings["merge_search"] = time.time() - t
    rows = {
        "LoRA_in only (1,0)": ["--lslo-merge-weights", "1,0"],
        "LoRA_out only (0,1)": ["--lslo-merge-weights", "0,1"],
        **{f"Setting {i} ({mode}, w_in={best[mode]})": ["--lslo-merge", mode, "--lslo-merge-weights",
                                                       ms.weights_arg(best[mode])]
           for i, mode in ((1, "outputs"), (2, "ab"))},
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
    record = dict(search=search, best=best, ranks=MODULAR_RANKS, pivot=PIVOT, held_back=held,
                  trainable={r.name: r.trainable for r in runs.values()},
                  old_directions=len(old_pairs), identical_after_adding=len(same),
                  differing_after_adding=[d for d in old_pairs if d not in same])
    write_json_atomic(os.path.join(out, "modular.json"), record)
    return dict(texts=texts, pairs=pairs, new_pairs=new_pairs, texts_new=texts_new, record=record, runs=runs)


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
          f"the validation rows: outputs {rec['search']['outputs']}, ab {rec['search']['ab']}")
    print(format_intervals(cells, columns, diffs, "Pretrain", digits=1, stacked=True))
    print()
    for line in significance_summary(diffs, "Pretrain"):
        print(line)
    for name in result["texts"]:
        print(f"{name}: AVG {avg[name]:.1f} = {100 * avg[name] / avg[lslo_name]:.0f}% of multi-parallel "
              f"{lslo_name} ({avg[lslo_name]:.1f})")
    new_scores = [spbleu.spbleu(h, r, spm_model) for h, r in result["texts_new"].values()]
    held = rec["held_back"]
    print(f"{held} added afterwards (its adapters alone trained, en<->{held}): "
          f"{rec['identical_after_adding']} of {rec['old_directions']} old directions' hypotheses and scores identical "
          f"before and after; {held}'s {len(new_scores)} zero-shot directions "
          f"{sum(new_scores) / len(new_scores):.1f} spBLEU on average")
