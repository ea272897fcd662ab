"""lslo-export: a merged one-direction export decodes like the LSLo model under stock fairseq
(no plugin); adapters-only files are small, round-trip bitwise and refuse the wrong base, the wrong
configuration and broken files; full checkpoints name a configuration mismatch on load."""
import argparse
import os
import subprocess
from pathlib import Path

import pytest
import torch

from helpers import (LSLO_ARGS, TRAIN_ARGS, USER_DIR, assert_same_hypotheses, fairseq_bin, fairseq_env,
                     lslo_task_args, read_hypotheses, run_fairseq, task_args)
from lslo_fairseq.checkpoints import adapters as adapters_mod
from lslo_fairseq.checkpoints.fold import EXPORT_KEY
from lslo_fairseq.checkpoints.reading import build_lslo_model, load_lslo_checkpoint, options, vocab_size
from lslo_fairseq.cli.export import main as export_main
from lslo_fairseq.config import LSLoConfigError
from lslo_fairseq.files import torch_save_atomic
from lslo_fairseq.layout.frozen_base import read_fairseq_checkpoint

SRC, TGT = "oc", "ko"  # encoder layers src,tgt and decoder tgt,src (LSLO_ARGS): both languages used
# lr 0.01 so that 12 updates move the adapters well away from B = 0
SHORT = ["--max-update", "12", "--lr", "0.01"]
PRUNE = ["--lslo-prune", "gps", "--lslo-prune-ratio", "0.5", "--lslo-prune-unit", "update",
         "--lslo-prune-start", "2", "--lslo-prune-duration", "6", "--lslo-prune-targets", "en,fr,ko,oc"]


def lslo_args(weight_learning: bool):
    args = list(LSLO_ARGS)
    if weight_learning:  # no index flags: every layer learns its own
        for flag in ("--lslo-encoder-index", "--lslo-decoder-index"):
            i = args.index(flag)
            del args[i:i + 2]
        args.append("--lslo-weight-learning")
    return args


# the authors' shape (fc slices at a non-zero offset, their init) under layerdrop, pruned and with
# weight learning: skipped layers, routing, pruning and the learned weights must all still hold
PAPER = ["--lslo-adapter-shape", "paper", "--lslo-fc-offset", "32", "--lslo-init", "paper",
         "--encoder-layerdrop", "0.3", "--decoder-layerdrop", "0.3"]
RUNS = {"pruned": (False, PRUNE), "wl": (True, []), "paper_pruned": (False, PRUNE + PAPER), "paper_wl": (True, PAPER)}


@pytest.fixture(scope="module")
def runs(tiny_data, tiny_base_checkpoint, tmp_path_factory):
    """checkpoint_last.pt of pruned (GPS) and weight-learning runs, in full and in paper shape (with
    layerdrop), all fine-tuned from the tiny base through fairseq-train."""
    root = tmp_path_factory.mktemp("export_runs")
    jobs = [("fairseq-train", [*lslo_task_args(tiny_data), *lslo_args(wl), *TRAIN_ARGS, *SHORT, *extra,
                               "--finetune-from-model", str(tiny_base_checkpoint), "--save-dir", str(root / name)],
             root / f"{name}.log") for name, (wl, extra) in RUNS.items()]
    run_parallel(jobs)
    return {name: root / name / "checkpoint_last.pt" for name in RUNS}


def run_parallel(jobs, width=2):
    """Run (tool, args, log) fairseq jobs ``width`` at a time (one thread each: the machine has 2 cores)."""
    for i in range(0, len(jobs), width):
        _run_side_by_side(jobs[i:i + width])


def _run_side_by_side(jobs):
    procs = []
    for tool, args, log in jobs:
        f = open(log, "w", encoding="utf-8")
        procs.append((subprocess.Popen([fairseq_bin(tool), *map(str, args)], stdout=f, stderr=subprocess.STDOUT,
                                       env=fairseq_env()), f, log))
    for proc, f, log in procs:
        rc = proc.wait(timeout=600)
        f.close()
        assert rc == 0, Path(log).read_text(encoding="utf-8", errors="replace")[-3000:]


def export(*argv):
    assert export_main([str(a) for a in argv]) == 0


def export_error(capsys, *argv) -> str:
    assert export_main([str(a) for a in argv]) == 2
    return capsys.readouterr().err


def generate(data, runs):
    """fairseq-generate SRC->TGT, beam 5, test set, for every (checkpoint, out_dir, plugin) in
    ``runs``, side by side; plugin=False: stock fairseq, no --user-dir. Returns (hyps, log) each."""
    jobs = []
    for checkpoint, out_dir, plugin in runs:
        args = lslo_task_args(data) + ["--user-dir", USER_DIR] if plugin else task_args(data)
        jobs.append(("fairseq-generate", [
            *args, "--path", checkpoint, "--source-lang", SRC, "--target-lang", TGT, "--gen-subset", "test",
            "--beam", "5", "--required-batch-size-multiple", "1", "--max-len-b", "20", "--cpu",
            "--results-path", out_dir], Path(out_dir).with_suffix(".log")))
    run_parallel(jobs)
    return [(read_hypotheses(Path(out_dir) / "generate-test.txt"), log.read_text(encoding="utf-8"))
            for (_, out_dir, _), (_, _, log) in zip(runs, jobs)]


def nontrivial(checkpoint):
    """The run really changed the adapters (and pruned, or moved the weight-learning logits)."""
    model = torch.load(checkpoint, map_location="cpu")["model"]
    assert all(v.abs().max() > 1e-3 for k, v in model.items() if k.split(".")[-1].startswith("lora_B")
               and not k.endswith("_mask"))
    masks = [v for k, v in model.items() if k.endswith("lora_B_mask")]
    logits = [v for k, v in model.items() if k.endswith("lslo_index_weights.logits")]
    return masks, logits


@pytest.mark.slow
@pytest.mark.parametrize("run", list(RUNS))
def test_folded_export_decodes_like_lslo_under_stock_fairseq(runs, run, tiny_data, tmp_path):
    masks, logits = nontrivial(runs[run])
    if "pruned" in run:
        assert masks and 0.3 < 1 - torch.cat([m.flatten().float() for m in masks]).mean() < 0.6
    else:
        assert logits and all(v.abs().max() > 1e-4 for v in logits)
    merged, wrong = tmp_path / "merged.pt", tmp_path / "wrong.pt"
    export("fold", "--checkpoint", runs[run], "--source-lang", SRC, "--target-lang", TGT, "--out", merged)
    # the comparison can fail: the fold of another direction (fr->ko) scores oc->ko differently
    export("fold", "--checkpoint", runs[run], "--source-lang", "fr", "--target-lang", TGT, "--out", wrong)
    (stock, stock_log), (lslo, _), (other, _) = generate(tiny_data, [
        (merged, tmp_path / "stock", False), (runs[run], tmp_path / "lslo", True), (wrong, tmp_path / "wrong", False)])
    assert "LSLo" not in stock_log and "Translated 30 sentences" in stock_log
    assert_same_hypotheses(stock, lslo)
    assert sum(abs(other[i]["score"] - lslo[i]["score"]) > 1e-3 for i in lslo) > len(lslo) // 2


@pytest.mark.slow
def test_folded_export_is_a_stock_checkpoint_for_one_direction(runs, tiny_base_checkpoint, tmp_path, capsys):
    out = tmp_path / "oc-ko.pt"
    export("fold", "--checkpoint", runs["wl"], "-s", SRC, "-t", TGT, "--out", out)
    assert "deprecated" not in capsys.readouterr().err
    # the subcommand's old name still works, says it is deprecated, and writes the same weights
    old = tmp_path / "old-name.pt"
    export("merge", "--checkpoint", runs["wl"], "-s", SRC, "-t", TGT, "--out", old)
    err = capsys.readouterr().err
    assert "'merge' is deprecated" in err and "use 'lslo-export fold'" in err
    new_w, old_w = torch.load(out, weights_only=True)["model"], torch.load(old, weights_only=True)["model"]
    assert new_w.keys() == old_w.keys() and all(torch.equal(new_w[k], old_w[k]) for k in new_w)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(out)) == []  # no Namespace: stock loads it
    state = torch.load(out, weights_only=True)
    model_cfg, task_cfg = state["cfg"]["model"], state["cfg"]["task"]
    assert model_cfg["arch"] == model_cfg["_name"] == "transformer"
    assert task_cfg["_name"] == task_cfg["task"] == model_cfg["task"] == "translation_multi_simple_epoch"
    assert not [k for k in list(model_cfg) + list(task_cfg) if "lslo" in k]
    assert state["cfg"]["common"]["user_dir"] is None and model_cfg["user_dir"] is None
    assert "last_optimizer_state" not in state
    assert state[EXPORT_KEY]["direction"] == "oc-ko" and "only" in state[EXPORT_KEY]["note"]
    base = torch.load(tiny_base_checkpoint, map_location="cpu")
    assert set(state["model"]) == set(base["model"])  # exactly the stock transformer's keys
    for key in ("encoder_layers", "encoder_embed_dim", "decoder_ffn_embed_dim", "share_all_embeddings",
                "encoder_normalize_before"):
        assert model_cfg[key] == getattr(base["cfg"]["model"], key)
    # every adapted projection moved, direction-specific where it is source-indexed
    other = tmp_path / "fr-ko.pt"
    export("fold", "--checkpoint", runs["wl"], "-s", "fr", "-t", TGT, "--out", other)
    other = torch.load(other)["model"]
    fc1 = "encoder.layers.0.fc1.weight"
    assert (state["model"][fc1] - base["model"][fc1]).abs().max() > 1e-3
    assert (state["model"][fc1] - other[fc1]).abs().max() > 1e-4
    assert not list(tmp_path.glob(".tmp-*"))  # atomic writes leave nothing behind


@pytest.mark.slow
@pytest.mark.parametrize("run", list(RUNS))
def test_merged_fold_is_what_each_layer_applies_to_the_direction(runs, run):
    """Each float64 fold W' (masks, slices, weight learning), applied as a linear map, equals the LSLo
    layer's routed forward for SRC->TGT sentences."""
    from lslo_fairseq.checkpoints.fold import folded_weights

    _, model = load_lslo_checkpoint(str(runs[run]), "--checkpoint")
    folded = folded_weights(model, SRC, TGT)
    langs = model.lslo_config.languages
    model.lslo_router.set(torch.tensor([langs.index(SRC)] * 2), torch.tensor([langs.index(TGT)] * 2))
    for path, layer in model.lslo_layers.items():
        x = torch.randn(3, 2, layer.in_features)
        with torch.no_grad():
            expect = torch.nn.functional.linear(x.double(), folded[path], layer.base_layer.bias.double())
            torch.testing.assert_close(layer(x).double(), expect, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("run", list(RUNS))
def test_adapters_file_is_small_and_attach_restores_the_checkpoint_bitwise(runs, run, tiny_base_checkpoint, tmp_path,
                                                                            capsys):
    ad, full = tmp_path / "a.pt", tmp_path / "full.pt"
    export("adapters", "--checkpoint", runs[run], "--out", ad)
    capsys.readouterr()
    export("info", ad)
    shape = "adapter shape paper (fc offset 32)" if "paper" in run else "adapter shape full (fc offset 0)"
    assert f"{shape}, alpha None" in capsys.readouterr().out
    trained = read_fairseq_checkpoint(str(runs[run]), "x")["model"]  # an adapter-only file: its frozen base put back
    lslo = [v for k, v in trained.items() if "lora_" in k or "lslo_" in k]
    lslo_bytes = sum(v.numel() * v.element_size() for v in lslo)
    base_bytes = sum(v.numel() * v.element_size() for v in trained.values()) - lslo_bytes
    size = ad.stat().st_size
    # the LSLo tensors, ~0.5 kB of zip records per tensor and the options; not the base (this tiny
    # model's adapters are 15-26% of it; M2M-124 615M's 2;2;8 adapters are 22.4M of 615M parameters)
    assert size < lslo_bytes + 512 * len(lslo) + 64 * 1024 and size < base_bytes / 2, (size, lslo_bytes, base_bytes)
    export("attach", "--base", tiny_base_checkpoint, "--adapters", ad, "--out", full)
    attached = torch.load(full, map_location="cpu")
    assert "last_optimizer_state" not in attached
    assert set(attached["model"]) == set(trained)
    for key, value in trained.items():
        assert attached["model"][key].dtype == value.dtype and torch.equal(attached["model"][key], value), key
    # the base may also be another LSLo checkpoint on the same base: its own adapters are dropped
    other = runs["wl" if run == "pruned" else "pruned"]
    export("attach", "--base", other, "--adapters", ad, "--out", tmp_path / "full2.pt")
    again = torch.load(tmp_path / "full2.pt", map_location="cpu")["model"]
    assert all(torch.equal(again[k], v) for k, v in trained.items())


@pytest.mark.slow
def test_training_continues_from_attached_adapters(runs, tiny_data, tiny_base_checkpoint, tmp_path):
    """fairseq-train --finetune-from-model on an attached checkpoint starts from the file's
    adapters and masks (not fresh ones)."""
    ad, full = tmp_path / "a.pt", tmp_path / "full.pt"
    export("adapters", "--checkpoint", runs["pruned"], "--out", ad)
    export("attach", "--base", tiny_base_checkpoint, "--adapters", ad, "--out", full)
    run_fairseq("fairseq-train", [*lslo_task_args(tiny_data), *LSLO_ARGS, *TRAIN_ARGS, "--max-update", "2",
                                  "--finetune-from-model", full, "--save-dir", tmp_path / "more"], tmp_path / "more.log")
    log = (tmp_path / "more.log").read_text()
    assert f"Loaded checkpoint {full}" in log and "adapters start fresh" not in log
    before = torch.load(runs["pruned"], map_location="cpu")["model"]
    after = torch.load(tmp_path / "more" / "checkpoint_last.pt", map_location="cpu")["model"]
    masks = [k for k in before if k.endswith("_mask")]
    assert masks and all(torch.equal(after[k], before[k]) for k in masks)
    lora_b = [k for k in before if k.endswith("lora_B")]
    assert all(not torch.equal(after[k], before[k]) for k in lora_b)  # trained on from them
    assert all((after[k] - before[k]).abs().max() < before[k].abs().max() for k in lora_b)


@pytest.mark.slow
def test_attach_refuses_another_base(runs, tiny_base_checkpoint, tmp_path, capsys):
    ad = tmp_path / "a.pt"
    export("adapters", "--checkpoint", runs["pruned"], "--out", ad)
    base = torch.load(tiny_base_checkpoint, map_location="cpu")
    base["model"]["encoder.layers.1.fc1.weight"] = base["model"]["encoder.layers.1.fc1.weight"] + 0.01
    other = tmp_path / "other_base.pt"
    torch.save(base, other)
    err = export_error(capsys, "attach", "--base", other, "--adapters", ad, "--out", tmp_path / "x.pt")
    assert str(ad) in err and "another base model" in err and "encoder.layers.1.fc1.weight" in err
    assert "1 of " in err and not (tmp_path / "x.pt").exists()


@pytest.mark.slow
def test_adapters_with_another_configuration_are_refused(runs, tiny_base_checkpoint, tmp_path):
    ad = tmp_path / "a.pt"
    export("adapters", "--checkpoint", runs["pruned"], "--out", ad)
    state = read_fairseq_checkpoint(str(runs["pruned"]), "x")
    for change, named in ((dict(lslo_ranks="en:2,fr:2,ko:3,oc:4"), "--lslo-ranks"),
                          (dict(lslo_langs="en,fr,oc,ko", lslo_ranks="en:2,fr:2,ko:4,oc:2"), "languages"),
                          (dict(lslo_encoder_index="tgt,tgt"), "encoder_index"),
                          (dict(lslo_adapter_shape="paper"), "adapter_shape: full in adapters file"),
                          (dict(lslo_alpha=8.0), "--lslo-alpha")):
        model = build_lslo_model({**options(state), **change}, vocab_size(state["model"]), "test")
        base = adapters_mod.plain_base_state(torch.load(tiny_base_checkpoint)["model"])
        model.load_state_dict(base, strict=True)
        with pytest.raises(LSLoConfigError, match="another LSLo configuration") as e:
            adapters_mod.load_adapters(model, str(ad))
        assert named in str(e.value) and str(ad) in str(e.value)


@pytest.mark.slow
def test_broken_or_foreign_files_are_refused(runs, tiny_base_checkpoint, tmp_path, capsys):
    ad = tmp_path / "a.pt"
    export("adapters", "--checkpoint", runs["pruned"], "--out", ad)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(ad.read_bytes()[: ad.stat().st_size // 2])
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    pickled = tmp_path / "object.pt"
    torch.save({"x": argparse.ArgumentParser}, pickled)  # a class: weights_only refuses it
    for bad, message in ((cut, "cannot be read as a torch checkpoint"), (text, "cannot be read"),
                         (pickled, "safe (weights_only) loading refuses: argparse.ArgumentParser"), (tiny_base_checkpoint, "not an LSLo adapters file"),
                         (tmp_path / "missing.pt", "does not exist")):
        err = export_error(capsys, "attach", "--base", tiny_base_checkpoint, "--adapters", bad,
                           "--out", tmp_path / "x.pt")
        assert "--adapters" in err and str(bad) in err and message in err, err
    err = export_error(capsys, "attach", "--base", cut, "--adapters", ad, "--out", tmp_path / "x.pt")
    assert "--base" in err and "cannot be read" in err
    err = export_error(capsys, "fold", "--checkpoint", tiny_base_checkpoint, "-s", SRC, "-t", TGT,
                       "--out", tmp_path / "x.pt")
    assert "not an LSLo checkpoint" in err
    err = export_error(capsys, "fold", "--checkpoint", runs["pruned"], "-s", "de", "-t", TGT,
                       "--out", tmp_path / "x.pt")
    assert "--source-lang: 'de' has no adapters" in err
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.slow
def test_full_checkpoint_with_another_configuration_names_the_difference(runs):
    """Before lslo_layout, other languages or indexes with equal shapes loaded silently."""
    state = read_fairseq_checkpoint(str(runs["pruned"]), "x")
    for change, named in ((dict(lslo_ranks="en:2,fr:2,ko:3,oc:4"), "ranks: [2, 2, 2, 4] in the checkpoint"),
                          (dict(lslo_langs="en,fr,oc,ko", lslo_ranks="en:2,fr:2,ko:4,oc:2"), "languages"),
                          (dict(lslo_decoder_index="tgt,tgt"), "decoder_index"),
                          (dict(lslo_modules="fc"), "--lslo-modules"),
                          (dict(lslo_adapter_shape="paper"), "adapter_shape: full in the checkpoint, paper in this model")):
        model = build_lslo_model({**options(state), **change}, vocab_size(state["model"]), "test")
        with pytest.raises(LSLoConfigError, match="another configuration") as e:
            model.load_state_dict(dict(state["model"]), strict=True)
        assert named in str(e.value)
    state = read_fairseq_checkpoint(str(runs["paper_pruned"]), "x")
    model = build_lslo_model({**options(state), "lslo_fc_offset": 0}, vocab_size(state["model"]), "test")
    with pytest.raises(LSLoConfigError, match=r"fc_offset: 32 in the checkpoint, 0 in this model \(--lslo-fc-offset\)"):
        model.load_state_dict(dict(state["model"]), strict=True)


def test_torch_save_atomic_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "f.pt"
    torch_save_atomic(str(path), {"a": torch.ones(2)})
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        torch_save_atomic(str(path), {"a": Unpicklable()})
    assert torch.equal(torch.load(path)["a"], torch.ones(2)) and not list(tmp_path.glob(".tmp-*"))


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_publish_files_copies_each_file_whole_into_an_existing_folder(tmp_path):
    """hf/peft/ct2 exports write into a temporary folder and publish file by file: ``out`` may hold
    other files (kept), an older file of the same name is replaced, folders are not copied."""
    from lslo_fairseq.files import publish_files

    src, out = tmp_path / "tmp", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    (src / "model.bin").write_bytes(b"new" * 1000)
    (src / "config.json").write_text("{}")
    out.mkdir()
    (out / "model.bin").write_bytes(b"old")
    (out / "lslo_export.json").write_text("kept")
    assert publish_files(str(src), str(out)) == ["config.json", "model.bin"]
    assert (out / "model.bin").read_bytes() == b"new" * 1000 and (out / "lslo_export.json").read_text() == "kept"
    assert not (out / "sub").exists() and sorted(p.name for p in out.iterdir()) == [
        "config.json", "lslo_export.json", "model.bin"]
    assert publish_files(str(src), str(tmp_path / "fresh")) == ["config.json", "model.bin"]
