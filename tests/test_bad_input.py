"""Bad input: every invalid option combination and input file the plugin checks, as ONE table.

Each case is run through the entry point the user meets (fairseq's own option parsing, task set-up
and model building in process, as ``fairseq-train``/``fairseq-generate`` do; the ``main`` of each
``lslo-*`` console script) and its message is asserted. ``...`` in a message stands for any text
(a path, a long list); the rest must appear verbatim. ``docs/bad-input.md`` is
rendered from this table (``python tests/test_bad_input.py > docs/bad-input.md`` writes it) and
``test_doc_is_the_case_table`` keeps the two identical.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Callable, NamedTuple, Union

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import LSLO_ARGS, TRAIN_ARGS, USER_DIR, fairseq_bin, fairseq_env, lslo_task_args  # noqa: E402
from lslo_fairseq.errors import LSLoError  # noqa: E402

DOC = Path(__file__).resolve().parent.parent / "docs" / "bad-input.md"
TITLE = "# Bad input: what is checked"


class Case(NamedTuple):
    id: str
    where: str  # the command (and flag or file) the user meets it in
    did: str  # what the user did
    message: str  # what they get; '...' = any text
    trigger: Callable  # trigger(ctx): raises, exits or returns the exit status
    error: Union[type, int]  # the exception type, or 2: exit status of a console script


# ---- triggers --------------------------------------------------------------------------------


def _edit(argv, changes=(), drop=()):
    """argv with ``changes`` ([flag, value | None, ...] pairs; None: a switch) set, ``drop`` removed."""
    argv = list(argv)
    for flag in drop:
        i = argv.index(flag)
        has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
        del argv[i:i + 1 + has_value]
    it = iter(changes)
    for flag, value in zip(it, it):
        if flag in argv and value is not None:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag] if value is None else [flag, value]
    return argv


def train_opts(*changes, drop=()):
    """fairseq-train's first steps in process: parse, set up the task, build the model."""
    def trigger(ctx):
        from fairseq import options, tasks

        argv = _edit([*lslo_task_args(ctx.data), *LSLO_ARGS, *TRAIN_ARGS, "--max-update", "2",
                      "--save-dir", str(ctx.tmp / "save")], [ctx.fmt(c) for c in changes], drop)
        args = options.parse_args_and_arch(options.get_training_parser(), argv)
        task = tasks.setup_task(args)
        task.build_model(args)
    return trigger


def generate_opts(*changes, drop=()):
    """fairseq-generate's first steps in process on the LSLo checkpoint: parse, set up the task,
    load the model (as fairseq-generate and lslo-score --generate do)."""
    def trigger(ctx):
        from fairseq import checkpoint_utils, options, tasks

        argv = _edit([*lslo_task_args(ctx.data), "--user-dir", USER_DIR, "--path", str(ctx.lslo["ckpt"]),
                      "--source-lang", "oc", "--target-lang", "ko", "--gen-subset", "test", "--cpu"],
                     [ctx.fmt(c) for c in changes], drop)
        args = options.parse_args_and_arch(options.get_generation_parser(), argv)
        task = tasks.setup_task(args)
        checkpoint_utils.load_model_ensemble([args.path], task=task)
    return trigger


def load_into(*changes):
    """fairseq-train resuming from / fine-tuning from the LSLo checkpoint with other --lslo-*
    options: build the model and load the file's state as fairseq's trainer does."""
    def trigger(ctx):
        from fairseq import options, tasks

        argv = _edit([*lslo_task_args(ctx.data), *LSLO_ARGS, *TRAIN_ARGS, "--save-dir", str(ctx.tmp / "s")],
                     changes)
        args = options.parse_args_and_arch(options.get_training_parser(), argv)
        model = tasks.setup_task(args).build_model(args)
        state = torch.load(ctx.lslo["ckpt"], map_location="cpu")
        model.load_state_dict(state["model"], strict=True, model_cfg=args)
    return trigger


def multi_process(ctx):
    """setup_task of rank 0 of a 2-process run (torch.distributed as torchrun initialises it)."""
    import torch.distributed as dist

    ctx.monkeypatch.setattr(dist, "is_initialized", lambda: True)
    ctx.monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    train_opts()(ctx)


def cli(module, *argv):
    """The console script's ``main`` with ``argv`` ({name} fields filled from ctx)."""
    def trigger(ctx):
        import importlib

        return importlib.import_module(module).main([ctx.fmt(a) for a in argv])
    return trigger


EXPORT, FLORES, SCORE, PLOT, PARAMS, DEMO = (
    "lslo_fairseq.cli.export", "lslo_fairseq.cli.prepare_flores", "lslo_fairseq.cli.score", "lslo_fairseq.cli.plot",
    "lslo_fairseq.cli.params", "lslo_fairseq.cli.demo")


def with_setup(setup, trigger):
    def both(ctx):
        setup(ctx)
        return trigger(ctx)
    return both


def write(name, content):
    """A setup that writes ``ctx.tmp/name`` (text, or a torch object when not a str)."""
    def setup(ctx):
        path = ctx.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            torch.save(content, path)
    return setup


def truncated_last(ctx):
    """A save dir as a kill during fairseq's copy to checkpoint_last.pt leaves it."""
    save = ctx.tmp / "save"
    save.mkdir()
    shutil.copyfile(ctx.lslo["mid"], save / "checkpoint_1_2.pt")
    data = Path(ctx.lslo["ckpt"]).read_bytes()
    (save / "checkpoint_last.pt").write_bytes(data[: len(data) // 2])


def full_checkpoint(path):
    """An (adapter-only) LSLo checkpoint with its frozen base put back."""
    from lslo_fairseq.layout.frozen_base import read_fairseq_checkpoint

    return read_fairseq_checkpoint(str(path), "test")


def other_base(ctx):
    """The adapters' base with one weight changed by 0.01."""
    state = full_checkpoint(ctx.lslo["ckpt"])
    key = "encoder.layers.1.fc1.base_layer.weight"
    state["model"][key] = state["model"][key] + 0.01
    torch.save(state, ctx.tmp / "other_base.pt")


def other_vocab(ctx):
    """The adapters' base with one more embedding row (another dict.txt or language list)."""
    state = full_checkpoint(ctx.lslo["ckpt"])
    emb = state["model"]["encoder.embed_tokens.weight"]
    state["model"]["encoder.embed_tokens.weight"] = torch.cat([emb, emb[:1]])
    torch.save(state, ctx.tmp / "other_vocab.pt")


def cut_adapters(ctx):
    data = Path(ctx.lslo["adapters"]).read_bytes()
    (ctx.tmp / "cut.pt").write_bytes(data[: len(data) // 2])


def adapters_other_config(ctx):
    """Python API: load_adapters into a model built with other ranks."""
    from lslo_fairseq.checkpoints import adapters
    from lslo_fairseq.checkpoints.reading import build_lslo_model, options, vocab_size
    from lslo_fairseq.layout.frozen_base import read_fairseq_checkpoint

    state = read_fairseq_checkpoint(str(ctx.lslo["ckpt"]), "x")
    model = build_lslo_model({**options(state), "lslo_ranks": "en:2,fr:2,ko:3,oc:4"},
                             vocab_size(state["model"]), "test")
    adapters.load_adapters(model, str(ctx.lslo["adapters"]))


def trimmed_dict(ctx):
    bad = ctx.tmp / "model_dir"
    shutil.copytree(ctx.lslo["model_dir"], bad)
    lines = (bad / "dict.txt").read_text().splitlines()
    (bad / "dict.txt").write_text("\n".join(lines[:-8]) + "\n")


def unrecorded_model_dir(ctx):
    """A released-format model directory whose model.pt records no langs, lang_dict or lang_pairs."""
    from released_model import untrained_checkpoint
    from lslo_fairseq.data.multiparallel import lang_pairs

    folder = ctx.tmp / "model_dir"
    folder.mkdir()
    shutil.copyfile(ctx.data["dict"], folder / "dict.txt")
    shutil.copyfile(ctx.data["spm_model"], folder / "sentencepiece.bpe.model")
    pairs = lang_pairs(ctx.data["langs"])
    (folder / "language_pairs.txt").write_text(",".join(pairs) + "\n", encoding="utf-8")
    untrained_checkpoint(folder / "model.pt", folder / "dict.txt", ctx.data["langs"], pairs, fmt="cfg", record=())


def changed_stand_in(ctx):
    """A copy of the shipped stand-in whose dict.txt has one more line."""
    from lslo_fairseq.stand_in import package

    shutil.copytree(package.STAND_IN_DIR, ctx.tmp / "stand_in")
    with open(ctx.tmp / "stand_in" / package.DICT, "a", encoding="utf-8") as f:
        f.write("extra 1\n")


def flores_without_kor(ctx):
    shutil.copytree(ctx.lslo["flores"], ctx.tmp / "flores")
    (ctx.tmp / "flores" / "devtest" / "kor.devtest").unlink()


def offline_flores(ctx):
    from lslo_fairseq.data import flores101

    ctx.monkeypatch.setattr(flores101, "FLORES101_URL", "http://127.0.0.1:9/flores101_dataset.tar.gz")


def offline_spm(ctx):
    from lslo_fairseq.evaluation import spbleu

    ctx.monkeypatch.setenv("SACREBLEU", str(ctx.tmp / "sacrebleu"))
    ctx.monkeypatch.setattr(spbleu, "FLORES101_SPM_URL", "http://127.0.0.1:9/flores101_sacrebleu_spm.model")


def counts(kind):
    rec = dict(side="encoder", layer=0, module="fc1", language="en", group="H", matrix="B", pool="en",
               n_params=8, n_pruned=4)
    return json.dumps(dict(kind=kind, ratio=0.5, records=[rec]))


def run_dir(ctx):
    """A run folder with one direction's output (for lslo-score --run)."""
    (ctx.tmp / "run").mkdir()
    (ctx.tmp / "run" / "en-fr.txt").write_text("S-0\tx\nT-0\tx\nH-0\t-0.1\tx\nD-0\t-0.1\tx\n")


# ---- the table ---------------------------------------------------------------------------------

OPT = "fairseq-train"
MODULAR_DROP = ["--lslo-encoder-index", "--lslo-decoder-index"]  # --lslo-modular sets every layer's index
GEN = "fairseq-generate --path LSLO.pt"
LOAD = "fairseq-train: the checkpoint it loads"
SPM = ["--spm", "{spm}", "--lang-groups", "en:H,fr:H,ko:M,oc:V"]

CASES = [
    # -- fairseq-train / fairseq-generate: --lslo-* and task options --------------------------------
    Case("ranks-unknown-language", OPT, "a rank for a language the task does not have",
         "--lslo-ranks: unknown language(s) ['xx']; the task's languages are ['en', 'fr', 'ko', 'oc']",
         train_opts("--lslo-ranks", "en:2,fr:2,ko:2,oc:4,xx:4"), LSLoError),
    Case("ranks-missing-language", OPT, "rank map without a language of `--langs`/`--lang-pairs`",
         "language(s) ['oc'] of --lang-pairs/--langs have no LSLo rank: add them to --lslo-ranks",
         train_opts("--lslo-ranks", "en:2,fr:2,ko:2"), LSLoError),
    Case("rank-below-1", OPT, "rank 0", "--lslo-ranks: rank of 'fr' must be >= 1, got 0",
         train_opts("--lslo-ranks", "en:2,fr:0,ko:2,oc:4"), LSLoError),
    Case("rank-not-integer", OPT, "a rank that is not an integer",
         "--lslo-ranks: rank of 'fr' must be an integer, got 'two'",
         train_opts("--lslo-ranks", "en:2,fr:two,ko:2,oc:4"), LSLoError),
    Case("ranks-syntax", OPT, "`--lslo-ranks en2,...`",
         "--lslo-ranks: expected name:rank entries like 'en:2', got 'en2'",
         train_opts("--lslo-ranks", "en2,fr:2,ko:2,oc:4"), LSLoError),
    Case("ranks-twice", OPT, "a language twice in the rank map", "--lslo-ranks: 'en' is given twice",
         train_opts("--lslo-ranks", "en:2,en:3,fr:2,ko:2,oc:4"), LSLoError),
    Case("ranks-missing", OPT, "`--arch lslo_*` without `--lslo-ranks`",
         "--lslo-ranks is required, e.g. --lslo-ranks H:2,M:2,V:8 --lslo-lang-groups lang12",
         train_opts(drop=["--lslo-ranks"]), LSLoError),
    Case("group-ranks-without-groups", OPT, "ranks per group without `--lslo-lang-groups`",
         "--lslo-ranks: 'H:2,V:4' looks like per-group ranks but --lslo-lang-groups is not set (use a "
         "preset: lang30, lang12, or a lang:group list)",
         train_opts("--lslo-ranks", "H:2,V:4"), LSLoError),
    Case("groups-unknown-language", OPT, "a group for a language the task does not have",
         "--lslo-lang-groups: unknown language(s) ['xx']; the task's languages are [...]",
         train_opts("--lslo-ranks", "H:2,V:4", "--lslo-lang-groups", "en:H,fr:H,ko:H,oc:V,xx:V"), LSLoError),
    Case("groups-bad-spec", OPT, "`--lslo-lang-groups` that is no preset, file or list",
         "--lslo-lang-groups: 'lang13' is neither a preset (lang30, lang12), an existing file, nor a list "
         "like 'en:H,fr:H,oc:V'",
         train_opts("--lslo-ranks", "H:2", "--lslo-lang-groups", "lang13"), LSLoError),
    Case("groups-file-bad-line", OPT, "a groups file with a bad line",
         "--lslo-lang-groups: .../groups.txt line 2: expected 'lang group', got 'fr H M'",
         with_setup(write("groups.txt", "en H\nfr H M\n"),
                    train_opts("--lslo-ranks", "H:2", "--lslo-lang-groups", "{tmp}/groups.txt")), LSLoError),
    Case("ranks-groups-and-languages", OPT, "ranks per group and per language mixed",
         "--lslo-ranks: ['oc'] are not groups of --lslo-lang-groups (['H', 'V']); give ranks per group or "
         "per language, not both",
         train_opts("--lslo-ranks", "H:2,oc:8", "--lslo-lang-groups", "en:H,fr:H,ko:H,oc:V"), LSLoError),
    Case("group-without-rank", OPT, "a group of a trained language has no rank",
         "--lslo-ranks: no rank for group(s) ['V'] of --lslo-lang-groups",
         train_opts("--lslo-ranks", "H:2", "--lslo-lang-groups", "en:H,fr:H,ko:H,oc:V"), LSLoError),
    Case("language-without-group", OPT, "a trained language in no group",
         "language(s) ['oc'] of --lang-pairs/--langs have no LSLo rank: add them to --lslo-lang-groups",
         train_opts("--lslo-ranks", "H:2", "--lslo-lang-groups", "en:H,fr:H,ko:H"), LSLoError),
    Case("modules-unknown", OPT, "an unknown module",
         "--lslo-modules: unknown module(s) ['fc3']; use all, fc, attn or a list of q,k,v,c-q,c-k,c-v,fc1,fc2",
         train_opts("--lslo-modules", "q,fc3"), LSLoError),
    Case("index-length", OPT, "index list length differs from the layer count",
         "--lslo-encoder-index: 3 entries for 2 encoder layers (--encoder-layers); give one per layer, a "
         "single value for all, or repeats like 'src*1,tgt'",
         train_opts("--lslo-encoder-index", "src,src,tgt"), LSLoError),
    Case("index-value", OPT, "an index other than src/tgt",
         "--lslo-decoder-index: entries must be 'src' or 'tgt' (optionally 'src*N'), got 'both'",
         train_opts("--lslo-decoder-index", "tgt,both"), LSLoError),
    Case("index-repeat", OPT, "a bad repeat count", "--lslo-encoder-index: bad repeat count in 'src*x'",
         train_opts("--lslo-encoder-index", "src*x"), LSLoError),
    Case("index-json", OPT, "a weight-learning JSON that cannot be read",
         "--lslo-encoder-index: cannot read 'encoder_index' from .../weight_learning.json: ...",
         train_opts("--lslo-encoder-index", "{tmp}/weight_learning.json"), LSLoError),
    Case("weight-learning-with-index", OPT, "`--lslo-weight-learning` with fixed indexes",
         "--lslo-weight-learning learns every layer's index; drop --lslo-encoder-index src,tgt",
         train_opts("--lslo-weight-learning", None), LSLoError),
    Case("modular-pair-without-pivot", OPT, "`--lslo-modular` with pairs that do not have the pivot",
         "--lang-pairs: --lslo-modular trains on pairs with the pivot en only (X-en trains LoRA_in(X), en-Y "
         "LoRA_out(Y)); ... have no en. Translate those by merging at generation",
         train_opts("--lslo-modular", None, drop=MODULAR_DROP), LSLoError),
    Case("modular-with-weight-learning", OPT, "`--lslo-modular` with `--lslo-weight-learning`",
         "--lslo-modular gives every layer an input (source-routed) and an output (target-routed) bank; drop "
         "--lslo-weight-learning",
         train_opts("--lslo-modular", None, "--lslo-weight-learning", None, drop=MODULAR_DROP), LSLoError),
    Case("modular-pivot-unknown", OPT, "a pivot that is not an LSLo language",
         "--lslo-pivot de: not one of the LSLo languages ['en', 'fr', 'ko', 'oc'] ...",
         train_opts("--lslo-modular", None, "--lslo-pivot", "de", drop=MODULAR_DROP), LSLoError),
    Case("train-langs-unknown", OPT, "`--lslo-train-langs` with a language without adapters",
         "--lslo-train-langs: ['xx'] are not LSLo languages (en, fr, ko, oc)",
         train_opts("--lslo-train-langs", "xx"), LSLoError),
    Case("train-langs-ise", OPT, "`--lslo-train-langs` with ISE pruning",
         "--lslo-prune ise prunes every language's adapters of a layer as one pool, so it would change the "
         "adapters that --lslo-train-langs keeps fixed; use gps or lsp",
         train_opts("--lslo-train-langs", "oc", "--lslo-prune", "ise"), LSLoError),
    Case("prune-with-weight-learning", OPT, "pruning and weight learning in one run",
         "--lslo-prune with --lslo-weight-learning: learn the indexes first, then prune with "
         "--lslo-encoder-index/--lslo-decoder-index set to the learned JSON (as the paper does)",
         train_opts("--lslo-weight-learning", None, "--lslo-prune", "ise",
                    drop=["--lslo-encoder-index", "--lslo-decoder-index"]), LSLoError),
    Case("prune-ratio-1", OPT, "pruning ratio 1 (outside [0, 1))", "--lslo-prune-ratio: must be in [0, 1), got 1.0",
         train_opts("--lslo-prune", "gps", "--lslo-prune-ratio", "1"), LSLoError),
    Case("prune-ratio-negative", OPT, "negative pruning ratio", "--lslo-prune-ratio: must be in [0, 1), got -0.1",
         train_opts("--lslo-prune", "ise", "--lslo-prune-ratio", "-0.1"), LSLoError),
    Case("fc-offset-range", OPT, "a paper-shape fc slice past the FFN's width",
         "--lslo-fc-offset: 65 + d_model 64 exceeds the encoder FFN width 128 (--encoder-ffn-embed-dim); "
         "give 0 <= START <= 64",
         train_opts("--lslo-adapter-shape", "paper", "--lslo-fc-offset", "65"), LSLoError),
    Case("fc-offset-full", OPT, "`--lslo-fc-offset` with the full adapter shape",
         "--lslo-fc-offset applies to --lslo-adapter-shape paper only (a full-shape adapter spans the whole matrix)",
         train_opts("--lslo-fc-offset", "8"), LSLoError),
    Case("alpha-zero", OPT, "`--lslo-alpha` not > 0", "--lslo-alpha: must be a finite number > 0, got 0.0",
         train_opts("--lslo-alpha", "0"), LSLoError),
    Case("prune-schedule-epochs", OPT, "E + k > T (epochs)",
         "--lslo-prune-start + --lslo-prune-duration = 10 exceeds the run's length T = 5 epochs (--max-epoch): "
         "the target ratio would never be reached",
         train_opts("--lslo-prune", "ise", "--max-epoch", "5"), LSLoError),
    Case("prune-schedule-updates", OPT, "E + k > T (updates)",
         "--lslo-prune-start + --lslo-prune-duration = 30 exceeds the run's length T = 25 updates (--max-update): ...",
         train_opts("--lslo-prune", "lsp", "--lslo-prune-unit", "update", "--lslo-prune-start", "10",
                    "--lslo-prune-duration", "20", "--max-update", "25"), LSLoError),
    Case("prune-start-negative", OPT, "E < 0", "--lslo-prune-start: must be >= 0, got -1",
         train_opts("--lslo-prune", "ise", "--lslo-prune-start", "-1"), LSLoError),
    Case("prune-duration-0", OPT, "k < 1", "--lslo-prune-duration: must be >= 1, got 0",
         train_opts("--lslo-prune", "ise", "--lslo-prune-duration", "0"), LSLoError),
    Case("prune-targets-unknown", OPT, "GPS target that is no language or group",
         "--lslo-prune-targets: 'de' is neither an LSLo language ['en', 'fr', 'ko', 'oc'] nor a group []",
         train_opts("--lslo-prune", "gps", "--lslo-prune-targets", "de"), LSLoError),
    Case("prune-targets-not-gps", OPT, "`--lslo-prune-targets` with ISE/LSP",
         "--lslo-prune-targets applies to --lslo-prune gps only (lsp prunes every language)",
         train_opts("--lslo-prune", "lsp", "--lslo-prune-targets", "en"), LSLoError),
    Case("prune-gps-without-groups", OPT, "`--lslo-prune gps` with per-language ranks, no targets",
         "--lslo-prune gps prunes the H and M groups unless --lslo-prune-targets is given, but --lslo-lang-groups "
         "is not set: give --lslo-prune-targets (languages such as en,fr, or groups)",
         train_opts("--lslo-prune", "gps"), LSLoError),
    Case("prune-matrices", OPT, "a matrix other than A/B", "--lslo-prune-matrices: A, B or A,B, got ['C']",
         train_opts("--lslo-prune", "gps", "--lslo-prune-matrices", "C"), LSLoError),
    Case("prune-kind", OPT, "an unknown pruning kind",
         "argument --lslo-prune: invalid choice: 'magnitude' (choose from ...)",
         train_opts("--lslo-prune", "magnitude"), 2),
    Case("no-encoder-langtok", OPT, "no `--encoder-langtok src`",
         "--encoder-langtok src is required: LSLo reads each sentence's source language from its __src__ "
         "token (as M2M-100 is trained)",
         train_opts(drop=["--encoder-langtok"]), LSLoError),
    Case("no-decoder-langtok", OPT, "no `--decoder-langtok`",
         "--decoder-langtok is required: LSLo reads each sentence's target language from its __tgt__ token ...",
         train_opts(drop=["--decoder-langtok"]), LSLoError),
    Case("language-not-in-task", OPT, "an LSLo language without a language token (`--lslo-langs` beyond `--langs`)",
         "--lslo-langs (given, or recorded in the checkpoint): language(s) ['de'] are not languages of the task "
         "(['en', 'fr', 'ko', 'oc'], from --langs/--lang-dict/--lang-pairs), so they have no __xx__ token; pass "
         "the language list the model was trained with",
         train_opts("--lslo-langs", "en,fr,ko,oc,de", "--lslo-ranks", "H:2,M:2,V:4", "--lslo-lang-groups",
                    "lang30"), LSLoError),
    Case("wrong-task", OPT, "`--arch lslo_*` under `--task translation_multi_simple_epoch`",
         "--task translation_multi_simple_epoch cannot run an LSLo model (--arch lslo_transformer, or a "
         "checkpoint of one): use --task translation_multi_simple_epoch_lslo (with --user-dir lslo_fairseq); ...",
         train_opts("--task", "translation_multi_simple_epoch"), LSLoError),
    Case("multi-process-load", "fairseq-train, several processes",
         "no `--load-checkpoint-on-all-dp-ranks`",
         "multi-process training needs --load-checkpoint-on-all-dp-ranks: without it rank 0 broadcasts the "
         "loaded checkpoint, which torch's weights_only loading refuses on the other ranks ...",
         multi_process, LSLoError),
    # -- fairseq-generate (and lslo-score --generate) with an LSLo checkpoint --------------------------
    Case("generate-wrong-task", GEN, "stock task `translation_multi_simple_epoch`",
         "--task translation_multi_simple_epoch cannot run an LSLo model (...): use --task "
         "translation_multi_simple_epoch_lslo ...",
         generate_opts("--task", "translation_multi_simple_epoch"), LSLoError),
    Case("generate-no-decoder-langtok", GEN, "no `--decoder-langtok`",
         "--decoder-langtok is required: LSLo reads each sentence's target language from its __tgt__ token ...",
         generate_opts(drop=["--decoder-langtok"]), LSLoError),
    Case("generate-no-encoder-langtok", GEN, "no `--encoder-langtok src`",
         "--encoder-langtok src is required: ...", generate_opts(drop=["--encoder-langtok"]), LSLoError),
    Case("generate-language-missing", GEN, "`--langs` without a language of the checkpoint",
         "--lslo-langs (given, or recorded in the checkpoint): language(s) ['oc'] are not languages of the task "
         "(['en', 'fr', 'ko'], ...; pass the language list the model was trained with",
         generate_opts("--langs", "en,fr,ko", "--lang-pairs", "en-fr,fr-ko", "--source-lang", "en"), LSLoError),
    # -- fairseq-train: the checkpoint it loads ----------------------------------------------------
    Case("restore-file-missing", LOAD, "`--restore-file` of a file that does not exist",
         "--restore-file: cannot load .../nowhere.pt: no such file (fairseq would silently start from scratch)",
         train_opts("--restore-file", "{tmp}/nowhere.pt"), LSLoError),
    Case("finetune-foreign-file", LOAD, "`--finetune-from-model` of a text file",
         "--finetune-from-model: cannot load .../dict.txt: not a PyTorch checkpoint (... bytes, starting ...)",
         train_opts("--finetune-from-model", "{dict}"), LSLoError),
    Case("finetune-not-fairseq", LOAD, "`--finetune-from-model` of a torch file without a model",
         "--finetune-from-model: cannot load .../weights.pt: a torch file but not a fairseq checkpoint (no "
         "'model' state dict; has ['weights'])",
         with_setup(write("weights.pt", {"weights": torch.zeros(2)}),
                    train_opts("--finetune-from-model", "{tmp}/weights.pt")), LSLoError),
    Case("checkpoint-last-truncated", LOAD, "rerun after a kill left a truncated `checkpoint_last.pt`",
         "--save-dir (resuming from its checkpoint_last.pt): cannot load .../checkpoint_last.pt: truncated: a "
         "zip (torch) file without its end directory (... bytes); a run killed while fairseq copied "
         "checkpoint_last.pt leaves such a file (the copy is not atomic). Resume from the newest intact "
         "checkpoint with --restore-file .../checkpoint_1_2.pt",
         with_setup(truncated_last, train_opts()), LSLoError),
    Case("checkpoint-other-ranks", LOAD, "an LSLo checkpoint trained with other ranks",
         "the checkpoint's LSLo adapters were trained with another configuration than this model's: ranks: "
         "[2, 2, 2, 4] in the checkpoint, [2, 2, 3, 4] in this model (--lslo-ranks/--lslo-lang-groups). Use the "
         "checkpoint's options, or a plain transformer checkpoint (lslo-export fold/adapters can convert it)",
         load_into("--lslo-ranks", "en:2,fr:2,ko:3,oc:4"), LSLoError),
    Case("checkpoint-other-index", LOAD, "an LSLo checkpoint trained with other indexes",
         "the checkpoint's LSLo adapters were trained with another configuration than this model's: "
         "encoder_index: ['src', 'tgt'] in the checkpoint, ['tgt', 'tgt'] in this model "
         "(--lslo-encoder-index/--lslo-weight-learning). ...",
         load_into("--lslo-encoder-index", "tgt"), LSLoError),
    Case("checkpoint-other-shape", LOAD, "an LSLo checkpoint trained in the other adapter shape",
         "the checkpoint's LSLo adapters were trained with another configuration than this model's: "
         "adapter_shape: full in the checkpoint, paper in this model (--lslo-adapter-shape). ...",
         load_into("--lslo-adapter-shape", "paper"), LSLoError),
    # -- lslo-export ---------------------------------------------------------------------------------
    Case("attach-other-base", "lslo-export attach", "adapters onto a different base",
         "lslo-export: error: .../adapters.pt: these adapters were trained on another base model than this one: "
         "1 of ... tensors have other values (e.g. encoder.layers.1.fc1.weight). Attach them to the base they "
         "were trained from",
         with_setup(other_base, cli(EXPORT, "attach", "--base", "{tmp}/other_base.pt", "--adapters", "{adapters}",
                                    "--out", "{tmp}/x.pt")), 2),
    Case("attach-other-vocabulary", "lslo-export attach", "adapters onto a base with another vocabulary",
         "lslo-export: error: .../adapters.pt: these adapters were trained on another base model than "
         ".../other_vocab.pt: its vocabulary has ... entries, the adapters' base had ... (another dict.txt or "
         "language list)",
         with_setup(other_vocab, cli(EXPORT, "attach", "--base", "{tmp}/other_vocab.pt", "--adapters",
                                     "{adapters}", "--out", "{tmp}/x.pt")), 2),
    Case("attach-merged-base", "lslo-export attach", "a folded export as `--base`",
         "lslo-export: error: --base: .../merged.pt is a folded export (oc-ko) whose weights already hold "
         "adapters; attach to the base the adapters were trained on",
         cli(EXPORT, "attach", "--base", "{merged}", "--adapters", "{adapters}", "--out", "{tmp}/x.pt"), 2),
    Case("adapters-truncated", "lslo-export attach", "a truncated adapters file",
         "lslo-export: error: --adapters: .../cut.pt cannot be read as a torch checkpoint (truncated, still being "
         "written, or not a torch file): ...",
         with_setup(cut_adapters, cli(EXPORT, "attach", "--base", "{ckpt}", "--adapters", "{tmp}/cut.pt",
                                      "--out", "{tmp}/x.pt")), 2),
    Case("adapters-is-checkpoint", "lslo-export attach", "a full checkpoint as `--adapters`",
         "lslo-export: error: --adapters: .../checkpoint_last.pt is not an LSLo adapters file (found a fairseq "
         "checkpoint); write one with lslo-export adapters --checkpoint CKPT --out FILE",
         cli(EXPORT, "attach", "--base", "{ckpt}", "--adapters", "{ckpt}", "--out", "{tmp}/x.pt"), 2),
    Case("adapters-missing", "lslo-export attach", "an adapters file that does not exist",
         "lslo-export: error: --adapters: .../missing.pt does not exist",
         cli(EXPORT, "attach", "--base", "{ckpt}", "--adapters", "{tmp}/missing.pt", "--out", "{tmp}/x.pt"), 2),
    Case("adapters-other-config", "Python `load_adapters`", "adapters into a model with other ranks",
         ".../adapters.pt: these adapters have another LSLo configuration than the model they are loaded into: "
         "ranks: [2, 2, 2, 4] in adapters file ..., [2, 2, 3, 4] in this model (--lslo-ranks/--lslo-lang-groups)",
         adapters_other_config, LSLoError),
    Case("fold-plain-checkpoint", "lslo-export fold/adapters", "a plain transformer as `--checkpoint`",
         "lslo-export: error: --checkpoint: .../merged.pt is not an LSLo checkpoint (arch 'transformer'); give "
         "the checkpoint of an LSLo run (fairseq-train --arch lslo_*)",
         cli(EXPORT, "fold", "--checkpoint", "{merged}", "-s", "oc", "-t", "ko", "--out", "{tmp}/x.pt"), 2),
    Case("fold-language-without-adapters", "lslo-export fold", "a direction with a language without adapters",
         "lslo-export: error: --source-lang: 'de' has no adapters in this checkpoint (its LSLo languages: ...",
         cli(EXPORT, "fold", "--checkpoint", "{ckpt}", "-s", "de", "-t", "ko", "--out", "{tmp}/x.pt"), 2),
    Case("fold-same-language", "lslo-export fold", "source = target",
         "lslo-export: error: --source-lang and --target-lang are both 'oc': give a direction",
         cli(EXPORT, "fold", "--checkpoint", "{ckpt}", "-s", "oc", "-t", "oc", "--out", "{tmp}/x.pt"), 2),
    Case("export-out-is-input", "lslo-export", "`--out` = an input",
         "lslo-export: error: --out .../checkpoint_last.pt is also an input; write to another file",
         cli(EXPORT, "adapters", "--checkpoint", "{ckpt}", "--out", "{ckpt}"), 2),
    Case("info-foreign", "lslo-export info", "a torch file that is no checkpoint",
         "lslo-export: error: FILE: .../weights.pt is neither a fairseq checkpoint nor an LSLo adapters file",
         with_setup(write("weights.pt", {"weights": torch.zeros(2)}), cli(EXPORT, "info", "{tmp}/weights.pt")), 2),
    # -- lslo-prepare-flores -------------------------------------------------------------------------
    Case("flores-subset-and-langs", "lslo-prepare-flores", "both `--subset` and `--langs`",
         "give exactly one of --subset (lang12, lang30) and --langs",
         cli(FLORES, "--model-dir", "{model_dir}", "--out", "{tmp}/o", "--subset", "lang12", "--langs", "en,fr"), 2),
    Case("flores-langs-without-groups", "lslo-prepare-flores", "`--langs` without `--lang-groups`",
         "--langs needs --lang-groups (e.g. 'en:H,fr:H,oc:V' or a preset) for the tables",
         cli(FLORES, "--model-dir", "{model_dir}", "--out", "{tmp}/o", "--langs", "en,fr"), 2),
    Case("flores-language-without-group", "lslo-prepare-flores", "a language in no group",
         "--lang-groups gives no group for ko",
         cli(FLORES, "--model-dir", "{model_dir}", "--out", "{tmp}/o", "--langs", "en,fr,ko",
             "--lang-groups", "en:H,fr:H"), 2),
    Case("flores-code-syntax", "lslo-prepare-flores", "`--flores-code` without `=`",
         "--flores-code: expected LANG=STEM, got 'zh'",
         cli(FLORES, "--model-dir", "{model_dir}", "--out", "{tmp}/o", "--subset", "lang12", "--flores-code", "zh"), 2),
    Case("flores-model-dir-incomplete", "lslo-prepare-flores", "`--model-dir` without the released files",
         "--model-dir: .../empty lacks model.pt, dict.txt, sentencepiece.bpe.model (expected the released "
         "flores101_mm100_615M directory: ...)",
         with_setup(lambda ctx: (ctx.tmp / "empty").mkdir(),
                    cli(FLORES, "--model-dir", "{tmp}/empty", "--out", "{tmp}/o", "--langs", "en,fr",
                        "--lang-groups", "lang12")), 2),
    Case("flores-dictionary-mismatch", "lslo-prepare-flores", "a `dict.txt` that does not fit `model.pt`",
         "dictionary mismatch: .../model.pt has ... embedding rows, but .../dict.txt (... entries with specials) "
         "+ 4 language tokens gives .... Use the dict.txt released with this checkpoint and its full language "
         "list in training order (--model-langs FILE); then pass that list to fairseq with --lang-dict and the "
         "dictionary with --fixed-dictionary (fairseq issues #3233, #4533)",
         with_setup(trimmed_dict, cli(FLORES, "--model-dir", "{tmp}/model_dir", "--out", "{tmp}/o", "--flores",
                                      "{flores}", "--langs", "en,fr", "--lang-groups", "lang12")), 2),
    Case("flores-language-order-unproven", "lslo-prepare-flores",
         "a `model.pt` that records no language list (`langs`, `lang_dict`) and no training `lang_pairs`",
         ".../model.pt records no language list (langs, lang_dict) and no training lang_pairs, so the order of its "
         "language tokens is unknown. Write the model's languages in the order of its language tokens, one per line, "
         "to a file and rerun lslo-prepare-flores with --model-langs FILE. If model.pt was trained with --lang-pairs "
         "from language_pairs.txt and neither --langs nor --lang-dict, fairseq 0.12 gave its language tokens the "
         "sorted languages of those pairs (MultilingualDatasetManager.load_langs); to accept that order run: "
         "tr -s ',[:space:]-' '\\n' < .../language_pairs.txt | grep . | LC_ALL=C sort -u > model_langs.txt && "
         "lslo-prepare-flores --model-langs model_langs.txt (with your other options) (found: cfg (fairseq >= 0.10), "
         "float32 weights, ... embedding rows, dict.txt ... entries with specials; langs: not recorded; lang_dict: "
         "not recorded; lang_pairs: not recorded)",
         with_setup(unrecorded_model_dir, cli(FLORES, "--model-dir", "{tmp}/model_dir", "--out", "{tmp}/o", "--langs",
                                              "en,fr", "--lang-groups", "lang12")), 2),
    Case("flores-language-not-in-model", "lslo-prepare-flores", "a language the model does not have",
         "languages de are not languages of .../model.pt (it has 4: en, fr, ko, oc...)",
         cli(FLORES, "--model-dir", "{model_dir}", "--out", "{tmp}/o", "--flores", "{flores}", "--langs", "en,de",
             "--lang-groups", "lang30"), 2),
    Case("flores-missing", "lslo-prepare-flores", "`--flores` that does not exist",
         "--flores: .../nowhere does not exist",
         cli(FLORES, "--model-dir", "{model_dir}", "--out", "{tmp}/o", "--flores", "{tmp}/nowhere", "--langs",
             "en,fr", "--lang-groups", "lang12"), 2),
    Case("flores-not-a-dataset", "lslo-prepare-flores", "`--flores` of another folder",
         "--flores: ... is not a FLORES-101 dataset (expected dev/<code>.dev and devtest/<code>.devtest files, "
         "as in flores101_dataset/ or its .tar.gz)",
         cli(FLORES, "--model-dir", "{model_dir}", "--out", "{tmp}/o", "--flores", "{model_dir}", "--langs",
             "en,fr", "--lang-groups", "lang12"), 2),
    Case("flores-language-file-missing", "lslo-prepare-flores", "FLORES without a language's file",
         "--flores: .../flores has no dev/devtest file for kor; it has: ...",
         with_setup(flores_without_kor, cli(FLORES, "--model-dir", "{model_dir}", "--out", "{tmp}/o", "--flores",
                                            "{tmp}/flores", "--langs", "en,ko", "--lang-groups", "lang12")), 2),
    Case("flores-offline", "lslo-prepare-flores", "no `--flores` and no network",
         "could not download FLORES-101 from ... Without a network, fetch flores101_dataset.tar.gz on another "
         "machine and pass it (or the unpacked flores101_dataset directory) with --flores PATH",
         with_setup(offline_flores, cli(FLORES, "--model-dir", "{model_dir}", "--out", "{tmp}/o", "--langs",
                                        "en,fr", "--lang-groups", "lang12")), 2),
    # -- lslo-score ----------------------------------------------------------------------------------
    Case("score-spm-missing", "lslo-score", "`--spm` that does not exist",
         "lslo-score: error: --spm: SentencePiece model .../nowhere.model does not exist",
         cli(SCORE, "--spm", "{tmp}/nowhere.model", "--lang-groups", "lang12"), 2),
    Case("score-spm-not-spm", "lslo-score", "`--spm` of another file",
         "lslo-score: error: --spm: .../dict.txt is not a SentencePiece model: ...",
         cli(SCORE, "--spm", "{dict}", "--lang-groups", "lang12"), 2),
    Case("score-spm-offline", "lslo-score", "`--spm flores101` offline, nothing cached",
         "lslo-score: error: --spm flores101: the FLORES-101 SentencePiece model is not at ... and cannot be "
         "downloaded from ...",
         with_setup(offline_spm, cli(SCORE, "--spm", "flores101", "--lang-groups", "lang12")), 2),
    Case("score-metric-unknown", "lslo-score", "`--metric` of a metric it does not have (checked first)",
         "lslo-score: error: --metric: unknown metric(s) 'bleu'; choose from spbleu, chrf++ (comma separated, "
         "e.g. --metric spbleu,chrf++)",
         cli(SCORE, "--metric", "chrf++,bleu", "--spm", "{tmp}/nowhere.model", "--lang-groups", "lang13",
             "--run", "A={tmp}/nowhere"), 2),
    Case("score-spm-needed", "lslo-score", "no `--spm` for spBLEU",
         "lslo-score: error: --spm is required with --metric spbleu (the default): give a SentencePiece model or "
         "'flores101'",
         cli(SCORE, "--lang-groups", "lang12"), 2),
    Case("score-paper-metric", "lslo-score", "`--paper` without spbleu in `--metric`",
         "lslo-score: error: --paper: the paper's rows are spBLEU; add spbleu to --metric (got chrf++)",
         with_setup(run_dir, cli(SCORE, *SPM, "--run", "A={tmp}/run", "--metric", "chrf++", "--paper", "table1")), 2),
    Case("score-lang-groups", "lslo-score", "`--lang-groups` that is no preset, file or list",
         "lslo-score: error: --lang-groups: 'lang13' is neither a preset ...",
         cli(SCORE, "--spm", "{spm}", "--lang-groups", "lang13"), 2),
    Case("score-nothing", "lslo-score", "neither `--run` nor `--generate`",
         "lslo-score: error: nothing to score: give --run NAME=DIR (repeatable) or --generate", cli(SCORE, *SPM), 2),
    Case("score-run-syntax", "lslo-score", "`--run DIR` without a name",
         "lslo-score: error: --run: expected NAME=DIR, got 'runs'", cli(SCORE, *SPM, "--run", "runs"), 2),
    Case("score-run-missing", "lslo-score", "`--run` of a folder that does not exist",
         "lslo-score: error: --run A=.../nowhere: directory .../nowhere does not exist",
         cli(SCORE, *SPM, "--run", "A={tmp}/nowhere"), 2),
    Case("score-run-empty", "lslo-score", "`--run` of a folder without outputs",
         "lslo-score: error: --run A=...: no generate outputs found in ...: expected <src>-<tgt>/generate-test.txt, "
         "generate-<src>-<tgt>.txt or <src>-<tgt>.txt",
         cli(SCORE, *SPM, "--run", "A={tmp}"), 2),
    Case("score-run-twice", "lslo-score", "one name for two runs",
         "lslo-score: error: --run: the name 'A' is used twice",
         with_setup(run_dir, cli(SCORE, *SPM, "--run", "A={tmp}/run", "--run", "A={tmp}/run")), 2),
    Case("score-run-ungrouped", "lslo-score", "a run's language in no group",
         "lslo-score: error: --run A=...: language(s) with no resource group: ko (in en-ko); add them to the "
         "language groups (e.g. 'xx:L'), known: en, fr",
         with_setup(lambda ctx: (run_dir(ctx), (ctx.tmp / "run" / "en-ko.txt").write_text("")),
                    cli(SCORE, "--spm", "{spm}", "--lang-groups", "en:H,fr:H", "--run", "A={tmp}/run")), 2),
    Case("score-paper-table", "lslo-score", "`--paper` of a table the paper has not",
         "lslo-score: error: --paper: no table 'table7'; the paper's tables here: ...",
         with_setup(run_dir, cli(SCORE, *SPM, "--run", "A={tmp}/run", "--paper", "table7")), 2),
    Case("score-paper-row", "lslo-score", "`--paper TABLE:ROW` of a row the table has not",
         "lslo-score: error: --paper: table1 has no row '2;2;9'; its rows: ...",
         with_setup(run_dir, cli(SCORE, *SPM, "--run", "A={tmp}/run", "--paper", "table1:2;2;9")), 2),
    Case("score-paper-no-match", "lslo-score", "`--paper TABLE` with no run named like a row",
         "lslo-score: error: --paper table1: no run is named like one of its rows (...); name runs after them or "
         "give TABLE:ROW",
         with_setup(run_dir, cli(SCORE, *SPM, "--run", "A={tmp}/run", "--paper", "table1")), 2),
    Case("score-extra-without-generate", "lslo-score", "fairseq arguments after `--` without `--generate`",
         "lslo-score: error: extra fairseq arguments after '--' (--beam 4) need --generate",
         with_setup(run_dir, cli(SCORE, *SPM, "--run", "A={tmp}/run", "--", "--beam", "4")), 2),
    Case("score-generate-incomplete", "lslo-score --generate", "no `--data-dir`",
         "lslo-score: error: --generate needs --data-dir",
         cli(SCORE, *SPM, "--generate", "--checkpoint", "{ckpt}", "--pairs", "en-fr", "--results-dir", "{tmp}/r"), 2),
    Case("score-checkpoint-missing", "lslo-score --generate", "`--checkpoint` that does not exist",
         "lslo-score: error: --checkpoint: .../nowhere.pt does not exist",
         cli(SCORE, *SPM, "--generate", "--data-dir", "{data_dir}", "--checkpoint", "{tmp}/nowhere.pt", "--pairs",
             "en-fr", "--results-dir", "{tmp}/r"), 2),
    Case("score-pairs-syntax", "lslo-score --generate", "a pair without `-`",
         "lslo-score: error: --pairs: bad language pair 'en_fr': expected 'src-tgt', e.g. 'en-fr'",
         cli(SCORE, *SPM, "--generate", "--data-dir", "{data_dir}", "--checkpoint", "{ckpt}", "--pairs", "en_fr",
             "--results-dir", "{tmp}/r"), 2),
    Case("score-pairs-self", "lslo-score --generate", "a pair from a language into itself",
         "lslo-score: error: --pairs: language pair en-en translates a language into itself",
         cli(SCORE, *SPM, "--generate", "--data-dir", "{data_dir}", "--checkpoint", "{ckpt}", "--pairs", "en-en",
             "--results-dir", "{tmp}/r"), 2),
    Case("score-pairs-ungrouped", "lslo-score --generate", "a pair's language in no group",
         "lslo-score: error: --pairs/--lang-groups: language(s) with no resource group: de (in en-de); ...",
         cli(SCORE, *SPM, "--generate", "--data-dir", "{data_dir}", "--checkpoint", "{ckpt}", "--pairs", "en-de",
             "--results-dir", "{tmp}/r"), 2),
    # -- lslo-plot -----------------------------------------------------------------------------------
    Case("plot-weights-missing", "lslo-plot weights", "a weights file that does not exist",
         "lslo-plot weights: error: .../weight_learning.json: no such file",
         cli(PLOT, "weights", "{tmp}/weight_learning.json", "--out", "{tmp}/f"), 2),
    Case("plot-weights-not-json", "lslo-plot weights", "a weights file that is not JSON",
         "lslo-plot weights: error: .../dict.txt: not a readable JSON file: ...",
         cli(PLOT, "weights", "{dict}", "--out", "{tmp}/f"), 2),
    Case("plot-counts-kind", "lslo-plot ise/lsp", "LSP counts given to `ise`",
         "lslo-plot ise: error: .../counts.json: kind is 'lsp', not 'ise'; use 'lslo-plot lsp'",
         with_setup(write("counts.json", counts("lsp")), cli(PLOT, "ise", "{tmp}/counts.json", "--out", "{tmp}/f")), 2),
    Case("plot-counts-record", "lslo-plot ise/lsp", "a counts record that breaks the schema",
         "lslo-plot lsp: error: .../counts.json: records[0]: n_pruned must be an integer in [0, n_params=8], got 9",
         with_setup(write("counts.json", counts("lsp").replace('"n_pruned": 4', '"n_pruned": 9')),
                    cli(PLOT, "lsp", "{tmp}/counts.json", "--out", "{tmp}/f")), 2),
    Case("plot-curves-epochs", "lslo-plot curves", "`--epochs` not matching the files of a run",
         "lslo-plot curves: error: --epochs: 1 epochs but --run A has 2 files",
         cli(PLOT, "curves", "--run", "A=a.json,b.json", "--epochs", "1", "--columns", "H2H", "--out", "{tmp}/f"), 2),
    Case("plot-curves-columns", "lslo-plot curves", "an empty `--columns`",
         "lslo-plot curves: error: --columns: give at least one column, e.g. H2H,V2V",
         cli(PLOT, "curves", "--run", "A=a.json", "--columns", ",", "--out", "{tmp}/f"), 2),
    # -- lslo-params ---------------------------------------------------------------------------------
    Case("params-arch", "lslo-params", "a non-LSLo `--arch`",
         "lslo-params: error: --arch: 'transformer' is not an lslo_transformer architecture",
         cli(PARAMS, "--arch", "transformer", "--lslo-ranks", "en:2"), 2),
    # -- lslo-demo -----------------------------------------------------------------------------------
    Case("demo-stand-in-changed", "lslo-demo", "a stand-in file that does not match its recorded SHA-256",
         "lslo-demo: error: .../stand_in/dict.txt is corrupted or changed: SHA-256 ..., expected ... (from "
         ".../stand_in/SHA256SUMS); restore it (git checkout) or rebuild with `bash scripts/rebuild-stand-in.sh`",
         with_setup(changed_stand_in, cli(DEMO, "--quick", "--stand-in", "{tmp}/stand_in", "--out", "{tmp}/d")), 2),
    Case("demo-stand-in-folder", "lslo-demo --stand-in", "a folder that does not exist",
         "lslo-demo: error: --stand-in .../nowhere: no such folder",
         cli(DEMO, "--stand-in", "{tmp}/nowhere", "--out", "{tmp}/d"), 2),
    Case("demo-updates", "lslo-demo --updates", "0 updates",
         "lslo-demo: error: --updates must be >= 1, got 0", cli(DEMO, "--updates", "0", "--out", "{tmp}/d"), 2),
]


# ---- running a case ------------------------------------------------------------------------------


# the fields of ``lslo_files`` that ``Ctx.fmt`` fills in
LSLO_FIELDS = ("ckpt", "adapters", "merged", "model_dir", "flores")


class Ctx:
    """What a trigger may use: the tiny data, the shared LSLo files (built on first use: only in
    cases marked slow, see ``needs_lslo_files``), a fresh folder and monkeypatch; ``fmt`` fills
    ``{tmp}``, ``{ckpt}``, ``{dict}`` ... in an argument."""

    def __init__(self, request, tmp, monkeypatch):
        self.request, self.tmp, self.monkeypatch = request, tmp, monkeypatch

    @property
    def data(self):
        return self.request.getfixturevalue("tiny_data")

    @property
    def lslo(self):
        assert self.request.node.get_closest_marker("slow"), \
            "this case uses lslo_files (a trained checkpoint) but is not marked slow: see needs_lslo_files"
        return self.request.getfixturevalue("lslo_files")

    def fmt(self, arg):
        if not isinstance(arg, str) or "{" not in arg:
            return arg
        fields = dict(tmp=self.tmp, dict=self.data["dict"], spm=self.data["spm_model"],
                      data_dir=self.data["data_dir"])
        if any(f"{{{k}}}" in arg for k in LSLO_FIELDS):
            fields.update({k: self.lslo[k] for k in LSLO_FIELDS})
        return arg.format(**fields)


@pytest.fixture(scope="module")
def lslo_files(lslo_run, tiny_data, tmp_path_factory):
    """The session's standard tiny LSLo run (``lslo_run``, conftest.py; copies of its last and
    update-8 checkpoints, so that no case can alter the shared run) and what the cases derive from
    it: its adapters file, a merged oc-ko export, a released-format model directory and a
    FLORES-101 folder."""
    from flores_fixture import make_flores_dataset, make_model_dir
    from lslo_fairseq.cli.export import main as export_main

    root = tmp_path_factory.mktemp("bad_input")
    (root / "save").mkdir()
    files = dict(ckpt=root / "save" / "checkpoint_last.pt", mid=root / "save" / lslo_run["mid"].name,
                 adapters=root / "adapters.pt", merged=root / "merged.pt")
    shutil.copyfile(lslo_run["ckpt"], files["ckpt"])
    shutil.copyfile(lslo_run["mid"], files["mid"])
    assert export_main(["adapters", "--checkpoint", str(files["ckpt"]), "--out", str(files["adapters"])]) == 0
    assert export_main(["fold", "--checkpoint", str(files["ckpt"]), "-s", "oc", "-t", "ko",
                        "--out", str(files["merged"])]) == 0
    files["model_dir"] = make_model_dir(root / "model", tiny_data, files["merged"])
    files["flores"] = make_flores_dataset(root, tiny_data["langs"], n_dev=4, n_devtest=4)
    return files


def needs_lslo_files(obj, _seen=None) -> bool:
    """Whether a case's trigger (or setup) uses ``lslo_files``, which needs a trained checkpoint: it
    reads ``ctx.lslo`` or formats one of LSLO_FIELDS. Follows closures (the arguments given to
    ``cli``, ``train_opts`` ...), nested functions and the functions of this module it calls."""
    seen = set() if _seen is None else _seen  # functions already followed (calls may recurse)
    if isinstance(obj, str):
        return any(f"{{{k}}}" in obj for k in LSLO_FIELDS)
    if isinstance(obj, (tuple, list)):
        return any(needs_lslo_files(x, seen) for x in obj)
    if not isinstance(obj, types.FunctionType) or obj in seen:
        return False
    seen.add(obj)
    cells = [c.cell_contents for c in obj.__closure__ or ()]
    return _code_needs_lslo_files(obj.__code__, obj.__globals__, seen) or needs_lslo_files(cells, seen)


def _code_needs_lslo_files(code, module_globals, seen) -> bool:
    if "lslo" in code.co_names:  # ctx.lslo
        return True
    for const in code.co_consts:
        if isinstance(const, types.CodeType) and _code_needs_lslo_files(const, module_globals, seen):
            return True  # a nested function (the trigger train_opts returns ...) or a lambda
        if isinstance(const, str) and needs_lslo_files(const, seen):
            return True
    called = (module_globals.get(name) for name in code.co_names)
    return any(isinstance(f, types.FunctionType) and f.__globals__ is module_globals and needs_lslo_files(f, seen)
               for f in called)


def case_param(case: Case):
    """The case as a pytest parameter, marked slow when it needs the trained LSLo files."""
    return pytest.param(case, id=case.id, marks=[pytest.mark.slow] if needs_lslo_files(case.trigger) else [])


def pattern(message: str) -> str:
    """The message as a regex: literal text, '...' = any text."""
    return ".*?".join(re.escape(part) for part in message.split("..."))


def outcome(case: Case, ctx: Ctx, capsys):
    """(error type or exit status, message) of running the case."""
    capsys.readouterr()
    try:
        status = case.trigger(ctx)
    except SystemExit as e:
        status = e.code
    except Exception as e:  # noqa: BLE001 - the case says which type it expects
        return e, str(e)
    return status, capsys.readouterr().err


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", [case_param(c) for c in CASES])
def test_bad_input_gives_its_message(case, request, tmp_path, monkeypatch, capsys):
    got, message = outcome(case, Ctx(request, tmp_path, monkeypatch), capsys)
    if isinstance(case.error, int):
        assert got == case.error, f"expected exit status {case.error}, got {got!r}: {message}"
    else:
        assert isinstance(got, case.error), f"expected {case.error.__name__}, got {got!r}: {message}"
    assert re.search(pattern(case.message), message, re.S), f"\nexpected: {case.message}\ngot:      {message}"


# ---- one real subprocess: the message reaches the user before any data is loaded -------------


@pytest.mark.slow
def test_generate_with_the_stock_task_fails_before_loading_data(lslo_files, tiny_data, tmp_path):
    """fairseq-generate of an LSLo checkpoint under the stock task used to fail at the first batch
    with a RoutingError traceback; now it stops at model loading, naming --task."""
    argv = [*lslo_task_args(tiny_data), "--user-dir", USER_DIR, "--path", str(lslo_files["ckpt"]),
            "--source-lang", "oc", "--target-lang", "ko", "--gen-subset", "test", "--cpu"]
    argv[argv.index("--task") + 1] = "translation_multi_simple_epoch"
    proc = subprocess.run([fairseq_bin("fairseq-generate"), *argv], capture_output=True, text=True,
                          env=fairseq_env(), timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(pattern(CASES[[c.id for c in CASES].index("generate-wrong-task")].message), out), out[-3000:]
    assert "examples" not in out and "RoutingError" not in out  # no data loaded, no batch run


# ---- docs/bad-input.md is this table -----------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def rendered_doc() -> str:
    """docs/bad-input.md, rendered from CASES."""
    lines = [
        TITLE,
        "",
        "Every check below stops the command before it trains, translates or writes anything, and names",
        "the flag or file at fault. `...` stands for text left out here (paths, long lists). The `lslo-*`",
        "commands print the message and exit with status 2; `fairseq-train` and `fairseq-generate` stop",
        "with it as the last line of their output (`LSLoConfigError: ...` or another subclass of",
        "`lslo_fairseq.errors.LSLoError`). Each row is a case of `tests/test_bad_input.py`, which runs it",
        "through that command's own entry point and checks the message",
        "(`python tests/test_bad_input.py > docs/bad-input.md` writes this page).",
        "",
        "| where | what you did | what you get |",
        "|---|---|---|",
    ]
    for c in CASES:
        lines.append(f"| {_cell(c.where)} | {_cell(c.did)} | `{_cell(c.message)}` |")
    return "\n".join(lines) + "\n"


def test_doc_is_the_case_table():
    assert DOC.is_file(), f"{DOC} is missing; write it with python {__file__} > {DOC}"
    assert DOC.read_text(encoding="utf-8") == rendered_doc(), f"{DOC} differs; rewrite it with python {__file__} > {DOC}"


if __name__ == "__main__":
    print(rendered_doc(), end="")
