"""95% confidence intervals for the cells of the paper's table, by paired bootstrap resampling.

A cell (``H2V``, ``AVG``, ...) is the mean score of its directions, for any metric of
:mod:`.metrics` (spBLEU by default, chrF++). One bootstrap sample draws, for every direction, as many
test sentences as it has, with replacement (Koehn 2004); the *same* draw serves every run, which
makes the comparison with the baseline paired. From sacrebleu's sufficient statistics of each
sentence (for spBLEU the n-gram matches and lengths behind corpus BLEU, on SentencePiece pieces as
:func:`.spbleu.spbleu` uses them; for chrF++ the character and word n-gram counts and matches),
each sample's corpus score is computed per direction and run, then averaged into the cells. Other
columns than the table's (e.g. the per-language averages of :func:`.tables.language_directions`)
can be given as lists of directions; they are averaged from the same samples. Over N samples:

- the interval of a cell is the 2.5th and 97.5th percentile of its sampled values;
- the interval of a run's difference to the baseline is the same percentiles of the paired sampled
  differences. The difference is *significant* (95%) when that interval excludes 0.

Draws come from ``numpy.random.default_rng(seed)``, direction by direction in the order of the
table, so a seed reproduces the intervals exactly; the draws depend on the seed and the number of
sentences only, so every metric gets the same resamples.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import Direction, ScoringError
from .metrics import DEFAULT_METRIC, get_metric
from .spbleu import _bleu_metric
from ..groups import order_groups
from .tables import check_grouped


@dataclass(frozen=True)
class Interval:
    """A cell's point estimate (the table's value) and its 95% bootstrap interval; for a difference
    to the baseline, also whether the interval excludes 0."""

    value: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        return self.low > 0.0 or self.high < 0.0


def sentence_stats(hyps: Sequence[str], refs: Sequence[str], spm_model_path: Optional[str],
                   metric=DEFAULT_METRIC) -> np.ndarray:
    """sacrebleu's sufficient statistics of every sentence for ``metric`` (a name or a
    :class:`.metrics.Metric`): for spBLEU an (n_sentences, 2 + 2 x max n-gram order) array on
    SentencePiece pieces whose column sums give corpus spBLEU; for chrF++ (n_sentences, 3 x 8)."""
    return get_metric(metric).sentence_stats(hyps, refs, spm_model_path)


def bleu_of(stats_sum: np.ndarray) -> float:
    """Corpus BLEU from summed sufficient statistics (sacrebleu's own formula)."""
    return float(_bleu_metric()._compute_score_from_stats(list(stats_sum)).score)


def cell_directions(directions: Sequence[Direction], lang_groups: Mapping[str, str]) -> Dict[str, List[Direction]]:
    """The directions averaged in each column of :func:`.tables.group_table`, in its order."""
    check_grouped(directions, lang_groups)
    cells: Dict[Tuple[str, str], List[Direction]] = {}
    for d in directions:
        cells.setdefault((lang_groups[d[0]], lang_groups[d[1]]), []).append(d)
    order = order_groups({g for pair in cells for g in pair})
    out = {f"{x}2{y}": cells[x, y] for x in order for y in order if (x, y) in cells}
    out["AVG"] = list(directions)
    return out


def _percentiles(samples: np.ndarray) -> Tuple[float, float]:
    low, high = np.percentile(samples, [2.5, 97.5])
    return float(low), float(high)


def paired_bootstrap(stats: Mapping[str, Mapping[Direction, np.ndarray]], lang_groups: Mapping[str, str],
                     baseline: Optional[str] = None, n_samples: int = 1000, seed: int = 1,
                     metric=DEFAULT_METRIC, columns: Optional[Mapping[str, Sequence[Direction]]] = None,
                     ) -> Tuple[Dict[str, Dict[str, Interval]], Dict[str, Dict[str, Interval]]]:
    """Intervals of every run's cells, and of every other run's difference to ``baseline``.

    ``stats``: run -> direction -> :func:`sentence_stats` of ``metric``; the runs must score the
    same directions with the same number of sentences each (the sentences are paired by position).
    ``columns``: column -> the directions it averages (default: :func:`cell_directions`, the
    table's). Returns ``(cells, differences)``: run -> column -> :class:`Interval`;
    ``differences`` is empty without a baseline."""
    score_of = get_metric(metric).score_from_stats
    if n_samples < 2:
        raise ScoringError(f"--bootstrap: needs at least 2 samples, got {n_samples}")
    runs = list(stats)
    if not runs:
        raise ScoringError("bootstrap: no runs")
    if baseline is not None and baseline not in stats:
        raise ScoringError(f"--baseline: no run named {baseline!r}; the runs are {', '.join(runs)}")
    directions = list(stats[runs[0]])
    for run in runs[1:]:
        if set(stats[run]) != set(directions):
            raise ScoringError(f"bootstrap: run {run} scores other directions than run {runs[0]}; paired "
                               "intervals need the same directions")
        for d in directions:
            if len(stats[run][d]) != len(stats[runs[0]][d]):
                raise ScoringError(
                    f"bootstrap: {d[0]}-{d[1]} has {len(stats[run][d])} sentences in run {run} and "
                    f"{len(stats[runs[0]][d])} in run {runs[0]}; paired intervals need the same test set")
    rng = np.random.default_rng(seed)
    per_direction = {run: {} for run in runs}  # run -> direction -> (n_samples,) sampled scores
    point = {run: {} for run in runs}
    for d in directions:
        n = len(stats[runs[0]][d])
        idx = rng.integers(0, n, size=(n_samples, n))
        for run in runs:
            s = stats[run][d]
            point[run][d] = score_of(s.sum(axis=0))
            sums = s[idx].sum(axis=1)  # (n_samples, k)
            per_direction[run][d] = np.array([score_of(row) for row in sums])
    cells = cell_directions(directions, lang_groups) if columns is None else columns
    for column, ds in cells.items():
        if not ds or any(d not in point[runs[0]] for d in ds):
            raise ScoringError(f"bootstrap: column {column} averages no direction or one that is not scored")
    intervals: Dict[str, Dict[str, Interval]] = {}
    samples: Dict[str, Dict[str, np.ndarray]] = {}
    for run in runs:
        intervals[run], samples[run] = {}, {}
        for column, ds in cells.items():
            sampled = np.mean([per_direction[run][d] for d in ds], axis=0)
            value = float(np.mean([point[run][d] for d in ds]))
            samples[run][column] = sampled
            intervals[run][column] = Interval(value, *_percentiles(sampled))
    differences: Dict[str, Dict[str, Interval]] = {}
    if baseline is not None:
        for run in runs:
            if run == baseline:
                continue
            differences[run] = {
                column: Interval(intervals[run][column].value - intervals[baseline][column].value,
                                 *_percentiles(samples[run][column] - samples[baseline][column]))
                for column in cells
            }
    return intervals, differences


def format_intervals(intervals: Mapping[str, Mapping[str, Interval]], columns: Sequence[str],
                     differences: Optional[Mapping[str, Mapping[str, Interval]]] = None,
                     baseline: Optional[str] = None, digits: int = 2,
                     params: Optional[Mapping[str, str]] = None, stacked: bool = False) -> str:
    """The table with each cell as ``value [low, high]``, then, per run, its difference to the
    baseline with ``*`` on the cells whose interval excludes 0. ``params``: an optional ``#Params``
    column (run -> text), as in the paper's tables. ``stacked``: the interval on a second line under
    the value (a table half as wide)."""
    differences = differences or {}
    f = f".{digits}f"
    rows = []  # (label, params, [(value text, interval text)])
    for run, cells in intervals.items():
        rows.append((run, (params or {}).get(run, ""),
                     [(f"{cells[c].value:{f}} ", f"[{cells[c].low:{f}},{cells[c].high:{f}}]") if c in cells
                      else ("- ", "") for c in columns]))
    for run, cells in differences.items():
        rows.append((f"{run} - {baseline}", "",
                     [(f"{cells[c].value:+{f}}{'*' if cells[c].significant else ' '}",
                       f"[{cells[c].low:+{f}},{cells[c].high:+{f}}]") if c in cells else ("- ", "")
                      for c in columns]))
    name_w = max([len("Run")] + [len(label) for label, _, _ in rows])
    parts = [(v, i) if stacked else (f"{i} {v}" if i else v, "") for _, _, cells in rows for v, i in cells]
    cell_w = max([len(c) + 1 for c in columns] + [max(len(v), len(i)) for v, i in parts]) + 1
    p_w = max([len("#Params")] + [len(p) for _, p, _ in rows]) if params is not None else 0

    def line(label, p, texts):
        head = label.ljust(name_w) + ("  " + p.rjust(p_w) if params is not None else "")
        return head + "".join(t.rjust(cell_w) for t in texts)

    lines = [line("Run", "#Params", [c + " " for c in columns])]
    for label, p, cells in rows:
        if stacked:
            lines.append(line(label, p, [v for v, _ in cells]))
            lines.append(line("", "", [i + " " if i else "" for _, i in cells]))
        else:
            lines.append(line(label, p, [f"{v[:-1]} {i}{v[-1]}" if i else v for v, i in cells]))
    return "\n".join(lines)


def significance_summary(differences: Mapping[str, Mapping[str, Interval]], baseline: str) -> List[str]:
    """One line per run: which cells differ significantly from the baseline, and in which direction."""
    out = []
    for run, cells in differences.items():
        better = [c for c, i in cells.items() if i.significant and i.value > 0]
        worse = [c for c, i in cells.items() if i.significant and i.value < 0]
        parts = []
        if better:
            parts.append(f"significantly better than {baseline} on {', '.join(better)}")
        if worse:
            parts.append(f"significantly worse on {', '.join(worse)}")
        out.append(f"{run}: " + ("; ".join(parts) if parts else f"no cell differs significantly from {baseline}")
                   + " (95% paired bootstrap)")
    return out


def run_stats(texts: Mapping[str, Mapping[Direction, Tuple[Sequence[str], Sequence[str]]]],
              spm_model_path: Optional[str], metric=DEFAULT_METRIC) -> Dict[str, Dict[Direction, np.ndarray]]:
    """:func:`sentence_stats` of every run and direction given as run -> direction -> (hypotheses,
    references)."""
    m = get_metric(metric)
    return {name: {d: m.sentence_stats(hyps, refs, spm_model_path) for d, (hyps, refs) in by_dir.items()}
            for name, by_dir in texts.items()}


def compare_runs(texts: Optional[Mapping[str, Mapping[Direction, Tuple[Sequence[str], Sequence[str]]]]],
                 spm_model_path: Optional[str], lang_groups: Mapping[str, str], baseline: Optional[str],
                 n_samples: int, seed: int, metric=DEFAULT_METRIC,
                 stats: Optional[Mapping[str, Mapping[Direction, np.ndarray]]] = None, by_language: bool = False,
                 ) -> Tuple[Dict[str, Dict[str, Interval]], Dict[str, Dict[str, Interval]], dict]:
    """:func:`paired_bootstrap` of runs given as run -> direction -> (hypotheses, references)
    (or their ``stats`` of :func:`run_stats`, computed once elsewhere); returns ``(cells,
    differences, record)`` for the table's columns, the record being what a results JSON keeps.
    ``by_language``: the record also keeps the intervals of the per-language averages
    (:func:`.tables.language_directions`) under ``language_intervals``/``language_differences``,
    run -> language -> {"out_of": [value, low, high], "into": [...]}."""
    from .tables import language_directions

    m = get_metric(metric)
    if stats is None:
        stats = run_stats(texts, spm_model_path, m)
    runs = list(stats)
    if not runs:
        raise ScoringError("bootstrap: no runs")
    directions = list(stats[runs[0]])
    table_columns = cell_directions(directions, lang_groups)
    columns = dict(table_columns)
    by_lang = language_directions(directions, lang_groups) if by_language else {}
    for lang, sides in by_lang.items():
        columns.update({(lang, side): ds for side, ds in sides.items()})
    cells, diffs = paired_bootstrap(stats, lang_groups, baseline if len(stats) > 1 else None, n_samples, seed,
                                    m, columns)

    def as_lists(table):
        return {run: {c: [row[c].value, row[c].low, row[c].high] for c in table_columns} for run, row in table.items()}

    def by_language_lists(table):
        return {run: {lang: {side: [row[lang, side].value, row[lang, side].low, row[lang, side].high]
                             for side in sides} for lang, sides in by_lang.items()}
                for run, row in table.items()}

    record = {"metric": m.label, "samples": n_samples, "seed": seed, "baseline": baseline, "level": 0.95,
              "method": "paired bootstrap over each direction's test sentences (Koehn 2004); cells are means "
                        f"of per-direction {m.label}; [value, low, high] with the 2.5th/97.5th percentiles",
              "intervals": as_lists(cells), "differences": as_lists(diffs)}
    if by_language:
        record["language_intervals"] = by_language_lists(cells)
        record["language_differences"] = by_language_lists(diffs)

    def table_only(table):
        return {run: {c: row[c] for c in table_columns} for run, row in table.items()}

    return table_only(cells), table_only(diffs), record
