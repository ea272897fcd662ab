"""The README's main job, in quick mode: data -> base -> LSLo -> beam-5 generation -> table + plot."""
import csv
import json
import subprocess
import sys

import pytest

from helpers import fairseq_env


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "lslo_fairseq.cli.demo", "--quick", "--out", str(out)],
                          capture_output=True, text=True, env=fairseq_env(), timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = list(csv.reader(open(out / "results.csv")))
    assert rows[0][0] == "run" and rows[0][-1] == "AVG" and "H2V" in rows[0]
    assert [r[0] for r in rows[1:]] == ["base", "LSLo H:2 M:2 V:8"]
    meta = json.load(open(out / "results.json"))
    per_direction = next(iter(meta.values())) if "meta" not in meta else meta
    assert (out / "results.png").stat().st_size > 10_000 and (out / "results.pdf").exists()
    assert "md5" in json.dumps(meta["meta"]["spm_model"])
    # all 12 directions of en fr ko oc were generated for both models, every test row
    for run in ("base", "lslo"):
        files = sorted((out / "generate" / run).glob("*/generate-test.txt"))
        assert len(files) == 12
        assert all(sum(l.startswith("H-") for l in open(f)) == 20 for f in files)
