"""The logit lens on a translation decoder: the language of the tokens each decoder layer predicts.

Teacher forcing (source sentence + reference target), for every decoder layer ``i`` (0 = the
embeddings, 1..L = the layers' outputs, fairseq's ``inner_states``) and every counted target
position, the lens logits are the model's own head on that layer's state::

    lens_i = output_projection(project_out_dim(layer_norm(h_i)))

(``decoder.layer_norm`` where the model has one, i.e. pre-norm models such as M2M-100;
``project_out_dim`` where present). At the last layer this is exactly the model's output.

Counted positions: those whose reference token is an ordinary token (not padding, BOS/EOS/UNK or any
other special symbol, not a language token). The top ``k`` tokens of ``lens_i`` are taken among the
ordinary tokens (special and language tokens masked out), and each of the ``k`` counts once.

**Token-language rule.** ``c_l(w)`` is how often dictionary token ``w`` occurs in language ``l``'s
training text (space-separated SentencePiece pieces, e.g. ``train.spm.<l>`` of a prepared data
folder), ``f_l(w) = c_l(w) / N_l`` its relative frequency (``N_l``: all of ``l``'s pieces that are
in the dictionary). ``w`` belongs to language ``l`` when ``f_l(w)`` is the highest of all table
languages, ``f_l(w) >= ratio * f_m(w)`` for the next highest ``m`` (``f_m = 0`` when no other
language has it) and ``c_l(w) >= min_count``; a token seen in training text that fails this is
``shared``; one seen in none is ``unseen``. Special and language tokens are excluded.

**Categories of a direction src-tgt** (bridge: ``en`` by default), in this precedence: ``source``
(token of src), ``target`` (of tgt), ``bridge`` (of the bridge language, when it is neither src nor
tgt: zero for directions with the bridge on one side), ``other`` (another table language),
``shared``, ``unseen``. Per layer the six shares sum to 1 (counts / (positions * k)).

Functions: :func:`read_token_counts` (one text file), :func:`excluded_tokens`,
:func:`token_languages` (the rule), :func:`direction_categories`, :func:`lens_logits` (one state),
:func:`decoder_states` (teacher-forced ``inner_states``), :func:`layer_counts` (one batch),
:func:`lens_counts` (batches), :func:`shares`, :func:`format_shares`, :func:`check_lens_document`,
:func:`pooled_entry` (all directions of a document as one: their counts summed).
"""
from __future__ import annotations

import collections
import os
from typing import Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .importance import AnalysisError

SHARED, UNSEEN, EXCLUDED = -1, -2, -3
CATEGORIES = ("source", "target", "bridge", "other", "shared", "unseen")
DEFAULT_BRIDGE = "en"
DEFAULT_RATIO = 2.0
DEFAULT_MIN_COUNT = 1
DEFAULT_TOP_K = 5
CHUNK = 512  # positions per lens projection (a chunk's logits: CHUNK x vocabulary floats)
KIND = "logit_lens"


class LensError(AnalysisError):
    """Bad logit-lens input: a text file, a language or direction, a model the lens cannot read."""


def rule_text(ratio: float, min_count: int) -> str:
    """The token-language rule in words, with its parameters (written into the JSON)."""
    return (f"token w belongs to language l when l's relative frequency f_l(w) = c_l(w)/N_l in the training "
            f"text is the highest of the table languages, at least {ratio:g} times the next highest "
            f"(0 when no other language has w) and c_l(w) >= {min_count}; otherwise 'shared' if seen in "
            "some training text, 'unseen' if in none; special and language tokens are excluded (never "
            "counted, never in the top-k)")


class TokenTable(NamedTuple):
    """Every dictionary token's language: ``labels[w]`` is an index into ``languages``, or
    ``SHARED``, ``UNSEEN``, ``EXCLUDED``."""

    languages: List[str]
    labels: np.ndarray
    ratio: float
    min_count: int


def read_token_counts(path: str, dictionary) -> Tuple[np.ndarray, int]:
    """(c(w) for every id of ``dictionary``, the number of pieces not in it) over a text file of
    space-separated pieces."""
    if not os.path.isfile(path):
        raise LensError(f"{path}: training text not found")
    pieces: collections.Counter = collections.Counter()
    with open(path, encoding="utf-8") as f:
        for line in f:
            pieces.update(line.split())
    counts = np.zeros(len(dictionary), dtype=np.int64)
    oov = 0
    for piece, n in pieces.items():
        i = dictionary.indices.get(piece)
        if i is None:
            oov += n
        else:
            counts[i] += n
    return counts, oov


def excluded_tokens(dictionary, lang_token_ids: Iterable[int]) -> np.ndarray:
    """Boolean mask over the dictionary: fairseq's special symbols (the first ``nspecial`` ids:
    BOS, padding, EOS, UNK and any extra specials) and the language tokens."""
    mask = np.zeros(len(dictionary), dtype=bool)
    mask[: dictionary.nspecial] = True
    for i in lang_token_ids:
        mask[int(i)] = True
    return mask


def token_languages(counts: Mapping[str, np.ndarray], excluded: np.ndarray, ratio: float = DEFAULT_RATIO,
                    min_count: int = DEFAULT_MIN_COUNT) -> TokenTable:
    """The language of every token by the module's rule, from each language's counts ``c_l``."""
    if ratio < 1:
        raise LensError(f"--ratio: at least 1 (the top language's frequency over the next one's), got {ratio:g}")
    if min_count < 1:
        raise LensError(f"--min-count: at least 1, got {min_count}")
    languages = list(counts)
    if not languages:
        raise LensError("no training text: the token table needs at least one language")
    c = np.stack([np.where(excluded, 0, np.asarray(counts[lang], dtype=np.int64)) for lang in languages])
    totals = c.sum(axis=1)
    empty = [lang for lang, n in zip(languages, totals) if n == 0]
    if empty:
        raise LensError(f"no dictionary token in the training text of {', '.join(empty)}")
    f = c / totals[:, None]
    best = f.argmax(axis=0)
    cols = np.arange(c.shape[1])
    f1 = f[best, cols]
    f2 = np.sort(f, axis=0)[-2] if len(languages) > 1 else np.zeros_like(f1)
    owned = (f1 > f2) & (f1 >= ratio * f2) & (c[best, cols] >= min_count)
    labels = np.where(owned, best, np.where(c.sum(axis=0) > 0, SHARED, UNSEEN))
    labels[excluded] = EXCLUDED
    return TokenTable(languages, labels.astype(np.int64), float(ratio), int(min_count))


def table_summary(table: TokenTable) -> Dict[str, int]:
    """How many dictionary tokens the table gives each language, ``shared``, ``unseen``, ``excluded``."""
    out = {lang: int((table.labels == i).sum()) for i, lang in enumerate(table.languages)}
    for name, code in (("shared", SHARED), ("unseen", UNSEEN), ("excluded", EXCLUDED)):
        out[name] = int((table.labels == code).sum())
    return out


def direction_categories(table: TokenTable, src: str, tgt: str, bridge: str = DEFAULT_BRIDGE) -> np.ndarray:
    """Every token's category (index into ``CATEGORIES``; -1 for excluded tokens) for direction
    src-tgt, in the precedence source, target, bridge, other."""
    missing = [lang for lang in dict.fromkeys((src, tgt, bridge)) if lang not in table.languages]
    if missing:
        raise LensError(f"{src}-{tgt}: no training text for {', '.join(missing)} in the token table "
                        f"(languages {', '.join(table.languages)})")
    by_lang = np.full(len(table.languages), CATEGORIES.index("other"), dtype=np.int64)
    for lang, cat in ((bridge, "bridge"), (tgt, "target"), (src, "source")):  # later wins
        by_lang[table.languages.index(lang)] = CATEGORIES.index(cat)
    labels = table.labels
    out = np.full(labels.shape, -1, dtype=np.int64)
    known = labels >= 0
    out[known] = by_lang[labels[known]]
    out[labels == SHARED] = CATEGORIES.index("shared")
    out[labels == UNSEEN] = CATEGORIES.index("unseen")
    return out


def lens_logits(decoder, features):
    """The decoder's head on hidden states ``features`` (..., C): final layer norm (if any), the
    output dimension projection (if any), the output projection -> (..., vocabulary)."""
    if getattr(decoder, "adaptive_softmax", None) is not None:
        raise LensError("the logit lens needs a full output projection; this decoder has an adaptive softmax")
    if getattr(decoder, "layer_norm", None) is not None:
        features = decoder.layer_norm(features)
    if getattr(decoder, "project_out_dim", None) is not None:
        features = decoder.project_out_dim(features)
    return decoder.output_layer(features)


def decoder_states(model, net_input) -> list:
    """Teacher-forced decoder states of a batch: fairseq's ``inner_states`` (embeddings, then every
    layer's output), each (target length, batch, C). An LSLo model routes by the batch's language
    tokens itself (its ``forward``); a modular one merges as its router was configured."""
    _, extra = model(net_input["src_tokens"], net_input["src_lengths"], net_input["prev_output_tokens"],
                     features_only=True)
    return extra["inner_states"]


def layer_counts(model, net_input, target, categories, ignore, k: int = DEFAULT_TOP_K):
    """((layers + 1) x len(CATEGORIES)) counts of the categories of the lens's top-``k`` tokens over
    the positions whose reference token is not ``ignore``-d, and that number of positions.

    ``categories``: LongTensor (vocabulary) of :func:`direction_categories`; ``ignore``: BoolTensor
    (vocabulary) of :func:`excluded_tokens` (also the tokens never in the top-k)."""
    import torch

    keep = ~ignore[target]  # (B, T)
    states = decoder_states(model, net_input)
    counts = torch.zeros(len(states), len(CATEGORIES), dtype=torch.long)
    for layer, state in enumerate(states):
        h = state.transpose(0, 1)[keep]  # (positions, C)
        for start in range(0, h.size(0), CHUNK):
            logits = lens_logits(model.decoder, h[start:start + CHUNK]).float()
            logits[:, ignore] = float("-inf")
            top = logits.topk(k, dim=-1).indices
            counts[layer] += torch.bincount(categories[top].flatten(), minlength=len(CATEGORIES)).cpu()
    return counts, int(keep.sum())


def lens_counts(model, batches: Iterable[dict], categories, ignore, k: int = DEFAULT_TOP_K,
                max_positions: Optional[int] = None):
    """:func:`layer_counts` summed over fairseq samples (``net_input``, ``target``), in eval mode
    without gradients; stops after the batch that reaches ``max_positions``."""
    import torch

    vocab = model.decoder.output_projection.weight.shape[0] if hasattr(model.decoder, "output_projection") else None
    if vocab is not None and vocab != len(categories):
        raise LensError(f"the model's output layer has {vocab} rows, the dictionary {len(categories)} tokens: "
                        "the checkpoint was not trained with this dictionary")
    ordinary = int((categories >= 0).sum())
    if k < 1 or ordinary < k:
        raise LensError(f"--top-k {k}: between 1 and the dictionary's {ordinary} ordinary tokens")
    device = next(model.parameters()).device
    categories, ignore = categories.to(device), ignore.to(device)
    total, positions = None, 0
    model.eval()
    with torch.no_grad():
        for sample in batches:
            if "net_input" not in sample:
                continue
            counts, n = layer_counts(model, sample["net_input"], sample["target"], categories, ignore, k)
            total = counts if total is None else total + counts
            positions += n
            if max_positions is not None and positions >= max_positions:
                break
    if total is None or positions == 0:
        raise LensError("no target position to look at: the batches are empty or hold only special tokens")
    return total, positions


def shares(counts) -> List[List[float]]:
    """Each layer's counts as shares of its total (a row sums to 1)."""
    c = np.asarray(counts, dtype=np.float64)
    return (c / c.sum(axis=1, keepdims=True)).tolist()


def layer_names(n_states: int) -> List[str]:
    """Row labels: ``emb`` (the embeddings' state), then the decoder layers 1..L."""
    return ["emb"] + [str(i) for i in range(1, n_states)]


def category_labels(bridge: str) -> List[str]:
    """Column labels of the share table: the bridge column named by its language."""
    return [f"bridge ({bridge})" if c == "bridge" else c for c in CATEGORIES]


def format_shares(direction: str, entry: Mapping, bridge: str) -> str:
    """A direction's layer x category share table as aligned text."""
    labels = category_labels(bridge)
    widths = [max(len(label), 6) for label in labels]
    lines = [f"{direction} ({entry['positions']} positions, top-{entry['top_k']})",
             "layer  " + "  ".join(label.rjust(w) for label, w in zip(labels, widths))]
    for name, row in zip(entry["layers"], entry["shares"]):
        lines.append(f"{name:>5}  " + "  ".join(f"{v:.3f}".rjust(w) for v, w in zip(row, widths)))
    return "\n".join(lines)


def check_lens_document(doc, where: str) -> Mapping:
    """``doc`` (a loaded logit-lens JSON) checked for what the plot reads; errors name ``where``."""
    if not isinstance(doc, Mapping) or doc.get("kind") != KIND:
        raise LensError(f"{where}: not a logit-lens file (expected 'kind': '{KIND}', written by lslo-lens)")
    directions = doc.get("directions")
    if not isinstance(directions, Mapping) or not directions:
        raise LensError(f"{where}: no 'directions'")
    if list(doc.get("categories", [])) != list(CATEGORIES):
        raise LensError(f"{where}: categories {doc.get('categories')}, expected {list(CATEGORIES)}")
    for name, entry in directions.items():
        rows = entry.get("shares") if isinstance(entry, Mapping) else None
        if (not isinstance(rows, list) or not rows or len(entry.get("layers", [])) != len(rows)
                or any(not isinstance(r, list) or len(r) != len(CATEGORIES) for r in rows)):
            raise LensError(f"{where}: direction {name}: 'shares' must be one row of {len(CATEGORIES)} "
                            "shares per entry of 'layers'")
    return doc


def pooled_entry(doc: Mapping) -> Dict[str, object]:
    """All directions of a (checked) logit-lens document as one entry: per layer, the counts of every
    direction summed, then turned into shares (so each direction weighs by its positions)."""
    entries = list(doc["directions"].values())
    if len({len(e["counts"]) for e in entries}) != 1:
        raise LensError("directions with different numbers of decoder layers cannot be pooled")
    counts = np.sum([np.asarray(e["counts"], dtype=np.int64) for e in entries], axis=0)
    return direction_entry(counts, sum(int(e["positions"]) for e in entries), int(entries[0]["top_k"]))


def direction_entry(counts, positions: int, k: int) -> Dict[str, object]:
    """The JSON record of one direction: layers, counts, shares, positions, top-k."""
    counts = np.asarray(counts)
    return {"layers": layer_names(counts.shape[0]), "positions": int(positions), "top_k": int(k),
            "counts": counts.tolist(), "shares": shares(counts)}


def lens_document(entries: Mapping[str, Mapping], table: TokenTable, bridge: str,
                  meta: Mapping[str, object]) -> Dict[str, object]:
    """The JSON document: the rule, the categories, the token table's summary, every direction."""
    return {"kind": KIND, "rule": rule_text(table.ratio, table.min_count), "ratio": table.ratio,
            "min_count": table.min_count, "bridge": bridge, "categories": list(CATEGORIES),
            "category_precedence": "source, target, bridge, other (a token of the bridge language counts as "
                                   "source/target when the bridge is one of them)",
            "table_languages": list(table.languages), "token_table": table_summary(table),
            "directions": dict(entries), "meta": dict(meta)}


def check_languages(langs: Sequence[str], pairs: Sequence[Tuple[str, str]], bridge: str, flag: str) -> None:
    """Every direction's languages and the bridge are among ``langs`` (the table's)."""
    need = list(dict.fromkeys([lang for p in pairs for lang in p] + [bridge]))
    missing = [lang for lang in need if lang not in langs]
    if missing:
        raise LensError(f"{flag}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not among the "
                        f"token-table languages {', '.join(langs)}; the directions and --bridge need training "
                        "text for their languages")
