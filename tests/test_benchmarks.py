"""Every benchmark script runs end to end in its ``--quick`` mode and prints its table and JSON
(timings are not asserted: they depend on the machine and its load)."""
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import decode, model, pruning, routing  # noqa: E402

SCRIPTS = {
    routing: (["lslo/shared", "loop/lslo"], ["12", "30"]),
    pruning: (["kind", "seconds"], ["gps@3", "ise@3", "lsp@3"]),
    decode: (["sentences/s"], ["base", "lslo", "lslo-gather", "lslo-dense"]),
}


@pytest.mark.parametrize("script", list(SCRIPTS), ids=lambda m: m.__name__.split(".")[-1])
def test_script_runs_in_quick_mode(script, tmp_path, capsys):
    out_json = tmp_path / "result.json"
    extra = ["--kernels"] if script is decode else []
    assert script.main(["--quick", "--threads", "1", "--json", str(out_json), *extra]) == 0
    printed = capsys.readouterr().out
    headers, keys = SCRIPTS[script]
    assert "load average" in printed and "torch.set_num_threads(1)" in printed
    for h in headers:
        assert h in printed
    results = json.loads(out_json.read_text())["results"]
    assert sorted(results) == sorted(keys)


def test_model_benchmark_reports_what_each_configuration_trains(tmp_path, capsys):
    """What each configuration trains and keeps is exact (``--quick``: one worker process)."""
    out_json = tmp_path / "model.json"
    assert model.main(["--quick", "--threads", "1", "--json", str(out_json)]) == 0
    assert "updates/s" in capsys.readouterr().out
    r = json.loads(out_json.read_text())["results"]
    assert r["base"]["trainable"] == 0 and r["base"]["optimizer_state_bytes"] == 0
    assert 0 < r["lslo"]["trainable"] < r["full"]["trainable"] == r["full"]["params"]
    for c in ("lslo", "full"):  # Adam keeps two fp32 moments per trainable parameter
        assert r[c]["optimizer_state_bytes"] >= 2 * r[c]["trainable_bytes"]
    assert all(r[c]["peak_bytes"] >= 0 and r[c]["updates_per_s"] > 0 for c in r)


def test_bad_arguments_fail_before_any_work():
    with pytest.raises(SystemExit, match="--langs"):
        routing.main(["--langs", "12,x"])
    with pytest.raises(SystemExit, match="--kinds"):
        pruning.main(["--quick", "--kinds", "gps,foo"])


def test_m2m_shaped_benchmarks_default_to_the_released_vocabulary(capsys):
    """decode.py, model.py (m2m's shape options) and ct2.py --shape 615m build a 256,000-entry
    dictionary by default, as the released M2M-124 615M's, and say so in their help."""
    import argparse

    from benchmarks import ct2, m2m

    p = argparse.ArgumentParser()
    m2m.add_shape_args(p, "", "")
    assert p.parse_args([]).vocab == m2m.M2M_VOCAB == 256_000
    for script in (decode, model, ct2):
        with pytest.raises(SystemExit):
            script.main(["--help"])
        assert "(default 256,000: the released M2M-124 615M's" in " ".join(capsys.readouterr().out.split())
