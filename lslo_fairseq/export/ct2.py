"""One direction of an LSLo checkpoint (or a plain fairseq transformer) as a CTranslate2 model.

The direction is folded first (``lslo-export fold``: a stock fairseq ``transformer`` whose
weights hold that direction's adapters), then converted by CTranslate2's own fairseq converter,
and the SentencePiece model is copied beside it. Decoding needs the language tokens around the
pieces: ``[__src__] + pieces + [</s>]`` as source and ``[__tgt__]`` as target prefix
(:func:`translate` does it).
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Sequence

from ..checkpoints import fold
from ..checkpoints.reading import CheckpointError
from ..layout.loading import allow_fairseq_pickles
from ..config import as_list
from ..files import copy_file_atomic, publish_files, torch_save_atomic
from . import imports
from .source import Source, load_lslo_model

QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16", "float32")
SPM_NAME = "sentencepiece.bpe.model"


def check_direction(src: Source, s: str, t: str) -> None:
    if s == t:
        raise CheckpointError(f"--source-lang and --target-lang are both '{s}': give a direction")
    for lang, flag in ((s, "--source-lang"), (t, "--target-lang")):
        if lang not in src.langs:
            raise CheckpointError(f"{flag}: '{lang}' is not a language of this model ({', '.join(src.langs)})")
    if src.is_lslo:
        langs = as_list(src.model_opts.get("lslo_langs") or [])
        for lang, flag in ((s, "--source-lang"), (t, "--target-lang")):
            if langs and lang not in langs:
                raise CheckpointError(f"{flag}: '{lang}' has no adapters in this checkpoint (its LSLo languages: "
                                      f"{', '.join(langs)})")


def folded_checkpoint(src: Source, s: str, t: str) -> Dict:
    """The stock-transformer checkpoint CTranslate2's converter reads, with a legacy ``args``
    namespace (the converter reads ``args`` or ``cfg['model']`` as a namespace)."""
    if src.is_lslo:
        model = load_lslo_model(src)
        exported = fold.export_direction(model, src.state, s, t, src.path)
        fold.check_loads_as_stock_transformer(exported)
        options = dict(exported["cfg"]["model"])
        weights = exported["model"]
    else:
        options = fold.plain_options(dict(src.model_opts))
        weights = {k: v for k, v in src.state["model"].items()}
    options.update(source_lang=s, target_lang=t, user_dir=None)
    options.pop("_name", None)
    return {"args": argparse.Namespace(**options), "cfg": None, "model": weights,
            "optimizer_history": [], "extra_state": {}}


def export_ct2(src: Source, s: str, t: str, out: str, quantization: Optional[str] = None, force: bool = True) -> str:
    """Convert ``src``'s ``s -> t`` to the CTranslate2 directory ``out``."""
    ct2 = imports.ctranslate2()
    check_direction(src, s, t)
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise CheckpointError(f"--quantization: one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")
    if not force and os.path.isdir(out) and os.listdir(out):
        raise CheckpointError(f"--out {out}: exists and is not empty")
    allow_fairseq_pickles()
    with tempfile.TemporaryDirectory(prefix="lslo-ct2-") as tmp:
        path = os.path.join(tmp, "model.pt")
        torch_save_atomic(path, folded_checkpoint(src, s, t))
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        for lang in (s, t):
            shutil.copyfile(src.dict_path, os.path.join(data, f"dict.{lang}.txt"))
        lang_dict = src.task_opts.get("lang_dict")
        if lang_dict:
            shutil.copyfile(lang_dict, os.path.join(data, os.path.basename(lang_dict)))
        converter = ct2.converters.FairseqConverter(path, data, source_lang=s, target_lang=t,
                                                    fixed_dictionary=src.dict_path)
        converted = os.path.join(tmp, "ct2")  # the converter writes plain files: published one by one below
        converter.convert(converted, quantization=quantization, force=True)
        publish_files(converted, out)
    copy_file_atomic(src.spm_path, os.path.join(out, SPM_NAME))
    return out


def translate(model_dir: str, sentences: Sequence[str], s: str, t: str, beam: int = 5, max_len_b: int = 200,
              compute_type: str = "default", threads: int = 1, batch_size: int = 32, lang_tok_style: str = "multilingual"
              ) -> List[Dict]:
    """Beam search with CTranslate2 on raw sentences: [{pieces (without the language token), text, score}]."""
    import sentencepiece as spm
    from fairseq.data.multilingual.multilingual_utils import get_lang_tok

    ct2 = imports.ctranslate2()
    sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, SPM_NAME))
    translator = ct2.Translator(model_dir, device="cpu", compute_type=compute_type, inter_threads=1,
                                intra_threads=threads)
    src_tok, tgt_tok = get_lang_tok(s, lang_tok_style), get_lang_tok(t, lang_tok_style)
    tokens = [[src_tok] + sp.encode(x, out_type=str) for x in sentences]
    results = translator.translate_batch(tokens, target_prefix=[[tgt_tok]] * len(tokens), beam_size=beam,
                                         max_decoding_length=max_len_b + 1, return_scores=True,
                                         max_batch_size=batch_size)
    out = []
    for r in results:
        pieces = [p for p in r.hypotheses[0] if p != tgt_tok]
        out.append(dict(pieces=" ".join(pieces), text=sp.decode(pieces), score=r.scores[0]))
    return out
