"""The stand-in's pretraining text: LibreOffice help paragraphs and interface strings, minus every
row of the demo's table, sampled into many-to-many pairs.

Sources (both MPL-2.0, built by ``../shared/data/extract_*.py`` from Debian 12's packages):

* ``libreoffice-help.8langs.tsv.xz``: help paragraphs in en fr de it nl zh ja ko (no oc, no or);
* ``libreoffice.all.tsv``: interface strings in all ten languages, oc and or in fewer rows.

So oc and or are the low-resource languages of the stand-in, as V languages are of M2M-124.

A row with any cell equal (after :func:`normalize`) to the same language's cell of any row of the
demo's table is dropped whole: the demo fine-tunes, validates and tests on that table's rows.
Each remaining row gives, for every language it has, pairs into that language from
``sources_per_target`` other languages of the row, drawn with a seeded generator (many-to-many, as
M2M's mined data, rather than English-centric).
"""
from __future__ import annotations

import lzma
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Set, Tuple

from ..data.multiparallel import DataError

Row = Dict[str, str]


def normalize(text: str) -> str:
    """Whitespace collapsed, case folded: the key under which two cells count as the same text."""
    return " ".join(text.split()).casefold()


def read_rows(path: Path, langs: Sequence[str]) -> List[Row]:
    """The non-empty cells of ``langs`` of every row of a TSV (``.xz`` read compressed)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: pretraining table not found")
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        header = f.readline().rstrip("\r\n").split("\t")
        if "en" not in header:
            raise DataError(f"{path}: no 'en' column in the header {header}")
        cols = {lang: header.index(lang) for lang in langs if lang in header}
        rows = []
        for lineno, line in enumerate(f, start=2):
            cells = line.rstrip("\r\n").split("\t")
            if len(cells) != len(header):
                raise DataError(f"{path}:{lineno}: {len(cells)} cells, the header has {len(header)}")
            row = {lang: cells[c].strip() for lang, c in cols.items() if cells[c].strip()}
            if len(row) >= 2:
                rows.append(row)
    return rows


def demo_cells(rows: Iterable[Row]) -> Dict[str, Set[str]]:
    """Every normalized cell of the demo's rows, per language."""
    cells: Dict[str, Set[str]] = {}
    for row in rows:
        for lang, text in row.items():
            cells.setdefault(lang, set()).add(normalize(text))
    return cells


def exclude(rows: Sequence[Row], held_out: Dict[str, Set[str]]) -> Tuple[List[Row], int]:
    """``rows`` without any row that shares a cell (same language, :func:`normalize` d) with the
    held-out rows; returns (kept, number dropped)."""
    kept = [r for r in rows if not any(normalize(t) in held_out.get(l, ()) for l, t in r.items())]
    return kept, len(rows) - len(kept)


def sample_pairs(
    rows: Sequence[Row], sources_per_target: int, rng: random.Random
) -> List[Tuple[str, str, str, str]]:
    """(src, tgt, source text, target text): for every language of a row, ``sources_per_target``
    distinct other languages of the row (fewer where the row has fewer) as sources."""
    out = []
    for row in rows:
        langs = sorted(row)
        for tgt in langs:
            others = [s for s in langs if s != tgt]
            for src in rng.sample(others, min(sources_per_target, len(others))):
                out.append((src, tgt, row[src], row[tgt]))
    return out


@dataclass
class Corpus:
    """Pairs by direction, and what was dropped on the way (reported in the build's manifest)."""

    pairs: Dict[Tuple[str, str], List[Tuple[str, str]]]
    rows: Dict[str, int] = field(default_factory=dict)
    dropped: Dict[str, int] = field(default_factory=dict)

    def target_counts(self) -> Dict[str, int]:
        c: Counter = Counter()
        for (_, tgt), pairs in self.pairs.items():
            c[tgt] += len(pairs)
        return dict(sorted(c.items()))


def build_corpus(
    sources: Sequence[Tuple[str, Path, int]],
    demo_rows: Sequence[Row],
    langs: Sequence[str],
    max_words: int,
    seed: int,
) -> Corpus:
    """Pairs from every ``(name, path, sources_per_target)`` table, without the demo's rows and
    without rows whose English side has more than ``max_words`` words (long help paragraphs cost the
    most and resemble the demo's short interface strings the least)."""
    rng = random.Random(seed)
    held_out = demo_cells(demo_rows)
    by_direction: Dict[Tuple[str, str], List[Tuple[str, str]]] = {}
    rows_kept, dropped = {}, {}
    for name, path, k in sources:
        rows = read_rows(path, langs)
        rows, n_demo = exclude(rows, held_out)
        short = [r for r in rows if len(r.get("en", "").split()) <= max_words]
        dropped[f"{name}: shares a cell with the demo's table"] = n_demo
        dropped[f"{name}: English side over {max_words} words"] = len(rows) - len(short)
        rows_kept[name] = len(short)
        for src, tgt, s, t in sample_pairs(short, k, rng):
            by_direction.setdefault((src, tgt), []).append((s, t))
    return Corpus(dict(sorted(by_direction.items())), rows_kept, dropped)
