"""A random-weight model directory laid out like the released ``flores101_mm100_615M``.

    python -m lslo_fairseq.stand_in.release_shape --out DIR               # the release's shape
    python -m lslo_fairseq.stand_in.release_shape --out DIR --shape tiny  # same layout, 2+2 layers, d 64

``DIR`` gets ``model.pt`` (fairseq's checkpoint format: the object ``Trainer.state_dict()`` returns,
without optimizer state, as ``fairseq-train --no-save-optimizer-state`` writes it before any update),
``dict.txt``, ``sentencepiece.bpe.model``, ``language_pairs.txt`` and ``build.json``. The model is
fairseq's own ``--arch transformer_m2m100_615m`` built by ``translation_multi_simple_epoch`` with
``--langs`` = the 101 FLORES-101 languages (recorded in the checkpoint: their order is the order of the
language tokens) and ``--fixed-dictionary dict.txt``, so ``lslo-prepare-flores`` and
``--finetune-from-model`` accept it like the release. No data and no training are involved.

The SentencePiece model is trained on the shipped multi-parallel table (byte fallback, so every
language encodes without ``<unk>``); ``dict.txt`` lists all of its pieces, then placeholder symbols up
to ``--dict-size`` entries of fairseq's dictionary (its 4 specials included, as ``len(Dictionary)``
counts them). The release's ``--dict-size`` is 256,000: with 101 language tokens the embedding has
256,101 rows and the model 614,966,272 parameters.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

from ..shapes import PRENORM_SHARED_ARGS, TINY_SHAPE, shape_args
from ..errors import LSLoError
from ..files import file_digest, torch_save_atomic, write_json_atomic, write_text_atomic

ARCH = "transformer_m2m100_615m"
# The release's fairseq dictionary: 256,000 entries with fairseq's 4 specials (its SentencePiece
# vocabulary); the embedding adds one row per language token.
RELEASE_DICT_SIZE = 256000
# Per shape: fairseq's size flags over the arch's (none: the release's), the dictionary size (None: the
# SentencePiece pieces only) and the stand-in's own SentencePiece model, trained on the shipped table
# (character coverage: the rest of the table's ~2,000 CJK characters go to byte pieces).
SHAPES = {
    "full": dict(shape=[], dict_size=RELEASE_DICT_SIZE, vocab=8000, coverage=0.9995),
    "tiny": dict(shape=shape_args(**TINY_SHAPE), dict_size=None, vocab=1000, coverage=0.98),
}
PLACEHOLDER = "madeupword{:06d}"


class ReleaseShapeError(LSLoError):
    """A bad option of the release-shape builder; the message names it."""


def release_langs() -> List[str]:
    """The release's languages: the 101 of FLORES-101, in the M2M codes the recipes use."""
    from ..data.flores101 import FLORES101_CODES

    return sorted(FLORES101_CODES)


def all_pairs(langs: Sequence[str]) -> List[str]:
    return [f"{s}-{t}" for s in langs for t in langs if s != t]


def recorded_pairs(langs: Sequence[str]) -> List[str]:
    """The ``--lang-pairs`` the checkpoint records: to and from the first language (English in the
    release's list) only. Any reader that sets the task up from the checkpoint (fairseq compares the
    dictionary of every pair, 256,000 entries each) would take minutes with all 10,100; the token
    order comes from the recorded ``--langs`` either way."""
    pivot = "en" if "en" in langs else langs[0]
    return [p for p in all_pairs(langs) if pivot in p.split("-")]


def train_spm(out: Path, vocab: int, coverage: float, seed: int) -> Path:
    """``out/sentencepiece.bpe.model`` trained on every column of the shipped table."""
    from ..data.multiparallel import LIBREOFFICE_LANGS, LIBREOFFICE_TSV, load_table, train_sentencepiece

    table = load_table(LIBREOFFICE_TSV, LIBREOFFICE_LANGS)
    texts = [s for lang in LIBREOFFICE_LANGS for s in table[lang]]
    model, _ = train_sentencepiece(texts, out / "sentencepiece.bpe", vocab, character_coverage=coverage,
                                   seed=seed, byte_fallback=True)
    (out / "sentencepiece.bpe.vocab").unlink(missing_ok=True)
    return Path(model)


def write_dictionary(pieces: Sequence[str], dict_size: Optional[int], path: Path):
    """fairseq's dictionary of ``pieces`` then placeholders up to ``dict_size`` entries (None: no
    placeholders), saved as ``path``; returns it."""
    from fairseq.data import Dictionary

    d = Dictionary()
    for p in pieces:
        d.add_symbol(p, n=1)
    if dict_size is not None:
        if dict_size < len(d):
            raise ReleaseShapeError(f"--dict-size {dict_size}: the SentencePiece model alone needs {len(d)} "
                                    "entries (with fairseq's 4 specials)")
        for i in range(dict_size - len(d)):
            d.add_symbol(PLACEHOLDER.format(i), n=0)
    d.save(str(path))
    return d


def spm_pieces(spm_model: Path) -> List[str]:
    """Every normal and byte piece of a SentencePiece model (its control pieces and ``<unk>`` are
    fairseq's specials)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())
            if not (sp.is_control(i) or sp.is_unknown(i))]


def train_args(out: Path, langs: Sequence[str], shape: Sequence[str], seed: int) -> List[str]:
    """The ``fairseq-train`` command line (without the program) whose configuration the checkpoint
    records: the M2M multilingual task, the 615M architecture, ``shape`` overriding its sizes."""
    return [str(out), "--task", "translation_multi_simple_epoch", "--arch", ARCH,
            "--langs", ",".join(langs), "--lang-pairs", ",".join(recorded_pairs(langs)),
            "--encoder-langtok", "src", "--decoder-langtok", "--fixed-dictionary", str(out / "dict.txt"),
            *PRENORM_SHARED_ARGS, *shape,
            "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.2",
            "--optimizer", "adam", "--lr", "3e-3", "--lr-scheduler", "inverse_sqrt",
            "--max-tokens", "4000", "--cpu", "--seed", str(seed), "--no-save-optimizer-state"]


def build_config(argv: Sequence[str]):
    """fairseq's configuration of ``fairseq-train argv``, parsed as fairseq-train parses it."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    import lslo_fairseq  # noqa: F401  (registers the plugin, as --user-dir would)

    args = options.parse_args_and_arch(options.get_training_parser(), input_args=list(argv))
    return convert_namespace_to_omegaconf(args)


def build_model(cfg):
    """(task, model) as fairseq-train builds them from ``cfg``."""
    from fairseq import tasks

    task = tasks.setup_task(cfg.task)
    return task, task.build_model(cfg.model)


def checkpoint_state(cfg, task, model) -> dict:
    """What ``fairseq-train`` saves for ``model`` before any update (``Trainer.state_dict()``)."""
    from fairseq.trainer import Trainer

    criterion = task.build_criterion(cfg.criterion)
    return Trainer(cfg, task, model, criterion).state_dict()


def build(out: Path, shape: str = "full", dict_size: Optional[int] = None, vocab: Optional[int] = None,
          langs: Optional[Sequence[str]] = None, seed: int = 1, log=print) -> dict:
    """Write the release-shaped directory ``out``; returns what ``build.json`` records."""
    import torch

    if shape not in SHAPES:
        raise ReleaseShapeError(f"--shape: {shape!r} is not one of {', '.join(SHAPES)}")
    spec = SHAPES[shape]
    dict_size = spec["dict_size"] if dict_size is None else dict_size
    vocab = spec["vocab"] if vocab is None else vocab
    langs = list(langs or release_langs())
    if len(set(langs)) != len(langs) or len(langs) < 2:
        raise ReleaseShapeError(f"--langs: need two or more distinct languages, got {','.join(langs)}")
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    log(f"SentencePiece model ({vocab} pieces) from the shipped table")
    try:
        spm_model = train_spm(out, vocab, spec["coverage"], seed)
    except RuntimeError as e:  # SentencePiece's own check of the vocabulary size
        raise ReleaseShapeError(f"--vocab {vocab}: too small for the shipped table's characters at coverage "
                                f"{spec['coverage']} ({str(e).split(']')[-1].strip()})") from None
    pieces = spm_pieces(spm_model)
    d = write_dictionary(pieces, dict_size, out / "dict.txt")
    write_text_atomic(str(out / "language_pairs.txt"), ",".join(all_pairs(langs)) + "\n")
    log(f"dict.txt: {len(d):,} entries (fairseq's 4 specials included); {len(langs)} languages")
    torch.manual_seed(seed)
    cfg = build_config(train_args(out, langs, spec["shape"], seed))
    task, model = build_model(cfg)
    params = sum(p.numel() for p in model.parameters())
    rows = model.encoder.embed_tokens.weight.shape[0]
    log(f"{ARCH}{' (' + shape + ' shape)' if shape != 'full' else ''}: {params:,} parameters, "
        f"embedding {rows:,} rows = {len(d):,} + {len(langs)} language tokens")
    torch_save_atomic(str(out / "model.pt"), checkpoint_state(cfg, task, model))
    info = dict(shape=shape, arch=ARCH, parameters=params, embedding_rows=rows, dict_entries=len(d),
                dict_lines=len(d) - d.nspecial, languages=len(langs), spm_pieces=len(pieces), seed=seed,
                model_pt_bytes=(out / "model.pt").stat().st_size,
                model_pt_sha256=file_digest(out / "model.pt", "sha256"),
                seconds=round(time.perf_counter() - start, 1),
                model_args=[a for a in spec["shape"]])
    write_json_atomic(str(out / "build.json"), info)
    log(f"wrote {out / 'model.pt'} ({info['model_pt_bytes']:,} bytes) in {info['seconds']} s")
    return info


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..runner import run

    p = argparse.ArgumentParser(prog="python -m lslo_fairseq.stand_in.release_shape", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write (created)")
    p.add_argument("--shape", default="full", choices=sorted(SHAPES),
                   help="full: the release's 12+12 layers, d 1024 (default); tiny: 2+2 layers, d 64, for tests")
    p.add_argument("--dict-size", type=int, default=None, metavar="N",
                   help=f"fairseq dictionary entries, its 4 specials included (default: {RELEASE_DICT_SIZE:,} "
                        "for full; tiny: the SentencePiece pieces only)")
    p.add_argument("--vocab", type=int, default=None, metavar="N",
                   help="pieces of the SentencePiece model trained on the shipped table "
                        f"(default {SHAPES['full']['vocab']} full, {SHAPES['tiny']['vocab']} tiny)")
    p.add_argument("--langs", default=None, metavar="LIST",
                   help="languages, comma separated (default: the 101 of FLORES-101, as the release)")
    p.add_argument("--seed", type=int, default=1, help="seed of the weights and the SentencePiece model")
    a = p.parse_args(argv)
    langs = [x.strip() for x in a.langs.split(",") if x.strip()] if a.langs else None
    return run("release_shape", lambda: build(Path(a.out), a.shape, a.dict_size, a.vocab, langs, a.seed) and None)


if __name__ == "__main__":
    sys.exit(main())
