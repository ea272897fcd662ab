"""``SAVE_DIR/weight_learning.json``: the learned weights of weight learning (paper eq. 5).

Written by the task at every validation (the end of an epoch)::

    {"encoder": [[w_src, w_tgt], ...one per layer], "decoder": [...],
     "encoder_index": ["src", ..., "tgt"], "decoder_index": [...],
     "history": [{"epoch": 1, "update": 120, "encoder": [...], "decoder": [...]}, ...]}

Each layer's index is the side with the larger weight (:func:`chosen_index`, ties to ``src``): the
file passed to ``--lslo-encoder-index``/``--lslo-decoder-index`` gives the next run those indexes
(the paper's section 6.1), and ``lslo-plot weights`` draws figure 1 from it.
"""
import os
from typing import List, Mapping, Sequence, Tuple, Union

from ..names import INDEX_CHOICES
from ..files import write_json_atomic
from . import RunFileError, read_json

FILENAME = "weight_learning.json"
SIDES = ("encoder", "decoder")


def chosen_index(w_src: float, w_tgt: float) -> str:
    """The index a weight-learning layer chooses: the side with the larger weight (ties: src)."""
    return "src" if w_src >= w_tgt else "tgt"


def document(weights: Mapping[str, Sequence[Sequence[float]]]) -> dict:
    """The file's top level for ``{"encoder": [(w_src, w_tgt), ...], "decoder": [...]}``."""
    doc = {}
    for side in SIDES:
        pairs = [[float(a), float(b)] for a, b in weights.get(side, [])]
        doc[side] = pairs
        doc[f"{side}_index"] = [chosen_index(a, b) for a, b in pairs]
    return doc


def write(out_dir: str, weights: Mapping[str, Sequence[Sequence[float]]], epoch: int, update: int) -> str:
    """Write ``out_dir/weight_learning.json`` (atomically) with these weights, their indexes and the
    history so far plus this snapshot; return its path. A history that cannot be read (another
    file there) is not carried over."""
    path = os.path.join(out_dir, FILENAME)
    history = []
    if os.path.exists(path):
        try:
            history = list(load(path).get("history") or [])
        except RunFileError:
            history = []
    doc = document(weights)
    history.append(dict(epoch=epoch, update=update, encoder=doc["encoder"], decoder=doc["decoder"]))
    doc["history"] = history
    write_json_atomic(path, doc)
    return path


def indexes(path: str, side: str) -> List[str]:
    """The chosen index of every ``side`` layer in the file at ``path``."""
    return load(path)[f"{side}_index"]


def _check_pairs(value, where: str) -> List[Tuple[float, float]]:
    if not isinstance(value, list):
        raise RunFileError(f"{where}: expected a list of [w_src, w_tgt] pairs, one per layer")
    out = []
    for i, pair in enumerate(value):
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in pair)):
            raise RunFileError(f"{where}[{i}]: expected [w_src, w_tgt], got {pair!r}")
        a, b = float(pair[0]), float(pair[1])
        if not (0.0 <= a <= 1.0 and 0.0 <= b <= 1.0) or abs(a + b - 1.0) > 1e-3:
            raise RunFileError(f"{where}[{i}]: weights must be in [0, 1] and sum to 1 (softmax), got {pair!r}")
        out.append((a, b))
    return out


def load(source: Union[str, Mapping]) -> dict:
    """Read and validate a ``weight_learning.json`` (or its dict): ``encoder``/``decoder`` lists of
    ``[w_src, w_tgt]`` per layer (one side may be empty: no weight learning there),
    ``encoder_index``/``decoder_index`` (derived from the larger weight when absent; must agree
    with it when given), optional ``history`` of snapshots with ``update`` and/or ``epoch``."""
    where = source if isinstance(source, str) else "weight learning"
    doc = read_json(source) if isinstance(source, str) else source
    if not isinstance(doc, Mapping):
        raise RunFileError(f"{where}: expected a JSON object with 'encoder' and 'decoder'")
    out = {}
    for side in SIDES:
        if side not in doc:
            raise RunFileError(f"{where}: missing key {side!r} (a list of [w_src, w_tgt] per layer)")
        pairs = _check_pairs(doc[side], f"{where}: {side}")
        derived = [chosen_index(a, b) for a, b in pairs]
        index = doc.get(f"{side}_index")
        if index is None:
            index = derived
        else:
            if not isinstance(index, list) or len(index) != len(pairs):
                raise RunFileError(f"{where}: {side}_index must list one of {list(INDEX_CHOICES)} per "
                                    f"layer ({len(pairs)} layers)")
            for i, (choice, (a, b)) in enumerate(zip(index, pairs)):
                if choice not in INDEX_CHOICES:
                    raise RunFileError(f"{where}: {side}_index[{i}] is {choice!r}, not 'src' or 'tgt'")
                if abs(a - b) > 1e-6 and choice != chosen_index(a, b):
                    raise RunFileError(f"{where}: {side}_index[{i}] = {choice!r} but layer {i + 1} has "
                                        f"w_src={a:g}, w_tgt={b:g} (the index is the larger weight's side)")
        out[side] = pairs
        out[f"{side}_index"] = list(index)
    if not out["encoder"] and not out["decoder"]:
        raise RunFileError(f"{where}: no layer has weights (both 'encoder' and 'decoder' are empty)")
    history = doc.get("history")
    if history is not None:
        if not isinstance(history, list):
            raise RunFileError(f"{where}: history must be a list of snapshots")
        checked = []
        for i, snap in enumerate(history):
            if not isinstance(snap, Mapping) or ("update" not in snap and "epoch" not in snap):
                raise RunFileError(f"{where}: history[{i}] needs 'update' or 'epoch', 'encoder' and 'decoder'")
            for key in ("update", "epoch"):
                v = snap.get(key)
                if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool)):
                    raise RunFileError(f"{where}: history[{i}].{key} must be a number, got {v!r}")
            entry = {"update": snap.get("update"), "epoch": snap.get("epoch")}
            for side in SIDES:
                pairs = _check_pairs(snap.get(side), f"{where}: history[{i}].{side}")
                if len(pairs) != len(out[side]):
                    raise RunFileError(f"{where}: history[{i}].{side} has {len(pairs)} layers, "
                                        f"the final weights {len(out[side])}")
                entry[side] = pairs
            checked.append(entry)
        out["history"] = checked
    return out
