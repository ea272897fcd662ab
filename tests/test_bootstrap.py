"""Paired bootstrap confidence intervals of the table's cells (lslo_fairseq.evaluation.bootstrap)
and ``lslo-score --bootstrap N --baseline RUN``."""
import json
import random

import numpy as np
import pytest

from helpers import write_generate
from lslo_fairseq.cli import score as score_cli
from lslo_fairseq.data.multiparallel import LIBREOFFICE_TSV, load_table
from lslo_fairseq.evaluation import ScoringError
from lslo_fairseq.evaluation.bootstrap import paired_bootstrap, sentence_stats
from lslo_fairseq.evaluation.spbleu import spbleu
from lslo_fairseq.evaluation.tables import group_table

LANGS = ("en", "fr", "ko", "oc")
GROUPS = {"en": "H", "fr": "H", "ko": "M", "oc": "V"}
DIRECTIONS = [("en", "fr"), ("fr", "en"), ("en", "oc"), ("oc", "ko"), ("ko", "en")]
N = 30


@pytest.fixture(scope="module")
def refs():
    table = load_table(LIBREOFFICE_TSV, LANGS)
    return {lang: table[lang][-N:] for lang in LANGS}  # rows the tiny training data does not use first


def degrade(sentences, drop, seed):
    """Each sentence with a share ``drop`` of its words removed (at least one word kept)."""
    rng = random.Random(seed)
    out = []
    for s in sentences:
        words = s.split()
        kept = [w for w in words if rng.random() >= drop] or words[:1]
        out.append(" ".join(kept))
    return out


def run_stats(refs, spm, drop, seed=0):
    return {(s, t): sentence_stats(degrade(refs[t], drop, seed + i) if drop else refs[t], refs[t], spm)
            for i, (s, t) in enumerate(DIRECTIONS)}


def test_cells_are_the_tables_and_intervals_contain_them(refs, tiny_data):
    spm = tiny_data["spm_model"]
    stats = {"mid": run_stats(refs, spm, 0.3)}
    cells, diffs = paired_bootstrap(stats, GROUPS, None, n_samples=200, seed=3)
    assert diffs == {}
    scores = {(s, t): spbleu(degrade(refs[t], 0.3, i), refs[t], spm) for i, (s, t) in enumerate(DIRECTIONS)}
    columns, values = group_table(scores, GROUPS)
    assert list(cells["mid"]) == columns
    for column, value in zip(columns, values):
        interval = cells["mid"][column]
        assert interval.value == pytest.approx(value, abs=1e-9)  # sacrebleu's own corpus spBLEU
        assert interval.low <= interval.value <= interval.high and interval.high - interval.low > 0.1


def test_a_seed_reproduces_the_intervals(refs, tiny_data):
    stats = {"a": run_stats(refs, tiny_data["spm_model"], 0.2), "b": run_stats(refs, tiny_data["spm_model"], 0.4)}
    first = paired_bootstrap(stats, GROUPS, "a", n_samples=100, seed=7)
    again = paired_bootstrap(stats, GROUPS, "a", n_samples=100, seed=7)
    other = paired_bootstrap(stats, GROUPS, "a", n_samples=100, seed=8)
    assert first == again
    assert first[0]["b"]["AVG"] != other[0]["b"]["AVG"]


def test_paired_differences_find_a_real_gap_and_not_an_identical_run(refs, tiny_data):
    spm = tiny_data["spm_model"]
    base = run_stats(refs, spm, 0.5)
    stats = {"base": base, "same": {d: s.copy() for d, s in base.items()}, "better": run_stats(refs, spm, 0.1)}
    cells, diffs = paired_bootstrap(stats, GROUPS, "base", n_samples=300, seed=1)
    assert all(i.value == 0 and i.low == 0 and i.high == 0 and not i.significant for i in diffs["same"].values())
    assert diffs["better"]["AVG"].significant and diffs["better"]["AVG"].low > 0
    # paired: the difference's interval is narrower than the two runs' own intervals side by side
    b, s = cells["better"]["AVG"], cells["base"]["AVG"]
    d = diffs["better"]["AVG"]
    assert d.high - d.low < (b.high - b.low) + (s.high - s.low)


def test_runs_must_share_their_test_sentences(refs, tiny_data):
    spm = tiny_data["spm_model"]
    a = run_stats(refs, spm, 0.2)
    b = dict(a)
    b[DIRECTIONS[0]] = a[DIRECTIONS[0]][:-1]
    with pytest.raises(ScoringError, match="en-fr has 29 sentences in run b and 30 in run a"):
        paired_bootstrap({"a": a, "b": b}, GROUPS, "a", n_samples=10)
    with pytest.raises(ScoringError, match="--baseline: no run named 'c'"):
        paired_bootstrap({"a": a}, GROUPS, "c", n_samples=10)


def test_lslo_score_bootstrap_prints_intervals_and_significance(refs, tiny_data, tmp_path, capsys):
    for name, drop in (("Base", 0.5), ("Better", 0.1)):
        for i, (s, t) in enumerate(DIRECTIONS):
            write_generate(tmp_path / name / f"{s}-{t}" / "generate-test.txt", degrade(refs[t], drop, i), refs[t])
    groups = ",".join(f"{k}:{v}" for k, v in GROUPS.items())
    argv = ["--run", f"Base={tmp_path / 'Base'}", "--run", f"Better={tmp_path / 'Better'}", "--spm",
            tiny_data["spm_model"], "--lang-groups", groups, "--out", str(tmp_path / "t"), "--bootstrap", "200"]
    assert score_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "95% confidence intervals, 200 paired bootstrap resamples (seed 1)" in out
    assert "Better - Base" in out and "Better: significantly better than Base on" in out
    doc = json.load(open(tmp_path / "t.json"))
    boot = doc["meta"]["bootstrap"]
    assert boot["baseline"] == "Base" and boot["samples"] == 200
    avg = boot["intervals"]["Better"]["AVG"]
    assert avg[1] <= avg[0] <= avg[2] and avg[0] == pytest.approx(doc["table"][1]["AVG"], abs=1e-6)
    # the same command again: the same intervals (seeded)
    assert score_cli.main(argv) == 0
    capsys.readouterr()
    assert json.load(open(tmp_path / "t.json"))["meta"]["bootstrap"] == boot
    # bad input, before any scoring
    assert score_cli.main(argv[:-2] + ["--baseline", "Base"]) == 2
    assert "--baseline compares runs by bootstrap resampling: give --bootstrap N too" in capsys.readouterr().err
    assert score_cli.main(argv + ["--baseline", "Nope"]) == 2
    assert "--baseline: no run named 'Nope'; the runs are Base, Better" in capsys.readouterr().err
    assert score_cli.main(argv[:-1] + ["1"]) == 2
    assert "--bootstrap: 0 (off) or a number of resamples >= 2, got 1" in capsys.readouterr().err
    assert np.isfinite(avg).all()
