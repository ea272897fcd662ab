"""lslo-score's metrics (lslo_fairseq.evaluation.metrics): chrF++ beside spBLEU, the per-language
averages l→ / →l, chrF++ bootstrap intervals and ``lslo-score --metric``."""
import csv
import json
import random

import pytest
import sacrebleu
from sacrebleu.metrics import CHRF

from helpers import write_generate
from lslo_fairseq.cli import score as score_cli
from lslo_fairseq.data.multiparallel import LIBREOFFICE_TSV, load_table
from lslo_fairseq.evaluation import ScoringError
from lslo_fairseq.evaluation.bootstrap import compare_runs, paired_bootstrap, run_stats, sentence_stats
from lslo_fairseq.evaluation.metrics import METRICS, get_metric, parse_metrics, results_prefix
from lslo_fairseq.evaluation.spbleu import spbleu
from lslo_fairseq.evaluation.tables import (format_language_table, group_table, language_directions, language_table,
                                            write_language_results)

LANGS = ("en", "fr", "ko", "oc")
GROUPS = {"en": "H", "fr": "H", "ko": "M", "oc": "V"}
GROUP_SPEC = ",".join(f"{k}:{v}" for k, v in GROUPS.items())
DIRECTIONS = [("en", "fr"), ("fr", "en"), ("en", "oc"), ("oc", "ko"), ("ko", "en")]
N = 30
CHRF_PP = get_metric("chrf++")


@pytest.fixture(scope="module")
def refs():
    table = load_table(LIBREOFFICE_TSV, LANGS)
    return {lang: table[lang][-N:] for lang in LANGS}


def degrade(sentences, drop, seed):
    """Each sentence with a share ``drop`` of its words removed (at least one word kept)."""
    rng = random.Random(seed)
    return [" ".join([w for w in s.split() if rng.random() >= drop] or s.split()[:1]) for s in sentences]


def texts_of(refs, drop):
    return {(s, t): (degrade(refs[t], drop, i), refs[t]) for i, (s, t) in enumerate(DIRECTIONS)}


# ---- the metrics ---------------------------------------------------------------------------------


def test_chrf_pp_is_sacrebleus_chrf_word_order_2(refs):
    hyps = degrade(refs["fr"], 0.3, 0)
    expected = CHRF(word_order=2).corpus_score(hyps, [refs["fr"]]).score
    assert CHRF_PP.corpus_score(hyps, refs["fr"]) == pytest.approx(expected, abs=1e-9)
    assert 10 < expected < 95
    assert expected != pytest.approx(sacrebleu.corpus_chrf(hyps, [refs["fr"]]).score, abs=1e-3)  # not chrF
    assert CHRF_PP.corpus_score(refs["ko"], refs["ko"]) == pytest.approx(100.0)
    with pytest.raises(ScoringError, match="2 hypotheses but 1"):
        CHRF_PP.corpus_score(["a", "b"], ["a"])
    meta = CHRF_PP.meta()
    assert "nw:2" in meta["sacrebleu"]["signature"] and meta["sacrebleu"]["version"] == sacrebleu.__version__


def test_spbleu_from_sentence_statistics_is_spbleu(refs, tiny_data):
    spm = tiny_data["spm_model"]
    hyps = degrade(refs["en"], 0.3, 1)
    assert get_metric("spbleu").corpus_score(hyps, refs["en"], spm) == pytest.approx(spbleu(hyps, refs["en"], spm),
                                                                                      abs=1e-9)


def test_parse_metrics_and_the_unknown_metric():
    assert [m.name for m in parse_metrics("spbleu")] == ["spbleu"]
    assert [m.name for m in parse_metrics(" chrF++ , spbleu")] == ["chrf++", "spbleu"]  # order given
    with pytest.raises(ScoringError, match=r"^--metric: unknown metric\(s\) 'bleu'; choose from spbleu, chrf\+\+"):
        parse_metrics("spbleu,bleu")
    with pytest.raises(ScoringError, match="--metric: empty metric name"):
        parse_metrics("spbleu,")
    with pytest.raises(ScoringError, match="'spbleu' given twice"):
        parse_metrics("spbleu,SPBLEU")
    assert list(METRICS) == ["spbleu", "chrf++"]


def test_results_file_names():
    assert results_prefix("res/t", "runs", "spbleu") == "res/t"  # the names lslo-score always wrote
    assert results_prefix("res/t", "runs", "chrf++") == "res/t.chrfpp"
    assert results_prefix(None, "runs", "spbleu") == "runs/spbleu"
    assert results_prefix(None, "", "chrf++") == "chrfpp"


# ---- per-language averages -------------------------------------------------------------------------


def test_language_averages_by_hand(tmp_path):
    scores = {("en", "fr"): 10.0, ("fr", "en"): 20.0, ("en", "oc"): 4.0, ("oc", "ko"): 1.0, ("ko", "en"): 30.0}
    by_lang = language_table(scores, GROUPS)
    assert list(by_lang) == ["en", "fr", "ko", "oc"]  # by group H, M, V, then as the groups list them
    assert by_lang["en"] == {"out_of": pytest.approx((10 + 4) / 2), "into": pytest.approx((20 + 30) / 2)}
    assert by_lang["fr"] == {"out_of": 20.0, "into": 10.0}
    assert by_lang["ko"] == {"out_of": 30.0, "into": 1.0}
    assert by_lang["oc"] == {"out_of": 1.0, "into": 4.0}
    # a language only ever translated into: no l→
    assert language_table({("en", "oc"): 4.0}, GROUPS) == {"en": {"out_of": 4.0, "into": None},
                                                            "oc": {"out_of": None, "into": 4.0}}
    assert language_directions(scores, GROUPS)["en"] == {"out_of": [("en", "fr"), ("en", "oc")],
                                                         "into": [("fr", "en"), ("ko", "en")]}
    text = format_language_table({"A": by_lang, "B": {"en": {"out_of": 1.0, "into": None}}}, GROUPS)
    lines = text.splitlines()
    assert lines[0].split() == ["Language", "Group", "A", "l→", "A", "→l", "B", "l→", "B", "→l"]
    assert lines[1].split() == ["en", "H", "7.00", "25.00", "1.00", "-"]
    assert lines[4].split() == ["oc", "V", "1.00", "4.00", "-", "-"]
    path = write_language_results(str(tmp_path / "t.langs.csv"), {"A": by_lang}, GROUPS)
    rows = list(csv.reader(open(path)))
    assert rows[0] == ["run", "language", "group", "out_of", "into"]
    assert rows[1] == ["A", "en", "H", "7.0000", "25.0000"]


# ---- chrF++ bootstrap ---------------------------------------------------------------------------


def test_chrf_pp_bootstrap_contains_the_point_estimate_and_is_seeded(refs):
    stats = {"mid": run_stats({"mid": texts_of(refs, 0.3)}, None, "chrf++")["mid"],
             "good": run_stats({"good": texts_of(refs, 0.1)}, None, "chrf++")["good"]}
    assert stats["mid"]["en", "fr"].shape == (N, 3 * 8)  # 6 character + 2 word orders
    cells, diffs = paired_bootstrap(stats, GROUPS, "mid", n_samples=200, seed=3, metric="chrf++")
    scores = {d: CHRF(word_order=2).corpus_score(h, [r]).score for d, (h, r) in texts_of(refs, 0.3).items()}
    columns, values = group_table(scores, GROUPS)
    assert list(cells["mid"]) == columns
    for column, value in zip(columns, values):
        interval = cells["mid"][column]
        assert interval.value == pytest.approx(value, abs=1e-9)  # sacrebleu's corpus chrF++
        assert interval.low <= interval.value <= interval.high and interval.high - interval.low > 0.1
    assert diffs["good"]["AVG"].significant and diffs["good"]["AVG"].value > 0
    again = paired_bootstrap(stats, GROUPS, "mid", n_samples=200, seed=3, metric="chrf++")
    other = paired_bootstrap(stats, GROUPS, "mid", n_samples=200, seed=4, metric="chrf++")
    assert (cells, diffs) == again
    assert cells["mid"]["AVG"] != other[0]["mid"]["AVG"]
    # sentence_stats by name, as the spBLEU default
    assert (sentence_stats(*texts_of(refs, 0.3)["en", "fr"], None, "chrf++") == stats["mid"]["en", "fr"]).all()


def test_bootstrap_of_the_language_averages(refs):
    texts = {"a": texts_of(refs, 0.3), "b": texts_of(refs, 0.1)}
    cells, diffs, record = compare_runs(texts, None, GROUPS, "a", 100, 1, metric="chrf++", by_language=True)
    assert record["metric"] == "chrF++" and list(cells["a"]) == list(record["intervals"]["a"])
    scores = {d: CHRF(word_order=2).corpus_score(h, [r]).score for d, (h, r) in texts["a"].items()}
    by_lang = language_table(scores, GROUPS)
    for lang, sides in record["language_intervals"]["a"].items():
        for side, (value, low, high) in sides.items():
            assert value == pytest.approx(by_lang[lang][side], abs=1e-9) and low <= value <= high
    assert set(record["language_differences"]["b"]["en"]) == {"out_of", "into"}


# ---- through lslo-score --------------------------------------------------------------------------


@pytest.fixture
def runs(refs, tmp_path):
    for name, drop in (("Base", 0.5), ("Better", 0.1)):
        for (s, t), (hyps, r) in texts_of(refs, drop).items():
            write_generate(tmp_path / name / f"{s}-{t}" / "generate-test.txt", hyps, r)
    return ["--run", f"Base={tmp_path / 'Base'}", "--run", f"Better={tmp_path / 'Better'}", "--lang-groups", GROUP_SPEC]


def test_lslo_score_spbleu_and_chrf_pp(runs, refs, tiny_data, tmp_path, capsys):
    prefix = tmp_path / "out" / "t"
    argv = runs + ["--spm", tiny_data["spm_model"], "--metric", "spbleu,chrf++", "--out", str(prefix),
                   "--bootstrap", "100", "--bootstrap-seed", "5"]
    assert score_cli.main(argv) == 0
    captured = capsys.readouterr()
    out = captured.out
    for heading in ("spBLEU by resource group", "spBLEU: 95% confidence intervals, 100 paired bootstrap",
                    "spBLEU per language (l→", "chrF++ by resource group",
                    "chrF++: 95% confidence intervals, 100 paired bootstrap", "chrF++ per language (l→"):
        assert heading in out
    assert out.index("spBLEU per language") < out.index("chrF++ by resource group")  # metric by metric
    assert sorted(p.name for p in prefix.parent.iterdir()) == [
        "t.chrfpp.csv", "t.chrfpp.json", "t.chrfpp.langs.csv", "t.csv", "t.json", "t.langs.csv"]

    chrf = json.load(open(f"{prefix}.chrfpp.json"))
    expected = {f"{s}-{t}": CHRF(word_order=2).corpus_score(h, [r]).score
                for (s, t), (h, r) in texts_of(refs, 0.1).items()}
    assert chrf["per_direction"]["Better"] == pytest.approx(expected, abs=1e-9)
    assert chrf["table"][1]["AVG"] == pytest.approx(sum(expected.values()) / len(expected), abs=1e-9)
    assert chrf["per_language"]["Better"]["en"]["out_of"] == pytest.approx((expected["en-fr"] + expected["en-oc"]) / 2)
    assert chrf["per_language"]["Better"]["en"]["into"] == pytest.approx((expected["fr-en"] + expected["ko-en"]) / 2)
    assert "nw:2" in chrf["meta"]["sacrebleu"]["signature"] and "spm_model" not in chrf["meta"]
    boot = chrf["meta"]["bootstrap"]
    assert boot["metric"] == "chrF++" and boot["seed"] == 5 and boot["baseline"] == "Base"
    value, low, high = boot["intervals"]["Better"]["AVG"]
    assert low <= value <= high and value == pytest.approx(chrf["table"][1]["AVG"], abs=1e-9)
    assert boot["differences"]["Better"]["AVG"][1] > 0  # significantly better
    rows = list(csv.reader(open(f"{prefix}.chrfpp.csv")))
    assert rows[0] == ["run", *chrf["columns"]] and rows[2][0] == "Better"
    langs = list(csv.reader(open(f"{prefix}.chrfpp.langs.csv")))
    assert langs[0] == ["run", "language", "group", "out_of", "into"] and len(langs) == 1 + 2 * len(LANGS)

    sp = json.load(open(f"{prefix}.json"))  # spBLEU: its files as before, the per-language averages added
    assert sp["meta"]["metric"].startswith("spBLEU") and sp["meta"]["bootstrap"]["metric"] == "spBLEU"
    assert sp["per_direction"]["Base"]["oc-ko"] == pytest.approx(
        spbleu(*texts_of(refs, 0.5)["oc", "ko"], tiny_data["spm_model"]), abs=1e-9)
    assert "wrote " + f"{prefix}.chrfpp.csv, {prefix}.chrfpp.json and {prefix}.chrfpp.langs.csv" in captured.err

    # the same command again: the same intervals (seeded)
    assert score_cli.main(argv) == 0
    capsys.readouterr()
    assert json.load(open(f"{prefix}.chrfpp.json"))["meta"]["bootstrap"] == boot


def test_lslo_score_default_is_spbleu_and_chrf_pp_needs_no_spm(runs, tiny_data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert score_cli.main(runs + ["--spm", tiny_data["spm_model"]]) == 0
    assert "chrF++" not in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.glob("*.*")) == ["spbleu.csv", "spbleu.json", "spbleu.langs.csv"]
    assert score_cli.main(runs + ["--metric", "chrf++"]) == 0  # no --spm: chrF++ uses none
    assert capsys.readouterr().out.startswith("chrF++ by resource group")
    assert (tmp_path / "chrfpp.json").is_file() and (tmp_path / "chrfpp.langs.csv").is_file()


def test_lslo_score_unknown_metric_fails_before_any_work(runs, tmp_path, capsys):
    out = tmp_path / "o"
    assert score_cli.main(runs + ["--spm", str(tmp_path / "nowhere.model"), "--metric", "spbleu,bleu",
                                  "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err == ("lslo-score: error: --metric: unknown metric(s) 'bleu'; choose from spbleu, chrf++ "
                            "(comma separated, e.g. --metric spbleu,chrf++)\n")
    assert captured.out == "" and not list(tmp_path.glob("o*"))
