"""95% confidence intervals for the cells of the paper's table, by paired bootstrap resampling.

A cell (``H2V``, ``AVG``, ...) is the mean spBLEU of its directions. One bootstrap sample draws, for
every direction, as many test sentences as it has, with replacement (Koehn 2004); the *same* draw
serves every run, which makes the comparison with the baseline paired. From sacrebleu's sufficient
statistics of each sentence (the n-gram matches and lengths behind corpus BLEU, on SentencePiece
pieces as :func:`.spbleu.spbleu` uses them), each sample's spBLEU is computed per direction and run,
then averaged into the cells. Over N samples:

- the interval of a cell is the 2.5th and 97.5th percentile of its sampled values;
- the interval of a run's difference to the baseline is the same percentiles of the paired sampled
  differences. The difference is *significant* (95%) when that interval excludes 0.

Draws come from ``numpy.random.default_rng(seed)``, direction by direction in the order of the
table, so a seed reproduces the intervals exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import Direction, ScoringError
from .spbleu import _bleu_metric, spm_pieces
from .tables import check_grouped, order_groups


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


def sentence_stats(hyps: Sequence[str], refs: Sequence[str], spm_model_path: str) -> np.ndarray:
    """sacrebleu's BLEU sufficient statistics of every sentence, on SentencePiece pieces:
    an (n_sentences, 2 + 2 x max n-gram order) array whose column sums give corpus spBLEU."""
    if len(hyps) != len(refs):
        raise ScoringError(f"bootstrap: {len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        raise ScoringError("bootstrap: no sentences to score")
    metric = _bleu_metric()
    stats = metric._extract_corpus_statistics(spm_pieces(hyps, spm_model_path), [spm_pieces(refs, spm_model_path)])
    return np.asarray(stats, dtype=np.float64)


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
                     ) -> Tuple[Dict[str, Dict[str, Interval]], Dict[str, Dict[str, Interval]]]:
    """Intervals of every run's cells, and of every other run's difference to ``baseline``.

    ``stats``: run -> direction -> :func:`sentence_stats`; the runs must score the same directions
    with the same number of sentences each (the sentences are paired by position). Returns
    ``(cells, differences)``: run -> column -> :class:`Interval`; ``differences`` is empty without a
    baseline."""
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
    per_direction = {run: {} for run in runs}  # run -> direction -> (n_samples,) sampled spBLEU
    point = {run: {} for run in runs}
    for d in directions:
        n = len(stats[runs[0]][d])
        idx = rng.integers(0, n, size=(n_samples, n))
        for run in runs:
            s = stats[run][d]
            point[run][d] = bleu_of(s.sum(axis=0))
            sums = s[idx].sum(axis=1)  # (n_samples, k)
            per_direction[run][d] = np.array([bleu_of(row) for row in sums])
    cells = cell_directions(directions, lang_groups)
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


def compare_runs(texts: Mapping[str, Mapping[Direction, Tuple[Sequence[str], Sequence[str]]]], spm_model_path: str,
                 lang_groups: Mapping[str, str], baseline: Optional[str], n_samples: int, seed: int,
                 ) -> Tuple[Dict[str, Dict[str, Interval]], Dict[str, Dict[str, Interval]], dict]:
    """:func:`paired_bootstrap` of runs given as run -> direction -> (hypotheses, references);
    returns ``(cells, differences, record)``, the record being what a results JSON keeps."""
    stats = {name: {d: sentence_stats(hyps, refs, spm_model_path) for d, (hyps, refs) in by_dir.items()}
             for name, by_dir in texts.items()}
    cells, diffs = paired_bootstrap(stats, lang_groups, baseline if len(stats) > 1 else None, n_samples, seed)

    def as_lists(table):
        return {run: {c: [i.value, i.low, i.high] for c, i in row.items()} for run, row in table.items()}

    record = {"samples": n_samples, "seed": seed, "baseline": baseline, "level": 0.95,
              "method": "paired bootstrap over each direction's test sentences (Koehn 2004); cells are means "
                        "of per-direction spBLEU; [value, low, high] with the 2.5th/97.5th percentiles",
              "intervals": as_lists(cells), "differences": as_lists(diffs)}
    return cells, diffs, record
