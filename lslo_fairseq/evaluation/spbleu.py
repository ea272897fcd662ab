"""spBLEU (FLORES-101): hypotheses and references are split into SentencePiece pieces with a given
model, then BLEU is computed on the pieces by sacrebleu with no further tokenization. The model is
a file (``flores101``: sacrebleu's cached copy of the FLORES-101 one, downloaded when missing)."""
from __future__ import annotations

import os
from typing import Dict, List, Sequence, Tuple

from ..files import download_atomic, file_digest
from . import Direction, ScoringError
from .outputs import find_direction_outputs, read_generate_output

_SPM_CACHE: Dict[Tuple[str, int, int], object] = {}


def load_spm(spm_model_path: str):
    """The ``SentencePieceProcessor`` of a model file, loaded once per (path, mtime, size)."""
    import sentencepiece as spm

    path = os.path.abspath(spm_model_path)
    try:
        st = os.stat(path)
    except OSError as e:
        raise ScoringError(f"SentencePiece model {spm_model_path}: {e}") from None
    key = (path, st.st_mtime_ns, st.st_size)
    proc = _SPM_CACHE.get(key)
    if proc is None:
        proc = spm.SentencePieceProcessor()
        try:
            proc.Load(path)
        except (OSError, RuntimeError) as e:
            raise ScoringError(f"{spm_model_path} is not a SentencePiece model: {e}") from None
        _SPM_CACHE[key] = proc
    return proc


FLORES101_SPM_URL = "https://dl.fbaipublicfiles.com/fairseq/models/flores/sacrebleu_tokenizer_spm.model"


def flores101_spm_path() -> str:
    """Where sacrebleu keeps the FLORES-101 SentencePiece model (``$SACREBLEU/models/...``,
    default ``~/.sacrebleu``): sacrebleu's ``flores101``/``spm`` tokenizers use the file found there."""
    root = os.environ.get("SACREBLEU", os.path.join(os.path.expanduser("~"), ".sacrebleu"))
    return os.path.join(root, "models", os.path.basename(FLORES101_SPM_URL))


def resolve_spm(spec: str, timeout: float = 30.0) -> str:
    """The SentencePiece model file for ``--spm``: a path, or ``flores101`` for the FLORES-101
    tokenizer model (sacrebleu's cached copy, else downloaded there; a clear error offline)."""
    if spec != "flores101":
        if not os.path.isfile(spec):
            raise ScoringError(f"--spm: SentencePiece model {spec} does not exist")
        return spec
    path = flores101_spm_path()
    if os.path.isfile(path):
        return path
    import urllib.error

    try:
        download_atomic(FLORES101_SPM_URL, path, timeout)
    except (urllib.error.URLError, OSError) as e:
        raise ScoringError(
            f"--spm flores101: the FLORES-101 SentencePiece model is not at {path} and cannot be "
            f"downloaded from {FLORES101_SPM_URL} ({getattr(e, 'reason', e)}); fetch it elsewhere and "
            "pass --spm PATH (or put it at that path)"
        ) from None
    return path


def spm_pieces(lines: Sequence[str], spm_model_path: str) -> List[str]:
    """Each line split into SentencePiece pieces joined by single spaces, exactly as sacrebleu's
    ``flores101``/``spm`` tokenizer does (BLEU strips trailing whitespace before tokenizing)."""
    proc = load_spm(spm_model_path)
    encoded = proc.encode([line.rstrip() for line in lines], out_type=str)
    return [" ".join(pieces) for pieces in encoded]


def _bleu_metric():
    from sacrebleu.metrics import BLEU

    # force=True only silences the "looks tokenized" warning, which pieces always trigger.
    return BLEU(tokenize="none", force=True)


def spbleu(hyps: Sequence[str], refs: Sequence[str], spm_model_path: str) -> float:
    """Corpus spBLEU (FLORES-101 definition) of ``hyps`` against one reference each, with the
    SentencePiece model at ``spm_model_path``."""
    if len(hyps) != len(refs):
        raise ScoringError(f"spbleu: {len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        raise ScoringError("spbleu: no sentences to score")
    metric = _bleu_metric()
    return float(
        metric.corpus_score(spm_pieces(hyps, spm_model_path), [spm_pieces(refs, spm_model_path)]).score
    )


def md5sum(path: str) -> str:
    """Hex MD5 of a file's bytes."""
    return file_digest(path, "md5")


def scoring_meta(spm_model_path: str) -> dict:
    """What a score table must record: the SentencePiece model (path, md5, vocabulary size) and
    sacrebleu's version and BLEU signature. ``sacrebleu_signature`` is sacrebleu's own (``tok:none``,
    since pieces are made here); ``spbleu_signature`` names the piece model instead."""
    import sacrebleu

    metric = _bleu_metric()
    metric.corpus_score(["a"], [["a"]])  # the signature's nrefs is fixed by a first call
    signature = str(metric.get_signature())
    md5 = md5sum(spm_model_path)
    return {
        "metric": "spBLEU (FLORES-101): sacrebleu corpus BLEU on SentencePiece pieces",
        "spm_model": {
            "path": os.path.abspath(spm_model_path),
            "md5": md5,
            "vocab_size": int(load_spm(spm_model_path).get_piece_size()),
        },
        "sacrebleu": {
            "version": sacrebleu.__version__,
            "sacrebleu_signature": signature,
            "spbleu_signature": signature.replace("tok:none", f"tok:spm-md5:{md5[:8]}"),
        },
    }


def score_run(run_dir: str, spm_model_path: str, subset: str = "test") -> Dict[Direction, float]:
    """spBLEU of every direction found under ``run_dir`` (see :func:`find_direction_outputs`)."""
    return {
        direction: spbleu(*read_generate_output(path), spm_model_path)
        for direction, path in find_direction_outputs(run_dir, subset).items()
    }
