"""Pruning and weight learning through fairseq-train: resume mid-schedule, JSON hand-over, counts."""
import json
import re

import pytest
import torch

from helpers import GPS, losses, train_grouped

pytestmark = pytest.mark.slow  # every test runs fairseq-train


@pytest.fixture(scope="module")
def gps_run(tiny_data, tiny_base_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("gps")
    log = train_grouped(tiny_data, root / "ckpt", [*GPS, "--finetune-from-model", str(tiny_base_checkpoint),
                                                   "--max-update", "12", "--save-interval-updates", "5",
                                                   "--keep-interval-updates", "5"], root / "train.log")
    return root, log


def test_schedule_is_logged_and_counts_written(gps_run):
    root, log = gps_run
    applied = {int(u): float(r) for u, r in re.findall(r"gps pruning, update (\d+): ratio ([0-9.]+) applied", log)}
    # eq. 4 with E=2, k=6, P=0.8 over updates: logged once per change of ratio
    expect = {u: (0.0 if u <= 2 else 0.8 - 0.8 * (1 - (u - 2) / 6) ** 3) for u in range(1, 9)}
    assert sorted(applied) == [1, 3, 4, 5, 6, 7, 8]
    for u, r in applied.items():
        assert r == pytest.approx(expect[u], abs=1e-4), u
    counts = json.loads((root / "ckpt" / "pruning_counts.json").read_text())
    assert counts["kind"] == "gps" and counts["ratio"] == pytest.approx(0.8)
    assert counts["sparsity"]["V"] == 0.0  # very-low-resource languages are not pruned
    for r in counts["records"]:
        assert r["language"] in ("en", "fr", "ko") and abs(r["n_pruned"] - 0.8 * r["n_params"]) <= 1


def test_resume_mid_schedule_reproduces_masks_and_losses(gps_run, tiny_data, tmp_path):
    root, log = gps_run
    mid = next((root / "ckpt").glob("checkpoint_*_5.pt"))
    resumed_log = train_grouped(tiny_data, tmp_path / "resumed",
                                [*GPS, "--restore-file", str(mid), "--max-update", "12"], tmp_path / "resume.log")
    full, again = losses(log), losses(resumed_log)
    assert sorted(again) == list(range(6, 13))
    assert {u: full[u] for u in again} == again
    a = torch.load(root / "ckpt" / "checkpoint_last.pt", map_location="cpu")["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoint_last.pt", map_location="cpu")["model"]
    for key in a:
        if key.endswith("_mask"):
            assert torch.equal(a[key], b[key]), key
        else:
            torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=key)


def test_weight_learning_json_feeds_the_next_run(tiny_data, tiny_base_checkpoint, tmp_path):
    log = train_grouped(tiny_data, tmp_path / "wl", ["--lslo-weight-learning", "--lslo-encoder-index", "paper",
                                                     "--lslo-decoder-index", "paper",
                                                     "--finetune-from-model", str(tiny_base_checkpoint),
                                                     "--max-update", "8", "--lr", "0.03"], tmp_path / "wl.log")
    assert "weight learning, encoder (w_src, w_tgt)" in log
    wl = json.loads((tmp_path / "wl" / "weight_learning.json").read_text())
    for side in ("encoder", "decoder"):
        assert len(wl[side]) == 2 and len(wl[f"{side}_index"]) == 2
        for w_src, w_tgt in wl[side]:
            assert w_src + w_tgt == pytest.approx(1.0) and w_src != 0.5
        assert wl[f"{side}_index"] == ["src" if a >= b else "tgt" for a, b in wl[side]]
    assert wl["history"]
    path = str(tmp_path / "wl" / "weight_learning.json")
    log2 = train_grouped(tiny_data, tmp_path / "next", ["--lslo-encoder-index", path, "--lslo-decoder-index", path,
                                                        "--finetune-from-model", str(tiny_base_checkpoint),
                                                        "--max-update", "2"], tmp_path / "next.log")
    assert f"encoder index {wl['encoder_index']}" in log2 and f"decoder index {wl['decoder_index']}" in log2


def test_schedule_longer_than_the_run_fails_before_training(tiny_data, tmp_path):
    with pytest.raises(RuntimeError, match="exceeds the run's length"):
        train_grouped(tiny_data, tmp_path / "x", [*GPS, "--max-update", "5"], tmp_path / "x.log")
    assert "Start iterating" not in (tmp_path / "x.log").read_text()
