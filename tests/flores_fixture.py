"""A tiny FLORES-101-format data set and model directory of the released format, made from the
shipped multi-parallel table and the tests' tiny plain checkpoint, for the FLORES-101 recipes."""
from __future__ import annotations

import shutil
import tarfile
from pathlib import Path
from typing import Sequence

from lslo_fairseq.stand_in.flores_sample import make_sample


def make_flores_dataset(out: Path, langs: Sequence[str], n_dev: int, n_devtest: int, skip: int = 0) -> Path:
    """``out/flores101_dataset/{dev,devtest}/<stem>.{dev,devtest}``: rows ``skip..`` of the shipped
    table (dev first, then devtest), one file per language, FLORES-101 file names."""
    return make_sample(out, langs, n_dev, n_devtest, skip=skip)


def make_tarball(dataset_dir: Path, tar_path: Path) -> Path:
    """The dataset as the released ``flores101_dataset.tar.gz`` (top directory ``flores101_dataset``)."""
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(dataset_dir, arcname="flores101_dataset")
    return tar_path


def make_model_dir(out: Path, prepared: dict, checkpoint: Path) -> Path:
    """A directory laid out like the released ``flores101_mm100_615M``: ``model.pt`` (a plain fairseq
    transformer checkpoint), ``dict.txt``, ``sentencepiece.bpe.model`` and ``language_pairs.txt``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint, out / "model.pt")
    shutil.copyfile(prepared["dict"], out / "dict.txt")
    shutil.copyfile(prepared["spm_model"], out / "sentencepiece.bpe.model")
    (out / "language_pairs.txt").write_text(",".join(prepared["lang_pairs"]) + "\n", encoding="utf-8")
    return out
