"""Real fairseq runs through the CLIs: fine-tune a plain checkpoint with LSLo, generate with beam 5,
resume, and fail fast on bad options. The LSLo run is the session's ``lslo_run`` (conftest.py)."""
import pytest
import torch

from lslo_fairseq.checkpoints.reading import read_fairseq_checkpoint

from helpers import LSLO_ARGS, TRAIN_ARGS, USER_DIR, fairseq_bin, fairseq_env, lslo_task_args, run_fairseq, train_lslo

pytestmark = pytest.mark.slow  # every test trains or runs fairseq-train/-generate


def state(path):
    """The model state, an adapter-only checkpoint's frozen base read back from its base file."""
    return read_fairseq_checkpoint(str(path), "--checkpoint")["model"]


def test_finetune_from_plain_checkpoint_moves_only_adapters(lslo_run, tiny_base_checkpoint):
    base, tuned = state(tiny_base_checkpoint), state(lslo_run["save"] / "checkpoint_last.pt")
    assert "plain transformer checkpoint: LSLo adapters start fresh" in lslo_run["log"]
    assert "LSLo trainable parameters" in lslo_run["log"]
    wrapped = 0
    for key, value in base.items():
        parent, _, leaf = key.rpartition(".")
        new_key = key if key in tuned else f"{parent}.base_layer.{leaf}"
        wrapped += new_key != key
        assert torch.equal(tuned[new_key], value), f"base parameter {key} changed"
    assert wrapped == 2 * (2 * 5 + 2 * 8)  # weight+bias of q,k,v,fc1,fc2 (enc) and +c-q,c-k,c-v (dec)
    lora_b = [v for k, v in tuned.items() if k.endswith("lora_B")]
    assert len(lora_b) == 2 * 5 + 2 * 8 and all(v.abs().sum() > 0 for v in lora_b)


def test_generate_beam5_through_the_cli(lslo_run, tiny_data):
    out = lslo_run["root"] / "gen"
    run_fairseq("fairseq-generate", [
        *lslo_task_args(tiny_data), "--user-dir", USER_DIR, "--path", str(lslo_run["save"] / "checkpoint_last.pt"),
        "--source-lang", "oc", "--target-lang", "ko", "--gen-subset", "test", "--beam", "5",
        "--required-batch-size-multiple", "1", "--max-len-b", "20", "--results-path", str(out), "--cpu"],
        lslo_run["root"] / "gen.log")
    lines = (out / "generate-test.txt").read_text().splitlines()
    assert sum(l.startswith("H-") for l in lines) == tiny_data["rows"]["test"]


def test_restore_file_resumes_an_lslo_run(lslo_run, tiny_data, tmp_path):
    """Stop at update 8, resume with --restore-file to 16: the adapters equal the uninterrupted run's."""
    resumed = train_lslo(tiny_data, tmp_path / "resumed",
                         ["--restore-file", str(lslo_run["mid"]), "--max-update", "16"], tmp_path / "resume.log")
    log = (tmp_path / "resume.log").read_text()
    assert "Loaded checkpoint" in log and "num_updates=8" not in log and "num_updates=16" in log
    full, again = state(lslo_run["ckpt"]), state(resumed / "checkpoint_last.pt")
    for key in full:
        torch.testing.assert_close(again[key], full[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.parametrize("flag,value,message", [
    ("--lslo-ranks", "en:2,fr:2,ko:2,xx:4,oc:4", "unknown language"),
    ("--lslo-ranks", "en:2,fr:2,ko:2", "['oc'] of --lang-pairs/--langs have no LSLo rank"),
    ("--lslo-ranks", "en:2,fr:0,ko:2,oc:4", "must be >= 1"),
    ("--lslo-encoder-index", "src,src,tgt", "3 entries for 2 encoder layers"),
    ("--lslo-modules", "q,fc3", "unknown module"),
])
def test_bad_options_fail_before_training(tiny_data, tmp_path, flag, value, message):
    import subprocess

    args = [*LSLO_ARGS]
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    cmd = [fairseq_bin("fairseq-train"), *lslo_task_args(tiny_data), *args, *TRAIN_ARGS,
           "--save-dir", str(tmp_path / "ckpt"), "--max-update", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=fairseq_env(), timeout=300)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert flag in out and message in out, out[-2000:]
    assert "Start iterating" not in out and not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()
