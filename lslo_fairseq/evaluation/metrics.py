"""The corpus metrics ``lslo-score`` reports, behind one interface: spBLEU (the paper's) and chrF++.

Both are sacrebleu corpus metrics whose corpus score is a function of the *sum* of per-sentence
sufficient statistics. A :class:`Metric` gives those statistics (one row per sentence) and the score
of their column sums, so the table's values and the paired bootstrap (:mod:`.bootstrap`) share
one computation and stay exactly sacrebleu's corpus scores:

- ``spbleu``: corpus BLEU on SentencePiece pieces (FLORES-101 definition, :mod:`.spbleu`); needs
  the ``--spm`` model;
- ``chrf++``: sacrebleu's ``CHRF(word_order=2)`` (character 6-grams plus word 1- and 2-grams,
  beta 2, case-sensitive; sacrebleu's defaults otherwise) on the detokenized text, i.e.
  ``sacrebleu -m chrf --chrf-word-order 2``. It uses no SentencePiece model.

Each metric's result files are named by :func:`results_prefix`.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from . import ScoringError


class Metric:
    """A sacrebleu corpus metric computed from summed per-sentence statistics."""

    name = ""  # the --metric value
    label = ""  # how headings name it
    slug = ""  # its part of result file names (see results_prefix)
    needs_spm = False

    def _check(self, hyps: Sequence[str], refs: Sequence[str]) -> None:
        if len(hyps) != len(refs):
            raise ScoringError(f"{self.name}: {len(hyps)} hypotheses but {len(refs)} references")
        if not hyps:
            raise ScoringError(f"{self.name}: no sentences to score")

    def sentence_stats(self, hyps: Sequence[str], refs: Sequence[str], spm_model_path: Optional[str] = None
                       ) -> np.ndarray:
        """(n_sentences, k) sufficient statistics; their column sums give the corpus score."""
        raise NotImplementedError

    def score_from_stats(self, stats_sum) -> float:
        """The corpus score of summed statistics (sacrebleu's own formula)."""
        raise NotImplementedError

    def corpus_score(self, hyps: Sequence[str], refs: Sequence[str], spm_model_path: Optional[str] = None) -> float:
        """The corpus score of ``hyps`` against one reference each."""
        return self.score_from_stats(self.sentence_stats(hyps, refs, spm_model_path).sum(axis=0))

    def meta(self, spm_model_path: Optional[str] = None) -> dict:
        """What a result file records about the metric (definition, sacrebleu version, signature)."""
        raise NotImplementedError


class SpBLEU(Metric):
    name, label, slug, needs_spm = "spbleu", "spBLEU", "spbleu", True

    def sentence_stats(self, hyps, refs, spm_model_path=None):
        from .spbleu import _bleu_metric, spm_pieces

        self._check(hyps, refs)
        if not spm_model_path:
            raise ScoringError("spbleu: needs a SentencePiece model (--spm)")
        stats = _bleu_metric()._extract_corpus_statistics(spm_pieces(hyps, spm_model_path),
                                                          [spm_pieces(refs, spm_model_path)])
        return np.asarray(stats, dtype=np.float64)

    def score_from_stats(self, stats_sum):
        from .spbleu import _bleu_metric

        return float(_bleu_metric()._compute_score_from_stats(list(stats_sum)).score)

    def meta(self, spm_model_path=None):
        from .spbleu import scoring_meta

        return scoring_meta(spm_model_path)


class ChrFPlusPlus(Metric):
    name, label, slug, needs_spm = "chrf++", "chrF++", "chrfpp", False
    WORD_ORDER = 2

    @classmethod
    def _chrf(cls):
        from sacrebleu.metrics import CHRF

        return CHRF(word_order=cls.WORD_ORDER)

    def sentence_stats(self, hyps, refs, spm_model_path=None):
        self._check(hyps, refs)
        return np.asarray(self._chrf()._extract_corpus_statistics(list(hyps), [list(refs)]), dtype=np.float64)

    def score_from_stats(self, stats_sum):
        return float(self._chrf()._compute_score_from_stats(list(stats_sum)).score)

    def meta(self, spm_model_path=None):
        import sacrebleu

        metric = self._chrf()
        metric.corpus_score(["a"], [["a"]])  # the signature's nrefs is fixed by a first call
        return {
            "metric": "chrF++: sacrebleu corpus CHRF(word_order=2) (character 6-grams, word 1-2-grams, beta 2) "
                      "on the detokenized text",
            "sacrebleu": {"version": sacrebleu.__version__, "signature": str(metric.get_signature())},
        }


METRICS: Dict[str, Metric] = {m.name: m for m in (SpBLEU(), ChrFPlusPlus())}
DEFAULT_METRIC = "spbleu"


def get_metric(metric) -> Metric:
    """A :class:`Metric` given itself or its name."""
    if isinstance(metric, Metric):
        return metric
    if metric not in METRICS:
        raise ScoringError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    return METRICS[metric]


def parse_metrics(spec: str, flag: str = "--metric") -> List[Metric]:
    """The metrics of a comma-separated list (``spbleu,chrf++``), in the order given; names are
    case-insensitive. Raises :class:`ScoringError` naming ``flag`` and the choices."""
    names = [part.strip().lower() for part in (spec or "").split(",")]
    choices = f"choose from {', '.join(METRICS)} (comma separated, e.g. --metric spbleu,chrf++)"
    if not any(names) or not all(names):
        raise ScoringError(f"{flag}: empty metric name in {spec!r}; {choices}")
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ScoringError(f"{flag}: unknown metric(s) {', '.join(map(repr, unknown))}; {choices}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ScoringError(f"{flag}: {', '.join(map(repr, twice))} given twice")
    return [METRICS[n] for n in names]


def results_prefix(out: Optional[str], default_dir: str, metric) -> str:
    """Where a metric's result files go (``<prefix>.csv``, ``<prefix>.json``, ``<prefix>.langs.csv``).

    With ``--out PREFIX``: spBLEU keeps ``PREFIX`` itself (the files lslo-score always wrote) and
    every other metric adds its slug: ``PREFIX.chrfpp``. Without: ``<default_dir>/<slug>``, i.e.
    ``spbleu`` and ``chrfpp``."""
    metric = get_metric(metric)
    if not out:
        return os.path.join(default_dir or "", metric.slug)
    return out if metric.name == DEFAULT_METRIC else f"{out}.{metric.slug}"
