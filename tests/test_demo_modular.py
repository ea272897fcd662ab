"""``lslo-demo --modular`` in quick mode, on the shipped stand-in: the modular run, the merge-weight
search and learning, the table with every row, English's own adapters, the language added without
changing the old directions, figure 2 and the logit lens, with a quiet console."""
import json
import subprocess
import sys

import pytest

from lslo_fairseq.analysis import logit_lens as lens
from lslo_fairseq.runfiles import merge_weights
from lslo_fairseq.stand_in import package

from helpers import fairseq_env

ROWS = ["Pretrain", "LSLo H:2,M:2,V:8", "LoRA_in only (1,0)", "LoRA_out only (0,1)", "Setting 1 (outputs, w_in=",
        "Setting 2 (ab, w_in=", "Setting 1, w_in per direction (searched)", "Setting 1, learned per-layer weights"]


@pytest.mark.slow
@pytest.mark.skipif(not (package.STAND_IN_DIR / package.SUMS).is_file(), reason="no stand-in shipped yet")
def test_quick_modular_demo_prints_every_row_and_draws_figure_2_and_the_lens(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "lslo_fairseq.cli.demo", "--quick", "--modular", "--out", str(out),
                           "--bootstrap", "100"], capture_output=True, text=True, env=fairseq_env(), timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    assert "| INFO |" not in console and "Warning" not in console  # fairseq's logs are in files
    lines = proc.stdout.splitlines()
    for row in ROWS:
        assert any(line.startswith(row) for line in lines), row
    # English's own adapters beside ours, on X->en, en->Y and the zero-shot directions
    at = next(i for i, line in enumerate(lines) if line.startswith("English's own adapters"))
    assert lines[at + 1].split() == ["X->en", "en->Y", "zero-shot"]
    assert lines[at + 2].startswith("pivot without adapters (ours)") and lines[at + 3].startswith("modular + en adapters")
    # the language added afterwards changed no old direction
    record = json.load(open(out / "modular.json"))
    assert record["identical_after_adding"] == record["old_directions"] > 0
    # learned per-layer weights: a file generation reads, one pair per layer of the stand-in
    _, _, layered = merge_weights.load(record["learned_weights"])
    assert layered and all(len(w["encoder"]) == len(w["decoder"]) == 3 for w in layered.values())
    # the logit lens of the three models, pooled shares that sum to 1 per layer, and the figures
    assert len(record["logit_lens"]) == 3
    for entry in record["logit_lens"].values():
        assert entry["layers"] == ["emb", "1", "2", "3"]
        assert all(sum(row) == pytest.approx(1.0) for row in entry["shares"])
    for name in list(record["logit_lens"])[:1]:
        doc = json.load(open(out / "lens" / "0.json"))
        assert doc["kind"] == lens.KIND and "rule" in doc and doc["meta"]["checkpoint"] == \
            record["logit_lens"][name]["checkpoint"]
    assert any(line.startswith("Logit lens on the zero-shot directions") for line in lines)
    for fig in ("modular_merge_weights", "logit_lens_lens_models", "logit_lens_Pretrain_lens"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 5_000, fig
