"""The fine-tuning and translation runs of ``lslo-demo`` (the main table, :mod:`.demo`, and
``--modular``, :mod:`.demo_modular`): one :class:`Run` per model, its fairseq-train command from the
stand-in, and the cached training and translation of a run (skipped when the same command already
finished).
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ..data.commands import fairseq_bin, task_args
from ..errors import LSLoError
from ..files import write_json_atomic
from ..shapes import PRENORM_SHARED_ARGS, shape_args
from ..stand_in import package
from ..stand_in.build import LANGS
from . import progress

# The paper trains Ft-all with lr 1e-4 and LSLo with 3e-3 (section 5). Adam's step moves each weight
# by about lr, and the change of a layer's output grows with its width; the stand-in is 4 times
# narrower than M2M-124 615M (256 vs 1024), so Ft-all gets 4 x 1e-4 (the 1/width rule of muP).
# LSLo's delta B A has a width-independent rank, so it keeps the paper's 3e-3.
FT_ALL_LR = 1e-4 * 1024 / 256
LSLO_LR = 3e-3

# Hypotheses of at most 1.2 x source + 10 tokens (interface strings are short).
GENERATION_LIMITS = ["--max-len-a", "1.2", "--max-len-b", "10", "--batch-size", "128",
                     "--max-source-positions", "256", "--max-target-positions", "256"]


@dataclass
class Run:
    """One row of the table: how its model is made, and where its files go."""

    name: str
    key: str  # folder name
    task: str
    train: Optional[List[str]] = None  # fairseq-train options after the common ones; None = the stand-in
    lr: float = 0.0
    checkpoint: str = ""
    trainable: Optional[int] = None
    extra: Dict = field(default_factory=dict)


def model_args(manifest: dict) -> List[str]:
    """The stand-in's shape (from its manifest), pre-norm, shared embeddings, positions, dropout."""
    r = manifest["recipe"]
    return [*shape_args(r["layers"], r["dim"], r["ffn"], r["heads"]), *PRENORM_SHARED_ARGS,
            "--max-source-positions", "256", "--max-target-positions", "256",
            "--dropout", str(r["dropout"]), "--attention-dropout", str(r["dropout"])]


def train_options(data_dir: str, pairs: List[str], s: Dict, save_dir: str, lr: float, seed: int) -> List[str]:
    """The FLORES-101 recipes' fine-tuning settings (``examples/flores101/lib.sh``, the authors'
    published command) at the demo's scale: temperature sampling 5, label smoothing 0.2, Adam (0.9,
    0.98) with eps 1e-8, inverse-sqrt from the first update (warm-up 1), no layerdrop; a fixed number
    of updates instead of 15 epochs, no validation (the table is the evaluation)."""
    return [data_dir, *task_args(data_dir, LANGS, pairs)[2:],
            "--sampling-method", "temperature", "--sampling-temperature", "5.0",
            "--optimizer", "adam", "--adam-eps", "1e-08", "--adam-betas", "(0.9, 0.98)", "--lr", str(lr),
            "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "1",
            "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.2",
            "--max-tokens", str(s["max_tokens"]), "--max-update", str(s["updates"]), "--seed", str(seed),
            "--cpu", "--num-workers", "0", "--save-dir", save_dir, "--no-epoch-checkpoints",
            "--save-interval-updates", str(s["updates"]), "--disable-validation",
            "--log-format", "simple", "--log-interval", "5", "--keep-interval-updates", "1",
            "--required-batch-size-multiple", "1"]


def lslo_options(extra: List[str]) -> List[str]:
    """The authors' LSLo (paper shape and init) with the lang12 resource groups."""
    return ["--user-dir", package.user_dir(), "--task", "translation_multi_simple_epoch_lslo",
            "--arch", "lslo_transformer", "--lslo-lang-groups", "lang12",
            "--lslo-adapter-shape", "paper", "--lslo-init", "paper", *extra]


def trainable_from_log(lines: List[str], log_path: str) -> int:
    """fairseq-train's own count: ``num. shared model params: N (num. trained: T)``."""
    for line in lines:
        m = re.search(r"num\. shared model params: [\d,]+ \(num\. trained: ([\d,]+)\)", line)
        if m:
            return int(m.group(1).replace(",", ""))
    raise LSLoError(f"{log_path}: fairseq-train printed no parameter count")


def train_run(run: Run, a, s, data: Dict, stand_in: Dict, out: str, manifest: dict,
              start: Optional[str] = None) -> None:
    """fairseq-train of one row from the stand-in (or from the checkpoint ``start``); skipped when the
    same command already finished (its trainable count and command are kept in ``trainable.json``)."""
    save = os.path.join(out, run.key)
    run.checkpoint = os.path.join(save, "checkpoint_last.pt")
    log = os.path.join(out, "logs", f"train_{run.key}.log")
    done = os.path.join(save, "trainable.json")
    extra = list(run.train)
    if run.extra.get("learned"):
        wl = os.path.join(out, "wl", "weight_learning.json")
        extra += ["--lslo-encoder-index", wl, "--lslo-decoder-index", wl]
    options = train_options(data["dir"], data["pairs"], s, save, run.lr, a.seed)
    if run.extra.get("validate"):  # weight learning writes its file when validation begins
        options[options.index("--disable-validation")] = "--validate-interval-updates"
        options.insert(options.index("--validate-interval-updates") + 1, str(s["updates"]))
    cmd = [fairseq_bin("fairseq-train"), *options,
           *extra, *model_args(manifest), "--finetune-from-model", str(start or stand_in[package.CHECKPOINT])]
    record = read_json_or_none(done)
    if a.force or not os.path.exists(run.checkpoint) or record is None or record.get("command") != cmd:
        if os.path.isdir(save):  # a changed command starts again: fairseq would resume the old run
            shutil.rmtree(save)
        lines = progress.run_logged(cmd, log, f"train {run.name}", s["updates"], a.verbose)
        record = {"trainable": trainable_from_log(lines, log), "command": cmd}
        write_json_atomic(done, record)
    run.trainable = record["trainable"]


def read_json_or_none(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def generate_run(run: Run, a, data: Dict, test_data: Dict, out: str) -> str:
    """Translation (beam ``--beam``) of the test rows of ``test_data``'s directions (the task knows all
    of ``data``'s, as in training)."""
    from ..evaluation import generation  # deferred: imports fairseq

    results = os.path.join(out, "generate", run.key)
    done = os.path.join(results, "done.json")
    subset, options = run.extra.get("subset", "test"), list(run.extra.get("generate", []))
    record = {"checkpoint_sha256": package.sha256(run.checkpoint), "pairs": test_data["pairs"], "beam": a.beam,
              "subset": subset, "options": options}
    if a.force or read_json_or_none(done) != record:
        with progress.bar(f"translate {run.name}", len(test_data["pairs"]), "directions", a.verbose) as b, \
                progress.logs_to(os.path.join(out, "logs", f"generate_{run.key}.log"), a.verbose):
            generation.generate_all_directions(
                data["dir"], run.checkpoint, test_data["pairs"], results, package.user_dir(),
                extra_args=task_args(data["dir"], LANGS, data["pairs"])[2:] + GENERATION_LIMITS + options,
                beam=a.beam, gen_subset=subset, task=run.task, progress=lambda *_: b.update(1))
        write_json_atomic(done, record)
    return results
