"""The README's main job in quick mode, on the shipped stand-in: data with its vocabulary ->
Ft-all, LSLo, LSLo+GPS(0.9) (and the analysis runs) -> beam-5 generation of every direction ->
the mini table 1 with bootstrap intervals, a quiet console, logs in files."""
import csv
import json
import subprocess
import sys

import pytest

from lslo_fairseq.stand_in import package

from helpers import fairseq_env

ROWS = ["Pretrain", "Ft-all", "LSLo H:2,M:2,V:8", "LSLo H:2,M:2,V:8 + GPS(0.9)"]


@pytest.mark.slow
@pytest.mark.skipif(not (package.STAND_IN_DIR / package.SUMS).is_file(), reason="no stand-in shipped yet")
def test_quick_demo_builds_the_four_rows_with_intervals_quietly(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "lslo_fairseq.cli.demo", "--quick", "--analysis", "--out", str(out),
                           "--bootstrap", "200"],
                          capture_output=True, text=True, env=fairseq_env(), timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    assert "| INFO |" not in console and "Warning" not in console  # fairseq's logs are in files
    assert f"fairseq's logs in {out}/logs" in console
    for key in ("ft_all", "lslo", "gps", "wl", "ise", "lsp", "wl_gps"):
        assert "num_updates" in (out / "logs" / f"train_{key}.log").read_text()
    gen_log = (out / "logs" / "generate_lslo.log").read_text()
    assert gen_log.count("loading model(s) from") == 1 and gen_log.count(": translated 12 sentences") == 12

    rows = list(csv.reader(open(out / "results.csv")))
    assert rows[0][0] == "run" and rows[0][-1] == "AVG" and "H2V" in rows[0]
    assert [r[0] for r in rows[1:]] == ROWS + ["LSLo H:2,M:2,V:8 +WL+GPS(0.9)"]
    meta = json.load(open(out / "results.json"))["meta"]
    trainable = meta["trainable"]
    assert trainable["Pretrain"] == 0
    assert 0 < trainable["LSLo H:2,M:2,V:8"] < trainable["Ft-all"] / 10
    assert trainable["LSLo H:2,M:2,V:8 + GPS(0.9)"] == trainable["LSLo H:2,M:2,V:8"]
    boot = meta["bootstrap"]
    assert boot["baseline"] == "Pretrain" and boot["samples"] == 200
    for run, cells in boot["intervals"].items():
        for column, (value, low, high) in cells.items():
            assert low <= value + 1e-9 and value <= high + 1e-9, (run, column)
    assert set(boot["differences"]) == set(ROWS[1:] + ["LSLo H:2,M:2,V:8 +WL+GPS(0.9)"])
    # the printed table: every row, each with its interval line, and the summary lines
    for name in ROWS:
        assert any(line.startswith(name) for line in proc.stdout.splitlines()), name
    assert proc.stdout.count("[") >= 2 * 8 * len(ROWS)
    assert "Ft-all: " in proc.stdout and "of Ft-all's trainable parameters" in proc.stdout
    # all 12 directions of en fr ko oc, every test row, for every model
    for run in ("pretrain", "ft_all", "lslo", "gps", "wl_gps"):
        files = sorted((out / "generate" / run).glob("*/generate-test.txt"))
        assert len(files) == 12
        assert all(sum(l.startswith("H-") for l in open(f)) == 12 for f in files)
    for fig in ("weight_learning_fig1", "ise_fig2", "ise_fig5", "lsp_fig4", "lsp_fig6"):
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{fig}.{ext}").stat().st_size > 5_000, fig
    assert (out / "results.png").stat().st_size > 10_000
    # the GPS run pruned H and M to 0.9 and left V alone
    counts = json.load(open(out / "gps" / "pruning_counts.json"))
    assert counts["sparsity"]["V"] == 0.0
    assert counts["sparsity"]["H"] == pytest.approx(0.9, abs=0.01) and counts["sparsity"]["M"] == pytest.approx(0.9, abs=0.01)
