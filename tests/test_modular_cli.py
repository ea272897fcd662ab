"""Modular fine-tuning through fairseq's CLIs: English-centric training, zero-shot directions by
merging at generation and in the folded export, a language added later with
``--lslo-train-langs``, and the options refused before training."""
import subprocess
from pathlib import Path

import pytest
import torch

from helpers import (TINY_ARCH_ARGS, TRAIN_ARGS, USER_DIR, assert_same_hypotheses, fairseq_bin, fairseq_env,
                     lslo_task_args, read_hypotheses, run_fairseq, task_args)
from lslo_fairseq.checkpoints.reading import options
from lslo_fairseq.layout.frozen_base import read_fairseq_checkpoint
from lslo_fairseq.cli.export import main as export_main

MODULAR = ["--user-dir", USER_DIR, "--arch", "lslo_transformer", *TINY_ARCH_ARGS, "--lslo-modular",
           "--lslo-ranks", "en:2,fr:2,ko:2,oc:2"]
OLD_PAIRS = "en-fr,fr-en,en-ko,ko-en"


def train_args(data, save, pairs, extra):
    args = lslo_task_args(data)
    args[args.index("--lang-pairs") + 1] = pairs
    return [*args, *MODULAR, *TRAIN_ARGS, "--save-dir", str(save), *extra]


def generate(data, checkpoint, src, tgt, out, extra=(), plugin=True):
    args = [*lslo_task_args(data), "--user-dir", USER_DIR] if plugin else task_args(data)
    run_fairseq("fairseq-generate", [
        *args, "--path", checkpoint, "--source-lang", src, "--target-lang", tgt, "--gen-subset", "test",
        "--beam", "5", "--required-batch-size-multiple", "1", "--max-len-b", "20", "--cpu",
        "--results-path", out, *extra], Path(out).with_suffix(".log"))
    return read_hypotheses(Path(out) / "generate-test.txt")


@pytest.fixture(scope="module")
def modular_runs(tiny_data, tiny_base_checkpoint, tmp_path_factory):
    """old: en<->fr, en<->ko for 12 updates (oc has no adapters); new: oc added from old with
    --lslo-train-langs oc (weight decay on, so that only the restore keeps the others fixed)."""
    root = tmp_path_factory.mktemp("modular")
    run_fairseq("fairseq-train", train_args(tiny_data, root / "old", OLD_PAIRS, [
        "--lslo-langs", "en,fr,ko", "--finetune-from-model", str(tiny_base_checkpoint), "--max-update", "12"]),
        root / "old.log")
    run_fairseq("fairseq-train", train_args(tiny_data, root / "new", "en-oc,oc-en", [
        "--lslo-langs", "en,fr,ko,oc", "--lslo-train-langs", "oc", "--weight-decay", "0.1",
        "--finetune-from-model", str(root / "old" / "checkpoint_last.pt"), "--max-update", "8"]),
        root / "new.log")
    return dict(root=root, old=root / "old" / "checkpoint_last.pt", new=root / "new" / "checkpoint_last.pt",
                old_log=(root / "old.log").read_text(), new_log=(root / "new.log").read_text())


@pytest.mark.slow
def test_pivot_adapters_train_on_copies_and_move_the_pivot_directions(tiny_data, tiny_base_checkpoint, tmp_path):
    """--lslo-pivot-rank 2 with en-en copies: both English adapters train (their B leave zero), the other
    languages' as without them; fr->en then depends on the merge weights (LoRA_out(en) joins), which it does
    not without English adapters. Missing copies, or copies without the rank, are refused before training."""
    import os

    from lslo_fairseq.data.multiparallel import add_copy_pair

    data = dict(tiny_data, data_dir=str(tmp_path / "data"))
    os.makedirs(data["data_dir"])
    for name in os.listdir(tiny_data["data_dir"]):
        os.symlink(os.path.join(tiny_data["data_dir"], name), os.path.join(data["data_dir"], name))
    assert add_copy_pair(data["data_dir"], "en") == ["test", "train", "valid"]
    base = ["--lslo-langs", "en,fr,ko", "--finetune-from-model", str(tiny_base_checkpoint), "--max-update", "8"]
    out = fails(["fairseq-train", *train_args(data, tmp_path / "x", OLD_PAIRS, [*base, "--lslo-pivot-rank", "2"])])
    assert "--lslo-pivot-rank 2: the pivot's adapters train on en-en copies; add en-en to --lang-pairs" in out
    out = fails(["fairseq-train", *train_args(data, tmp_path / "x", OLD_PAIRS + ",en-en", base)])
    assert "--lang-pairs: en-en trains the pivot's own adapters, which exist with --lslo-pivot-rank R > 0" in out
    run_fairseq("fairseq-train", train_args(data, tmp_path / "ckpt", OLD_PAIRS + ",en-en",
                                            [*base, "--lslo-pivot-rank", "2"]), tmp_path / "train.log")
    ckpt = str(tmp_path / "ckpt" / "checkpoint_last.pt")
    state = read_fairseq_checkpoint(ckpt, "--path")["model"]
    langs, ranks = ["en", "fr", "ko"], [2, 2, 2]
    got, _ = blocks(state, langs, ranks)
    for bank in ("in", "out"):
        en_b = [v for (k, lang), v in got.items() if lang == "en" and k.endswith(f"lora_B_{bank}")]
        assert en_b and any(v.abs().max() > 0 for v in en_b), f"LoRA_{bank}(en) did not train"
    one = generate(data, ckpt, "fr", "en", tmp_path / "in", ["--lslo-merge-weights", "1,0"])
    other = generate(data, ckpt, "fr", "en", tmp_path / "out", ["--lslo-merge-weights", "0.2,0.8"])
    assert one != other


def blocks(state, langs, ranks):
    """{(tensor key, language): its block} of every adapter tensor, and the other tensors."""
    out, other, at = {}, {}, {}
    pos = 0
    for lang, r in zip(langs, ranks):
        at[lang] = (pos, pos + r)
        pos += r
    for key, value in state.items():
        leaf = key.split(".")[-1]
        if leaf.startswith("lora_"):
            for lang, (lo, hi) in at.items():
                out[(key, lang)] = value[lo:hi] if "_A" in leaf else value[:, lo:hi]
        elif key != "lslo_layout":
            other[key] = value
    return out, other


@pytest.mark.slow
def test_adding_a_language_leaves_every_old_tensor_and_hypothesis_unchanged(modular_runs, tiny_data, tmp_path):
    assert "languages ['oc'] added" in modular_runs["new_log"]
    old = torch.load(modular_runs["old"], map_location="cpu")["model"]
    new = torch.load(modular_runs["new"], map_location="cpu")["model"]
    old_blocks, old_other = blocks(old, ["en", "fr", "ko"], [0, 2, 2])
    new_blocks, new_other = blocks(new, ["en", "fr", "ko", "oc"], [0, 2, 2, 2])
    assert old_other.keys() == new_other.keys()
    for key, value in old_other.items():
        assert torch.equal(value, new_other[key]), key
    for key, value in old_blocks.items():
        assert torch.equal(value, new_blocks[key]), key
    trained_oc = [v for (k, lang), v in new_blocks.items() if lang == "oc" and "lora_B" in k and "mask" not in k]
    assert trained_oc and all(v.abs().max() > 0 for v in trained_oc)  # oc's adapters did train
    for src, tgt in (("fr", "ko"), ("ko", "en")):
        before = generate(tiny_data, modular_runs["old"], src, tgt, tmp_path / f"old-{src}-{tgt}")
        after = generate(tiny_data, modular_runs["new"], src, tgt, tmp_path / f"new-{src}-{tgt}")
        assert {i: h["tokens"] for i, h in before.items()} == {i: h["tokens"] for i, h in after.items()}
        assert all(before[i]["score"] == after[i]["score"] for i in before)
    assert generate(tiny_data, modular_runs["new"], "oc", "fr", tmp_path / "new-oc-fr")  # the new language merges


@pytest.mark.slow
@pytest.mark.parametrize("merge,weights", [("outputs", "0.3,0.7"), ("ab", "0.5,0.5")])
def test_merged_export_equals_merging_on_the_fly(modular_runs, tiny_data, tmp_path, merge, weights):
    opts = ["--lslo-merge", merge, "--lslo-merge-weights", weights]
    on_the_fly = generate(tiny_data, modular_runs["old"], "fr", "ko", tmp_path / "fly", opts)
    out = tmp_path / "fr-ko.pt"
    assert export_main(["fold", "--checkpoint", str(modular_runs["old"]), "-s", "fr", "-t", "ko",
                        "--out", str(out), *opts]) == 0
    exported = generate(tiny_data, out, "fr", "ko", tmp_path / "stock", plugin=False)
    assert_same_hypotheses(on_the_fly, exported)
    other = generate(tiny_data, modular_runs["old"], "fr", "ko", tmp_path / "other", ["--lslo-merge-weights", "1,0"])
    assert {i: h["tokens"] for i, h in other.items()} != {i: h["tokens"] for i, h in on_the_fly.items()} \
        or any(abs(other[i]["score"] - on_the_fly[i]["score"]) > 1e-3 for i in other)  # the weights matter


def fails(argv):
    proc = subprocess.run([fairseq_bin(argv[0]), *map(str, argv[1:])], capture_output=True, text=True,
                          env=fairseq_env(), timeout=300)
    assert proc.returncode != 0
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_pairs_without_the_pivot_are_refused_naming_lang_pairs(tiny_data, tmp_path):
    out = fails(["fairseq-train", *train_args(tiny_data, tmp_path / "x", "en-fr,fr-ko", ["--max-update", "1"])])
    assert "--lang-pairs: --lslo-modular trains on pairs with the pivot en only" in out and "fr-ko" in out
    assert not (tmp_path / "x" / "checkpoint_last.pt").exists()


@pytest.mark.slow
def test_generation_refuses_ab_with_unequal_ranks_and_merge_options_on_other_models(
        modular_runs, lslo_run, tiny_data, tmp_path, tiny_base_checkpoint):
    # unequal ranks: a model with oc rank 4 (one update is enough)
    run_fairseq("fairseq-train", train_args(tiny_data, tmp_path / "u", OLD_PAIRS + ",en-oc,oc-en", [
        "--lslo-ranks", "en:2,fr:2,ko:2,oc:4", "--finetune-from-model", str(tiny_base_checkpoint),
        "--max-update", "1"]), tmp_path / "u.log")  # oc's rank differs (the last --lslo-ranks wins)
    base = [*lslo_task_args(tiny_data), "--user-dir", USER_DIR, "--gen-subset", "test", "--cpu",
            "--source-lang", "fr", "--target-lang", "oc"]
    out = fails(["fairseq-generate", *base, "--path", tmp_path / "u" / "checkpoint_last.pt", "--lslo-merge", "ab"])
    assert "--lslo-merge ab needs equal ranks" in out and "fr has rank 2 and oc rank 4" in out
    out = fails(["fairseq-generate", *base, "--path", lslo_run["ckpt"], "--lslo-merge-weights", "1,0"])
    assert "--lslo-merge/--lslo-merge-weights apply to modular checkpoints" in out
    out = fails(["fairseq-generate", *base, "--path", modular_runs["old"], "--lslo-merge-weights=-1,2"])
    assert "--lslo-merge-weights: two weights W_IN,W_OUT in [0, 1]" in out


@pytest.mark.slow
def test_adapter_pool_per_language_files_attach_in_any_set(modular_runs, tiny_data, tiny_base_checkpoint, tmp_path):
    """lslo-export adapters --langs writes one language's in/out adapters; attach unites any set of
    them on the base, and the result decodes as the checkpoint they came from."""
    files = {}
    for langs in ("fr", "ko,oc"):
        files[langs] = tmp_path / f"{langs.replace(',', '_')}.pt"
        assert export_main(["adapters", "--checkpoint", str(modular_runs["new"]), "--langs", langs,
                            "--out", str(files[langs])]) == 0
    pooled = torch.load(files["ko,oc"], map_location="cpu", weights_only=False)
    assert pooled["layout"]["languages"] == ["en", "ko", "oc"] and pooled["layout"]["ranks"] == [0, 2, 2]
    assert all(v.shape[0 if "lora_A" in k else 1] == 4 for k, v in pooled["tensors"].items() if "lora_" in k)
    full = tmp_path / "attached.pt"
    assert export_main(["attach", "--base", str(tiny_base_checkpoint), "--adapters", str(files["ko,oc"]),
                        str(files["fr"]), "--out", str(full)]) == 0
    assert options(read_fairseq_checkpoint(str(full), "test"))["lslo_langs"] == "en,ko,oc,fr"  # the files' order; rows moved by name
    for src, tgt in (("fr", "ko"), ("oc", "fr")):
        want = generate(tiny_data, modular_runs["new"], src, tgt, tmp_path / f"want-{src}-{tgt}")
        got = generate(tiny_data, full, src, tgt, tmp_path / f"got-{src}-{tgt}")
        assert_same_hypotheses(want, got)
    assert export_main(["attach", "--base", str(tiny_base_checkpoint), "--adapters", str(files["fr"]),
                        str(files["fr"]), "--out", str(tmp_path / "twice.pt")]) == 2  # fr in two files
