"""Data preparation: multi-parallel tables to fairseq data directories (see ``multiparallel``)."""
