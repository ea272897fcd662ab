"""Session fixtures: a tiny prepared data set and a plain fairseq transformer trained on it."""
import time
from pathlib import Path

import pytest

from helpers import TINY_ARCH_ARGS, TINY_TRAIN_ARGS, run_fairseq, task_args
from lslo_fairseq.data.multiparallel import LIBREOFFICE_TSV, prepare

TINY_LANGS = ("en", "fr", "ko", "oc")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """``prepare()`` dict for en/fr/ko/oc of the shipped table: 300 train, 30 valid, 30 test, vocab 800."""
    out = tmp_path_factory.mktemp("tiny_data")
    return prepare(
        LIBREOFFICE_TSV, TINY_LANGS, out, n_valid=30, n_test=30, vocab_size=800, seed=1,
        max_train_rows=300,
    )


@pytest.fixture(scope="session")
def tiny_base_checkpoint(tiny_data, tmp_path_factory):
    """``checkpoint_last.pt`` (a Path) of a stock ``--arch transformer`` trained 2 epochs on tiny_data.

    Stand-in for a released M2M ``model.pt``; ``train.log`` and ``train.cmd`` sit beside it.
    """
    save_dir = tmp_path_factory.mktemp("tiny_base")
    args = [*task_args(tiny_data), "--arch", "transformer", *TINY_ARCH_ARGS, *TINY_TRAIN_ARGS,
            "--save-dir", str(save_dir)]
    start = time.perf_counter()
    cmd = run_fairseq("fairseq-train", args, save_dir / "train.log")
    (save_dir / "train.cmd").write_text(
        " ".join(cmd) + f"\n# {time.perf_counter() - start:.1f} s\n", encoding="utf-8"
    )
    ckpt = Path(save_dir) / "checkpoint_last.pt"
    if not ckpt.is_file():
        raise RuntimeError(f"fairseq-train wrote no {ckpt}; see {save_dir / 'train.log'}")
    return ckpt
