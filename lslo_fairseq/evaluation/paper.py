"""The paper's spBLEU tables (1-4 and 8), to print beside a run's own row.

The numbers are transcribed in ``resources/paper/spbleu_tables.json`` (source and conventions in
its ``source`` field). A row is addressed as ``TABLE:ROW``, e.g. ``table1:2;2;8+WL+GPS(0.9)``; ``TABLE``
alone matches runs to rows by name.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import LSLoError

TABLES_JSON = Path(__file__).resolve().parents[1] / "resources" / "paper" / "spbleu_tables.json"


class PaperRowError(LSLoError):
    """An unknown ``TABLE:ROW``; the message lists what exists."""


@lru_cache(maxsize=1)
def tables() -> Dict[str, dict]:
    """``{table: {"subset", "caption", "columns", "rows": {row: {"params", "spbleu"}}}}``."""
    with open(TABLES_JSON, encoding="utf-8") as f:
        return json.load(f)["tables"]


def paper_rows(spec: str, run_names: Sequence[str]) -> Dict[str, Tuple[str, List[str], List[float]]]:
    """The paper's row to compare with each run: ``{run: (label, columns, values)}``.

    ``TABLE:ROW`` compares every run with that row; ``TABLE`` alone compares each run with the row
    of the same name (runs named otherwise get none, and at least one must match).
    """
    table, sep, row = spec.partition(":")
    all_tables = tables()
    if table not in all_tables:
        raise PaperRowError(f"--paper: no table {table!r}; the paper's tables here: {', '.join(all_tables)}")
    rows = all_tables[table]["rows"]
    columns = list(all_tables[table]["columns"])
    if sep:
        if row not in rows:
            raise PaperRowError(f"--paper: {table} has no row {row!r}; its rows: {' | '.join(rows)}")
        return {run: (f"paper {table} {row}", columns, list(rows[row]["spbleu"])) for run in run_names}
    matched = {run: (f"paper {table} {run}", columns, list(rows[run]["spbleu"])) for run in run_names if run in rows}
    if not matched:
        raise PaperRowError(f"--paper {table}: no run is named like one of its rows ({' | '.join(rows)}); "
                            "name runs after them or give TABLE:ROW")
    return matched


def difference(
    ours: Sequence[Optional[float]], columns: Sequence[str], paper_columns: Sequence[str], paper: Sequence[float]
) -> Tuple[List[Optional[float]], List[Optional[float]]]:
    """The paper's values on ``columns`` and ``ours - paper`` per column (``None`` where either is
    missing, e.g. a column the paper's subset has and the run's languages do not)."""
    by_col = dict(zip(paper_columns, paper))
    aligned = [by_col.get(c) for c in columns]
    diff = [None if a is None or b is None else a - b for a, b in zip(ours, aligned)]
    return aligned, diff
