"""Adapter-only checkpoints (``--lslo-checkpoint adapters``, the default): fairseq-train writes what
training changes and a reference to the frozen base; fairseq-generate, resuming and the lslo-* tools
read them back, with hypotheses equal to those of the full checkpoint of the same run, and refuse a
missing or different base before any work."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import GPS, grouped_train_args, lslo_task_args, read_hypotheses, run_fairseq

from lslo_fairseq.checkpoints.reading import CheckpointError
from lslo_fairseq.layout import frozen_base
from lslo_fairseq.layout.frozen_base import read_fairseq_checkpoint

pytestmark = pytest.mark.slow  # fairseq-train runs from the trained tiny_base_checkpoint

USER_DIR = str(Path(__file__).resolve().parents[1] / "lslo_fairseq")
TIED = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "decoder.output_projection.weight")


def train(data, save, base, mode, extra=()):
    run_fairseq("fairseq-train", grouped_train_args(data, save, [
        *GPS, "--finetune-from-model", str(base), "--max-update", "10", "--lslo-checkpoint", mode, *extra]),
        save.with_suffix(".log"))
    return save / "checkpoint_last.pt"


def generate(data, checkpoint, out, env=None):
    cmd = [*lslo_task_args(data), "--user-dir", USER_DIR, "--path", str(checkpoint), "--source-lang", "fr",
           "--target-lang", "oc", "--gen-subset", "test", "--beam", "5", "--required-batch-size-multiple", "1",
           "--max-len-b", "20", "--cpu", "--results-path", str(out)]
    if env is None:
        run_fairseq("fairseq-generate", cmd, Path(out).with_suffix(".log"))
        return read_hypotheses(Path(out) / "generate-test.txt")
    exe = str(Path(sys.executable).parent / "fairseq-generate")
    return subprocess.run([exe, *cmd], capture_output=True, text=True, env={**os.environ, **env}, timeout=300)


@pytest.fixture(scope="module")
def runs(tiny_data, tiny_base_checkpoint, tmp_path_factory):
    """The same run (seed, data, GPS pruning) saved both ways, from a copy of the base we can move."""
    root = tmp_path_factory.mktemp("adapter_ckpt")
    base = root / "release" / "model.pt"
    base.parent.mkdir()
    shutil.copyfile(tiny_base_checkpoint, base)
    return dict(root=root, base=base, adapters=train(tiny_data, root / "adapters", base, "adapters"),
                full=train(tiny_data, root / "full", base, "full"))


def test_adapter_only_checkpoint_holds_what_training_changes(runs):
    raw = torch.load(runs["adapters"], map_location="cpu")
    full = torch.load(runs["full"], map_location="cpu")
    ref = frozen_base.reference_of(raw["model"])
    assert ref["path"] == str(runs["base"]) and ref["sha256"] == frozen_base.sha256(runs["base"])
    left_out = {k for k, _ in ref["keys"]}
    assert set(raw["model"]) - {frozen_base.BASE_KEY} | left_out == set(full["model"])
    assert not any(k.rsplit(".", 1)[-1].startswith("lora_") for k in left_out)
    assert set(TIED) <= left_out and any(k.endswith("base_layer.weight") for k in left_out)
    kept = [k for k in raw["model"] if k != frozen_base.BASE_KEY]
    assert any(k.endswith("lora_B_mask") for k in kept) and any(k.endswith("lora_A") for k in kept)
    assert raw["last_optimizer_state"].keys() == full["last_optimizer_state"].keys()
    # read back: every tensor equal to the full checkpoint's, the tied embedding one tensor again
    state = read_fairseq_checkpoint(str(runs["adapters"]), "--checkpoint")["model"]
    assert set(state) == set(full["model"])
    for key, value in full["model"].items():
        assert state[key].dtype == value.dtype and torch.equal(state[key], value), key
    assert len({state[k].untyped_storage().data_ptr() for k in TIED}) == 1
    sizes = {m: os.path.getsize(runs[m]) for m in ("adapters", "full")}
    print(f"checkpoint_last.pt: adapters {sizes['adapters']:,} bytes, full {sizes['full']:,} bytes")
    assert sizes["adapters"] < 0.5 * sizes["full"]


def test_generate_from_adapter_only_equals_full(runs, tiny_data):
    a = generate(tiny_data, runs["adapters"], runs["root"] / "gen_adapters")
    b = generate(tiny_data, runs["full"], runs["root"] / "gen_full")
    assert a == b and len(a) == 30


def test_resume_from_adapter_only_equals_uninterrupted(runs, tiny_data):
    """10 updates, then 6 more resumed from the adapter-only checkpoint_last.pt (--restore-file), equal
    to a run of 16 updates saved in full."""
    root = runs["root"]
    shutil.copytree(runs["adapters"].parent, root / "resumed")
    resumed = train(tiny_data, root / "resumed", runs["base"], "adapters", ["--max-update", "16"])
    straight = train(tiny_data, root / "straight", runs["base"], "full", ["--max-update", "16"])
    log = (root / "resumed.log").read_text()
    assert "Loaded checkpoint" in log and "num_updates=16" in log
    a = read_fairseq_checkpoint(str(resumed), "--checkpoint")
    b = torch.load(straight, map_location="cpu")
    for key, value in b["model"].items():
        assert torch.equal(a["model"][key], value), key
    assert frozen_base.reference_of(torch.load(resumed, map_location="cpu")["model"])["path"] == str(runs["base"])


def test_missing_or_other_base_is_refused_naming_both_files(runs, tiny_data, tmp_path, capsys):
    from lslo_fairseq.cli.params import main as params_main

    moved = tmp_path / "elsewhere" / "model.pt"
    moved.parent.mkdir()
    ckpt = tmp_path / "checkpoint_last.pt"
    shutil.copyfile(runs["adapters"], ckpt)
    os.replace(runs["base"], moved)
    try:
        with pytest.raises(CheckpointError) as e:
            read_fairseq_checkpoint(str(ckpt), "--checkpoint")
        msg = str(e.value)
        assert str(ckpt) in msg and str(runs["base"]) in msg and "does not exist" in msg and "LSLO_FROZEN_BASE" in msg
        proc = generate(tiny_data, ckpt, tmp_path / "gen_missing", env={})
        assert proc.returncode != 0 and str(runs["base"]) in proc.stderr and "LSLO_FROZEN_BASE" in proc.stderr
        assert "H-" not in (tmp_path / "gen_missing" / "generate-test.txt").read_text()  # opened by fairseq first
        # pointed to its new place: works, same hypotheses
        hyps = generate(tiny_data, ckpt, tmp_path / "gen_moved", env={frozen_base.ENV: str(moved)})
        assert hyps.returncode == 0, hyps.stderr[-2000:]
        assert params_main(["--checkpoint", str(ckpt)]) == 2  # lslo-params: same refusal
        # resuming: fairseq-train refuses before building the model, naming the checkpoint and the base
        exe = str(Path(sys.executable).parent / "fairseq-train")
        resume = subprocess.run([exe, *grouped_train_args(tiny_data, tmp_path, [*GPS, "--max-update", "12"])],
                                capture_output=True, text=True, timeout=300)
        assert resume.returncode != 0 and f"resuming from its checkpoint_last.pt): {ckpt}" in resume.stderr
        assert str(runs["base"]) in resume.stderr and "LSLO_FROZEN_BASE" in resume.stderr
        assert "num_updates" not in resume.stdout + resume.stderr
        assert "LSLO_FROZEN_BASE" in capsys.readouterr().err
        # another file of the same size at that path: its digest differs
        other = tmp_path / "other.pt"
        data = bytearray(moved.read_bytes())
        data[-100] ^= 1
        other.write_bytes(bytes(data))
        os.environ[frozen_base.ENV] = str(other)
        try:
            with pytest.raises(CheckpointError, match=r"is not its frozen base: .*sha256 [0-9a-f]{64}"):
                read_fairseq_checkpoint(str(ckpt), "--checkpoint")
        finally:
            del os.environ[frozen_base.ENV]
    finally:
        os.replace(moved, runs["base"])
