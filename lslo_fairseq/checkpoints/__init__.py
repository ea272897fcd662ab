"""Checkpoint conversions (``lslo-export``): the adapters folded into the base weights for
one direction, a plain-transformer checkpoint (:mod:`.fold`), and adapters-only files with a base fingerprint (:mod:`.adapters`).
:mod:`.reading` reads fairseq checkpoints and rebuilds their LSLo model without data."""
