"""A Hugging Face fast tokenizer (``tokenizer.json``) that encodes text as fairseq does with a
SentencePiece BPE model and a ``dict.txt``, for every language token of the model.

fairseq encodes a sentence as the SentencePiece pieces of its text (its ``sentencepiece`` encoder:
``EncodeAsPieces``, pieces joined by spaces), each looked up in its dictionary (``encode_line``: split at
any whitespace; a piece that is not there is ``<unk>``), then ``</s>``; the multilingual task puts
``__src__`` first. The tokenizer built here does the same in one ``tokenizers`` pipeline:

- normalizer: the model's own precompiled character map (``nmt_nfkc`` ...), then SentencePiece's
  whitespace rules as its ``normalizer_spec`` says (leading, repeated and trailing spaces dropped, a
  dummy ``▁`` prefix, ``' '`` -> ``▁``);
- pre-tokenizer: other whitespace (tab, no-break space, ...: what the normalizer leaves) splits the text
  and is dropped, as fairseq's ``encode_line`` drops it;
- model: BPE over each part with one merge per way of splitting a SentencePiece piece in two pieces,
  ranked by the merged piece's score (SentencePiece's BPE merges the best-scored adjacent pair first,
  leftmost on ties); a run of characters the model does not know is one ``<unk>`` (bytes with
  ``byte_fallback``);
- ids: fairseq's own. Every ``dict.txt`` symbol and language token keeps its fairseq id; a piece the
  SentencePiece model can produce but ``dict.txt`` lacks gets an id after them (:func:`vocabulary`),
  which the exported model reads as ``<unk>`` (see :mod:`.hf`);
- ``<s> <pad> </s> <unk>`` and the ``__xx__`` language tokens are special tokens; ``tokenizer(text)``
  appends ``</s>``, and ``tokenizer("__kam__ " + text)`` puts the language token first as fairseq does.

The same ids as fairseq's, for every text, with one exception :func:`unknown_runs` lists: a ``dict.txt``
entry made only of characters the SentencePiece model does not know (a ``dict.txt`` counted on
``EncodeAsPieces`` output can hold such runs). fairseq looks a whole run up, the tokenizer reads its
characters one by one (each ``dict.txt`` lists on its own) or as one ``<unk>``. Special-token strings
inside the text (``<s>``, ``__en__``) are special tokens unless ``split_special_tokens=True``.

Only what SentencePiece's BPE model does is supported (no unigram model, user-defined symbols,
whitespace-as-suffix or pieces holding whitespace): anything else is refused naming ``--spm``.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Dict, List, Tuple

from ..errors import LSLoError

SPACE = "\u2581"  # SentencePiece's escaped space
WHITESPACE = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())  # what fairseq's encode_line splits at
NORMAL, USER_DEFINED, BYTE = 1, 4, 6  # SentencePiece piece types (UNKNOWN 2, CONTROL 3, UNUSED 5)
MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}


class TokenizerExportError(LSLoError):
    """The SentencePiece model or dictionary cannot be expressed as an exact HF tokenizer."""


# ---- reading the SentencePiece model (protobuf wire format; no protobuf package needed) --------

def _varint(buf: bytes, i: int) -> Tuple[int, int]:
    out = shift = 0
    while True:
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return out, i


def _fields(buf: bytes) -> List[Tuple[int, object]]:
    """(field number, value) of a protobuf message: ints, bytes (length-delimited) or raw 4/8 bytes."""
    out, i = [], 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((number, value))
    return out


@dataclass
class SpmModel:
    """What the tokenizer needs from a SentencePiece ``ModelProto``."""

    pieces: List[Tuple[str, float, int]]  # (piece, score, type) in id order
    model_type: str = "unigram"
    byte_fallback: bool = False
    treat_whitespace_as_suffix: bool = False
    charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True
    normalizer: str = ""


def read_spm(path: str) -> SpmModel:
    """Parse a SentencePiece model file (fields of sentencepiece_model.proto; proto2 defaults)."""
    try:
        with open(path, "rb") as f:
            top = _fields(f.read())
        m = SpmModel(pieces=[])
        for number, value in top:
            if number == 1:  # SentencePiece {piece = 1, score = 2, type = 3 (default NORMAL)}
                piece, score, kind = "", 0.0, NORMAL
                for n, v in _fields(value):
                    if n == 1:
                        piece = v.decode("utf-8")
                    elif n == 2:
                        score = struct.unpack("<f", v)[0]
                    elif n == 3:
                        kind = v
                m.pieces.append((piece, score, kind))
            elif number == 2:  # TrainerSpec
                for n, v in _fields(value):
                    if n == 3:
                        m.model_type = MODEL_TYPES.get(v, str(v))
                    elif n == 35:
                        m.byte_fallback = bool(v)
                    elif n == 24:
                        m.treat_whitespace_as_suffix = bool(v)
            elif number == 3:  # NormalizerSpec
                for n, v in _fields(value):
                    if n == 1:
                        m.normalizer = v.decode("utf-8")
                    elif n == 2:
                        m.charsmap = bytes(v)
                    elif n == 3:
                        m.add_dummy_prefix = bool(v)
                    elif n == 4:
                        m.remove_extra_whitespaces = bool(v)
                    elif n == 5:
                        m.escape_whitespaces = bool(v)
    except (ValueError, IndexError, UnicodeDecodeError, struct.error) as e:
        raise TokenizerExportError(f"--spm: {path} is not a SentencePiece model ({e})") from None
    if not m.pieces:
        raise TokenizerExportError(f"--spm: {path} is not a SentencePiece model (no pieces)")
    return m


def check_spm(m: SpmModel, path: str) -> None:
    """Refuse, naming ``--spm``, a SentencePiece model the BPE pipeline cannot reproduce exactly."""
    why = None
    if m.model_type != "bpe":
        why = f"is a {m.model_type} model; the export reproduces SentencePiece BPE models (M2M-100's) only"
    elif m.treat_whitespace_as_suffix:
        why = "treats whitespace as a suffix; the export reproduces the default (prefix) only"
    elif not m.escape_whitespaces:
        why = "does not escape whitespace; the export reproduces the default (spaces as ▁) only"
    elif any(kind == USER_DEFINED for _, _, kind in m.pieces):
        why = "has user-defined symbols; the export reproduces plain BPE models only"
    else:
        spaced = [p for p, _, kind in m.pieces if kind == NORMAL and any(c in WHITESPACE for c in p)]
        if spaced:
            why = (f"has pieces holding whitespace ({', '.join(map(repr, spaced[:5]))}), which fairseq's dictionary "
                   "splits: not reproducible")
    if why:
        raise TokenizerExportError(f"--spm: {path} {why}")


# ---- ids and merges -----------------------------------------------------------------------------

def vocabulary(symbols: List[str], m: SpmModel) -> Tuple[Dict[str, int], List[str]]:
    """(token -> id, the pieces added after fairseq's ids). ``symbols`` is fairseq's dictionary in id
    order (specials, ``dict.txt``, language tokens); every piece SentencePiece can output that is not
    among them gets the next id."""
    vocab: Dict[str, int] = {}
    for i, s in enumerate(symbols):
        if s in vocab:
            raise TokenizerExportError(f"--dict: symbol {s!r} appears twice (ids {vocab[s]} and {i})")
        vocab[s] = i
    extra = [p for p, _, kind in m.pieces if kind in (NORMAL, BYTE) and p not in vocab]
    for p in extra:
        vocab[p] = len(vocab)
    return vocab, extra


def unknown_runs(entries: List[str], m: SpmModel) -> List[str]:
    """The ``dict.txt`` entries made only of characters the SentencePiece model does not know (none with
    ``byte_fallback``): the one case where the tokenizer's ids differ from fairseq's (module docstring)."""
    if m.byte_fallback:
        return []
    known = {c for p, _, kind in m.pieces if kind == NORMAL for c in p}
    return [s for s in entries if s and not any(c in known or c in WHITESPACE for c in s)]


def merges(m: SpmModel) -> List[Tuple[str, str]]:
    """Every split of a normal piece into two normal pieces, best-scored merged piece first (ties: the
    lower SentencePiece id first, the left part shorter first)."""
    normal = {p: (s, i) for i, (p, s, kind) in enumerate(m.pieces) if kind == NORMAL}
    out = []
    for piece, (score, pid) in normal.items():
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in normal and right in normal:
                out.append((-score, pid, k, left, right))
    out.sort()
    return [(left, right) for *_, left, right in out]


def build_tokenizer(symbols: List[str], special: List[str], m: SpmModel):
    """The ``tokenizers.Tokenizer`` (see the module docstring); ``special`` are the tokens never split
    or normalized (fairseq's specials and the language tokens)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab, _ = vocabulary(symbols, m)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges(m), unk_token="<unk>", fuse_unk=True,
                               byte_fallback=m.byte_fallback))
    steps = [normalizers.Precompiled(m.charsmap)] if m.charsmap else []
    if m.remove_extra_whitespaces:  # leading and repeated spaces go; trailing ones after escaping (below)
        steps += [normalizers.Replace(Regex("^ +"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    steps.append(normalizers.Replace(" ", SPACE))
    if m.add_dummy_prefix:
        steps.append(normalizers.Prepend(SPACE))
    if m.remove_extra_whitespaces:  # SentencePiece drops every trailing ▁, a ▁ of the text included
        steps.append(normalizers.Replace(Regex(SPACE + "+$"), ""))
    tok.normalizer = normalizers.Sequence(steps)
    other = "".join(c for c in WHITESPACE if c != " ")
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("[" + "".join(f"\\x{{{ord(c):x}}}" for c in other) + "]+"),
                                             behavior="removed")
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement=SPACE,
                                     prepend_scheme="always" if m.add_dummy_prefix else "never")])
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A $B </s>",
                                                       special_tokens=[("</s>", vocab["</s>"])])
    # a language token takes the spaces after it, so that "__kam__ text" is [__kam__] + text's pieces
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False, rstrip=s not in symbols[:4])
                            for s in special])
    for s in special:
        if tok.token_to_id(s) != vocab[s]:
            raise TokenizerExportError(f"internal error: special token {s} got id {tok.token_to_id(s)}, not {vocab[s]}")
    return tok
