"""Analysis of LSLo runs: the paper's importance scores and figures.

* :mod:`.importance` -- eq. 6 importance scores of pruned LoRA ``B`` matrices (section 4.2), their
  per-pool sums and achieved sparsity, layer/language averages (figures 2, 4, 5, 6) and the Pearson
  correlations with bitext size (appendix C, tables 9-10).
* :mod:`.plots` -- the figures: weight learning (figure 1), intrinsic subspace estimation (figures 2
  and 5), spBLEU per epoch (figure 3) and language-specific pruning (figures 4 and 6).

Both read the JSON files written by the training code (``pruning_counts.json``,
``weight_learning.json``) and by :func:`lslo_fairseq.evaluation.tables.write_results`; the ``lslo-plot``
console script (:mod:`lslo_fairseq.cli.plot`) drives them.
"""
