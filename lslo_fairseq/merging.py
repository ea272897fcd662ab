"""Merging a modular checkpoint's adapters for a direction (``--lslo-merge``, ``--lslo-merge-weights``):
the options read and checked once, then handed to the model's router. Used by fairseq-generate (the
task), ``lslo-export fold`` and ``lslo-score --merge-search``.

    outputs: h = W x + w_in B_in A_in x + w_out B_out A_out x                      (follow-up eq. 3)
    ab:      h = W x + (sqrt w_in B_in + sqrt w_out B_out)(sqrt w_in A_in + sqrt w_out A_out) x  (eq. 4)
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Tuple

from .config import MERGE_MODES, LSLoConfigError, parse_merge_weights
from .runfiles import RunFileError, merge_weights
from .runfiles.merge_weights import Direction, LayerWeights, Weights

FLAG = "--lslo-merge-weights"


def add_merge_options(parser, merge_help: str, weights_help: str) -> None:
    """``--lslo-merge`` and ``--lslo-merge-weights`` on ``parser`` (fairseq-generate's task options,
    ``lslo-export fold``, ``lslo-export peft``), each with its command's help text."""
    parser.add_argument("--lslo-merge", type=str, default="outputs", choices=MERGE_MODES, help=merge_help)
    parser.add_argument("--lslo-merge-weights", type=str, default=None, metavar="W_IN,W_OUT|FILE", help=weights_help)


SIDES = merge_weights.SIDES


def read_merge_weights(spec) -> Tuple[Optional[Weights], Dict[Direction, Weights], Dict[Optional[Direction], LayerWeights]]:
    """``W_IN,W_OUT`` or a merge-weights JSON file (:mod:`.runfiles.merge_weights`) -> ((w_in, w_out)
    or None, {(src, tgt): (w_in, w_out)}, {(src, tgt) or None: per-layer weights}); None -> the
    default 0.5,0.5. Every weight is in [0, 1]."""
    if spec is None:
        return merge_weights.DEFAULT_WEIGHTS, {}, {}
    if not (str(spec).endswith(".json") or os.path.isfile(str(spec))):
        return parse_merge_weights(spec), {}, {}
    try:
        return merge_weights.load(str(spec))
    except RunFileError as e:
        raise LSLoConfigError(f"{FLAG} {e}") from None


def check_layer_counts(layered: Dict, counts: Dict[str, int], spec) -> None:
    """Per-layer weights must have one pair per layer of the model."""
    for d, w in layered.items():
        for side in SIDES:
            if len(w[side]) != counts[side]:
                what = "'layers'" if d is None else f"direction_layers {'-'.join(d)}"
                raise LSLoConfigError(f"{FLAG} {spec}: {what} has {len(w[side])} {side} layer pairs, the model has "
                                      f"{counts[side]} {side} layers")


def apply_merge(model, mode: str = "outputs", spec=None, src: Optional[str] = None,
                tgt: Optional[str] = None) -> None:
    """Configure ``model``'s router (a modular LSLo model; for any other model the options must be
    the defaults). With ``src``/``tgt`` known, ``ab`` is refused up front for a direction whose input
    and output adapters have different ranks."""
    cfg = getattr(model, "lslo_config", None)
    if cfg is None or not cfg.modular:
        if mode != "outputs" or spec is not None:
            raise LSLoConfigError("--lslo-merge/--lslo-merge-weights apply to modular checkpoints "
                                  "(trained with --lslo-modular) only")
        return
    weights, per_direction, layered = read_merge_weights(spec)
    check_layer_counts(layered, model.lslo_router.layer_counts, spec)
    # the directions that merge: all but the pivot's, unless the pivot has adapters (--lslo-pivot-rank)
    known = src in cfg.languages and tgt in cfg.languages and src != tgt and (
        cfg.pivot not in (src, tgt) or cfg.rank_of(cfg.pivot) > 0)
    if known and weights is None and (src, tgt) not in per_direction and (src, tgt) not in layered:
        given = sorted({"-".join(d) for d in list(per_direction) + list(layered) if d is not None})
        raise LSLoConfigError(f"{FLAG} {spec}: no weights for {src}-{tgt} (the file has {', '.join(given)} and no "
                              "default 'weights' or 'layers')")
    if mode == "ab" and known and cfg.rank_of(src) != cfg.rank_of(tgt):
        if (src, tgt) in layered or ((src, tgt) not in per_direction and None in layered):
            used = [w for side in SIDES for w in layered[(src, tgt) if (src, tgt) in layered else None][side]]
        else:
            used = [per_direction.get((src, tgt), weights or merge_weights.DEFAULT_WEIGHTS)]
        if any(min(w) > 0 for w in used):
            raise LSLoConfigError(
                f"--lslo-merge ab needs equal ranks of the input and output adapters: {src} has rank "
                f"{cfg.rank_of(src)} and {tgt} rank {cfg.rank_of(tgt)}; use --lslo-merge outputs")
    model.lslo_router.configure_merge(cfg.pivot, cfg.ranks, mode, weights or merge_weights.DEFAULT_WEIGHTS, per_direction,
                                      layered)
