"""``lslo-score --learn-merge-weights``: the follow-up's weight learning for a modular checkpoint.

For every direction X -> Y without the pivot and every transformer layer l (encoder layers, then
decoder layers), two logits (w0, w1), initialised to 1.0, give the merge weights of that layer

    (w_in, w_out) = softmax(w0, w1),   h = W x + w_in LoRA_in(X)(x) + w_out LoRA_out(Y)(x)   (eq. 5)

shared by all LoRA modules of the layer (``--lslo-merge ab`` mixes the factors with the same weights,
eq. 4). They are learned by teacher-forced cross-entropy (label smoothing 0) on ``--gen-subset``
(valid) of the directions, with Adam, the model in eval mode (no dropout); everything else stays frozen: the base, and the adapters too, so
that every adapter stays the one its English-centric run trained and any other direction (and the
PEFT/fold exports) still composes the same modules. Only 2 x layers numbers per direction are fitted.

The result is a merge-weights JSON that ``--lslo-merge-weights`` reads (``direction_layers``: per
direction, ``{"encoder": [[w_in, w_out], ...], "decoder": [...]}``), with no default for other
directions (they are refused, not silently merged 0.5/0.5), plus the run's record under ``learning``
(options, per-epoch loss). ``lslo-plot merge-weights`` draws the follow-up's figure 2 from it.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from ..runfiles import merge_weights
from . import Direction, ScoringError

INIT_LOGIT = 1.0  # w0 = w1 = 1.0 (the follow-up, section 3.4): softmax 0.5, 0.5
DEFAULT_EPOCHS = 5
DEFAULT_LR = 0.05
DIGITS = 6


@dataclass
class Learned:
    """Per direction ``{"encoder": [[w_in, w_out], ...], "decoder": [...]}``, and the mean loss per epoch."""

    weights: Dict[str, Dict[str, List[List[float]]]]
    losses: List[float] = field(default_factory=list)


def merge_table(logits, pivot_row: int):
    """(sites, n, n, 2) logits -> their softmax over the last axis, with the pivot's directions fixed at
    (1, 0) into the pivot and (0, 1) out of it, as the router pins them (no gradient there)."""
    import torch

    from ..routing import pin_pivot  # torch: deferred, as in the rest of this module

    # a copy: softmax's backward reads its own output, which the pinning overwrites
    return pin_pivot(torch.softmax(logits, dim=-1).clone(), pivot_row)


def nll(model, sample):
    """Teacher-forced token-level negative log-likelihood, averaged over the target tokens."""
    net_output = model(**sample["net_input"])
    lprobs = model.get_normalized_probs(net_output, log_probs=True)
    target = sample["target"]
    pad = model.decoder.dictionary.pad() if hasattr(model.decoder, "dictionary") else 1
    picked = lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    keep = target.ne(pad)
    return -(picked * keep).sum() / keep.sum()


def learn(translator, directions: Sequence[Direction], epochs: int = DEFAULT_EPOCHS, lr: float = DEFAULT_LR,
          seed: int = 1, progress=None) -> Learned:
    """Learn the per-(direction, layer) merge logits of the translator's modular model on its
    ``gen_subset`` data of ``directions`` (every batch one direction; batches of all directions
    shuffled together each epoch)."""
    import torch
    from fairseq import utils

    model = translator.models[0]
    router, cfg = model.lslo_router, model.lslo_config
    if not cfg.modular:
        raise ScoringError("--learn-merge-weights: the checkpoint was not trained with --lslo-modular")
    subset = translator.cfg.dataset.gen_subset
    batches = []
    for s, t in directions:
        task = translator.task_for(s, t)  # configures the router's merge mode; the weights come from below
        task.load_dataset(subset, task_cfg=translator.saved_cfg.task)
        itr = task.get_batch_iterator(
            dataset=task.dataset(subset), max_tokens=translator.cfg.dataset.max_tokens,
            max_sentences=translator.cfg.dataset.batch_size,
            max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions()),
            seed=seed).next_epoch_itr(shuffle=False)
        batches += [sample for sample in itr if sample]
    counts = router.layer_counts
    sites, n = counts["encoder"] + counts["decoder"], len(cfg.languages)
    device = next(model.parameters()).device
    logits = torch.full((sites, n, n, 2), INIT_LOGIT, device=device, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=lr)
    for p in model.parameters():
        p.requires_grad_(False)
    # the model stays as loaded for decoding (eval mode: no dropout, so every step sees the function the
    # weights will be decoded with); autograd reaches the logits only
    pivot_row = cfg.languages.index(cfg.pivot)
    rng = random.Random(seed)
    losses = []
    try:
        for _ in range(epochs):
            total = 0.0
            for sample in rng.sample(batches, len(batches)):
                if translator.use_cuda:
                    sample = utils.move_to_cuda(sample)
                router.layer_weights = merge_table(logits, pivot_row)
                loss = nll(model, sample)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss)
                if progress:
                    progress()
            losses.append(total / max(len(batches), 1))
    finally:
        router.layer_weights = None
    table = merge_table(logits.detach(), pivot_row).cpu()
    weights = {}
    for s, t in directions:
        per = [[round(float(w), DIGITS) for w in pair] for pair in table[:, cfg.languages.index(s),
                                                                           cfg.languages.index(t)].tolist()]
        weights[f"{s}-{t}"] = {"encoder": per[:counts["encoder"]], "decoder": per[counts["encoder"]:]}
    return Learned(weights, losses)


def merge_weights_json(result: Learned, meta: Optional[dict] = None) -> dict:
    """What ``--lslo-merge-weights`` reads (``direction_layers``), and the run's record."""
    return {"direction_layers": result.weights,
            "learning": dict(meta or {}, init_logits=[INIT_LOGIT, INIT_LOGIT], frozen="base and adapters",
                             loss_per_epoch=[round(x, DIGITS) for x in result.losses])}


def write(result: Learned, path: str, meta: Optional[dict] = None) -> str:
    """The merge-weights JSON at ``path`` (validated, atomic: :mod:`..runfiles.merge_weights`)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return merge_weights.write(path, merge_weights_json(result, meta))


def format_result(result: Learned) -> str:
    """One line per direction: the learned target weight w_out per layer (encoder | decoder)."""
    lines = [f"loss per epoch: {', '.join(f'{x:.4f}' for x in result.losses)}"]
    for d, w in result.weights.items():
        enc = " ".join(f"{p[1]:.2f}" for p in w["encoder"])
        dec = " ".join(f"{p[1]:.2f}" for p in w["decoder"])
        lines.append(f"{d}: w_out per layer: encoder {enc} | decoder {dec}")
    return "\n".join(lines)
