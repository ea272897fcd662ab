"""``lslo-score --merge-search``: the merge ratio of a modular checkpoint's zero-shot directions, searched
on validation data (the follow-up paper's merge-ratio analysis, by grid or Bayesian optimisation).

One number is searched: ``w_in`` in [0, 1], with ``w_out = 1 - w_in`` (the merge weights
``--lslo-merge-weights W_IN,W_OUT`` of generation: 1,0 = LoRA_in(source) alone, 0,1 = LoRA_out(target)
alone). Every point translates the ``--gen-subset`` (valid) of the directions with fairseq and scores
it with spBLEU; directions with the pivot are not searched (their weights are fixed: (1, 0) into the
pivot, (0, 1) out of it).

- ``grid``: every point of ``--merge-grid`` for every direction (each point translates all of them);
- ``bayes``: Gaussian-process Bayesian optimisation (the ``bayesian-optimization`` package, its default
  upper-confidence-bound acquisition), ``--merge-trials`` distinct points, the first one the default
  0.5, the others suggested at a resolution of 0.01 (a suggestion already tried costs nothing and is
  replaced by an untried random point).

``--merge-search-scope``: ``direction`` picks each direction's best ``w_in`` (bayes: one search per
direction); ``global`` one ``w_in`` for all, the best average over the directions (bayes: one search
of the average). Ties go to the point tried first (grid: the first in ``--merge-grid``'s order).

Files, for ``--out PREFIX`` (default ``<results-dir>/merge_weights``): ``PREFIX.json`` (owned by
:mod:`lslo_fairseq.runfiles.merge_weights`; what
``--lslo-merge-weights PREFIX.json`` reads: ``{"weights": [w_in, w_out], "directions": {"fr-oc": [w_in,
w_out]}}``, plus the search's record under ``search``), ``PREFIX.csv`` (every point tried: trial, w_in,
w_out, direction, spbleu) and ``PREFIX.png``/``.pdf`` (score against w_in, one line per direction).
"""
from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..analysis.plots import _figure, _save
from ..files import write_csv_atomic
from ..runfiles import merge_weights
from . import Direction, ScoringError

METHODS = ("grid", "bayes")
SCOPES = ("direction", "global")
DEFAULT_GRID = tuple(round(i / 10, 1) for i in range(11))  # 0, 0.1, ..., 1
DEFAULT_TRIALS = 12
BAYES_RESOLUTION = 2  # decimals of a suggested w_in
DEFAULT_WEIGHT = 0.5  # the first point of a Bayesian search: the default merge 0.5,0.5
DIGITS = 6  # w_in and w_out as written

# w_in, directions -> {direction: score}
Scorer = Callable[[float, Sequence[Direction]], Dict[Direction, float]]


@dataclass
class Trial:
    """One translated point: trial number (1-based, in the order tried), w_in, direction, score."""

    index: int
    w_in: float
    direction: Direction
    score: float

    @property
    def w_out(self) -> float:
        return w_out_of(self.w_in)


@dataclass
class SearchResult:
    method: str
    scope: str
    directions: List[Direction]
    trials: List[Trial] = field(default_factory=list)
    chosen: Dict[Direction, float] = field(default_factory=dict)  # direction -> w_in
    weights: Optional[float] = None  # the best average's w_in (grid, or global scope): the JSON's "weights"

    def score_at(self, direction: Direction, w_in: float) -> Optional[float]:
        for t in self.trials:
            if t.direction == direction and t.w_in == w_in:
                return t.score
        return None


def w_out_of(w_in: float) -> float:
    return round(1.0 - w_in, DIGITS)


def weights_arg(w_in: float) -> str:
    """``--lslo-merge-weights`` of a point: ``W_IN,W_OUT`` with W_OUT = 1 - W_IN."""
    return f"{w_in:g},{w_out_of(w_in):g}"


# ---- input, checked before any generation --------------------------------------------------------

def parse_grid(spec, flag: str = "--merge-grid") -> List[float]:
    """``0,0.25,0.5`` -> [0.0, 0.25, 0.5]: values in [0, 1], duplicates dropped, the order kept."""
    items = [x.strip() for x in (spec.split(",") if isinstance(spec, str) else map(str, spec)) if str(x).strip()]
    out: List[float] = []
    for item in items:
        try:
            w = float(item)
        except ValueError:
            raise ScoringError(f"{flag}: {item!r} is not a number (give w_in values in [0, 1], e.g. 0,0.5,1)") from None
        if not (math.isfinite(w) and 0.0 <= w <= 1.0):
            raise ScoringError(f"{flag}: {item} is outside [0, 1] (w_in is a share: w_out = 1 - w_in)")
        w = round(w, DIGITS)
        if w not in out:
            out.append(w)
    if not out:
        raise ScoringError(f"{flag}: give at least one w_in value in [0, 1]")
    return out


@dataclass
class ModularCheckpoint:
    """What a search needs to know of a modular checkpoint: languages, their ranks, the pivot."""

    path: str
    languages: List[str]
    ranks: List[int]
    pivot: str

    def rank_of(self, lang: str) -> int:
        return self.ranks[self.languages.index(lang)]


def read_modular_checkpoint(path: str, flag: str = "--checkpoint", what: str = "--merge-search") -> ModularCheckpoint:
    """The checkpoint's LSLo layout; refused unless it was trained with ``--lslo-modular``."""
    from ..errors import CheckpointError
    from ..layout.frozen_base import read_fairseq_checkpoint
    from ..layout.record import layout_in

    if not os.path.isfile(path):
        raise ScoringError(f"{flag}: {path} does not exist")
    try:
        state = read_fairseq_checkpoint(path, flag, mmap=True)
    except CheckpointError as e:
        raise ScoringError(str(e)) from None
    layout = layout_in(state["model"])
    if not layout or not layout.get("pivot"):
        kind = "an LSLo checkpoint without --lslo-modular" if layout else "not an LSLo checkpoint"
        raise ScoringError(f"{what}: {flag} {path} is {kind}; the merge weights (w_in, w_out) exist only "
                           "in modular checkpoints (fairseq-train --lslo-modular)")
    return ModularCheckpoint(path, list(layout["languages"]), [int(r) for r in layout["ranks"]], layout["pivot"])


def check_directions(directions: Sequence[Direction], ckpt: ModularCheckpoint, merge: str = "outputs",
                     grid: Optional[Sequence[float]] = None, flag: str = "--pairs", what: str = "--merge-search") -> None:
    """Every direction is between two of the checkpoint's languages, without the pivot; under ``ab``
    the two adapters' ranks are equal wherever both weights can be > 0."""
    for s, t in directions:
        for lang in (s, t):
            if lang not in ckpt.languages:
                raise ScoringError(f"{flag}: {s}-{t}: {lang} is not one of the checkpoint's languages "
                                   f"({', '.join(ckpt.languages)})")
    pivot = [f"{s}-{t}" for s, t in directions if ckpt.pivot in (s, t)]
    if pivot:
        raise ScoringError(f"{flag}: {', '.join(pivot)} {'have' if len(pivot) > 1 else 'has'} the pivot {ckpt.pivot}, "
                           f"whose merge weights are fixed (1,0 into {ckpt.pivot}, 0,1 out of it): "
                           f"{what} tunes directions without the pivot only")
    interior = grid is None or any(0.0 < w < 1.0 for w in grid)
    if merge == "ab" and interior:
        for s, t in directions:
            if ckpt.rank_of(s) != ckpt.rank_of(t):
                raise ScoringError(f"--lslo-merge ab needs equal ranks of the input and output adapters: {s} has rank "
                                   f"{ckpt.rank_of(s)} and {t} rank {ckpt.rank_of(t)} ({flag} {s}-{t}); use "
                                   "--lslo-merge outputs")


def check_valid_data(data_dir: str, directions: Sequence[Direction], subset: str) -> None:
    """Each direction has binarized ``subset`` data (fairseq's ``SUBSET.SRC-TGT.SRC.idx``, either pair order)."""
    root = data_dir.split(os.pathsep)[0]
    for s, t in directions:
        names = [f"{subset}.{s}-{t}.{s}.idx", f"{subset}.{t}-{s}.{s}.idx"]
        if not any(os.path.isfile(os.path.join(root, n)) for n in names):
            raise ScoringError(f"--pairs: {s}-{t} has no {subset} data in {root} (looked for {' or '.join(names)}); "
                               "binarize its validation set first")


def bayes_library():
    """``bayes_opt`` (the bayesian-optimization package), or a ScoringError naming the option."""
    try:
        import bayes_opt
    except ImportError:
        raise ScoringError("--merge-search bayes needs the bayesian-optimization package: "
                           "pip install -e '.[search]' (or use --merge-search grid)") from None
    return bayes_opt


# ---- the search ----------------------------------------------------------------------------------

class _Evaluations:
    """Scores by (w_in, direction), each point translated once; every call adds Trials."""

    def __init__(self, scorer: Scorer, result: SearchResult):
        self.scorer, self.result, self.seen = scorer, result, {}
        self.count = 0

    def __call__(self, w_in: float, directions: Sequence[Direction]) -> Dict[Direction, float]:
        todo = [d for d in directions if (w_in, d) not in self.seen]
        if todo:
            self.count += 1
            scores = self.scorer(w_in, todo)
            for d in todo:
                self.seen[w_in, d] = float(scores[d])
                self.result.trials.append(Trial(self.count, w_in, d, float(scores[d])))
        return {d: self.seen[w_in, d] for d in directions}


def _argmax(points: Sequence[Tuple[float, float]]) -> float:
    """The w_in of the best value; ties: the first."""
    best = points[0]
    for p in points[1:]:
        if p[1] > best[1]:
            best = p
    return best[0]


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _bayes(objective: Callable[[float], float], trials: int, seed: int) -> None:
    """Maximise ``objective`` over [0, 1] with ``trials`` distinct points: 0.5 first, then the GP's
    suggestions rounded to BAYES_RESOLUTION decimals (an already tried one is replaced by an untried
    random point of that resolution)."""
    bayes_opt = bayes_library()
    opt = bayes_opt.BayesianOptimization(f=None, pbounds={"w_in": (0.0, 1.0)}, random_state=seed, verbose=0,
                                         allow_duplicate_points=True)
    rng = random.Random(seed)
    steps = 10 ** BAYES_RESOLUTION
    tried: Dict[float, float] = {}
    while len(tried) < min(trials, steps + 1):
        if not tried:
            w = DEFAULT_WEIGHT
        else:
            w = round(min(max(float(opt.suggest()["w_in"]), 0.0), 1.0), BAYES_RESOLUTION)
            if w in tried:
                w = rng.choice([i / steps for i in range(steps + 1) if i / steps not in tried])
        tried[w] = float(objective(w))
        opt.register(params={"w_in": w}, target=tried[w])


def search(directions: Sequence[Direction], scorer: Scorer, method: str = "grid", scope: str = "direction",
           grid: Sequence[float] = DEFAULT_GRID, trials: int = DEFAULT_TRIALS, seed: int = 1) -> SearchResult:
    """Search w_in (w_out = 1 - w_in) for ``directions`` with ``scorer`` (see the module docstring)."""
    if method not in METHODS:
        raise ScoringError(f"--merge-search: one of {', '.join(METHODS)}, got {method!r}")
    if scope not in SCOPES:
        raise ScoringError(f"--merge-search-scope: one of {', '.join(SCOPES)}, got {scope!r}")
    directions = list(directions)
    result = SearchResult(method, scope, directions)
    evaluate = _Evaluations(scorer, result)
    if method == "grid":
        grid = parse_grid(grid)
        for w in grid:
            evaluate(w, directions)
    elif scope == "global":
        _bayes(lambda w: _mean(evaluate(w, directions).values()), trials, seed)
    else:
        for d in directions:
            _bayes(lambda w, d=d: evaluate(w, [d])[d], trials, seed)
    # the choice: per direction, and the best average over the points every direction was scored at
    for d in directions:
        result.chosen[d] = _argmax([(t.w_in, t.score) for t in result.trials if t.direction == d])
    common = [w for w in dict.fromkeys(t.w_in for t in result.trials)
              if all((w, d) in evaluate.seen for d in directions)]
    if common and (method == "grid" or scope == "global"):
        result.weights = _argmax([(w, _mean(evaluate.seen[w, d] for d in directions)) for w in common])
    if scope == "global":
        result.chosen = {d: result.weights for d in directions}
    return result


# ---- files ---------------------------------------------------------------------------------------

def merge_weights_json(result: SearchResult, meta: Optional[dict] = None) -> dict:
    """What ``--lslo-merge-weights FILE`` reads (``weights``, ``directions``) and the search's record.
    Global scope: ``weights`` is the choice and applies to every direction; direction scope: each
    direction its own, ``weights`` (for directions not searched) the best average where every
    direction was scored at the same points (grid), else the default 0.5,0.5."""
    w = result.weights if result.weights is not None else DEFAULT_WEIGHT
    directions = {} if result.scope == "global" else {
        f"{s}-{t}": [w_in, w_out_of(w_in)] for (s, t), w_in in result.chosen.items()}
    record = {
        "method": result.method, "scope": result.scope, "metric": "spbleu",
        "searched": "w_in in [0, 1], w_out = 1 - w_in",
        "directions": [f"{s}-{t}" for s, t in result.directions],
        "chosen": {f"{s}-{t}": {"w_in": w_in, "w_out": w_out_of(w_in), "score": result.score_at((s, t), w_in)}
                   for (s, t), w_in in result.chosen.items()},
        "points": len({t.w_in for t in result.trials}),
        **(meta or {}),
    }
    if result.weights is not None:
        per = [result.score_at(d, result.weights) for d in result.directions]
        record["best_average"] = {"w_in": result.weights, "w_out": w_out_of(result.weights),
                                  "score": _mean(per) if None not in per else None}
    return {"weights": [w, w_out_of(w)], "directions": directions, "search": record}


def write_trials_csv(path: str, result: SearchResult) -> None:
    write_csv_atomic(path, ["trial", "w_in", "w_out", "direction", "spbleu"],
                     ([t.index, t.w_in, t.w_out, f"{t.direction[0]}-{t.direction[1]}", f"{t.score:.4f}"]
                      for t in result.trials))


def plot_search(result: SearchResult, out_prefix: str):
    """spBLEU against w_in, one line per direction (its chosen point marked), and the average over the
    directions where they share points; PNG and PDF."""
    fig = _figure((6.4, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    for d in result.directions:
        points = sorted((t.w_in, t.score) for t in result.trials if t.direction == d)
        (line,) = ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=f"{d[0]}-{d[1]}")
        w = result.chosen[d]
        ax.plot([w], [result.score_at(d, w)], marker="o", markersize=9, markerfacecolor="none",
                color=line.get_color())
    shared = sorted({t.w_in for t in result.trials if all(result.score_at(d, t.w_in) is not None
                                                           for d in result.directions)})
    if len(result.directions) > 1 and shared:
        avg = [_mean(result.score_at(d, w) for d in result.directions) for w in shared]
        ax.plot(shared, avg, color="black", linestyle="--", linewidth=1.5, label="average")
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("w_in (w_out = 1 - w_in)")
    ax.set_ylabel("spBLEU (validation)")
    ax.set_title(f"merge ratio, {result.method} search ({result.scope}); circles: chosen")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, out_prefix)


def write_outputs(result: SearchResult, prefix: str, meta: Optional[dict] = None) -> Tuple[str, str, List[str]]:
    """PREFIX.json (the merge weights), PREFIX.csv (every point) and the plot; returns their paths."""
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    json_path, csv_path = prefix + ".json", prefix + ".csv"
    merge_weights.write(json_path, merge_weights_json(result, meta))
    write_trials_csv(csv_path, result)
    return json_path, csv_path, plot_search(result, prefix).paths


def format_result(result: SearchResult) -> str:
    """A table: each direction's chosen w_in, its score there and at the default 0.5 (if tried)."""
    lines = [f"{'direction':<12}{'w_in':>8}{'w_out':>8}{'spBLEU':>9}{'at 0.5':>9}"]
    for d in result.directions:
        w = result.chosen[d]
        at_default = result.score_at(d, DEFAULT_WEIGHT)
        lines.append(f"{d[0] + '-' + d[1]:<12}{w:>8g}{w_out_of(w):>8g}{result.score_at(d, w):>9.2f}"
                     f"{'' if at_default is None else format(at_default, '.2f'):>9}")
    if result.weights is not None:
        per = [result.score_at(d, result.weights) for d in result.directions]
        lines.append(f"{'best average':<12}{result.weights:>8g}{w_out_of(result.weights):>8g}{_mean(per):>9.2f}")
    return "\n".join(lines)


def generation_scorer(data_dir: str, checkpoint: str, results_dir: str, user_dir: Optional[str],
                      extra: Sequence[str], spm: str, beam: int = 5, gen_subset: str = "valid",
                      task: Optional[str] = None, progress=None) -> Scorer:
    """A :data:`Scorer` that translates with fairseq (``--lslo-merge-weights W_IN,1-W_IN`` in place of
    the task's option) into ``results_dir/w_in=<w>/<src>-<tgt>/`` and scores each direction with
    spBLEU. The checkpoint is loaded once, at the first call (:class:`.generation.Translator`), for
    every point of the search."""
    from . import DEFAULT_TASK
    from .generation import Translator
    from .metrics import get_metric
    from .outputs import read_generate_output

    metric = get_metric("spbleu")
    loaded: List[Translator] = []

    def score(w_in: float, directions: Sequence[Direction]) -> Dict[Direction, float]:
        if not loaded:
            loaded.append(Translator(data_dir, checkpoint, directions, user_dir, extra, beam=beam,
                                     gen_subset=gen_subset, task=task or DEFAULT_TASK))
        folder = os.path.join(results_dir, f"w_in={w_in:g}")
        files = loaded[0].translate_all(directions, folder, progress,
                                        task_options={"lslo_merge_weights": weights_arg(w_in)})
        return {d: metric.corpus_score(*read_generate_output(p), spm) for d, p in files.items()}

    return score
