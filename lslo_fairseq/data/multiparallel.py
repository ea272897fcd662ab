"""Multi-parallel TSV -> fairseq data directory for ``translation_multi_simple_epoch``.

The table has columns ``id``, ``origin``, then one column per language; every row is the same
sentence in every language. :func:`prepare` splits the rows (train/valid/test, deterministic),
trains a SentencePiece BPE model on the training split only (like M2M's ``sentencepiece.bpe.model``),
writes a fairseq ``dict.txt`` without language tokens (``translation_multi_simple_epoch`` appends
``__xx__`` itself, in ``--langs``/``--lang-dict`` order, as for M2M), binarizes every language's
split once in-process (mmap) and hard-links it to the file names of every direction::

    {split}.{src}-{tgt}.{src}.bin/.idx   {split}.{src}-{tgt}.{tgt}.bin/.idx   dict.txt   dict.{lang}.txt

plus plain-text companions ``{split}.raw.{lang}`` (original text, the references for scoring),
``{split}.spm.{lang}`` (space-separated pieces, as fairseq's text readers expect), ``{split}.ids``
(the TSV ``id`` of every row), ``lang_dict.txt`` and ``prepared.json``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import sentencepiece as spm
import torch
from fairseq.data import Dictionary, indexed_dataset

from ..errors import LSLoError
from ..files import write_text_atomic
from ..runfiles import prepared

logger = logging.getLogger(__name__)


class DataError(LSLoError):
    """A multi-parallel table or preparation setting that cannot be used; names the file or value."""

PathLike = Union[str, os.PathLike]
SPLITS = ("train", "valid", "test")
SPM_PREFIX = "sentencepiece.bpe"
MONO_DIR = "mono"
LIBREOFFICE_TSV = (
    Path(__file__).resolve().parents[1] / "resources" / "libreoffice" / "libreoffice.complete10.tsv"
)
LIBREOFFICE_LANGS = ("en", "fr", "de", "it", "nl", "zh", "ja", "ko", "oc", "or")
# SentencePiece's recommended coverage for CJK-rich text; the fallback when full coverage needs
# more characters than the vocabulary holds.
CJK_CHARACTER_COVERAGE = 0.9995


def _read_tsv(path: PathLike, langs: Sequence[str]) -> Tuple[List[str], Dict[str, List[str]]]:
    """Row ids and per-language columns of a tab-separated table (no quoting, header line)."""
    path = Path(path)
    if len(set(langs)) != len(langs) or not langs:
        raise DataError(f"languages must be distinct and non-empty, got {list(langs)}")
    with open(path, encoding="utf-8", newline="") as f:
        header = f.readline().rstrip("\r\n").split("\t")
        missing = [lang for lang in langs if lang not in header]
        if missing:
            raise DataError(
                f"{path}: no column for language(s) {', '.join(missing)}; "
                f"the header has: {', '.join(header)}"
            )
        cols = [header.index(lang) for lang in langs]
        id_col = header.index("id") if "id" in header else None
        ids: List[str] = []
        table: Dict[str, List[str]] = {lang: [] for lang in langs}
        for lineno, line in enumerate(f, start=2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            cells = line.split("\t")
            if len(cells) != len(header):
                raise DataError(
                    f"{path}:{lineno}: {len(cells)} tab-separated cells, the header has {len(header)}"
                )
            row = [cells[c].strip() for c in cols]
            if not all(row):
                continue
            ids.append(cells[id_col] if id_col is not None else str(lineno - 1))
            for lang, text in zip(langs, row):
                table[lang].append(text)
    return ids, table


def load_table(path: PathLike, langs: Sequence[str]) -> Dict[str, List[str]]:
    """Read the columns ``langs`` of a multi-parallel TSV; rows with an empty cell in any are dropped."""
    return _read_tsv(path, langs)[1]


def split_rows(
    n_rows: int, n_valid: int, n_test: int, seed: int
) -> Tuple[List[int], List[int], List[int]]:
    """Deterministic disjoint random split of ``range(n_rows)``; each index list is sorted."""
    if n_valid < 0 or n_test < 0:
        raise DataError(f"n_valid and n_test must be >= 0, got {n_valid}, {n_test}")
    if n_valid + n_test >= n_rows:
        raise DataError(
            f"n_valid + n_test = {n_valid + n_test} leaves no training rows out of {n_rows}"
        )
    perm = list(range(n_rows))
    random.Random(seed).shuffle(perm)
    valid = sorted(perm[:n_valid])
    test = sorted(perm[n_valid : n_valid + n_test])
    train = sorted(perm[n_valid + n_test :])
    return train, valid, test


def train_sentencepiece(
    texts: Iterable[str],
    model_prefix: PathLike,
    vocab_size: int,
    *,
    model_type: str = "bpe",
    character_coverage: float = 1.0,
    seed: int = 1,
    num_threads: int = 1,
    **options,
) -> Tuple[str, float]:
    """Train a SentencePiece model on ``texts``; returns (``{model_prefix}.model``, coverage used).

    ``vocab_size`` is a soft limit (small corpora yield fewer pieces rather than failing). Full
    character coverage keeps every training character (CJK included) out of ``<unk>``; if that needs
    more characters than ``vocab_size`` allows, it falls back to 0.9995 (SentencePiece's CJK value).
    Single-threaded with a fixed seed: the same input gives the same model. ``options`` go to
    SentencePiece's trainer as they are (e.g. ``byte_fallback=True``).
    """
    texts = list(texts)
    if not texts:
        raise DataError("no training text for SentencePiece")
    Path(model_prefix).parent.mkdir(parents=True, exist_ok=True)
    coverages = [character_coverage]
    if character_coverage > CJK_CHARACTER_COVERAGE:
        coverages.append(CJK_CHARACTER_COVERAGE)
    for i, coverage in enumerate(coverages):
        spm.set_random_generator_seed(seed)
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(texts),
                model_prefix=str(model_prefix),
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=coverage,
                hard_vocab_limit=False,
                num_threads=num_threads,
                minloglevel=2,
                **options,
            )
        except RuntimeError as e:
            if "required_chars" in str(e) and i + 1 < len(coverages):
                logger.warning(
                    "vocab_size %d is smaller than the %s distinct characters; retrying with "
                    "character_coverage=%s", vocab_size, str(e).split("vs")[-1].split(".")[0].strip(),
                    coverages[i + 1],
                )
                continue
            raise
        model = f"{model_prefix}.model"
        n = spm.SentencePieceProcessor(model_file=model).get_piece_size()
        if n < vocab_size:
            logger.warning("SentencePiece: %d pieces (asked for %d; corpus too small)", n, vocab_size)
        return model, coverage
    raise AssertionError("unreachable")


def encode_pieces(sp: spm.SentencePieceProcessor, texts: Sequence[str]) -> List[List[str]]:
    """SentencePiece pieces of each text; unknown characters become fairseq's ``<unk>``."""
    unk_id, unk_word = sp.unk_id(), Dictionary().unk_word
    return [
        [unk_word if i == unk_id else sp.id_to_piece(i) for i in ids]
        for ids in sp.encode(list(texts))
    ]


def encode_splits(
    sp: spm.SentencePieceProcessor, raw: Dict[str, Dict[str, Sequence[str]]]
) -> Dict[Tuple[str, str], List[List[str]]]:
    """Pieces of every ``raw[split][lang]`` text, keyed ``(split, lang)``.

    Fails on a piece that contains whitespace: fairseq's text readers split on any whitespace, so it
    would not round-trip.
    """
    encoded = {(split, lang): encode_pieces(sp, texts) for split, by_lang in raw.items()
               for lang, texts in by_lang.items()}
    odd = sorted({p for pieces in encoded.values() for s in pieces for p in s if p.split() != [p]})
    if odd:
        raise DataError(f"SentencePiece produced pieces containing whitespace: {odd[:10]}")
    return encoded


def _tokens(line: Union[str, Sequence[str]]) -> Sequence[str]:
    return line.split() if isinstance(line, str) else line


def build_dictionary(
    encoded: Iterable[Union[str, Sequence[str]]], dict_path: PathLike, padding_factor: int = 8
) -> Dictionary:
    """Count the tokens of ``encoded`` (piece lists or space-separated lines) into a fairseq
    ``Dictionary`` (sorted by count, padded like ``fairseq-preprocess``), save it as ``dict_path``.

    Language tokens are not added: the multilingual task appends them when it loads the dictionary.
    """
    d = Dictionary()
    specials = set(d.symbols[: d.nspecial])
    for line in encoded:
        for tok in _tokens(line):
            if tok not in specials:
                d.add_symbol(tok)
    d.finalize(padding_factor=padding_factor)
    d.save(str(dict_path))
    return d


def binarize(
    encoded: Iterable[Union[str, Sequence[str]]], dictionary: Dictionary, prefix: PathLike
) -> Tuple[int, int]:
    """Write ``{prefix}.bin/.idx`` (mmap) as ``fairseq-preprocess`` would (tokens, then ``</s>``).

    Returns (number of tokens including ``</s>``, number of ``<unk>``).
    """
    prefix = str(prefix)
    builder = indexed_dataset.make_builder(
        indexed_dataset.data_file_path(prefix), "mmap", vocab_size=len(dictionary)
    )
    n_tok = n_unk = 0
    unk, eos = dictionary.unk(), dictionary.eos()
    for line in encoded:
        ids = [dictionary.index(t) for t in _tokens(line)]
        n_unk += sum(i == unk for i in ids)
        ids.append(eos)
        n_tok += len(ids)
        builder.add_item(torch.IntTensor(ids))
    builder.finalize(indexed_dataset.index_file_path(prefix))
    return n_tok, n_unk


def _link(src: PathLike, dst: PathLike) -> None:
    """Hard-link ``src`` to ``dst`` (replacing it); copy where linking is impossible."""
    if os.path.lexists(dst):
        os.remove(dst)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    write_text_atomic(str(path), "".join(line + "\n" for line in lines))


def lang_pairs(langs: Sequence[str]) -> List[str]:
    """Every direction ``src-tgt`` between ``langs`` (both directions of every pair)."""
    return [f"{s}-{t}" for s in langs for t in langs if s != t]


def add_copy_pair(data_dir: PathLike, lang: str) -> List[str]:
    """Make ``lang-lang`` copy data (the follow-up's en->en, which trains the pivot's own adapters):
    ``{split}.{lang}-{lang}.{lang}.bin/.idx`` hard-linked to the language's own binarization, for every
    split that has one (fairseq reads the same file as source and target). Returns the splits."""
    out = Path(data_dir)
    splits = sorted(p.name.split(".")[0] for p in (out / MONO_DIR).glob(f"*.{lang}.idx"))
    if not splits:
        raise DataError(f"{out / MONO_DIR}: no binarized {lang} text (*.{lang}.idx) to copy; prepare the data first")
    for split in splits:
        for ext in ("bin", "idx"):
            _link(out / MONO_DIR / f"{split}.{lang}.{ext}", out / f"{split}.{lang}-{lang}.{lang}.{ext}")
    return splits


def write_splits(
    out: Path,
    langs: Sequence[str],
    row_ids: Dict[str, Sequence[str]],
    raw: Dict[str, Dict[str, Sequence[str]]],
    encoded: Dict[Tuple[str, str], Sequence[Sequence[str]]],
    dictionary: Dictionary,
) -> Tuple[Dict[str, int], Dict[str, int]]:
    """Write every split of a multi-parallel corpus as fairseq data for all directions of ``langs``.

    Per split and language: ``{split}.raw.{lang}`` (the text, references for scoring),
    ``{split}.spm.{lang}`` (pieces) and one mmap binarization in ``mono/``, hard-linked to
    ``{split}.{src}-{tgt}.{lang}.bin/.idx`` of every direction; ``{split}.ids`` names the rows.
    Returns (tokens, ``<unk>`` tokens) per split.
    """
    (out / MONO_DIR).mkdir(parents=True, exist_ok=True)
    tokens = {split: 0 for split in raw}
    unks = {split: 0 for split in raw}
    for split in raw:
        _write_lines(out / f"{split}.ids", row_ids[split])
        for lang in langs:
            _write_lines(out / f"{split}.raw.{lang}", raw[split][lang])
            _write_lines(out / f"{split}.spm.{lang}", (" ".join(p) for p in encoded[split, lang]))
            n_tok, n_unk = binarize(encoded[split, lang], dictionary, out / MONO_DIR / f"{split}.{lang}")
            tokens[split] += n_tok
            unks[split] += n_unk
    for split in raw:
        for pair in lang_pairs(langs):
            for lang in pair.split("-"):
                for ext in ("bin", "idx"):
                    _link(out / MONO_DIR / f"{split}.{lang}.{ext}", out / f"{split}.{pair}.{lang}.{ext}")
    return tokens, unks


def prepare(
    tsv: PathLike,
    langs: Sequence[str],
    out_dir: PathLike,
    n_valid: int,
    n_test: int,
    vocab_size: int,
    seed: int,
    max_train_rows: Optional[int] = None,
    *,
    character_coverage: float = 1.0,
    spm_model: Optional[PathLike] = None,
    dictionary: Optional[PathLike] = None,
) -> dict:
    """Build a many-to-many ``translation_multi_simple_epoch`` data directory from a multi-parallel TSV.

    ``max_train_rows`` keeps a random (seeded) subset of the training rows. ``spm_model`` and
    ``dictionary`` (given together) are a pretrained model's SentencePiece model and ``dict.txt``:
    they are copied into ``out_dir`` and used instead of training new ones on the training rows
    (``vocab_size`` is then ignored). Returns the summary also written to ``{out_dir}/prepared.json``.
    """
    start = time.perf_counter()
    langs = list(langs)
    if len(langs) < 2:
        raise DataError(f"need at least two languages, got {langs}")
    for lang in langs:
        if not lang or any(c in lang for c in "-,/ \t"):
            raise DataError(f"language code {lang!r} cannot be used in fairseq's --lang-pairs")
    tsv = Path(tsv).resolve()
    out = Path(out_dir).resolve()
    (out / MONO_DIR).mkdir(parents=True, exist_ok=True)

    ids, table = _read_tsv(tsv, langs)
    train, valid, test = split_rows(len(ids), n_valid, n_test, seed)
    if max_train_rows is not None and max_train_rows < len(train):
        if max_train_rows < 1:
            raise DataError(f"max_train_rows must be >= 1, got {max_train_rows}")
        train = sorted(random.Random(seed).sample(train, max_train_rows))
    rows = {"train": train, "valid": valid, "test": test}

    if (spm_model is None) != (dictionary is None):
        raise DataError("a pretrained SentencePiece model and dictionary are given together or not at all")
    dict_path = out / "dict.txt"
    if spm_model is not None:
        for given in (spm_model, dictionary):
            if not Path(given).is_file():
                raise DataError(f"{given}: file not found")
        model, coverage = str(out / f"{SPM_PREFIX}.model"), None
        shutil.copyfile(spm_model, model)
        shutil.copyfile(dictionary, dict_path)
    else:
        model, coverage = train_sentencepiece(
            (table[lang][i] for lang in langs for i in train),
            out / SPM_PREFIX,
            vocab_size,
            character_coverage=character_coverage,
            seed=seed,
        )
    sp = spm.SentencePieceProcessor(model_file=model)
    raw = {split: {lang: [table[lang][i] for i in idx] for lang in langs} for split, idx in rows.items()}
    encoded = encode_splits(sp, raw)

    if spm_model is not None:
        d = Dictionary.load(str(dict_path))
    else:
        d = build_dictionary((s for lang in langs for s in encoded["train", lang]), dict_path)
    for lang in langs:
        _link(dict_path, out / f"dict.{lang}.txt")
    _write_lines(out / "lang_dict.txt", langs)

    row_ids = {split: [ids[i] for i in idx] for split, idx in rows.items()}
    tokens, unks = write_splits(out, langs, row_ids, raw, encoded, d)
    pairs = lang_pairs(langs)

    info = {
        "data_dir": str(out),
        "tsv": str(tsv),
        "langs": langs,
        "lang_pairs": pairs,
        "rows": {"table": len(ids), **{split: len(idx) for split, idx in rows.items()}},
        "seed": seed,
        "spm_model": model,
        "spm_vocab_size": sp.get_piece_size(),
        "character_coverage": coverage,
        "dict": str(dict_path),
        "dict_size": len(d),
        "lang_dict": str(out / "lang_dict.txt"),
        "tokens": tokens,
        "unk_tokens": unks,
        "test_raw": {lang: str(out / f"test.raw.{lang}") for lang in langs},
        "test_spm": {lang: str(out / f"test.spm.{lang}") for lang in langs},
        "elapsed_s": round(time.perf_counter() - start, 3),
    }
    prepared.write(str(out), info)
    return info


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``python -m lslo_fairseq.data.multiparallel``: run :func:`prepare`, print its summary."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tsv", default=str(LIBREOFFICE_TSV))
    p.add_argument("--langs", default=",".join(LIBREOFFICE_LANGS), help="comma-separated")
    p.add_argument("--out", required=True)
    p.add_argument("--valid", type=int, default=200)
    p.add_argument("--test", type=int, default=200)
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-train-rows", type=int, default=None)
    a = p.parse_args(argv)
    info = prepare(
        a.tsv, a.langs.split(","), a.out, a.valid, a.test, a.vocab_size, a.seed, a.max_train_rows
    )
    print(json.dumps({k: v for k, v in info.items() if k not in ("test_raw", "test_spm")}, indent=1))


if __name__ == "__main__":
    main()
