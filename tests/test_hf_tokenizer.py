"""The exported fast tokenizer encodes text as fairseq does (its ``sentencepiece`` BPE encoder, then the
dictionary, then ``</s>``) for the tiny data's SentencePiece model and for models trained with other
normalizer options; language tokens of any code are special tokens at their fairseq ids; a model the
tokenizer cannot reproduce is refused naming ``--spm``."""
import argparse
import random

import pytest

from lslo_fairseq.export import imports

try:
    imports.transformers()
except imports.MissingLibraryError as e:  # only where transformers cannot be installed
    pytest.skip(f"the hf extra is not installed: {e}", allow_module_level=True)

from lslo_fairseq.data.multiparallel import (LIBREOFFICE_TSV, _read_tsv, build_dictionary, encode_pieces,  # noqa: E402
                                             train_sentencepiece)
from lslo_fairseq.export.tokenizer import (TokenizerExportError, build_tokenizer, check_spm, read_spm,  # noqa: E402
                                          unknown_runs, vocabulary)

LANGS = ["en", "kam", "kea", "ast", "ku"]  # kam, kea, ku are not among M2M100Tokenizer's 100 codes
EDGE = ["", " ", "  two  spaces  ", "\ttab\tand\nnewline", "ＡＢＣ１２３ full width", "①② ½ ﬁ", "e\u0301 café",
        "unknown: q V 있 ☃ 😀", "a\u3000b\u00a0c", "  \u2581x", "\u2581", "x\u2581\u2581y", "x \u2581 y ", "9999 \\\\"]


def table_texts(n=None):
    _, table = _read_tsv(LIBREOFFICE_TSV, ["en", "fr", "ko", "oc"])
    texts = [t for lang in table for t in table[lang]]
    return texts if n is None else texts[:n]


def noise(texts, n, seed=0):
    """``n`` random strings of the texts' characters and assorted whitespace."""
    rnd = random.Random(seed)
    chars = sorted(set("".join(texts))) + [" ", " ", "\t", "\u3000", "\xa0", "\u2581"]
    return ["".join(rnd.choice(chars) for _ in range(rnd.randint(1, 40))) for _ in range(n)]


def fairseq_ids(dictionary, spm_path, text):
    """fairseq's ids of ``text``: its ``sentencepiece`` BPE encoder, then ``Dictionary.encode_line``."""
    from fairseq.data.encoders.sentencepiece_bpe import SentencepieceBPE

    bpe = SentencepieceBPE(argparse.Namespace(sentencepiece_model=spm_path, sentencepiece_enable_sampling=False,
                                              sentencepiece_alpha=None))
    return dictionary.encode_line(bpe.encode(text), add_if_not_exist=False, append_eos=True).tolist()


def exported(spm_path, dict_path):
    """(tokenizer, fairseq dictionary with LANGS' tokens, ids given after fairseq's)."""
    from fairseq.data import Dictionary

    d = Dictionary.load(str(dict_path))
    for lang in LANGS:
        d.add_symbol(f"__{lang}__")
    m = read_spm(str(spm_path))
    symbols = list(d.symbols)
    tok = build_tokenizer(symbols, symbols[:4] + [f"__{lang}__" for lang in LANGS], m)
    return tok, d, vocabulary(symbols, m)[1]


def assert_like_fairseq(tok, d, extra, spm_path, texts):
    """Every id is fairseq's, except pieces outside dict.txt (fairseq: <unk>), which get their own ids."""
    bad = []
    for text in texts:
        got, want = tok.encode(text).ids, fairseq_ids(d, spm_path, text)
        same = len(got) == len(want) and all(
            g == w or (w == d.unk() and g >= len(d) and tok.id_to_token(g) in extra) for g, w in zip(got, want))
        if not same:
            bad.append((text, got, want))
    assert not bad, bad[:3]


def test_tokenizer_encodes_the_tiny_data_like_fairseq(tiny_data):
    tok, d, extra = exported(tiny_data["spm_model"], tiny_data["dict"])
    assert extra  # the tiny dict.txt lacks pieces SentencePiece can produce: they are covered too
    texts = table_texts()
    assert_like_fairseq(tok, d, extra, tiny_data["spm_model"], texts + EDGE + noise(texts, 1000))
    # every language token is a special token at its fairseq id, in text too
    for lang in LANGS:
        i = d.index(f"__{lang}__")
        assert tok.token_to_id(f"__{lang}__") == i and i != d.unk()
        text = texts[7]
        assert tok.encode(f"__{lang}__ " + text).ids == [i] + fairseq_ids(d, tiny_data["spm_model"], text)
    assert tok.decode(tok.encode("__kam__ Ouvrir le fichier").ids, skip_special_tokens=True) == "Ouvrir le fichier"


@pytest.mark.parametrize("options", [dict(byte_fallback=True), dict(normalization_rule_name="identity"),
                                     dict(normalization_rule_name="nfkc"), dict(add_dummy_prefix=False),
                                     dict(remove_extra_whitespaces=False)],
                         ids=["byte_fallback", "identity", "nfkc", "no_dummy_prefix", "keep_whitespace"])
def test_tokenizer_follows_the_sentencepiece_options(options, tmp_path):
    """SentencePiece BPE models trained with other options (a dict.txt counted on part of the text, so
    that some pieces are outside it)."""
    from sentencepiece import SentencePieceProcessor

    texts = table_texts(3000)
    model, _ = train_sentencepiece(texts, tmp_path / "spm", 900, character_coverage=0.995, **options)
    sp = SentencePieceProcessor(model_file=model)
    build_dictionary(encode_pieces(sp, texts[:1500]), tmp_path / "dict.txt")
    tok, d, extra = exported(model, tmp_path / "dict.txt")
    assert extra
    assert_like_fairseq(tok, d, extra, model, texts + EDGE + noise(texts, 300))
    m = read_spm(model)
    assert (m.model_type, m.byte_fallback) == ("bpe", bool(options.get("byte_fallback")))
    assert m.remove_extra_whitespaces == options.get("remove_extra_whitespaces", True)


def test_dict_entries_of_unknown_characters_are_listed(tmp_path):
    """A dict.txt counted on EncodeAsPieces output (as fairseq-preprocess on spm_encode's pieces) holds runs
    of characters SentencePiece does not know: unknown_runs lists them, other text is fairseq's."""
    from sentencepiece import SentencePieceProcessor

    texts = table_texts(3000)
    model, _ = train_sentencepiece(texts, tmp_path / "spm", 900, character_coverage=0.99)
    sp = SentencePieceProcessor(model_file=model)
    build_dictionary((sp.encode(t, out_type=str) for t in texts), tmp_path / "dict.txt")
    tok, d, extra = exported(model, tmp_path / "dict.txt")
    runs = unknown_runs(d.symbols[d.nspecial:-len(LANGS)], read_spm(model))
    assert runs and all(sp.piece_to_id(r) == sp.unk_id() for r in runs)
    odd = {c for r in runs for c in r}
    plain = [t for t in texts if not odd & set(t)]
    assert len(plain) > 1000
    assert_like_fairseq(tok, d, extra, model, plain)
    run = max(runs, key=len)  # fairseq: the run's own entry; the tokenizer: not that entry
    assert len(run) > 1 and d.index(run) in fairseq_ids(d, model, f"x {run} x")
    assert d.index(run) not in tok.encode(f"x {run} x").ids


def test_a_unigram_model_is_refused_naming_spm(tmp_path):
    model, _ = train_sentencepiece(table_texts(500), tmp_path / "uni", 300, model_type="unigram",
                                   character_coverage=0.995)
    with pytest.raises(TokenizerExportError, match=r"--spm: .*uni.model is a unigram model; the export reproduces "
                                                   r"SentencePiece BPE models \(M2M-100's\) only"):
        check_spm(read_spm(model), model)
    (tmp_path / "junk.model").write_bytes(b"\xff\xff\xff")
    with pytest.raises(TokenizerExportError, match="--spm: .*junk.model is not a SentencePiece model"):
        read_spm(str(tmp_path / "junk.model"))
