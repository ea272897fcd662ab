"""The table of ``examples/flores101/rehearse.sh``: what a few updates of each recipe row cost,
projected to the row's full run.

    python -m lslo_fairseq.stand_in.rehearsal --dir D --model-dir M --out PREFIX [...]

reads the measurements of :mod:`.measure` in ``D`` (one per command: the rows' ``fairseq-train`` and
``lslo-score``, building the model, ``prepare.sh``, the exports), each row's ``train.log`` (fairseq's
per-update lines at ``--log-interval 1``) and ``checkpoint_last.pt``, and prints the table and writes
it to ``PREFIX.txt``, ``PREFIX.json`` and ``PREFIX.csv``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..errors import LSLoError
from ..files import write_csv_atomic, write_json_atomic, write_text_atomic
from ..runfiles import prepared
from .measure import option, read_measures

# FLORES-101's dev split: the paper's training set, per language (section 5).
FLORES101_DEV_SENTENCES = 997


class RehearsalError(LSLoError):
    """Bad input to the rehearsal; the message names the file or option."""


# ---- train.log -------------------------------------------------------------------------------

INNER = re.compile(r"\| train_inner \| epoch (\d+):\s+\d+ / \d+ (.*)$")
TOTAL_MEMORY = re.compile(r"total memory = ([\d.]+) GB")
TRAINED = re.compile(r"num\. shared model params: ([\d,]+) \(num\. trained: ([\d,]+)\)")
LSLO_TRAINED = re.compile(r"LSLo trainable parameters: ([\d,]+) of ([\d,]+)")
AMP_OVERFLOW = re.compile(r"AMP: overflow detected|gradient overflow detected")  # fairseq's AMP / fp16 messages
AMP_SKIP = re.compile(r"AMP: skipping this batch")


def _number(text: str) -> Optional[float]:
    try:
        return float(text)
    except ValueError:
        return None


def parse_train_log(path: Path) -> dict:
    """Per-update lines, parameter counts, GPU totals and AMP overflows (each retries its batch, up to
    ``--amp-batch-retries``, then skips it) of a fairseq-train log."""
    updates, totals, overflows, skipped = [], [], 0, 0
    params = lslo = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = INNER.search(line)
            if m:
                fields = dict(kv.split("=", 1) for kv in m.group(2).split(", ") if "=" in kv)
                row = {k: _number(v) for k, v in fields.items()}
                row["epoch"] = int(m.group(1))
                updates.append(row)
                continue
            if (m := TRAINED.search(line)):
                params = (int(m.group(1).replace(",", "")), int(m.group(2).replace(",", "")))
            elif (m := LSLO_TRAINED.search(line)):
                lslo = int(m.group(1).replace(",", ""))
            elif (m := TOTAL_MEMORY.search(line)):
                totals.append(float(m.group(1)))
            elif AMP_OVERFLOW.search(line):
                overflows += 1
            elif AMP_SKIP.search(line):
                skipped += 1
    return dict(updates=updates, params=params, lslo_trainable=lslo, gpu_total_gb=totals, amp_overflows=overflows,
                amp_skipped=skipped)


def update_speed(updates: List[dict]) -> dict:
    """Seconds per update and per target token from fairseq's per-update ``wpb`` (target tokens of
    the update) and ``wps`` (target tokens per second since the previous line). Update 1 has no rate
    in fairseq's log (its ``wps`` is 0; it also holds the warm-up) and is left out when later ones exist."""
    timed = [u for u in updates if (u.get("wps") or 0) > 0 and (u.get("wpb") or 0) > 0]
    if not timed:
        return dict(measured_updates=0)
    seconds = [u["wpb"] / u["wps"] for u in timed]
    tokens = sum(u["wpb"] for u in timed)
    return dict(measured_updates=len(timed), s_per_update=sum(seconds) / len(seconds),
                target_tokens_per_update=tokens / len(timed), s_per_target_token=sum(seconds) / tokens,
                sentences_per_update=sum(u.get("bsz") or 0 for u in timed) / len(timed))


# ---- the projection --------------------------------------------------------------------------


def epoch_target_tokens(spm_model: Path, langs: Sequence[str], flores: Optional[Path]) -> dict:
    """Target tokens of one epoch of the paper's training data for ``langs`` (every direction), as
    fairseq counts them: SentencePiece pieces + ``</s>`` + the ``__tgt__`` token the task prepends.

    With ``flores``: its dev text, exactly. Without: an estimate, the shipped table's mean pieces per
    sentence per language (the mean of the others for languages it lacks) x FLORES-101's 997 dev
    sentences; the assumption is returned as text."""
    import sentencepiece as spm

    from ..data.flores101 import FLORES101_CODES, read_flores
    from ..data.multiparallel import LIBREOFFICE_LANGS, LIBREOFFICE_TSV, load_table

    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    extra = 2  # </s> and __tgt__
    per_lang: Dict[str, float] = {}
    if flores:
        dev = read_flores(flores, langs, FLORES101_CODES)["dev"]
        n = len(dev[langs[0]])
        for lang in langs:
            per_lang[lang] = sum(len(p) + extra for p in sp.encode(dev[lang], out_type=str)) / n
        source = f"{flores}: dev, {n} sentences per language, encoded with {spm_model}"
        estimated = []
    else:
        n = FLORES101_DEV_SENTENCES
        have = [l for l in langs if l in LIBREOFFICE_LANGS]
        if not have:
            raise RehearsalError(f"the shipped table has none of {', '.join(langs)}; give FLORES")
        table = load_table(LIBREOFFICE_TSV, have)
        for lang in have:
            rows = table[lang]
            per_lang[lang] = sum(len(p) + extra for p in sp.encode(rows, out_type=str)) / len(rows)
        estimated = [l for l in langs if l not in per_lang]
        mean = sum(per_lang.values()) / len(per_lang)
        for lang in estimated:
            per_lang[lang] = mean
        source = (f"estimate: mean target tokens per sentence of the shipped table ({LIBREOFFICE_TSV.name}, "
                  f"{len(table[have[0]])} rows of software-interface text, its English rows about 9 words against "
                  f"FLORES's 21) encoded with {spm_model}"
                  + (f"; {', '.join(estimated)} not in it: the mean of the others" if estimated else "")
                  + f"; x {n} sentences (FLORES-101 dev) per direction")
    directions = len(langs) * (len(langs) - 1)
    # every language is the target of len(langs) - 1 directions
    total = sum(per_lang[l] * n * (len(langs) - 1) for l in langs)
    return dict(target_tokens=round(total), directions=directions, sentences_per_direction=n,
                tokens_per_sentence={l: round(v, 2) for l, v in per_lang.items()}, source=source,
                estimated_langs=estimated, exact=bool(flores))


# ---- the report ------------------------------------------------------------------------------


def paper_params(table: Optional[str], row: Optional[str]) -> Optional[str]:
    from ..evaluation.paper import tables

    try:
        value = tables()[table]["rows"][row]["params"]
    except (KeyError, TypeError):
        return None
    return None if value in ("-", "") else value


def within_printed(count: int, printed: Optional[str]) -> Optional[bool]:
    """Whether ``count`` rounds to the paper's printed #Params (e.g. ``15.3M``: within 0.05M)."""
    if not printed or not printed.endswith("M"):
        return None
    text = printed[:-1]
    half_unit = 0.5 * 10 ** -len(text.partition(".")[2])
    return abs(count / 1e6 - float(text)) <= half_unit + 1e-9


def _size(n: Optional[float]) -> str:
    """Bytes as GB or MB (10^9, 10^6)."""
    if n is None:
        return "-"
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def _hours(s: Optional[float]) -> str:
    return "-" if s is None else (f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min")


def groups_of(step: str, measures: List[dict]) -> str:
    """The row's language groups (``--lang-groups`` of its evaluation, else ``--lslo-lang-groups`` of
    its training; ``lang12`` for Ft-all alone): the projection's languages."""
    for label, flag in (("eval", "--lang-groups"), ("train", "--lslo-lang-groups")):
        for m in measures:
            if m["step"] == step and m["label"] == label and option(m["argv"], flag):
                return option(m["argv"], flag)
    return "lang12"


def langs_of(spec: str) -> List[str]:
    from ..config import parse_lang_groups
    from ..groups import PRESETS

    return list(PRESETS[spec]) if spec in PRESETS else list(parse_lang_groups(spec))


def row_report(step: str, measures: List[dict], gpu: bool, epochs: int, basis: dict) -> dict:
    train = [m for m in measures if m["step"] == step and m["label"] == "train"]
    evals = [m for m in measures if m["step"] == step and m["label"] == "eval"]
    out = dict(row=step)
    if any(m["returncode"] != 0 for m in train + evals):
        out["failed"] = True
    if evals:
        argv = evals[-1]["argv"]
        table, _, name = (option(argv, "--paper") or "").partition(":")
        out.update(name=option(argv, "--name"), table=table or None)
        pairs = [p for p in (option(argv, "--pairs") or "").split(",") if p]
        data = option(argv, "--data-dir")
        test_rows = None
        if data and (Path(data) / prepared.FILENAME).is_file():
            test_rows = prepared.load(data)["rows"]["test"]
        out.update(eval_s=evals[-1]["wall_s"], eval_peak_rss_bytes=evals[-1]["peak_rss_bytes"],
                   eval_directions=len(pairs), eval_sentences=None if test_rows is None else test_rows * len(pairs),
                   eval_gpu_used_rise_mib=evals[-1]["gpu_used_rise_mib"])
        out["paper_params"] = paper_params(out["table"], name or out["name"])
    if not train:
        return out
    argv = train[0]["argv"]
    save_dir = Path(option(argv, "--save-dir") or ".")
    log = parse_train_log(save_dir / "train.log") if (save_dir / "train.log").is_file() else parse_empty()
    speed = update_speed(log["updates"])
    ckpt = save_dir / "checkpoint_last.pt"
    out.update(
        arch=option(argv, "--arch"), save_dir=str(save_dir), processes=len({m["rank"] for m in train}),
        updates=int(log["updates"][-1]["num_updates"]) if log["updates"] else 0,
        epochs_touched=sorted({u["epoch"] for u in log["updates"]}),
        train_wall_s=max(m["wall_s"] for m in train),
        train_peak_rss_bytes=max(m["peak_rss_bytes"] for m in train),
        train_peak_rss_sum_bytes=sum(m["peak_rss_bytes"] for m in train),
        checkpoint_last_bytes=ckpt.stat().st_size if ckpt.is_file() else None,
        trainable_params=log["params"][1] if log["params"] else None,
        total_params=log["params"][0] if log["params"] else None,
        lslo_trainable_params=log["lslo_trainable"],
        projection_groups=basis["groups"],
        **speed)
    if out.get("trainable_params") is not None:
        out["matches_paper"] = within_printed(out["trainable_params"], out.get("paper_params"))
    if speed.get("s_per_target_token"):
        out["projected_s"] = speed["s_per_target_token"] * basis["target_tokens"] * epochs
    gpu_mem = [m["gpu_used_rise_mib"] for m in train if m.get("gpu_used_rise_mib")]
    if gpu_mem:
        out["train_gpu_used_rise_mib"] = gpu_mem[-1]
    if gpu:
        free = [u["gb_free"] for u in log["updates"] if u.get("gb_free") is not None]
        if free and log["gpu_total_gb"]:
            out["cuda_max_allocated_gb"] = round(log["gpu_total_gb"][0] - min(free), 1)
        scales = [u["loss_scale"] for u in log["updates"] if u.get("loss_scale") is not None]
        out["amp"] = (f"on: loss scale {scales[-1] if scales else '-'} at the last update; "
                      f"{log['amp_overflows']} overflow(s), each retrying its batch; {log['amp_skipped']} batch(es) skipped")
    else:
        out["amp"] = "inert on CPU (torch disables autocast there)"
    return out


def parse_empty() -> dict:
    return dict(updates=[], params=None, lslo_trainable=None, gpu_total_gb=[], amp_overflows=0, amp_skipped=0)


COLUMNS = [  # (key, header, format)
    ("row", "row", str),
    ("s_per_update", "s/update", lambda v: f"{v:.2f}"),
    ("target_tokens_per_update", "tgt tok/update", lambda v: f"{v:.0f}"),
    ("train_peak_rss_bytes", "peak RSS train", _size),
    ("eval_peak_rss_bytes", "peak RSS eval", _size),
    ("checkpoint_last_bytes", "checkpoint_last.pt", _size),
    ("trainable_params", "trainable", lambda v: f"{v:,}"),
    ("paper_params", "paper #Params", str),
    ("projected_s", "{epochs} epochs (projected)", _hours),
]


def format_table(rows: List[dict], columns=COLUMNS) -> str:
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        cells.append(["-" if r.get(k) is None else fmt(r[k]) for k, _, fmt in columns])
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in cells)


CSV_KEYS = ["row", "name", "table", "arch", "processes", "updates", "measured_updates", "s_per_update",
            "target_tokens_per_update", "s_per_target_token", "train_wall_s", "train_peak_rss_bytes",
            "train_peak_rss_sum_bytes", "cuda_max_allocated_gb", "train_gpu_used_rise_mib", "checkpoint_last_bytes",
            "trainable_params", "total_params", "paper_params", "matches_paper", "projected_s", "eval_s",
            "eval_directions", "eval_sentences", "eval_peak_rss_bytes", "amp"]


STEP_OUTPUTS = {"build": "model.pt", "prepare": None, "fold": None, "adapters": None}


def other_steps(measures: List[dict]) -> List[dict]:
    """The measured steps that are not rows: building the model, preparing the data, the exports."""
    out = []
    for m in measures:
        if m["label"] not in STEP_OUTPUTS:
            continue
        path = option(m["argv"], "--out")
        if path and STEP_OUTPUTS[m["label"]]:
            path = os.path.join(path, STEP_OUTPUTS[m["label"]])
        what = {"fold": f"lslo-export fold {option(m['argv'], '--source-lang')}-{option(m['argv'], '--target-lang')}",
                "adapters": "lslo-export adapters", "build": "build the model", "prepare": "prepare.sh"}[m["label"]]
        out.append(dict(step=what, s=m["wall_s"], peak_rss_bytes=m["peak_rss_bytes"], out=path,
                        returncode=m["returncode"],
                        out_bytes=os.path.getsize(path) if path and os.path.isfile(path) else None))
    return out


def report(a) -> dict:
    if not Path(a.dir).is_dir():
        raise RehearsalError(f"--dir: {a.dir} is not a directory of measurements")
    measures = read_measures(Path(a.dir))
    steps = list(dict.fromkeys(m["step"] for m in measures if m["label"] in ("train", "eval")))
    if not steps:
        raise RehearsalError(f"--dir: {a.dir} holds no measured row (train or eval)")
    spm_model = Path(a.model_dir) / "sentencepiece.bpe.model"
    flores = Path(a.flores) if a.flores else None
    bases: Dict[str, dict] = {}
    rows = []
    for step in steps:
        spec = groups_of(step, measures)
        if spec not in bases:
            bases[spec] = dict(groups=spec, **epoch_target_tokens(spm_model, langs_of(spec), flores))
        rows.append(row_report(step, measures, a.gpu, a.epochs, bases[spec]))
    steps_other = other_steps(measures)
    recipe_batch = a.recipe_max_tokens * a.recipe_update_freq
    rehearsal_batch = a.max_tokens * a.update_freq * a.nproc
    notes = [
        "s/update: mean over updates 2..N of fairseq's per-update target tokens (wpb) / target tokens per second "
        "(wps), --log-interval 1 (update 1 has no rate in the log and holds the warm-up; model loading, "
        "update 1 and checkpoint writing are in train_wall_s of the JSON)",
        "peak RSS: getrusage(RUSAGE_CHILDREN).ru_maxrss of each command's process tree (its largest process), "
        "fairseq-train and lslo-score apart; with several processes the JSON also sums the ranks",
        "checkpoint_last.pt: its size on disk after the updates (an adapter-only LSLo checkpoint refers to "
        "model.pt instead of holding it; Ft-all's is the whole model with its optimizer state)",
        "trainable: fairseq's 'num. trained' in train.log; paper #Params: the paper's table "
        "(lslo_fairseq/resources/paper/spbleu_tables.json)",
    ]
    for basis in bases.values():
        notes.append(f"{a.epochs} epochs ({basis['groups']}): measured s per target token x {basis['target_tokens']:,} target "
                     f"tokens per epoch ({basis['directions']} directions) x {a.epochs} epochs; {basis['source']}")
    notes += [
        f"batch: the rehearsal ran {a.nproc} process(es) x UPDATE_FREQ {a.update_freq} x MAX_TOKENS {a.max_tokens} "
        f"= {rehearsal_batch:,} tokens per update at most; the recipe's is MAX_TOKENS {a.recipe_max_tokens} x "
        f"update-freq {a.recipe_update_freq} = {recipe_batch:,} on one GPU (a small batch's per-token rate is "
        + ("close to a large one's on CPU)" if not a.gpu else "lower than a large one's on a GPU: rerun with "
           f"MAX_TOKENS={a.recipe_max_tokens} for a projection that holds)"),
        "--amp: " + ("on (the recipes pass it): loss scale and overflow-skipped updates per row"
                     if a.gpu else "inert on CPU (torch disables autocast there); nothing of mixed precision is "
                                   "measured"),
    ]
    if a.evaluated:
        notes.append(f"evaluation: {a.evaluated}")
    if any(len(r.get("epochs_touched") or []) > 1 for r in rows):
        notes.append("a row crossed an epoch boundary (N_DEV too small for the updates): its timing includes an "
                     "epoch-end checkpoint")
    result = dict(machine=machine(a.gpu), model=model_info(Path(a.model_dir)), settings=dict(
        model_dir=a.model_dir, flores=a.flores, max_tokens=a.max_tokens, update_freq=a.update_freq, nproc=a.nproc,
        recipe_max_tokens=a.recipe_max_tokens, recipe_update_freq=a.recipe_update_freq, epochs=a.epochs,
        evaluated=a.evaluated), projection=list(bases.values()), rows=rows, steps=steps_other, notes=notes)
    prefix = Path(a.out)
    write_json_atomic(str(prefix.with_suffix(".json")), result)
    write_csv_atomic(str(prefix.with_suffix(".csv")), CSV_KEYS, [[r.get(k) for k in CSV_KEYS] for r in rows])
    text = render(result)
    write_text_atomic(str(prefix.with_suffix(".txt")), text)
    print(text, end="")
    return result


def render(result: dict) -> str:
    columns = [(k, h.format(epochs=result["settings"]["epochs"]), f) for k, h, f in COLUMNS]
    lines = [f"Rehearsal on {result['machine']['summary']}", f"model: {result['model']['summary']}", "",
             format_table(result["rows"], columns), ""]
    for r in result["rows"]:
        if r.get("failed"):
            lines.append(f"{r['row']}: FAILED (see {r.get('save_dir', 'its run directory')})")
        if r.get("eval_s") is not None:
            rise = r.get("eval_gpu_used_rise_mib")
            lines.append(f"{r['row']}: evaluation {r['eval_s']:.1f} s for {r['eval_sentences']} sentences "
                         f"({r['eval_directions']} directions, beam 5)"
                         + (f", nvidia-smi rise {rise} MiB" if rise else ""))
        if (r.get("processes") or 1) > 1:
            lines.append(f"{r['row']}: {r['processes']} training processes, peak RSS summed over them "
                         f"{_size(r['train_peak_rss_sum_bytes'])} (the table: the largest)")
        if r.get("cuda_max_allocated_gb") is not None:
            lines.append(f"{r['row']}: CUDA max allocated {r['cuda_max_allocated_gb']} GB (fairseq's gb_free); "
                         f"nvidia-smi rise {r.get('train_gpu_used_rise_mib')} MiB")
        if result["machine"]["gpus"]:
            lines.append(f"{r['row']}: --amp {r.get('amp')}")
    if result["steps"]:
        lines.append("")
        lines.append(format_table(result["steps"], [
            ("step", "step", str), ("s", "s", lambda v: f"{v:.1f}"), ("peak_rss_bytes", "peak RSS", _size),
            ("out_bytes", "output", _size)]))
    lines += [""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def model_info(model_dir: Path) -> dict:
    """What the rows fine-tuned: a model built by :mod:`.release_shape` (its build.json) or a given one."""
    build = model_dir / "build.json"
    if build.is_file():
        info = json.loads(build.read_text(encoding="utf-8"))
        info["summary"] = (f"{model_dir}: random weights of the release's layout, {info['shape']} shape, "
                           f"{info['parameters']:,} parameters, dict {info['dict_entries']:,} entries + "
                           f"{info['languages']} language tokens")
        return info
    return dict(model_dir=str(model_dir), summary=f"{model_dir} (given)")


def machine(gpu: bool) -> dict:
    import platform

    info = dict(host=platform.node(), cpus=os.cpu_count(), omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
                python=platform.python_version())
    names = []
    if gpu and shutil.which("nvidia-smi"):
        names = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True).stdout.strip().splitlines()
    info["gpus"] = names
    info["summary"] = (f"{info['host']}: {info['cpus']} CPU cores (OMP_NUM_THREADS={info['omp_num_threads']})"
                       + (f", GPUs: {'; '.join(names)}" if names else ", no GPU"))
    return info


# ---- the command line ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    r = argparse.ArgumentParser(prog="python -m lslo_fairseq.stand_in.rehearsal", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--dir", required=True, help="the measurements (measure.py --dir)")
    r.add_argument("--model-dir", required=True, help="the model directory (its sentencepiece.bpe.model)")
    r.add_argument("--flores", default=None, help="real FLORES-101 (directory or .tar.gz): exact epoch tokens")
    r.add_argument("--epochs", type=int, required=True, help="the recipe's epochs")
    r.add_argument("--max-tokens", type=int, required=True, help="the rehearsal's MAX_TOKENS")
    r.add_argument("--update-freq", type=int, required=True, help="the rehearsal's UPDATE_FREQ")
    r.add_argument("--nproc", type=int, default=1, help="training processes")
    r.add_argument("--recipe-max-tokens", type=int, required=True, help="the recipe's MAX_TOKENS")
    r.add_argument("--recipe-update-freq", type=int, required=True, help="the recipe's UPDATE_FREQ on one GPU")
    r.add_argument("--gpu", action="store_true", help="the rows ran on a GPU")
    r.add_argument("--evaluated", default=None, help="what the evaluation covered, in words")
    r.add_argument("--out", required=True, help="PREFIX of PREFIX.txt, .json, .csv")
    return r


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..runner import run

    a = build_parser().parse_args(argv)
    return run("rehearsal", lambda: report(a) and None)


if __name__ == "__main__":
    sys.exit(main())
