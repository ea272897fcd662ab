"""Importance scores of pruned LoRA matrices (paper, section 4.2, eq. 6) and what is built on them.

Input: the records of a ``pruning_counts.json`` written by the training code, one per pruned
matrix::

    {"kind": "ise"|"lsp"|"gps", "ratio": 0.7,
     "records": [{"side": "encoder", "layer": 0, "module": "q", "language": "en", "group": "H",
                  "matrix": "B", "pool": "encoder.0", "n_params": 2048, "n_pruned": 1500}, ...]}

``Score(B) = #pruned_B - P * #B`` (eq. 6): positive -> the matrix was pruned more than the pool's
target rate P, so the language needs a smaller subspace there; negative -> it needs more parameters.
Within one pruning pool the scores sum to ``total pruned - P * total``, i.e. about 0 when the pool
hit its target sparsity (global L1 pruning removes ``round(P * total)`` entries).

Layers are 0-based here and in the files; the figures show them 1-based.
"""
from __future__ import annotations

import math
import os
import warnings
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from ..errors import LSLoError
from ..files import write_csv_atomic, write_json_atomic
from ..runfiles.pruning_counts import RECORD_KEYS, SIDE_MODULES, SIDES, is_number

from ..groups import BITEXT_WITH_EN, GROUP_ORDER
from ..names import DECODER_MODULES

SCORE_LABEL = "Score (eq. 6): pruned \u2212 P\u00b7#B"


class AnalysisError(LSLoError):
    """Analysis that cannot be done on valid input (too few languages, pools off their target);
    the message names the file or item. A file that breaks its format is a ``RunFileError``."""


# --------------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------------
def _records_of(records) -> List[dict]:
    """Accept a list of records or a whole counts document."""
    if isinstance(records, Mapping) and "records" in records:
        records = records["records"]
    return list(records)


# --------------------------------------------------------------------------------------------------
# Eq. 6 and pools
# --------------------------------------------------------------------------------------------------
def score(n_pruned: float, n_params: float, ratio: float) -> float:
    """Eq. 6 for one matrix: ``#pruned_B - P * #B``."""
    return float(n_pruned) - float(ratio) * float(n_params)


def scores(records, ratio: float) -> List[dict]:
    """Eq. 6 per record: copies of the records with ``"score" = n_pruned - ratio * n_params``."""
    return [dict(r, score=score(r["n_pruned"], r["n_params"], ratio)) for r in _records_of(records)]


def pool_sums(records, ratio: float) -> Dict[str, dict]:
    """Per pool: ``score_sum`` (sum of eq. 6 over its matrices) and ``excess`` (total pruned - P *
    total, the same number by construction), with ``n_matrices``, ``n_params``, ``n_pruned``,
    ``sparsity`` (achieved: pruned / total) and ``target`` (= ratio). Pools in first-seen order."""
    out: Dict[str, dict] = OrderedDict()
    for r in scores(records, ratio):
        p = out.setdefault(r["pool"], {"n_matrices": 0, "n_params": 0, "n_pruned": 0, "score_sum": 0.0})
        p["n_matrices"] += 1
        p["n_params"] += int(r["n_params"])
        p["n_pruned"] += int(r["n_pruned"])
        p["score_sum"] += r["score"]
    for p in out.values():
        p["excess"] = p["n_pruned"] - float(ratio) * p["n_params"]
        p["sparsity"] = p["n_pruned"] / p["n_params"]
        p["target"] = float(ratio)
    return out


def check_pool_sparsity(records, ratio: float, tolerance: float = 1.0) -> Dict[str, dict]:
    """Raise :class:`AnalysisError` if a pool's achieved sparsity differs from ``ratio`` by more
    than ``tolerance`` elements, i.e. ``|n_pruned - ratio * n_params| > tolerance`` over the pool
    (global L1 pruning removes ``round(ratio * total)``, so an exact pool is within 0.5); return
    :func:`pool_sums` otherwise."""
    records = _records_of(records)
    if not records:
        raise AnalysisError("check_pool_sparsity: no records")
    sums = pool_sums(records, ratio)
    bad = [
        f"{name}: {p['n_pruned']} of {p['n_params']} pruned (sparsity {p['sparsity']:.6f}, "
        f"{p['excess']:+.1f} elements from {ratio} * {p['n_params']})"
        for name, p in sums.items()
        if abs(p["excess"]) > tolerance + 1e-9
    ]
    if bad:
        raise AnalysisError(
            f"{len(bad)} pool(s) miss the pruning ratio {ratio} by more than {tolerance} element(s): "
            + "; ".join(bad[:8]) + ("; ..." if len(bad) > 8 else "")
        )
    return sums


# --------------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------------
_MODULE_RANK = {m: i for i, m in enumerate(DECODER_MODULES)}
_SIDE_RANK = {s: i for i, s in enumerate(SIDES)}
_GROUP_RANK = {g: i for i, g in enumerate(GROUP_ORDER)}


def _sort_value(key: str, value, first_seen: Mapping):
    if key == "side":
        return (_SIDE_RANK.get(value, 9), str(value))
    if key == "module":
        return (_MODULE_RANK.get(value, 99), str(value))
    if key == "group":
        return (_GROUP_RANK.get(value, 9) if value is not None else 10, str(value))
    if key == "language":
        return (first_seen.get(value, 10**9), str(value))
    if is_number(value):
        return (0, float(value))
    return (1, str(value))


def _with_scores(records, ratio: Optional[float]) -> List[dict]:
    """Scored records: eq. 6 with ``ratio`` if given, else with a counts document's own ratio,
    else the records' existing ``score``."""
    if ratio is None and isinstance(records, Mapping) and "ratio" in records:
        ratio = records["ratio"]
    records = _records_of(records)
    if ratio is not None:
        return scores(records, ratio)
    if records and all("score" in r for r in records):
        return records
    raise AnalysisError("records have no 'score'; pass ratio= (the pruning ratio P of eq. 6)")


def aggregate(
    records,
    by: Sequence[str] = ("language", "module", "side"),
    over: Union[str, Sequence[str]] = "layer",
    ratio: Optional[float] = None,
    matrix: Optional[str] = "B",
) -> List[dict]:
    """Mean eq. 6 score per combination of the ``by`` keys, averaging over the ``over`` key(s).

    Figure 2: ``by=(language, module, side), over=layer``; figure 4: ``by=(layer, module, side),
    over=language``; figures 5/6 are the per-layer records themselves. ``records``: a list or a
    whole counts document; scores are eq. 6 with ``ratio`` (default: the document's), else the
    records' own ``score`` (from :func:`scores`). Only ``matrix`` records are used (``"B"``, as the paper
    compares; None: all). Each output row holds the ``by`` keys, ``score`` (mean), ``std``
    (population), ``min``, ``max``, ``n`` (records averaged), ``n_params`` and ``n_pruned``
    (sums); rows are sorted by side, layer, group (H, M, L, V), language (first seen), module (paper
    order).

    Raises if two records of one ``by`` group share their ``over`` value: the keys would then
    average more than ``over`` (e.g. encoder and decoder mixed when ``side`` is in neither).
    """
    rows = _with_scores(records, ratio)
    if matrix is not None:
        rows = [r for r in rows if r.get("matrix") == matrix]
        if not rows:
            raise AnalysisError(f"aggregate: no records of matrix {matrix!r}")
    by = (by,) if isinstance(by, str) else tuple(by)
    over = (over,) if isinstance(over, str) else tuple(over)
    both = set(by) & set(over)
    if both:
        raise AnalysisError(f"aggregate: {sorted(both)} both in by= and over=")
    for key in by + over:
        if key not in rows[0]:
            raise AnalysisError(f"aggregate: records have no key {key!r}")
    first_seen: Dict[str, int] = {}
    for r in rows:
        first_seen.setdefault(r["language"], len(first_seen))
    groups: Dict[tuple, List[dict]] = OrderedDict()
    seen_over: Dict[tuple, set] = {}
    for r in rows:
        key = tuple(r[k] for k in by)
        ov = tuple(r[k] for k in over)
        if ov in seen_over.setdefault(key, set()):
            raise AnalysisError(
                f"aggregate: two records with {dict(zip(by, key))} and {dict(zip(over, ov))}; "
                f"add the key that tells them apart (side? matrix?) to by= or over="
            )
        seen_over[key].add(ov)
        groups.setdefault(key, []).append(r)
    out = []
    for key, members in groups.items():
        values = np.array([m["score"] for m in members], dtype=float)
        out.append({
            **dict(zip(by, key)),
            "score": float(values.mean()),
            "std": float(values.std()),
            "min": float(values.min()),
            "max": float(values.max()),
            "n": len(members),
            "n_params": int(sum(m["n_params"] for m in members)),
            "n_pruned": int(sum(m["n_pruned"] for m in members)),
        })
    priority = ("side", "layer", "group", "language", "module", "matrix", "pool")
    sort_keys = sorted(by, key=lambda k: priority.index(k) if k in priority else len(priority))
    out.sort(key=lambda row: tuple(_sort_value(k, row[k], first_seen) for k in sort_keys))
    return out


def pivot(
    rows: Sequence[Mapping],
    row_key: str,
    col_key: str,
    value: str = "score",
    row_order: Optional[Sequence] = None,
    col_order: Optional[Sequence] = None,
    where: Optional[Mapping] = None,
) -> Tuple[List, List, np.ndarray]:
    """A ``rows x cols`` array of ``value`` from (aggregated) rows, NaN where a cell has no row.

    ``where`` keeps only rows matching every ``key: value``; orders default to first appearance.
    """
    sel = [r for r in rows if not where or all(r.get(k) == v for k, v in where.items())]
    rlabels = list(row_order) if row_order is not None else list(OrderedDict.fromkeys(r[row_key] for r in sel))
    clabels = list(col_order) if col_order is not None else list(OrderedDict.fromkeys(r[col_key] for r in sel))
    ri = {v: i for i, v in enumerate(rlabels)}
    ci = {v: i for i, v in enumerate(clabels)}
    out = np.full((len(rlabels), len(clabels)), np.nan)
    for r in sel:
        if r[row_key] in ri and r[col_key] in ci:
            i, j = ri[r[row_key]], ci[r[col_key]]
            if not np.isnan(out[i, j]):
                raise AnalysisError(f"pivot: two rows for {row_key}={r[row_key]!r}, {col_key}={r[col_key]!r}")
            out[i, j] = float(r[value])
    return rlabels, clabels, out


def language_groups(records, lang_groups: Optional[Mapping[str, str]] = None) -> "OrderedDict[str, Optional[str]]":
    """Language -> resource group for the languages of ``records`` (first-seen order): from
    ``lang_groups`` when it has the language, else the records' own ``group`` (None if neither)."""
    out: "OrderedDict[str, Optional[str]]" = OrderedDict()
    for r in _records_of(records):
        lang = r["language"]
        if lang not in out or out[lang] is None:
            out[lang] = (lang_groups or {}).get(lang) or r.get("group")
    return out


# --------------------------------------------------------------------------------------------------
# Correlation with bitext size (appendix C, tables 9-10)
# --------------------------------------------------------------------------------------------------
def _pearson(x: Sequence[float], y: Sequence[float]) -> Dict[str, Optional[float]]:
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"r": float("nan"), "p": float("nan")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.pearsonr(x, y)
    return {"r": float(res[0]), "p": float(res[1])}


def correlations(
    records,
    lang_sizes: Mapping[str, Optional[float]] = BITEXT_WITH_EN,
    ratio: Optional[float] = None,
    matrix: Optional[str] = "B",
    min_languages: int = 3,
) -> dict:
    """Tables 9-10: per side and module, Pearson r and p (``scipy.stats.pearsonr``) between a
    language's bitext size with English and its eq. 6 score averaged over layers, plus an ``AVG``
    row (the mean of the module rows' r and of their p, as the paper prints it). ``records``: a
    list or a whole counts document (whose ratio is used when ``ratio`` is None).

    The paper does not say whether the size is raw or log-scaled, so both are given:
    ``pearson_raw`` (sentence pairs) and ``pearson_log10`` (log10 of them). Languages without a
    known positive size (English, whose size is ``None``; languages missing from ``lang_sizes``)
    are left out and listed under ``excluded`` with the reason. Fewer than ``min_languages``
    languages with sizes -> :class:`AnalysisError`. A module whose scores are all equal gets NaN.

    Returns ``{"ratio", "languages", "sizes", "excluded", "sides": {side: [row, ...]}, "notes"}``,
    a row being ``{"module", "n", "pearson_raw": {"r", "p"}, "pearson_log10": {"r", "p"}}``.
    """
    if ratio is None and isinstance(records, Mapping):
        ratio = records.get("ratio")
    rows = _with_scores(records, ratio)
    langs = list(OrderedDict.fromkeys(r["language"] for r in rows))
    sizes: "OrderedDict[str, float]" = OrderedDict()
    excluded = []
    for lang in langs:
        if lang not in lang_sizes:
            excluded.append({"language": lang, "reason": "not in the bitext-size table"})
            continue
        size = lang_sizes[lang]
        if size is None:
            excluded.append({"language": lang, "reason": "no bitext size with English (English itself, "
                                                         "'-' in tables 5/6)"})
        elif not is_number(size) or not math.isfinite(size) or size <= 0:
            excluded.append({"language": lang, "reason": f"bitext size {size!r} is not a positive number"})
        else:
            sizes[lang] = float(size)
    if len(sizes) < min_languages:
        detail = "; ".join(f"{e['language']}: {e['reason']}" for e in excluded) or "none excluded"
        raise AnalysisError(
            f"correlations need at least {min_languages} languages with a known bitext size, got "
            f"{len(sizes)} ({', '.join(sizes) or 'none'}); excluded: {detail}"
        )
    agg = aggregate(rows, by=("side", "module", "language"), over="layer", matrix=matrix)
    table = {(a["side"], a["module"], a["language"]): a["score"] for a in agg}
    result_sides: Dict[str, List[dict]] = OrderedDict()
    notes = []
    for side in SIDES:
        modules = [m for m in SIDE_MODULES[side] if any(k[0] == side and k[1] == m for k in table)]
        if not modules:
            continue
        out_rows = []
        for module in modules:
            present = [l for l in sizes if (side, module, l) in table]
            x = [sizes[l] for l in present]
            y = [table[side, module, l] for l in present]
            row = {
                "module": module,
                "n": len(present),
                "pearson_raw": _pearson(x, y),
                "pearson_log10": _pearson(np.log10(x) if x else [], y),
            }
            if len(present) < min_languages:
                notes.append(f"{side} {module}: only {len(present)} language(s) with sizes; r is NaN")
            elif math.isnan(row["pearson_raw"]["r"]):
                notes.append(f"{side} {module}: constant scores; r is NaN")
            out_rows.append(row)
        avg = {"module": "AVG", "n": max(r["n"] for r in out_rows)}
        for kind in ("pearson_raw", "pearson_log10"):
            rs = [r[kind]["r"] for r in out_rows if not math.isnan(r[kind]["r"])]
            ps = [r[kind]["p"] for r in out_rows if not math.isnan(r[kind]["p"])]
            avg[kind] = {"r": float(np.mean(rs)) if rs else float("nan"),
                         "p": float(np.mean(ps)) if ps else float("nan")}
        out_rows.append(avg)
        result_sides[side] = out_rows
    notes.append("AVG = mean of the module rows' r and of their p (as tables 9-10 print it), "
                 "not a pooled correlation")
    return {
        "ratio": ratio,
        "languages": list(sizes),
        "sizes": dict(sizes),
        "excluded": excluded,
        "sides": dict(result_sides),
        "notes": notes,
    }


def _fmt_p(p: float) -> str:
    return "nan" if math.isnan(p) else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def format_correlations(result: Mapping) -> str:
    """Text tables (one per side) like the paper's tables 9-10, raw and log10 size side by side."""
    lines = []
    for side, rows in result["sides"].items():
        lines.append(f"{side.capitalize()}: Pearson correlation of bitext size with English and the "
                     f"layer-averaged eq. 6 score ({len(result['languages'])} languages)")
        lines.append(f"  {'Module':<7}{'n':>3}  {'r(raw)':>7}  {'p(raw)':>7}  {'r(log10)':>8}  {'p(log10)':>8}")
        for r in rows:
            raw, log = r["pearson_raw"], r["pearson_log10"]
            lines.append(f"  {r['module']:<7}{r['n']:>3}  {raw['r']:>7.2f}  {_fmt_p(raw['p']):>7}  "
                         f"{log['r']:>8.2f}  {_fmt_p(log['p']):>8}")
    if result.get("excluded"):
        lines.append("Excluded: " + "; ".join(f"{e['language']} ({e['reason']})" for e in result["excluded"]))
    for note in result.get("notes", []):
        lines.append(f"Note: {note}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------------
def _json_safe(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (np.floating,)):
        return _json_safe(float(obj))
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _write_json(path: str, doc) -> None:
    write_json_atomic(path, _json_safe(doc))


def _write_csv(path: str, rows: Sequence[Mapping], columns: Sequence[str]) -> None:
    def cell(v):
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return ""
        return f"{v:.6g}" if isinstance(v, float) else v

    write_csv_atomic(path, columns, ([cell(r.get(c)) for c in columns] for r in rows))


def _prepare(path_prefix: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path_prefix)), exist_ok=True)


def score_tables(records, ratio: float, matrix: Optional[str] = "B") -> Dict[str, List[dict]]:
    """The two aggregated tables: ``by_language`` (side, language, group, module; mean over
    layers: figure 2) and ``by_layer`` (side, layer, module; mean over languages: figure 4)."""
    scored = scores(records, ratio)
    groups = language_groups(scored)
    with_group = [dict(r, group=groups[r["language"]]) for r in scored]
    return {
        "by_language": aggregate(with_group, by=("side", "language", "group", "module"), over="layer",
                                 matrix=matrix),
        "by_layer": aggregate(with_group, by=("side", "layer", "module"), over="language", matrix=matrix),
    }


def write_scores(
    path_prefix: str,
    records,
    ratio: float,
    kind: Optional[str] = None,
    matrix: Optional[str] = "B",
) -> Dict[str, str]:
    """Write the eq. 6 scores: ``<prefix>.csv`` (one row per matrix, layers 0-based),
    ``<prefix>.by_language.csv`` and ``<prefix>.by_layer.csv`` (:func:`score_tables`) and
    ``<prefix>.json`` (all of it plus :func:`pool_sums`); return ``{name: path}``."""
    _prepare(path_prefix)
    scored = scores(records, ratio)
    tables = score_tables(scored, ratio, matrix)
    paths = {
        "csv": path_prefix + ".csv",
        "by_language_csv": path_prefix + ".by_language.csv",
        "by_layer_csv": path_prefix + ".by_layer.csv",
        "json": path_prefix + ".json",
    }
    extra = [k for k in scored[0] if k not in RECORD_KEYS and k != "score"] if scored else []
    _write_csv(paths["csv"], scored, list(RECORD_KEYS) + ["score"] + extra)
    agg_cols = ["score", "std", "min", "max", "n", "n_params", "n_pruned"]
    _write_csv(paths["by_language_csv"], tables["by_language"], ["side", "language", "group", "module"] + agg_cols)
    _write_csv(paths["by_layer_csv"], tables["by_layer"], ["side", "layer", "module"] + agg_cols)
    _write_json(paths["json"], {
        "kind": kind,
        "ratio": ratio,
        "equation": "Score(B) = #pruned_B - P * #B (paper eq. 6); layers 0-based",
        "matrix": matrix,
        "pools": pool_sums(scored, ratio),
        "by_language": tables["by_language"],
        "by_layer": tables["by_layer"],
        "records": scored,
    })
    return paths


def write_correlations(path_prefix: str, result: Mapping) -> Dict[str, str]:
    """Write :func:`correlations` as ``<prefix>.csv`` (side, module, n, r/p raw and log10) and
    ``<prefix>.json`` (the whole result, NaN as null); return ``{"csv": ..., "json": ...}``."""
    _prepare(path_prefix)
    rows = []
    for side, side_rows in result["sides"].items():
        for r in side_rows:
            rows.append({
                "side": side, "module": r["module"], "n": r["n"],
                "pearson_raw_r": r["pearson_raw"]["r"], "pearson_raw_p": r["pearson_raw"]["p"],
                "pearson_log10_r": r["pearson_log10"]["r"], "pearson_log10_p": r["pearson_log10"]["p"],
            })
    paths = {"csv": path_prefix + ".csv", "json": path_prefix + ".json"}
    _write_csv(paths["csv"], rows, ["side", "module", "n", "pearson_raw_r", "pearson_raw_p",
                                    "pearson_log10_r", "pearson_log10_p"])
    _write_json(paths["json"], result)
    return paths
