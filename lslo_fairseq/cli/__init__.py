"""Console scripts of lslo-fairseq (lslo-params, lslo-score, lslo-demo, ...)."""
