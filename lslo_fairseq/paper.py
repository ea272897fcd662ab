"""The paper's spBLEU tables (1-4 and 8), to print beside a run's own row.

The numbers are transcribed in ``resources/paper/spbleu_tables.json`` (source and conventions in
its ``source`` field). A row is addressed as ``TABLE:ROW``, e.g. ``table1:2;2;8+WL+GPS(0.9)``.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

TABLES_JSON = Path(__file__).resolve().parent / "resources" / "paper" / "spbleu_tables.json"


class PaperRowError(ValueError):
    """An unknown ``TABLE:ROW``; the message lists what exists."""


@lru_cache(maxsize=1)
def tables() -> Dict[str, dict]:
    """``{table: {"subset", "caption", "columns", "rows": {row: {"params", "spbleu"}}}}``."""
    with open(TABLES_JSON, encoding="utf-8") as f:
        return json.load(f)["tables"]


def paper_row(spec: str) -> Tuple[str, List[str], List[float]]:
    """``(label, columns, values)`` of the paper's row ``TABLE:ROW``."""
    table, sep, row = spec.partition(":")
    if not sep:
        raise PaperRowError(f"--paper: expected TABLE:ROW (e.g. 'table1:Ft-all'), got {spec!r}")
    all_tables = tables()
    if table not in all_tables:
        raise PaperRowError(f"--paper: no table {table!r}; the paper's tables here: {', '.join(all_tables)}")
    rows = all_tables[table]["rows"]
    if row not in rows:
        raise PaperRowError(f"--paper: {table} has no row {row!r}; its rows: {' | '.join(rows)}")
    return f"paper {table} {row}", list(all_tables[table]["columns"]), list(rows[row]["spbleu"])


def difference(
    ours: Sequence[Optional[float]], columns: Sequence[str], paper_columns: Sequence[str], paper: Sequence[float]
) -> Tuple[List[Optional[float]], List[Optional[float]]]:
    """The paper's values on ``columns`` and ``ours - paper`` per column (``None`` where either is
    missing, e.g. a column the paper's subset has and the run's languages do not)."""
    by_col = dict(zip(paper_columns, paper))
    aligned = [by_col.get(c) for c in columns]
    diff = [None if a is None or b is None else a - b for a, b in zip(ours, aligned)]
    return aligned, diff
