"""Small data sets in the FLORES-101 layout (``flores101_dataset/{dev,devtest}/<stem>.{dev,devtest}``):
from the shipped multi-parallel table, or the first lines of a real FLORES-101. ``lslo-prepare-flores``
reads either as it reads the release."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..data.flores101 import FLORES101_CODES, FloresError, read_flores
from ..data.multiparallel import LIBREOFFICE_TSV, load_table
from ..files import write_text_atomic

SPLITS = ("dev", "devtest")


def write_dataset(out: Path, text: Dict[str, Dict[str, List[str]]]) -> Path:
    """``out/flores101_dataset`` holding ``text[split][lang]``, one file per language and split."""
    root = Path(out) / "flores101_dataset"
    for split, by_lang in text.items():
        for lang, lines in by_lang.items():
            write_text_atomic(str(root / split / f"{FLORES101_CODES[lang]}.{split}"), "\n".join(lines) + "\n")
    return root


def shipped_text(langs: Sequence[str], n_dev: int, n_devtest: int, skip: int = 0) -> Dict[str, Dict[str, List[str]]]:
    """Rows ``skip..`` of the shipped table: ``n_dev`` for dev, the next ``n_devtest`` for devtest."""
    table = load_table(LIBREOFFICE_TSV, langs)
    rows = len(next(iter(table.values())))
    if skip + n_dev + n_devtest > rows:
        raise FloresError(f"the shipped table ({LIBREOFFICE_TSV.name}) has {rows} rows; {skip} skipped + "
                          f"{n_dev} dev + {n_devtest} devtest do not fit")
    return {"dev": {l: table[l][skip:skip + n_dev] for l in langs},
            "devtest": {l: table[l][skip + n_dev:skip + n_dev + n_devtest] for l in langs}}


def flores_head(flores: Path, langs: Sequence[str], n_dev: int, n_devtest: int) -> Dict[str, Dict[str, List[str]]]:
    """The first ``n_dev`` dev and ``n_devtest`` devtest sentences of a real FLORES-101 (directory or
    ``.tar.gz``) for ``langs``."""
    text = read_flores(flores, langs, FLORES101_CODES)
    for split, n in (("dev", n_dev), ("devtest", n_devtest)):
        have = len(next(iter(text[split].values())))
        if n > have:
            raise FloresError(f"--flores: {flores} has {have} {split} sentences, fewer than the {n} asked for")
    return {"dev": {l: text["dev"][l][:n_dev] for l in langs},
            "devtest": {l: text["devtest"][l][:n_devtest] for l in langs}}


def make_sample(out: Path, langs: Sequence[str], n_dev: int, n_devtest: int, flores: Optional[Path] = None,
                skip: int = 0) -> Path:
    """A FLORES-format data set under ``out``: the head of ``flores`` when given, else the shipped table."""
    unknown = [l for l in langs if l not in FLORES101_CODES]
    if unknown:
        raise FloresError(f"languages {', '.join(unknown)} are not FLORES-101 languages")
    if n_dev < 1 or n_devtest < 1:
        raise FloresError(f"need at least one dev and one devtest sentence, got {n_dev} and {n_devtest}")
    text = flores_head(Path(flores), langs, n_dev, n_devtest) if flores else shipped_text(langs, n_dev, n_devtest, skip)
    return write_dataset(out, text)


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    from ..runner import run

    p = argparse.ArgumentParser(prog="python -m lslo_fairseq.stand_in.flores_sample", description=__doc__)
    p.add_argument("--out", required=True, help="directory to write flores101_dataset/ into")
    p.add_argument("--langs", required=True, help="languages (M2M codes), comma separated")
    p.add_argument("--n-dev", type=int, required=True, help="dev (training) sentences per language")
    p.add_argument("--n-devtest", type=int, required=True, help="devtest (test) sentences per language")
    p.add_argument("--flores", default=None, help="a real FLORES-101 (directory or .tar.gz) to take the first lines "
                                                  "of (default: the shipped table)")
    a = p.parse_args(argv)
    langs = [x.strip() for x in a.langs.split(",") if x.strip()]
    return run("flores_sample", lambda: print(make_sample(Path(a.out), langs, a.n_dev, a.n_devtest,
                                                          Path(a.flores) if a.flores else None)))


if __name__ == "__main__":
    import sys

    sys.exit(main())
