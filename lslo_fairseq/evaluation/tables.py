"""The paper's table layout: scores (spBLEU, chrF++) averaged per (source group, target group) and
over all directions (AVG); the per-language averages ``l→`` (the directions out of language l) and
``→l`` (into l); the ``lslo-score`` result files (CSV and JSON) that hold them, written and read
here."""
from __future__ import annotations

import csv
import os
from collections import OrderedDict
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..groups import order_groups
from ..files import write_csv_atomic, write_json_atomic
from ..runfiles import read_json
from . import Direction, ScoringError

def check_grouped(directions: Iterable[Direction], lang_groups: Mapping[str, str]) -> None:
    """Raise :class:`ScoringError` naming every language of ``directions`` that has no group."""
    missing: Dict[str, List[str]] = {}
    for src, tgt in directions:
        for lang in (src, tgt):
            if lang not in lang_groups:
                missing.setdefault(lang, []).append(f"{src}-{tgt}")
    if missing:
        detail = "; ".join(f"{lang} (in {', '.join(d[:4])}{', ...' if len(d) > 4 else ''})"
                           for lang, d in sorted(missing.items()))
        raise ScoringError(
            f"language(s) with no resource group: {detail}; add them to the language groups "
            f"(e.g. 'xx:L'), known: {', '.join(sorted(lang_groups))}"
        )


def group_table(
    scores: Mapping[Direction, float], lang_groups: Mapping[str, str]
) -> Tuple[List[str], List[float]]:
    """Columns ``X2Y`` and their mean score over the directions with source in group X and target
    in group Y, then ``AVG``, the mean over all directions (direction-weighted, not the mean of the
    cells).

    Groups are those of the scored directions' languages, ordered by :func:`order_groups`; a pair
    X2Y without any direction (e.g. V2V with one V language) has no column.
    """
    if not scores:
        raise ScoringError("group_table: no scores")
    check_grouped(scores, lang_groups)
    cells: Dict[Tuple[str, str], List[float]] = {}
    for (src, tgt), value in scores.items():
        cells.setdefault((lang_groups[src], lang_groups[tgt]), []).append(float(value))
    order = order_groups({g for pair in cells for g in pair})
    columns, values = [], []
    for x in order:
        for y in order:
            if (x, y) in cells:
                columns.append(f"{x}2{y}")
                values.append(sum(cells[x, y]) / len(cells[x, y]))
    all_values = [float(v) for v in scores.values()]
    columns.append("AVG")
    values.append(sum(all_values) / len(all_values))
    return columns, values


LANGUAGE_SIDES = ("out_of", "into")  # l→ (directions with source l) and →l (with target l)


def order_languages(langs: Iterable[str], lang_groups: Mapping[str, str]) -> List[str]:
    """Languages in table order: by group (:func:`order_groups`), then as ``lang_groups`` lists them."""
    langs = set(langs)
    position = {lang: i for i, lang in enumerate(lang_groups)}
    groups = order_groups({lang_groups[lang] for lang in langs})
    return sorted(langs, key=lambda lang: (groups.index(lang_groups[lang]), position[lang], lang))


def language_directions(directions: Iterable[Direction], lang_groups: Mapping[str, str]
                        ) -> "OrderedDict[str, Dict[str, List[Direction]]]":
    """For each language l of ``directions`` (in :func:`order_languages` order), the directions
    averaged in ``l→`` (``"out_of"``: source l) and ``→l`` (``"into"``: target l); a side without
    any direction is left out."""
    directions = list(directions)
    check_grouped(directions, lang_groups)
    out: "OrderedDict[str, Dict[str, List[Direction]]]" = OrderedDict()
    for lang in order_languages({x for d in directions for x in d}, lang_groups):
        sides = {"out_of": [d for d in directions if d[0] == lang], "into": [d for d in directions if d[1] == lang]}
        out[lang] = {side: ds for side, ds in sides.items() if ds}
    return out


def language_table(scores: Mapping[Direction, float], lang_groups: Mapping[str, str]
                   ) -> "OrderedDict[str, Dict[str, Optional[float]]]":
    """The follow-up paper's per-language averages: ``{lang: {"out_of": l→, "into": →l}}``, where
    l→ is the mean score of the directions with source l and →l that of the directions with target
    l (``None`` where there is none), languages in :func:`order_languages` order."""
    if not scores:
        raise ScoringError("language_table: no scores")
    out: "OrderedDict[str, Dict[str, Optional[float]]]" = OrderedDict()
    for lang, sides in language_directions(scores, lang_groups).items():
        out[lang] = {side: (sum(float(scores[d]) for d in sides[side]) / len(sides[side]) if side in sides else None)
                     for side in LANGUAGE_SIDES}
    return out


def format_language_table(by_run: Mapping[str, Mapping[str, Mapping[str, Optional[float]]]],
                          lang_groups: Mapping[str, str], arrow: str = "\u2192") -> str:
    """Fixed-width text table of :func:`language_table` for several runs: one row per language
    (with its group), columns ``<run> l→`` and ``<run> →l`` per run, 2 decimals (``-``: none)."""
    langs = order_languages({lang for rows in by_run.values() for lang in rows}, lang_groups)
    header = ["Language", "Group"]
    for run in by_run:
        header += [f"{run} l{arrow}", f"{run} {arrow}l"]
    body = []
    for lang in langs:
        row = [lang, lang_groups[lang]]
        for rows in by_run.values():
            for side in LANGUAGE_SIDES:
                v = rows.get(lang, {}).get(side)
                row.append("-" if v is None else f"{v:.2f}")
        body.append(row)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(row):  # language and group left-aligned, values right-aligned
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join(line(r) for r in [header, *body])


def write_language_results(path: str, by_run: Mapping[str, Mapping[str, Mapping[str, Optional[float]]]],
                           lang_groups: Mapping[str, str]) -> str:
    """Write the per-language averages as a CSV ``run,language,group,out_of,into`` (``out_of``: l→,
    the mean over the directions out of the language; ``into``: →l; empty: none); return the path."""
    write_csv_atomic(path, ["run", "language", "group", *LANGUAGE_SIDES],
                     ([run, lang, lang_groups[lang], *("" if v.get(side) is None else f"{v[side]:.4f}"
                                                       for side in LANGUAGE_SIDES)]
                      for run, rows in by_run.items() for lang, v in rows.items()))
    return path


def merge_tables(
    tables: Sequence[Tuple[str, List[str], List[float]]],
) -> Tuple[List[str], List[Tuple[str, List[Optional[float]]]]]:
    """Rows of several runs' ``(name, columns, values)`` on the union of their columns, in table
    order; a run without a column gets ``None`` there."""
    cells = set()
    for _, columns, _ in tables:
        cells.update(c for c in columns if c != "AVG")
    groups = order_groups({g for c in cells for g in c.split("2", 1)})
    union = [f"{x}2{y}" for x in groups for y in groups if f"{x}2{y}" in cells] + ["AVG"]
    rows = []
    for name, columns, values in tables:
        by_col = dict(zip(columns, values))
        rows.append((name, [by_col.get(c) for c in union]))
    return union, rows


def format_table(rows: Sequence[Tuple[str, Sequence[Optional[float]]]], columns: Sequence[str]) -> str:
    """Fixed-width text table, one row per run, values with 2 decimals (``-`` where missing)."""
    for name, values in rows:
        if len(values) != len(columns):
            raise ScoringError(f"format_table: row {name!r} has {len(values)} values for {len(columns)} columns")
    name_width = max([len("Run")] + [len(name) for name, _ in rows])
    cells = [[("-" if v is None else f"{v:.2f}") for v in values] for _, values in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(["Run".ljust(name_width)] + [c.rjust(w) for c, w in zip(columns, widths)])]
    for (name, _), row in zip(rows, cells):
        lines.append("  ".join([name.ljust(name_width)] + [c.rjust(w) for c, w in zip(row, widths)]))
    return "\n".join(lines)


def write_results(
    path_prefix: str,
    rows: Sequence[Tuple[str, Sequence[Optional[float]]]],
    columns: Sequence[str],
    per_direction: Mapping[str, Mapping[Direction, float]],
    meta: Mapping,
    comparison_rows: Sequence[Tuple[str, Sequence[Optional[float]]]] = (),
    per_language: Optional[Mapping[str, Mapping[str, Mapping[str, Optional[float]]]]] = None,
) -> Tuple[str, str]:
    """Write ``<prefix>.csv`` (the table, one row per run, then ``comparison_rows`` such as the
    paper's row and the differences) and ``<prefix>.json`` (the table, the comparison rows apart,
    every run's per-direction scores keyed ``src-tgt``, ``per_language`` when given: run ->
    language -> {"out_of": l→, "into": →l}, and ``meta``); return both paths."""
    csv_path, json_path = path_prefix + ".csv", path_prefix + ".json"
    write_csv_atomic(csv_path, ["run"] + list(columns),
                     ([name] + ["" if v is None else f"{v:.4f}" for v in values]
                      for name, values in [*rows, *comparison_rows]))
    doc = {
        "columns": list(columns),
        "table": [{"run": name, **{c: v for c, v in zip(columns, values)}} for name, values in rows],
        "comparison": [{"row": name, **{c: v for c, v in zip(columns, values)}}
                       for name, values in comparison_rows],
        "per_direction": {
            run: {f"{src}-{tgt}": value for (src, tgt), value in sorted(scores.items())}
            for run, scores in per_direction.items()
        },
    }
    if per_language is not None:
        doc["per_language"] = {run: {lang: dict(v) for lang, v in rows.items()} for run, rows in per_language.items()}
    doc["meta"] = dict(meta)
    write_json_atomic(json_path, doc, indent=2)
    return csv_path, json_path


def load_result_row(path: str, run: Optional[str] = None) -> Tuple[Dict[str, Optional[float]], dict]:
    """The group-table row (``{column: spBLEU}``) of one ``lslo_fairseq.evaluation.tables.write_results``
    JSON, and its ``meta``. A file with several rows needs ``run`` to be one of their names."""
    doc = read_json(path)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("table"), list) or not isinstance(doc.get("columns"), list):
        raise ScoringError(f"{path}: not a results file of lslo-score (needs 'columns' and 'table')")
    table = doc["table"]
    if not table:
        raise ScoringError(f"{path}: the table has no rows")
    if len(table) == 1:
        row = table[0]
    else:
        named = [r for r in table if r.get("run") == run]
        if len(named) != 1:
            raise ScoringError(f"{path}: {len(table)} rows ({', '.join(str(r.get('run')) for r in table)}); "
                                f"name the run like one of them (got {run!r}) or give a one-row file")
        row = named[0]
    values = {}
    for c in doc["columns"]:
        v = row.get(c)
        if v is not None and not isinstance(v, (int, float)):
            raise ScoringError(f"{path}: column {c} holds {v!r}, not a number")
        values[c] = None if v is None else float(v)
    return values, dict(doc.get("meta") or {})


def epoch_table_from_results(paths: Sequence[str], epochs: Optional[Sequence[float]] = None,
                             run: Optional[str] = None) -> List[Tuple[float, Dict[str, Optional[float]]]]:
    """``[(epoch, row)]`` from one results JSON per epoch. Epochs: ``epochs`` if given; else each
    file's ``meta["epoch"]`` when every file has one; else the file order (1, 2, ...)."""
    if epochs is not None and len(epochs) != len(paths):
        raise ScoringError(f"{len(epochs)} epochs for {len(paths)} result files")
    loaded = [load_result_row(p, run) for p in paths]
    if epochs is None:
        metas = [m.get("epoch") for _, m in loaded]
        if all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in metas):
            epochs = metas
        else:
            epochs = list(range(1, len(paths) + 1))
    return [(float(e), row) for e, (row, _) in zip(epochs, loaded)]


def load_curve_csv(path: str) -> "OrderedDict[str, List[Tuple[float, Dict[str, Optional[float]]]]]":
    """Runs of a CSV ``run,epoch,H2H,H2M,...,AVG`` as ``{run: [(epoch, row)]}`` (empty cell: None)."""
    if not os.path.isfile(path):
        raise ScoringError(f"{path}: no such file")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "run" not in reader.fieldnames or "epoch" not in reader.fieldnames:
            raise ScoringError(f"{path}: expected a header 'run,epoch,<columns>...', got {reader.fieldnames}")
        columns = [c for c in reader.fieldnames if c not in ("run", "epoch")]
        out: "OrderedDict[str, list]" = OrderedDict()
        for n, rec in enumerate(reader, 2):
            try:
                epoch = float(rec["epoch"])
                row = {c: (float(rec[c]) if rec[c] not in (None, "") else None) for c in columns}
            except ValueError as e:
                raise ScoringError(f"{path} line {n}: {e}") from None
            out.setdefault(rec["run"], []).append((epoch, row))
    if not out:
        raise ScoringError(f"{path}: no rows")
    return out
