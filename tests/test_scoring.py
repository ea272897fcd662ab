"""Tests of lslo_fairseq.evaluation and the lslo-score CLI (no model needed)."""
import csv
import hashlib
import json
import logging
import os
import re
import random

import pytest
import sacrebleu

from lslo_fairseq.cli import score as score_cli
from lslo_fairseq.groups import PRESETS
from lslo_fairseq.evaluation import ScoringError, generation, outputs, tables
from lslo_fairseq.evaluation import spbleu as spbleu_mod
from lslo_fairseq.evaluation.generation import generation_args
from lslo_fairseq.evaluation.outputs import find_direction_outputs, read_generate_output
from lslo_fairseq.evaluation.spbleu import spbleu
from lslo_fairseq.evaluation.tables import format_table, group_table, write_results

from lslo_fairseq.data.multiparallel import LIBREOFFICE_TSV as DATA  # the copy the package ships


# ------------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------------
def _corpus(n=300):
    with open(DATA, encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = [row for _, row in zip(range(n), reader)]
    return rows


@pytest.fixture(scope="module")
def corpus():
    return _corpus()


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory, corpus):
    import sentencepiece as spm

    folder = tmp_path_factory.mktemp("spm")
    text = folder / "train.txt"
    text.write_text("\n".join(r[l] for r in corpus for l in ("en", "fr", "de")) + "\n", encoding="utf-8")
    prefix = str(folder / "tiny")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=prefix, vocab_size=300, model_type="unigram",
        character_coverage=1.0, hard_vocab_limit=False, minloglevel=2,
    )
    return prefix + ".model"


def _perturb(sentences, seed=0):
    rng = random.Random(seed)
    out = []
    for s in sentences:
        words = s.split()
        if len(words) > 2 and rng.random() < 0.7:
            i = rng.randrange(len(words))
            words = words[:i] + words[i + 1:]
        if len(words) > 3 and rng.random() < 0.5:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        out.append(" ".join(words))
    return out


def _write_generate(path, hyps, refs, order=None, nbest=1):
    """A fairseq-generate style file, ids in ``order`` (default: as given)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    order = list(range(len(hyps))) if order is None else order
    lines = ["2026-01-01 00:00:00 | INFO | fairseq_cli.generate | {'_name': None}"]
    for i in order:
        lines += [f"S-{i}\t__en__ source {i}", f"T-{i}\t{refs[i]}"]
        for k in range(nbest):
            hyp = hyps[i] if k == 0 else f"worse {k} {hyps[i]}"
            lines += [f"H-{i}\t-0.{k + 1}\t{hyp}", f"D-{i}\t-0.{k + 1}\t{hyp}", f"P-{i}\t-0.1 -0.2"]
    lines.append("Generate test with beam=5: BLEU4 = 12.34")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------------
# read_generate_output
# ------------------------------------------------------------------------------------------------
def test_read_generate_output_sorted_by_id_first_of_nbest(tmp_path):
    hyps = ["h zero", "h one", "", "h three"]
    refs = ["r zero", "r one", "r two", ""]
    path = str(tmp_path / "gen.txt")
    _write_generate(path, hyps, refs, order=[2, 0, 3, 1], nbest=2)
    got_h, got_r = read_generate_output(path)
    assert got_h == hyps  # ids sorted, empty hypothesis kept, best of the n-best list
    assert got_r == refs


def test_read_generate_output_uses_detokenized_d_lines(tmp_path):
    path = tmp_path / "gen.txt"
    path.write_text("T-1\tb\nH-1\t-1\t▁tok en\nD-1\t-1\tdetok\nT-0\ta\nH-0\t-1\tx\nD-0\t-1\ty\n", encoding="utf-8")
    assert read_generate_output(str(path)) == (["y", "detok"], ["a", "b"])


def test_read_generate_output_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("S-0\tsrc\nT-0\tref\n", encoding="utf-8")
    with pytest.raises(ScoringError, match="empty.txt.*no hypotheses"):
        read_generate_output(str(empty))
    mismatch = tmp_path / "mismatch.txt"
    mismatch.write_text("T-0\ta\nD-0\t-1\ta\nT-1\tb\nD-2\t-1\tc\n", encoding="utf-8")
    with pytest.raises(ScoringError, match=r"mismatch.txt.*ids.*\[2\].*\[1\]"):
        read_generate_output(str(mismatch))
    with pytest.raises(ScoringError, match="missing.txt"):
        read_generate_output(str(tmp_path / "missing.txt"))


def test_missing_ids(tmp_path):
    path = str(tmp_path / "gen.txt")
    _write_generate(path, ["a"] * 6, ["a"] * 6, order=[5, 0, 1, 3])
    assert outputs.missing_ids(path) == [2, 4]
    _write_generate(path, ["a"] * 3, ["a"] * 3, order=[2, 1, 0])
    assert outputs.missing_ids(path) == []


# ------------------------------------------------------------------------------------------------
# spBLEU
# ------------------------------------------------------------------------------------------------
def test_spbleu_equals_sacrebleu_on_pieces(spm_model, corpus):
    import sentencepiece as spm

    refs = [r["fr"] for r in corpus[:120]]
    hyps = _perturb(refs)
    sp = spm.SentencePieceProcessor(model_file=spm_model)
    pieces = lambda xs: [" ".join(sp.encode(x, out_type=str)) for x in xs]  # noqa: E731
    expected = sacrebleu.corpus_bleu(pieces(hyps), [pieces(refs)], tokenize="none").score
    got = spbleu(hyps, refs, spm_model)
    assert 5 < got < 95
    assert got == pytest.approx(expected, abs=1e-9)
    # pieces differ from words: spBLEU is not word-level BLEU
    assert got != pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-3)


def test_spbleu_equals_sacrebleus_flores101_tokenizer(spm_model, corpus, tmp_path, monkeypatch):
    """sacrebleu's own spm tokenizer, pointed at the same model (so nothing is downloaded)."""
    import sacrebleu.tokenizers.tokenizer_spm as tokenizer_spm

    models = tmp_path / "models"
    models.mkdir()
    (models / "sacrebleu_tokenizer_spm.model").write_bytes(open(spm_model, "rb").read())
    monkeypatch.setattr(tokenizer_spm, "SACREBLEU_DIR", str(tmp_path))
    refs = [r["de"] + "  " for r in corpus[:80]]  # trailing blanks: sacrebleu strips them
    hyps = _perturb([r["de"] for r in corpus[:80]], seed=3)
    expected = sacrebleu.corpus_bleu(hyps, [refs], tokenize="flores101").score
    assert spbleu(hyps, refs, spm_model) == pytest.approx(expected, abs=1e-9)


def test_spbleu_perfect_is_100_and_model_loaded_once(spm_model, corpus):
    refs = [r["en"] for r in corpus[:50]]
    assert spbleu(refs, refs, spm_model) == pytest.approx(100.0)
    assert spbleu_mod.load_spm(spm_model) is spbleu_mod.load_spm(spm_model)
    with pytest.raises(ScoringError, match="2 hypotheses but 1"):
        spbleu(["a", "b"], ["a"], spm_model)


def test_spbleu_bad_model_file(tmp_path):
    bogus = tmp_path / "bogus.model"
    bogus.write_text("not a model")
    with pytest.raises(ScoringError, match="bogus.model"):
        spbleu(["a"], ["a"], str(bogus))


# ------------------------------------------------------------------------------------------------
# layouts
# ------------------------------------------------------------------------------------------------
def test_find_direction_outputs_layouts(tmp_path):
    run = tmp_path / "run"
    _write_generate(str(run / "en-fr" / "generate-test.txt"), ["a"], ["a"])
    _write_generate(str(run / "fr-en" / "generate-valid.txt"), ["a"], ["a"])  # single other subset
    _write_generate(str(run / "generate-en-oc.txt"), ["a"], ["a"])
    _write_generate(str(run / "oc-en.txt"), ["a"], ["a"])
    _write_generate(str(run / "generate-test.txt"), ["a"], ["a"])  # not a direction
    (run / "notes").mkdir()
    found = find_direction_outputs(str(run))
    assert found == {
        ("en", "fr"): str(run / "en-fr" / "generate-test.txt"),
        ("en", "oc"): str(run / "generate-en-oc.txt"),
        ("fr", "en"): str(run / "fr-en" / "generate-valid.txt"),
        ("oc", "en"): str(run / "oc-en.txt"),
    }
    _write_generate(str(run / "en-fr.txt"), ["a"], ["a"])
    with pytest.raises(ScoringError, match="en-fr has two outputs"):
        find_direction_outputs(str(run))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScoringError, match="no generate outputs found in .*empty"):
        find_direction_outputs(str(tmp_path / "empty"))


# ------------------------------------------------------------------------------------------------
# group tables
# ------------------------------------------------------------------------------------------------
def _cell_scores(preset, cells):
    groups = PRESETS[preset]
    return {
        (s, t): cells[f"{groups[s]}2{groups[t]}"] for s in groups for t in groups if s != t
    }


# The paper's "Pretrain" rows: table 1 (lang12, 4/4/4 languages) and table 2 (lang30, 7/9/8/6).
TABLE1 = dict(zip("H2H H2M H2V M2H M2M M2V V2H V2M V2V".split(),
                  [31.76, 20.06, 5.56, 20.71, 17.12, 3.47, 9.24, 5.03, 0.52]))
TABLE2 = dict(zip("H2H H2M H2L H2V M2H M2M M2L M2V L2H L2M L2L L2V V2H V2M V2L V2V".split(),
                  [28.93, 20.77, 6.29, 3.60, 22.94, 17.26, 4.82, 2.73,
                   11.28, 8.01, 3.03, 1.51, 7.04, 4.34, 1.68, 0.55]))


@pytest.mark.parametrize("preset,cells,avg,n", [("lang12", TABLE1, 12.26, 132), ("lang30", TABLE2, 9.53, 870)])
def test_group_table_reproduces_paper_avg(preset, cells, avg, n):
    scores = _cell_scores(preset, cells)
    assert len(scores) == n
    columns, values = group_table(scores, PRESETS[preset])
    assert columns == list(cells) + ["AVG"]  # paper's column order
    assert values[:-1] == pytest.approx(list(cells.values()))
    assert round(values[-1], 2) == avg  # direction-weighted mean ...
    assert round(sum(cells.values()) / len(cells), 2) != avg  # ... not the mean of the cells


def test_group_table_order_means_and_errors():
    groups = {"en": "H", "fr": "H", "oc": "V", "zh": "M", "xx": "Zed", "yy": "Alpha"}
    scores = {("en", "fr"): 10, ("fr", "en"): 20, ("en", "oc"): 5, ("oc", "zh"): 1,
              ("xx", "en"): 7, ("yy", "xx"): 3, ("en", "zh"): 9}
    columns, values = group_table(scores, groups)
    assert columns == ["H2H", "H2M", "H2V", "V2M", "Alpha2Zed", "Zed2H", "AVG"]
    assert values == pytest.approx([15, 9, 5, 1, 3, 7, 55 / 7])
    with pytest.raises(ScoringError, match=r"\bsd\b.*en-sd"):
        group_table({("en", "sd"): 1.0}, groups)


def test_merge_tables_union_of_columns():
    columns, rows = tables.merge_tables([("a", ["H2H", "AVG"], [1.0, 1.0]),
                                          ("b", ["V2H", "H2V", "AVG"], [2.0, 3.0, 2.5])])
    assert columns == ["H2H", "H2V", "V2H", "AVG"]
    assert rows == [("a", [1.0, None, None, 1.0]), ("b", [None, 3.0, 2.0, 2.5])]


def test_format_table():
    text = format_table([("Pretrain", [31.756, 12.0]), ("LSLo 2;2;8", [33.13, None])], ["H2H", "AVG"])
    lines = text.splitlines()
    assert lines[0].split() == ["Run", "H2H", "AVG"]
    assert lines[1].split() == ["Pretrain", "31.76", "12.00"]
    assert lines[2].endswith("33.13      -")
    assert len({len(line) for line in lines}) == 1  # fixed width
    with pytest.raises(ScoringError, match="row 'x' has 1 values for 2 columns"):
        format_table([("x", [1.0])], ["H2H", "AVG"])


def test_write_results(tmp_path):
    prefix = str(tmp_path / "sub" / "res")
    rows = [("A", [1.0, 2.5]), ("B", [3.0, None])]
    meta = {"spm_model": {"path": "/x.model", "md5": "abc"}}
    csv_path, json_path = write_results(prefix, rows, ["H2H", "AVG"], {"A": {("en", "fr"): 1.0}}, meta)
    assert open(csv_path).read().splitlines() == ["run,H2H,AVG", "A,1.0000,2.5000", "B,3.0000,"]
    doc = json.load(open(json_path))
    assert doc["table"][1] == {"run": "B", "H2H": 3.0, "AVG": None}
    assert doc["per_direction"] == {"A": {"en-fr": 1.0}}
    assert doc["meta"] == meta


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
GROUPS = "en:H,fr:H,oc:V"


@pytest.fixture
def two_runs(tmp_path, corpus):
    refs = {lang: [r[lang] for r in corpus[:40]] for lang in ("en", "fr", "oc")}
    good, bad = tmp_path / "good", tmp_path / "bad"
    for i, (s, t) in enumerate([("en", "fr"), ("fr", "en"), ("en", "oc"), ("oc", "en")]):
        order = list(range(40))[::-1]
        _write_generate(str(good / f"{s}-{t}" / "generate-test.txt"), refs[t], refs[t], order)
        _write_generate(str(bad / f"generate-{s}-{t}.txt"), _perturb(refs[t], seed=i), refs[t])
    return good, bad, refs


def test_cli_scores_runs(two_runs, spm_model, tmp_path, capsys):
    good, bad, refs = two_runs
    prefix = str(tmp_path / "out" / "table")
    assert score_cli.main(["--run", f"Bad={bad}", "--run", f"Good={good}", "--spm", spm_model,
                           "--lang-groups", GROUPS, "--out", prefix]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("spBLEU by resource group")  # the metric named in the heading
    out = out[1:]
    assert out[0].split() == ["Run", "H2H", "H2V", "V2H", "AVG"]
    assert out[1].split()[0] == "Bad" and out[2].split()[0] == "Good"  # order given
    assert out[2].split()[1:] == ["100.00"] * 4
    expected = {(s, t): spbleu(_perturb(refs[t], seed=i), refs[t], spm_model)
                for i, (s, t) in enumerate([("en", "fr"), ("fr", "en"), ("en", "oc"), ("oc", "en")])}
    cells = [(expected["en", "fr"] + expected["fr", "en"]) / 2, expected["en", "oc"],
             expected["oc", "en"], sum(expected.values()) / 4]
    assert out[1].split()[1:] == [f"{v:.2f}" for v in cells]

    rows = list(csv.reader(open(prefix + ".csv")))
    assert rows[0] == ["run", "H2H", "H2V", "V2H", "AVG"]
    assert [float(x) for x in rows[1][1:]] == pytest.approx(cells, abs=1e-4)
    doc = json.load(open(prefix + ".json"))
    assert doc["per_direction"]["Bad"]["en-oc"] == pytest.approx(expected["en", "oc"])
    assert doc["per_direction"]["Good"]["oc-en"] == pytest.approx(100.0)
    meta = doc["meta"]
    assert meta["spm_model"]["path"] == os.path.abspath(spm_model)
    assert meta["spm_model"]["md5"] == hashlib.md5(open(spm_model, "rb").read()).hexdigest()
    assert meta["sacrebleu"]["version"] == sacrebleu.__version__
    assert "version:" + sacrebleu.__version__ in meta["sacrebleu"]["sacrebleu_signature"]
    assert meta["runs"]["Good"]["sentences"]["en-fr"] == 40


def _cli_error(argv, capsys):
    """lslo-score's bad-input path: exit status 2 and one 'lslo-score: error: ...' line."""
    assert score_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lslo-score: error: ")
    return err


def test_cli_errors_name_flag_or_file(two_runs, spm_model, tmp_path, capsys):
    good, _, _ = two_runs
    base = ["--run", f"G={good}", "--spm", spm_model, "--lang-groups", GROUPS]
    err = _cli_error(["--run", f"G={good}", "--spm", str(tmp_path / "no.model"), "--lang-groups", GROUPS], capsys)
    assert "--spm" in err and "no.model" in err
    err = _cli_error(["--run", f"G={good}", "--spm", spm_model, "--lang-groups", "lang99"], capsys)
    assert "--lang-groups" in err and "lang99" in err and "--lslo-" not in err
    err = _cli_error(["--run", f"G={good}", "--spm", spm_model, "--lang-groups", "en:H,fr:H"], capsys)
    assert "oc" in err and "no resource group" in err
    (tmp_path / "nothing").mkdir()
    err = _cli_error(base + ["--run", f"N={tmp_path / 'nothing'}"], capsys)
    assert "--run N=" in err and "no generate outputs" in err
    err = _cli_error(["--run", "justadir", "--spm", spm_model, "--lang-groups", GROUPS], capsys)
    assert "NAME=DIR" in err
    err = _cli_error(base + ["--", "--beam", "4"], capsys)
    assert "--generate" in err
    err = _cli_error(base + ["--generate", "--data-dir", str(tmp_path), "--checkpoint",
                             str(tmp_path / "ck.pt"), "--pairs", "en-fr", "--results-dir", str(tmp_path)], capsys)
    assert "--checkpoint" in err and "ck.pt" in err
    err = _cli_error(base + ["--run", f"G={good}"], capsys)
    assert "used twice" in err


def test_cli_warns_about_skipped_sentences(two_runs, spm_model, tmp_path, capsys):
    good, _, refs = two_runs
    _write_generate(str(good / "en-fr" / "generate-test.txt"), refs["fr"], refs["fr"], order=list(range(1, 40)))
    assert score_cli.main(["--run", f"G={good}", "--spm", spm_model, "--lang-groups", GROUPS,
                           "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "run G en-fr: 1 sentence id(s) missing" in err and "ids [0]" in err


def test_cli_broken_file_stops_before_scoring(two_runs, spm_model, tmp_path, capsys):
    good, _, _ = two_runs
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "en-fr.txt").write_text("S-0\tx\nT-0\ty\n", encoding="utf-8")
    assert score_cli.main(["--run", f"G={good}", "--run", f"B={broken}", "--spm", spm_model,
                           "--lang-groups", GROUPS, "--out", str(tmp_path / "o")]) == 2
    captured = capsys.readouterr()
    assert "en-fr.txt" in captured.err and "no hypotheses" in captured.err
    assert captured.out == "" and not (tmp_path / "o.csv").exists()


# ------------------------------------------------------------------------------------------------
# generation arguments (fairseq parsing only; no model)
# ------------------------------------------------------------------------------------------------
def test_generation_args_parse_with_fairseq(tmp_path):
    from fairseq import options

    pairs = [("en", "fr"), ("fr", "en"), ("en", "oc")]
    extra = ["--encoder-langtok", "src", "--decoder-langtok", "--langs", "en,fr,oc", "--batch-size", "8"]
    argv = generation_args("data-bin", "ck.pt", "fr", "en", pairs, str(tmp_path / "fr-en"),
                           extra_args=extra, task="translation_multi_simple_epoch")
    assert argv[:3] == ["data-bin", "--path", "ck.pt"] and "--user-dir" not in argv
    assert argv[-len(extra):] == extra
    args = options.parse_args_and_arch(options.get_generation_parser(), input_args=argv)
    assert (args.task, args.source_lang, args.target_lang) == ("translation_multi_simple_epoch", "fr", "en")
    assert args.lang_pairs == ["en-fr", "fr-en", "en-oc"] or args.lang_pairs == "en-fr,fr-en,en-oc"
    assert (args.beam, args.gen_subset, args.post_process) == (5, "test", "sentencepiece")
    assert args.results_path == str(tmp_path / "fr-en") and args.path == "ck.pt"
    assert args.encoder_langtok == "src" and args.decoder_langtok and args.batch_size == 8
    assert args.required_batch_size_multiple == 1  # fairseq's default 8 drops the last batch

    # extra arguments come last, so they override; the omegaconf config is what generate gets
    argv = generation_args("data-bin", "ck.pt", "en", "oc", pairs, "r", beam=5, extra_args=["--beam", "2"],
                           gen_subset="valid", task="translation_multi_simple_epoch")
    assert "--user-dir" in generation_args("d", "c", "en", "fr", pairs, "r", user_dir="/u")
    cfg = generation.parse_generation_args(argv)
    assert (cfg.generation.beam, cfg.dataset.gen_subset, cfg.common_eval.results_path) == (2, "valid", "r")
    assert cfg.task._name == "translation_multi_simple_epoch"


def test_generate_mode_with_stub_generator(two_runs, spm_model, tmp_path, monkeypatch, capsys):
    """--generate end to end with the one-load translator's model replaced by a stub that writes the
    references as hypotheses (the real model: test_generation_once.py and the demo tests)."""
    _, _, refs = two_runs
    seen, loads = [], []
    writers = [lambda path, tgt: _write_generate(path, refs[tgt], refs[tgt])]

    class StubTranslator(generation.Translator):
        def __init__(self, data_dir, checkpoint, pairs, user_dir=None, extra_args=(), beam=5,
                     gen_subset="test", task=None):
            loads.append((checkpoint, list(extra_args)))
            self.beam, self.load_seconds = beam, 0.0

        def translate(self, src, tgt, results_path, task_options=None):
            logging.getLogger("fairseq_cli.generate").info("stub translating %s", src)
            seen.append((src, tgt, self.beam, results_path))
            path = os.path.join(results_path, "generate-test.txt")
            writers[-1](path, tgt)
            return path

    monkeypatch.setattr(generation, "Translator", StubTranslator)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # a plain process
    level = root.level
    (tmp_path / "data-bin").mkdir()
    (tmp_path / "ck.pt").write_bytes(b"")
    res = tmp_path / "res"
    code = score_cli.main(["--generate", "--data-dir", str(tmp_path / "data-bin"), "--checkpoint",
                           str(tmp_path / "ck.pt"), "--pairs", "en-fr,oc-en", "--results-dir", str(res),
                           "--task", "translation_multi_simple_epoch", "--beam", "3",
                           "--spm", spm_model, "--lang-groups", GROUPS, "--", "--batch-size", "4"])
    assert code == 0
    assert loads == [(str(tmp_path / "ck.pt"), ["--batch-size", "4"])]  # one load for both directions
    assert seen == [("en", "fr", 3, str(res / "en-fr")), ("oc", "en", 3, str(res / "oc-en"))]
    assert root.handlers == [] and root.level == level  # logging is as it was
    captured = capsys.readouterr()
    # a quiet console: fairseq's log in the results folder, a progress bar over the directions
    assert "stub translating oc" in (res / "generate.log").read_text()
    assert "stub translating" not in captured.out + captured.err
    assert f"fairseq's generation log: {res / 'generate.log'}" in captured.err
    assert "translate ck" in captured.err and "2/2 directions" in captured.err
    out = captured.out.splitlines()
    assert out[0].startswith("spBLEU by resource group")
    assert out[1].split() == ["Run", "H2H", "V2H", "AVG"] and out[2].split() == ["ck", "100.00", "100.00", "100.00"]
    doc = json.load(open(res / "spbleu.json"))
    assert doc["meta"]["runs"]["ck"]["generation"]["extra_args"] == ["--batch-size", "4"]

    # fairseq skipped sentence 1 of 3
    writers.append(lambda path, tgt: _write_generate(path, ["a", "b", "c"], ["a", "b", "c"], order=[2, 0]))
    with pytest.raises(ScoringError, match=r"left 1 sentence\(s\) untranslated \(ids \[1\]\)"):
        generation.generate_all_directions(str(tmp_path / "data-bin"), "ck.pt", "en-fr", str(tmp_path / "r2"),
                                           None, task="translation_multi_simple_epoch")
    # through lslo-score: the same error is bad input (status 2, one line), not a traceback
    capsys.readouterr()
    assert score_cli.main(["--generate", "--data-dir", str(tmp_path / "data-bin"), "--checkpoint",
                           str(tmp_path / "ck.pt"), "--pairs", "en-fr", "--results-dir", str(tmp_path / "r3"),
                           "--task", "translation_multi_simple_epoch", "--spm", spm_model,
                           "--lang-groups", GROUPS]) == 2
    err = capsys.readouterr().err
    assert re.search(r"^lslo-score: error: .*left 1 sentence\(s\) untranslated", err, re.M) and "Traceback" not in err


@pytest.mark.parametrize("flag", [["--lm-path", "lm.pt"], ["--print-alignment", "hard"], ["--replace-unk"]])
def test_generation_options_the_one_load_path_cannot_reproduce_are_refused(flag):
    """Refused while parsing, before anything is loaded (the checkpoint does not even exist)."""
    with pytest.raises(ScoringError, match=f"^{flag[0]} \\(a fairseq argument after '--'\\): not supported"):
        generation.Translator("data-bin", "nowhere.pt", "en-fr", None, ["--langs", "en,fr", *flag],
                              task="translation_multi_simple_epoch")


def test_each_direction_gets_pristine_task_options():
    """fairseq's task set-up rewrites options in place (left_pad_source 'True' -> True, and
    eval_bool(True) -> False on a second pass): directions parsed once must not share them."""
    import copy

    cfg = generation.parse_generation_args(generation.generation_args(
        "data-bin", "ckpt.pt", "en", "fr", [("en", "fr"), ("fr", "en")], "out/en-fr",
        extra_args=["--encoder-langtok", "src", "--decoder-langtok"], task="translation_multi_simple_epoch"))
    pristine = copy.deepcopy(cfg.task)
    first = generation.for_direction(cfg, pristine, "en", "fr", "out/en-fr")
    first.task.left_pad_source = True  # what MultilingualDatasetManager.prepare does
    second = generation.for_direction(cfg, pristine, "fr", "en", "out/fr-en")
    assert second.task.left_pad_source == "True"
    assert (second.task.source_lang, second.task.target_lang) == ("fr", "en")
    assert second.common_eval.results_path == "out/fr-en" and first.common_eval.results_path == "out/en-fr"


def test_byte_fallback_pieces_are_restored_before_scoring(tmp_path):
    """fairseq's sentencepiece post-processing leaves byte-fallback pieces as text; the reader turns
    them back into characters (hypotheses and references alike), as SentencePiece decodes them."""
    import sentencepiece as spm

    from lslo_fairseq.evaluation.outputs import restore_byte_pieces

    text = "ତଥ୍ଯସଞ୍ଚଯ 中文 🙂 ok"
    model = tmp_path / "bf"
    spm.SentencePieceTrainer.train(sentence_iterator=iter(["ok fine", "a b c", "ତଥ୍ଯ"] * 20), model_prefix=str(model),
                                   vocab_size=300, byte_fallback=True, hard_vocab_limit=False, minloglevel=2)
    pieces = spm.SentencePieceProcessor(model_file=f"{model}.model").encode(text, out_type=str)
    assert any(p.startswith("<0x") for p in pieces)
    as_fairseq = "".join(pieces).replace("\u2581", " ").strip()  # --post-process sentencepiece
    assert restore_byte_pieces(as_fairseq) == text
    assert restore_byte_pieces("a<0xE0><0xAC>b") == "a\ufffdb"  # a broken sequence, as SentencePiece does
    path = tmp_path / "generate-test.txt"
    path.write_text(f"T-0\t{as_fairseq}\nH-0\t-0.1\t{' '.join(pieces)}\nD-0\t-0.1\t{as_fairseq}\n", encoding="utf-8")
    assert read_generate_output(str(path)) == ([text], [text])
