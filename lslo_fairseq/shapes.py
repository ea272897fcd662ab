"""Model shapes by name, and as fairseq flags: the tiny shape of the tests, the demo's quick mode and
``--arch lslo_transformer_tiny`` is set here only.

Plain Python (no fairseq, no torch).
"""
from typing import List

TINY_SHAPE = dict(layers=2, dim=64, ffn=128, heads=4)
PRENORM_SHARED_ARGS = ["--share-all-embeddings", "--encoder-normalize-before", "--decoder-normalize-before"]


def shape_args(layers: int, dim: int, ffn: int, heads: int) -> List[str]:
    """fairseq's flags for ``layers``+``layers`` layers of width ``dim``, FFN ``ffn``, ``heads`` heads."""
    out: List[str] = []
    for side in ("encoder", "decoder"):
        out += [f"--{side}-layers", str(layers), f"--{side}-embed-dim", str(dim),
                f"--{side}-ffn-embed-dim", str(ffn), f"--{side}-attention-heads", str(heads)]
    return out
