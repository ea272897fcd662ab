"""fairseq's console scripts and the multilingual task's options for a data folder of
:mod:`.multiparallel`: the same in the demo, the stand-in's rebuild and the tests."""
from __future__ import annotations

import os
import shutil
import sys
from typing import List, Optional, Sequence


def fairseq_bin(name: str) -> str:
    """Path of a fairseq console script (``fairseq-train`` ...): the running interpreter's env first."""
    exe = os.path.join(os.path.dirname(sys.executable), name)
    return exe if os.path.exists(exe) else (shutil.which(name) or name)


def task_args(data_dir: str, langs: Sequence[str], pairs: Optional[Sequence[str]] = None) -> List[str]:
    """The multilingual task's options, the same at pretraining, fine-tuning and generation;
    ``pairs`` defaults to every direction between ``langs``."""
    from .multiparallel import lang_pairs  # defers fairseq and sentencepiece, which that module imports

    pairs = pairs or lang_pairs(langs)
    return ["--task", "translation_multi_simple_epoch", "--lang-pairs", ",".join(pairs),
            "--langs", ",".join(langs), "--encoder-langtok", "src", "--decoder-langtok",
            "--fixed-dictionary", os.path.join(data_dir, "dict.txt")]
