"""Importing the optional libraries of the exports (``transformers``, ``peft``, ``ctranslate2``).

They come with the ``hf`` extra (``pip install -e ".[hf]"``); a missing one is reported as bad
input naming the extra, not as a traceback.

One trap is handled here: fairseq pulls in ``torchaudio``, and no ``torchaudio`` wheel matches
torch 2.13 (its C++ library fails to load). fairseq's translation code never imports it, but
``transformers`` imports it whenever it is *installed* (``audio_utils``), so ``import transformers``
fails. :func:`transformers` hides a ``torchaudio`` that cannot load (``sys.modules['torchaudio'] =
None``, which makes ``importlib.util.find_spec`` report it absent) before importing
``transformers``; a working ``torchaudio`` is left alone. ``pip uninstall torchaudio`` is the
same fix for a whole environment.
"""
from __future__ import annotations

import importlib
import sys

from ..errors import LSLoError

EXTRA_HINT = 'pip install -e ".[hf]" (transformers, peft, ctranslate2)'


class MissingLibraryError(LSLoError):
    """An optional library of an export is not installed."""


def hide_broken_torchaudio() -> bool:
    """Hide an installed ``torchaudio`` whose library does not load; True when it was hidden."""
    if "torchaudio" in sys.modules:
        return sys.modules["torchaudio"] is None
    if importlib.util.find_spec("torchaudio") is None:
        return False
    try:
        importlib.import_module("torchaudio")
        return False
    except (OSError, ImportError, RuntimeError):
        for name in [n for n in sys.modules if n == "torchaudio" or n.startswith("torchaudio.")]:
            del sys.modules[name]
        sys.modules["torchaudio"] = None  # find_spec -> None: transformers treats it as absent
        return True


def _require(name: str, what: str):
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise MissingLibraryError(f"{what} needs the Python package '{name}' ({e}); install it with {EXTRA_HINT}") from None


def transformers(what: str = "the Hugging Face export"):
    hide_broken_torchaudio()
    return _require("transformers", what)


def peft(what: str = "the PEFT export"):
    transformers(what)
    return _require("peft", what)


def ctranslate2(what: str = "the CTranslate2 export"):
    return _require("ctranslate2", what)
