"""Faults: fairseq-train killed with SIGKILL mid-schedule and rerun with the same command finishes
as an uninterrupted run; a truncated or foreign checkpoint to load fails with a clear error.

fairseq (checkpoint_utils.save_checkpoint) writes the first checkpoint of a save atomically
(``X.pt.tmp`` + rename) and copies it to the others with ``shutil.copyfile``: a kill during that copy
can leave a truncated ``checkpoint_last.pt``, which is what ``test_truncated_checkpoint_last...``
builds (first half of the bytes)."""
import re
import shutil

import pytest
import torch

from helpers import GPS, grouped_train_args, kill_fairseq_at, losses, pruning_lines, run_fairseq, train_grouped

from lslo_fairseq.layout.loading import problem

pytestmark = pytest.mark.slow  # every test runs fairseq-train or reads the trained tiny_base_checkpoint

UPDATES, SAVE_EVERY, KILL_AFTER = 14, 6, 8  # GPS ramps over updates 3-8; saves at 6 and 12


def run_args(data, save_dir, base):
    return grouped_train_args(data, save_dir, [
        *GPS, "--finetune-from-model", str(base), "--max-update", str(UPDATES),
        "--save-interval-updates", str(SAVE_EVERY), "--keep-interval-updates", "2"])


@pytest.fixture(scope="module")
def killed(tiny_data, tiny_base_checkpoint, tmp_path_factory):
    """An uninterrupted run, and the same command SIGKILLed once it logged update KILL_AFTER."""
    root = tmp_path_factory.mktemp("resume")
    run_fairseq("fairseq-train", run_args(tiny_data, root / "full", tiny_base_checkpoint), root / "full.log")
    at_kill = kill_fairseq_at("fairseq-train", run_args(tiny_data, root / "killed", tiny_base_checkpoint),
                              root / "killed.log", rf"num_updates={KILL_AFTER},")
    last = max(int(u) for u in re.findall(r"num_updates=(\d+),", at_kill))
    shutil.copytree(root / "killed", root / "killed_copy")  # as the kill left it, for the truncation test
    return dict(root=root, full=(root / "full.log").read_text(), last_logged=last)


def test_sigkill_then_same_command_equals_an_uninterrupted_run(killed, tiny_data, tiny_base_checkpoint):
    root = killed["root"]
    assert KILL_AFTER <= killed["last_logged"] < 2 * SAVE_EVERY  # killed between the saves at 6 and 12
    run_fairseq("fairseq-train", run_args(tiny_data, root / "killed", tiny_base_checkpoint), root / "resumed.log")
    log = (root / "resumed.log").read_text()
    assert "checkpoint_last.pt" in re.search(r"Loaded checkpoint (\S+)", log).group(1)
    full, again = losses(killed["full"]), losses(log)
    assert sorted(again) == list(range(SAVE_EVERY + 1, UPDATES + 1))  # resumed after update 6
    assert again == {u: full[u] for u in again}
    # the schedule goes on where it stopped: same ratio, newly pruned count and sparsity per update
    assert pruning_lines(log) == {u: r for u, r in pruning_lines(killed["full"]).items() if u > SAVE_EVERY}
    assert sorted(pruning_lines(log)) == [7, 8]
    a = torch.load(root / "full" / "checkpoint_last.pt", map_location="cpu")
    b = torch.load(root / "killed" / "checkpoint_last.pt", map_location="cpu")
    for key, value in a["model"].items():
        if key.endswith("_mask"):
            assert torch.equal(b["model"][key], value), key
        else:
            torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-5, msg=key)
    # schedule position: update count, learning-rate schedule and data position
    assert b["optimizer_history"][-1]["num_updates"] == a["optimizer_history"][-1]["num_updates"] == UPDATES
    assert b["optimizer_history"][-1]["lr_scheduler_state"] == a["optimizer_history"][-1]["lr_scheduler_state"]
    for key in ("epoch", "iterations_in_epoch"):
        assert b["extra_state"]["train_iterator"][key] == a["extra_state"]["train_iterator"][key]
    assert (root / "killed" / "pruning_counts.json").read_text() == (root / "full" / "pruning_counts.json").read_text()


def test_truncated_checkpoint_last_names_the_file_and_the_intact_one(killed, tiny_data, tiny_base_checkpoint):
    save = killed["root"] / "killed_copy"
    last = save / "checkpoint_last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # what a kill during fairseq's copy to it leaves
    log = killed["root"] / "truncated.log"
    with pytest.raises(RuntimeError):
        run_fairseq("fairseq-train", run_args(tiny_data, save, tiny_base_checkpoint), log)
    text = log.read_text()
    assert f"cannot load {last}: truncated" in text
    assert f"--restore-file {save / f'checkpoint_1_{SAVE_EVERY}.pt'}" in text
    assert "Start iterating" not in text


def test_foreign_file_to_finetune_from_fails_clearly(tiny_data, tmp_path):
    foreign = tiny_data["dict"]  # a text file
    log = tmp_path / "foreign.log"
    with pytest.raises(RuntimeError):
        train_grouped(tiny_data, tmp_path / "x", ["--finetune-from-model", foreign, "--max-update", "2"], log)
    assert f"--finetune-from-model: cannot load {foreign}: not a PyTorch checkpoint" in log.read_text()


def test_problem_names_what_is_wrong(tmp_path, tiny_base_checkpoint):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    shutil.make_archive(str(tmp_path / "archive"), "zip", root_dir=tmp_path, base_dir="plain.pt")
    assert problem(str(tiny_base_checkpoint)) is None
    assert problem(str(tmp_path / "missing.pt")) == "no such file"
    assert "not a fairseq checkpoint (no 'model' state dict; has ['weights'])" in problem(str(tmp_path / "plain.pt"))
    assert "not a PyTorch checkpoint (no data.pkl)" in problem(str(tmp_path / "archive.zip"))
