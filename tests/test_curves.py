"""Figure 3 from a real tiny run: keep each epoch's checkpoint, score it with lslo-score (beam 5,
every direction), plot spBLEU per epoch with lslo-plot curves."""
import json

import pytest

from helpers import LSLO_ARGS, TRAIN_ARGS, USER_DIR, lslo_task_args, run_fairseq, task_args
from lslo_fairseq.cli import plot, score

pytestmark = pytest.mark.slow  # trains with fairseq-train and decodes with lslo-score --generate


def test_figure_3_from_epoch_checkpoints(tiny_data, tiny_base_checkpoint, tmp_path):
    train_args = [a for a in TRAIN_ARGS if a != "--no-epoch-checkpoints"]
    run_fairseq("fairseq-train", [*lslo_task_args(tiny_data), *LSLO_ARGS, *train_args,
                                  "--save-dir", str(tmp_path / "ckpt"), "--max-epoch", "2",
                                  "--finetune-from-model", str(tiny_base_checkpoint)], tmp_path / "train.log")
    extra = task_args(tiny_data)[3:]  # language and dictionary flags, without data dir and task
    results = []
    for epoch in (1, 2):
        prefix = tmp_path / f"ep{epoch}"
        rc = score.main(["--generate", "--data-dir", tiny_data["data_dir"],
                         "--checkpoint", str(tmp_path / "ckpt" / f"checkpoint{epoch}.pt"),
                         "--pairs", ",".join(tiny_data["lang_pairs"]), "--results-dir", str(tmp_path / f"gen{epoch}"),
                         "--spm", tiny_data["spm_model"], "--lang-groups", "en:H,fr:H,ko:M,oc:V",
                         "--name", "LSLo", "--out", str(prefix), "--user-dir", USER_DIR,
                         "--", *extra, "--max-len-b", "10"])
        assert rc == 0
        doc = json.loads(prefix.with_suffix(".json").read_text())
        assert doc["table"] and "H2H" in doc["columns"]
        results.append(str(prefix.with_suffix(".json")))
    assert plot.main(["curves", "--run", "LSLo=" + ",".join(results), "--columns", "H2H,V2M",
                      "--out", str(tmp_path / "curve")]) == 0
    for ext in ("png", "pdf"):
        assert (tmp_path / f"curve_fig3.{ext}").stat().st_size > 5_000
