"""The README's main job in quick mode, with the analysis mode: data -> base -> LSLo -> weight
learning, ISE, LSP, GPS -> beam-5 generation of every direction -> table, figures 1, 2, 4."""
import csv
import json
import subprocess
import sys

import pytest

from helpers import fairseq_env


@pytest.mark.slow
def test_quick_demo_with_analysis_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "lslo_fairseq.cli.demo", "--quick", "--analysis", "--out", str(out)],
                          capture_output=True, text=True, env=fairseq_env(), timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = list(csv.reader(open(out / "results.csv")))
    assert rows[0][0] == "run" and rows[0][-1] == "AVG" and "H2V" in rows[0]
    assert [r[0] for r in rows[1:]] == ["base", "LSLo H:2 M:2 V:8", "LSLo H:2 M:2 V:8 +WL+GPS(0.9)"]
    meta = json.load(open(out / "results.json"))["meta"]
    assert "md5" in json.dumps(meta["spm_model"])
    assert (out / "results.png").stat().st_size > 10_000 and (out / "results.pdf").exists()
    # all 12 directions of en fr ko oc, every test row, for every model
    for run in ("base", "lslo", "gps"):
        files = sorted((out / "generate" / run).glob("*/generate-test.txt"))
        assert len(files) == 12
        assert all(sum(l.startswith("H-") for l in open(f)) == 20 for f in files)
    for fig in ("weight_learning_fig1", "ise_fig2", "ise_fig5", "lsp_fig4", "lsp_fig6"):
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{fig}.{ext}").stat().st_size > 5_000, fig
    # the GPS run pruned H and M to 0.9 and left V alone
    counts = json.load(open(out / "gps" / "pruning_counts.json"))
    assert counts["sparsity"]["V"] == 0.0
    assert counts["sparsity"]["H"] == pytest.approx(0.9, abs=0.01) and counts["sparsity"]["M"] == pytest.approx(0.9, abs=0.01)
