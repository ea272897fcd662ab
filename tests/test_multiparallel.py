"""Multi-parallel TSV -> fairseq data directory, and the tiny base checkpoint trained on it."""
import argparse
import filecmp
import json
import os
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from fairseq.data import Dictionary, data_utils
from fairseq.data.multilingual.multilingual_utils import augment_dictionary

from lslo_fairseq.data.multiparallel import (
    LIBREOFFICE_TSV, SPLITS, _read_tsv, load_table, prepare, split_rows, train_sentencepiece,
)


def test_split_is_deterministic_disjoint_and_complete():
    a = split_rows(100, 10, 20, seed=3)
    assert a == split_rows(100, 10, 20, seed=3)
    train, valid, test = a
    assert (len(train), len(valid), len(test)) == (70, 10, 20)
    assert not set(train) & set(valid) and not set(train) & set(test) and not set(valid) & set(test)
    assert sorted(train + valid + test) == list(range(100))
    assert all(part == sorted(part) for part in a)
    assert split_rows(100, 10, 20, seed=4) != a
    with pytest.raises(ValueError, match="no training rows"):
        split_rows(30, 10, 20, seed=0)


def test_load_table_drops_rows_with_empty_requested_cells(tmp_path):
    p = tmp_path / "t.tsv"
    p.write_text(
        "id\torigin\ten\tfr\tde\n"
        '0\tx\tHello there\t"Bonjour"\t\n'    # empty de: kept when de is not requested
        "1\tx\tGood night\t\tGute Nacht\n"    # empty fr: dropped
        "2\tx\tSee you\tA plus\tBis dann\n",
        encoding="utf-8",
    )
    assert load_table(p, ["en", "fr"]) == {"en": ["Hello there", "See you"], "fr": ['"Bonjour"', "A plus"]}
    assert load_table(p, ["de", "en"]) == {"de": ["Gute Nacht", "Bis dann"], "en": ["Good night", "See you"]}
    assert _read_tsv(p, ["en", "fr", "de"])[0] == ["2"]


def test_load_table_names_file_and_missing_column(tmp_path):
    p = tmp_path / "langs.tsv"
    p.write_text("id\torigin\ten\tfr\n0\tx\ta b\tc d\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"langs\.tsv.*\bxx\b"):
        load_table(p, ["en", "xx"])
    p.write_text("id\torigin\ten\tfr\n0\tx\ta b\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"langs\.tsv:2"):
        load_table(p, ["en", "fr"])


def test_sentencepiece_is_deterministic_and_covers_cjk(tmp_path):
    table = load_table(LIBREOFFICE_TSV, ["en", "ko", "ja"])
    texts = [t for lang in ("en", "ko", "ja") for t in table[lang][:200]]
    m1, cov = train_sentencepiece(texts, tmp_path / "a", 1500)
    m2, _ = train_sentencepiece(texts, tmp_path / "b", 1500)
    sp, sp2 = (spm.SentencePieceProcessor(model_file=m) for m in (m1, m2))
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    assert vocab == [(sp2.id_to_piece(i), sp2.get_score(i)) for i in range(sp2.get_piece_size())]
    assert cov == 1.0
    assert sp.get_piece_size() == 1500
    assert sp.id_to_piece(sp.piece_to_id("▁")) == "▁"
    assert not any(sp.unk_id() in ids for ids in sp.encode(texts))  # every training char is a piece


def test_prepared_json_and_every_direction_file(tiny_data):
    out = Path(tiny_data["data_dir"])
    assert json.loads((out / "prepared.json").read_text(encoding="utf-8")) == tiny_data
    langs = tiny_data["langs"]
    assert langs == ["en", "fr", "ko", "oc"]
    assert len(tiny_data["lang_pairs"]) == 12 == len(set(tiny_data["lang_pairs"]))
    assert {tuple(p.split("-")) for p in tiny_data["lang_pairs"]} == {
        (s, t) for s in langs for t in langs if s != t
    }
    assert tiny_data["rows"] == {"table": 1964, "train": 300, "valid": 30, "test": 30}
    assert tiny_data["unk_tokens"]["train"] == 0
    assert (out / "lang_dict.txt").read_text(encoding="utf-8").split() == langs
    assert Path(tiny_data["spm_model"]).name == "sentencepiece.bpe.model"
    for split in SPLITS:
        ids = (out / f"{split}.ids").read_text(encoding="utf-8").split()
        assert len(ids) == tiny_data["rows"][split]
        for pair in tiny_data["lang_pairs"]:
            for lang in pair.split("-"):
                for ext in ("bin", "idx"):
                    f = out / f"{split}.{pair}.{lang}.{ext}"
                    assert f.is_file(), f
                    assert filecmp.cmp(f, out / "mono" / f"{split}.{lang}.{ext}", shallow=False)
    for lang in langs:
        raw = Path(tiny_data["test_raw"][lang]).read_text(encoding="utf-8").splitlines()
        enc = Path(tiny_data["test_spm"][lang]).read_text(encoding="utf-8").splitlines()
        assert len(raw) == len(enc) == 30
    # the splits are disjoint in the table's ids
    split_ids = [set((out / f"{s}.ids").read_text().split()) for s in SPLITS]
    assert not (split_ids[0] & split_ids[1] or split_ids[0] & split_ids[2] or split_ids[1] & split_ids[2])


def test_every_direction_decodes_to_its_row_and_language(tiny_data):
    out = Path(tiny_data["data_dir"])
    d = Dictionary.load(tiny_data["dict"])
    sp = spm.SentencePieceProcessor(model_file=tiny_data["spm_model"])
    ids_all, table = _read_tsv(tiny_data["tsv"], tiny_data["langs"])
    row_of = {i: n for n, i in enumerate(ids_all)}
    for split in SPLITS:
        rows = [row_of[i] for i in (out / f"{split}.ids").read_text().split()]
        expected = {}
        for lang in tiny_data["langs"]:
            pieces = sp.encode([table[lang][r] for r in rows], out_type=str)
            expected[lang] = [
                " ".join(p if sp.piece_to_id(p) != sp.unk_id() and d.index(p) != d.unk() else "<unk>"
                         for p in line)
                for line in pieces
            ]
            spm_lines = (out / f"{split}.spm.{lang}").read_text(encoding="utf-8").splitlines()
            mono = data_utils.load_indexed_dataset(str(out / "mono" / f"{split}.{lang}"), d)
            for n, line in enumerate(spm_lines):  # fairseq's own text path gives the same ids
                assert torch.equal(d.encode_line(line, add_if_not_exist=False).long(), mono[n])
        for pair in tiny_data["lang_pairs"]:
            for lang in pair.split("-"):
                ds = data_utils.load_indexed_dataset(str(out / f"{split}.{pair}.{lang}"), d)
                assert ds is not None and len(ds) == len(rows), (split, pair, lang)
                for n in range(len(rows)):
                    assert ds[n][-1].item() == d.eos()
                    assert d.string(ds[n]) == expected[lang][n], (split, pair, lang, n)


def test_dictionary_has_no_language_tokens_and_task_appends_them_in_order(tiny_data):
    out = Path(tiny_data["data_dir"])
    d = Dictionary.load(tiny_data["dict"])
    assert len(d) == tiny_data["dict_size"] and len(d) % 8 == 0
    assert (d.bos(), d.pad(), d.eos(), d.unk()) == (0, 1, 2, 3)
    assert not any(s.startswith("__") and s.endswith("__") for s in d.symbols)
    assert d.index("▁") != d.unk()
    for lang in tiny_data["langs"]:
        assert (out / f"dict.{lang}.txt").read_bytes() == (out / "dict.txt").read_bytes()
    n = len(d)
    augment_dictionary(d, tiny_data["langs"], "multilingual")
    assert [d.index(f"__{lang}__") for lang in tiny_data["langs"]] == list(range(n, n + 4))


def test_prepare_is_deterministic(tiny_data, tmp_path):
    again = prepare(tiny_data["tsv"], tiny_data["langs"], tmp_path, 30, 30, 800, 1, max_train_rows=300)
    a, b = Path(tiny_data["data_dir"]), Path(again["data_dir"])
    for name in ("dict.txt", "train.ids", "test.ids", "train.en-ko.ko.bin", "valid.oc-fr.oc.idx"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_prepare_rejects_bad_languages(tmp_path):
    with pytest.raises(ValueError, match="at least two"):
        prepare(LIBREOFFICE_TSV, ["en"], tmp_path, 5, 5, 100, 1)
    with pytest.raises(ValueError, match="pt_BR-x"):
        prepare(LIBREOFFICE_TSV, ["en", "pt_BR-x"], tmp_path, 5, 5, 100, 1)


@pytest.mark.slow
def test_tiny_base_checkpoint(tiny_base_checkpoint, tiny_data):
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(tiny_base_checkpoint))
    assert set(unsafe) <= {"argparse.Namespace"}
    # importing the plugin allows exactly what this needs (a safe_globals() context manager here
    # would remove argparse.Namespace again on exit, for every later test)
    import lslo_fairseq  # noqa: F401

    assert argparse.Namespace in torch.serialization.get_safe_globals()
    state = torch.load(tiny_base_checkpoint, map_location="cpu")  # weights_only
    assert {"model", "cfg"} <= set(state)
    sd = state["model"]
    assert tuple(sd["encoder.layers.0.fc1.weight"].shape) == (128, 64)
    # shared embeddings: dict.txt plus one __xx__ per --langs entry
    n_vocab = tiny_data["dict_size"] + len(tiny_data["langs"])
    assert tuple(sd["encoder.embed_tokens.weight"].shape) == (n_vocab, 64)
    assert sd["decoder.embed_tokens.weight"].data_ptr() == sd["encoder.embed_tokens.weight"].data_ptr() or \
        torch.equal(sd["decoder.embed_tokens.weight"], sd["encoder.embed_tokens.weight"])
    assert state["cfg"]["task"].langs == tiny_data["langs"]
    assert os.path.getsize(tiny_base_checkpoint) > 0
