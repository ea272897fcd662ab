"""``fairseq-generate`` outputs: one file per direction, found in a run's folder and read back
(hypotheses and references in sentence-id order)."""
from __future__ import annotations

import os
import re
from typing import Dict, List, Tuple

from . import Direction, ScoringError

_LINE_RE = re.compile(r"^([STHD])-(\d+)\t")
_BYTE_PIECES_RE = re.compile(r"(?:<0x[0-9A-F]{2}>)+")


def restore_byte_pieces(text: str) -> str:
    """Runs of SentencePiece byte-fallback pieces (``<0xE0><0xAC><0x9E>``) turned back into the
    characters they encode (UTF-8; a broken sequence becomes U+FFFD), as SentencePiece's own
    decoder does. fairseq's ``--post-process sentencepiece`` and ``--bpe sentencepiece`` decode by
    string replacement and leave them as they are, so a model whose vocabulary has byte fallback
    (the demo's stand-in) would be scored on the placeholders instead of the text."""
    return _BYTE_PIECES_RE.sub(lambda m: bytes.fromhex(m.group(0)[3:-1].replace("><0x", "")).decode(
        "utf-8", errors="replace"), text)


def read_generate_output(path: str) -> Tuple[List[str], List[str]]:
    """Hypotheses (``D-`` lines, i.e. detokenized after ``--post-process``) and references
    (``T-`` lines) of a ``fairseq-generate`` output file, matched by sentence id and sorted by id,
    byte-fallback pieces restored (:func:`restore_byte_pieces`).

    With ``--nbest`` > 1 the first (best) hypothesis of each id is kept. A file without ``D-`` lines
    (not written by fairseq >= 0.10) falls back to its ``H-`` lines. Other lines (``S-``, ``P-``,
    logging) are ignored.
    """
    hyps_d: Dict[int, str] = {}
    hyps_h: Dict[int, str] = {}
    refs: Dict[int, str] = {}
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise ScoringError(f"cannot read generate output {path}: {e}") from None
    with f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            m = _LINE_RE.match(line)
            if not m:
                continue
            kind, sid = m.group(1), int(m.group(2))
            rest = line[m.end():]
            if kind == "T":
                if sid in refs:
                    raise ScoringError(f"{path} line {n}: reference T-{sid} appears twice")
                refs[sid] = restore_byte_pieces(rest)
            elif kind in ("D", "H"):
                parts = rest.split("\t", 1)
                if len(parts) != 2:
                    raise ScoringError(
                        f"{path} line {n}: expected '{kind}-<id>\\t<score>\\t<text>', got {line!r}"
                    )
                target = hyps_d if kind == "D" else hyps_h
                target.setdefault(sid, restore_byte_pieces(parts[1]))  # first = best of the n-best list
    hyps = hyps_d or hyps_h
    if not hyps:
        raise ScoringError(
            f"{path}: no hypotheses (no 'D-<id>' or 'H-<id>' lines); is it a fairseq-generate output "
            "file, and did generation finish?"
        )
    if not refs:
        raise ScoringError(
            f"{path}: no references ('T-<id>' lines); the test set must have targets to be scored"
        )
    if set(hyps) != set(refs):
        no_ref = sorted(set(hyps) - set(refs))
        no_hyp = sorted(set(refs) - set(hyps))
        raise ScoringError(
            f"{path}: sentence ids of hypotheses and references differ: "
            f"{len(no_ref)} hypotheses without reference (ids {no_ref[:10]}), "
            f"{len(no_hyp)} references without hypothesis (ids {no_hyp[:10]})"
        )
    ids = sorted(hyps)
    return [hyps[i] for i in ids], [refs[i] for i in ids]


def missing_ids(path: str) -> List[int]:
    """Sentence ids below the largest id of a generate output that have no hypothesis: sentences
    fairseq skipped (a dropped last batch, ``--skip-invalid-size-inputs-valid-test``). Skipped
    sentences above the largest id cannot be seen here."""
    ids = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = _LINE_RE.match(line)
            if m and m.group(1) in ("D", "H"):
                ids.add(int(m.group(2)))
    return [i for i in range(max(ids) + 1) if i not in ids] if ids else []


_LANG = r"[A-Za-z0-9_]+"
DIRECTION_RE = re.compile(rf"^({_LANG})-({_LANG})$")  # a direction "src-tgt", as fairseq names pairs
_FLAT_GEN_RE = re.compile(rf"^generate-({_LANG})-({_LANG})\.txt$")
_FLAT_RE = re.compile(rf"^({_LANG})-({_LANG})\.txt$")


def find_direction_outputs(run_dir: str, subset: str = "test") -> Dict[Direction, str]:
    """Generate output file of every direction under ``run_dir``, as ``{(src, tgt): path}``.

    Accepted layouts: ``RUN/<src>-<tgt>/generate-<subset>.txt`` (fairseq's ``--results-path``; a
    direction folder holding a single ``generate-*.txt`` of another subset is used too),
    ``RUN/generate-<src>-<tgt>.txt`` and ``RUN/<src>-<tgt>.txt``.
    """
    if not os.path.isdir(run_dir):
        raise ScoringError(f"run directory {run_dir} does not exist")
    found: Dict[Direction, str] = {}

    def add(direction: Direction, path: str):
        if direction in found:
            raise ScoringError(
                f"{run_dir}: direction {direction[0]}-{direction[1]} has two outputs: "
                f"{found[direction]} and {path}; keep one"
            )
        found[direction] = path

    for name in sorted(os.listdir(run_dir)):
        path = os.path.join(run_dir, name)
        if os.path.isdir(path):
            m = DIRECTION_RE.match(name)
            if not m:
                continue
            wanted = os.path.join(path, f"generate-{subset}.txt")
            if os.path.isfile(wanted):
                add((m.group(1), m.group(2)), wanted)
                continue
            others = sorted(f for f in os.listdir(path) if f.startswith("generate-") and f.endswith(".txt"))
            if len(others) == 1:
                add((m.group(1), m.group(2)), os.path.join(path, others[0]))
            elif others:
                raise ScoringError(
                    f"{path}: no generate-{subset}.txt but several other outputs {others}; "
                    "choose the subset"
                )
        elif os.path.isfile(path):
            m = _FLAT_GEN_RE.match(name)
            if m is None and not name.startswith("generate-"):
                m = _FLAT_RE.match(name)
            if m:
                add((m.group(1), m.group(2)), path)
    if not found:
        raise ScoringError(
            f"no generate outputs found in {run_dir}: expected <src>-<tgt>/generate-{subset}.txt, "
            "generate-<src>-<tgt>.txt or <src>-<tgt>.txt"
        )
    return dict(sorted(found.items()))
