"""Checkpoint conversions (``lslo-export``): a merged plain-transformer checkpoint for one
direction (:mod:`.merge`), and adapters-only files with a base fingerprint (:mod:`.adapters`).
:mod:`.reading` reads fairseq checkpoints and rebuilds their LSLo model without data."""
