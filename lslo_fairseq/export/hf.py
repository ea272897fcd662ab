"""The frozen base of a fairseq translation checkpoint as a Hugging Face ``M2M100ForConditionalGeneration``
directory (``config.json``, ``model.safetensors``, ``generation_config.json``, the SentencePiece model,
``vocab.json`` and the tokenizer files), loadable offline with ``from_pretrained(DIR)``.

The architectures correspond one to one: M2M100 *is* fairseq's pre-norm transformer with shared
embeddings, scaled sinusoidal positions (offset by the padding index) and a final layer norm on
each side, and its layers use fairseq's module names. :func:`check_architecture` refuses, naming the
option, anything M2M100 cannot express (post-norm, learned positions, separate embeddings, ...).

Vocabulary. fairseq's dictionary is ``<s> <pad> </s> <unk>``, ``dict.txt``'s entries, then one
``__xx__`` token per language of the task. ``M2M100Tokenizer`` numbers ``vocab.json``'s entries
first and then always reserves 100 ids for its fixed language list (``__af__`` ... ``__zu__``), at
``len(vocab.json) + position in the list``. So ``vocab.json`` holds fairseq's symbols without the
language tokens (same order, same ids for the specials), each language token's embedding row moves
to its tokenizer id, and the HF vocabulary is ``len(vocab.json) + 100``. A language outside the
tokenizer's list is refused.

The reserved ids of languages the model lacks get *dead* rows. The rows are tied (input embedding =
output projection), and the decoder's last layer norm gives ``h = g * n + b`` with ``sum_k n_k = 0``,
so the row ``e = -(T / S) / g`` (with ``S = sum_k b_k / g_k``) has the logit ``e . h = -T`` for
every hidden state: ``exp(-T)`` is 0 in float32, so those tokens add nothing to any softmax and
every score equals fairseq's (``generation_config.suppress_tokens`` lists them as well).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
from collections import OrderedDict
from typing import Dict, List, Tuple

import torch

from ..checkpoints.reading import CheckpointError, StandInTask
from ..config import LSLoConfigError
from . import imports
from .source import Source

HF_LANG_CODES_KEY = "m2m100"
DEAD_LOGIT = 1000.0  # the constant logit -T of the dead rows; exp(-1000) is 0 in float32 and float64
INFO_FILE = "lslo_export.json"

ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "gelu_accurate": "gelu_new", "gelu_fast": "gelu_new",
               "tanh": "tanh", "linear": "linear", "swish": "silu"}


class ArchitectureError(LSLoConfigError):
    """The checkpoint's model or task uses an option that M2M100 (or its tokenizer) cannot express."""


def model_args(opts: Dict) -> argparse.Namespace:
    """The recorded model options with fairseq's ``transformer`` defaults filled in where missing."""
    from fairseq.models import ARCH_CONFIG_REGISTRY

    args = argparse.Namespace(**copy.deepcopy(opts))
    ARCH_CONFIG_REGISTRY["transformer"](args)  # only sets what is missing (getattr with a default)
    return args


def check_architecture(src: Source) -> argparse.Namespace:
    """Refuse, naming the option, a model or task M2M100 cannot express; returns the model options."""
    a, t = model_args(src.model_opts), src.task_opts
    where = f"--checkpoint: {src.path}"
    need = [
        (a.share_all_embeddings, "--share-all-embeddings", "is not set: M2M100 has one embedding matrix for the "
                                 "encoder, the decoder and the output projection"),
        (a.encoder_normalize_before, "--encoder-normalize-before", "is not set: M2M100's layers are pre-norm"),
        (a.decoder_normalize_before, "--decoder-normalize-before", "is not set: M2M100's layers are pre-norm"),
        (not a.encoder_learned_pos, "--encoder-learned-pos", "is set: M2M100 has sinusoidal positions only"),
        (not a.decoder_learned_pos, "--decoder-learned-pos", "is set: M2M100 has sinusoidal positions only"),
        (not a.no_token_positional_embeddings, "--no-token-positional-embeddings", "is set: M2M100 always adds positions"),
        (not getattr(a, "layernorm_embedding", False), "--layernorm-embedding", "is set: M2M100 has no embedding layer norm"),
        (not getattr(a, "no_decoder_final_norm", False), "--no-decoder-final-norm", "is set: M2M100's decoder ends with a layer norm"),
        (not a.adaptive_softmax_cutoff, "--adaptive-softmax-cutoff", "is set: M2M100 has a plain output projection"),
        (not getattr(a, "adaptive_input", False), "--adaptive-input", "is set: M2M100 has plain input embeddings"),
        (not getattr(a, "cross_self_attention", False), "--cross-self-attention", "is set: M2M100 has no cross+self attention"),
        (a.decoder_output_dim == a.decoder_embed_dim, "--decoder-output-dim",
         f"is {a.decoder_output_dim}, not the embedding width {a.decoder_embed_dim}: M2M100 has no output projection of its own"),
        (a.decoder_input_dim == a.decoder_embed_dim, "--decoder-input-dim",
         f"is {a.decoder_input_dim}, not the embedding width {a.decoder_embed_dim}: M2M100 has no input projection"),
        (a.activation_fn in ACTIVATIONS, "--activation-fn", f"is {a.activation_fn!r}: M2M100 is exported with "
                                                           f"{', '.join(ACTIVATIONS)}"),
        (not t.get("lang_tok_replacing_bos_eos"), "--lang-tok-replacing-bos-eos",
         "is set: M2M100 starts the decoder with </s> and then the target language token"),
        (t.get("encoder_langtok") == "src", "--encoder-langtok",
         f"is {t.get('encoder_langtok')!r}: M2M100's tokenizer puts the source language token first (--encoder-langtok src)"),
        (bool(t.get("decoder_langtok")), "--decoder-langtok", "is not set: M2M100 forces the target language token first"),
        ((t.get("lang_tok_style") or "multilingual") == "multilingual", "--lang-tok-style",
         f"is {t.get('lang_tok_style')!r}: M2M100's language tokens are __xx__ (multilingual)"),
    ]
    for ok, flag, why in need:
        if not ok:
            raise ArchitectureError(f"{where}: {flag} {why}; this model cannot be exported to M2M100")
    d = src.dictionary
    if (d.bos(), d.pad(), d.eos(), d.unk()) != (0, 1, 2, 3):
        raise ArchitectureError(f"--dict: {src.dict_path}: specials at {(d.bos(), d.pad(), d.eos(), d.unk())}, "
                                "M2M100 needs <s> <pad> </s> <unk> at 0 1 2 3")
    return a


def hf_language_codes() -> List[str]:
    from transformers.models.m2m_100.tokenization_m2m_100 import FAIRSEQ_LANGUAGE_CODES

    return list(FAIRSEQ_LANGUAGE_CODES[HF_LANG_CODES_KEY])


def vocabulary_map(src: Source) -> Tuple[Dict[str, int], List[int], List[int], int]:
    """(vocab.json, fairseq row of every HF id or -1 for a dead row, HF id of every fairseq row, HF
    vocabulary size)."""
    codes = hf_language_codes()
    lang_rows = {src.lang_index(lang): lang for lang in src.langs}
    unknown = [lang for lang in src.langs if lang not in codes]
    if unknown:
        raise ArchitectureError(f"--checkpoint: {src.path}: language(s) {', '.join(unknown)} are not among "
                                f"M2M100Tokenizer's {len(codes)} language codes ({' '.join(codes)}), so its "
                                "tokenizer cannot give them an id")
    d = src.dictionary
    vocab = OrderedDict()
    for row in range(len(d)):
        if row not in lang_rows:
            symbol = d[row]
            if symbol in vocab:
                raise ArchitectureError(f"--dict: {src.dict_path}: symbol {symbol!r} appears twice")
            vocab[symbol] = len(vocab)
    n = len(vocab)
    size = n + len(codes)
    hf_of_fs = [0] * len(d)
    fs_of_hf = [-1] * size
    for row in range(len(d)):
        hf = n + codes.index(lang_rows[row]) if row in lang_rows else vocab[d[row]]
        hf_of_fs[row], fs_of_hf[hf] = hf, row
    return dict(vocab), fs_of_hf, hf_of_fs, size


def dead_row(gamma: torch.Tensor, beta: torch.Tensor, logit: float = DEAD_LOGIT) -> torch.Tensor:
    """An embedding row whose logit after the layer norm (gamma, beta) is ``-logit`` for every input."""
    gamma, beta = gamma.detach().double(), beta.detach().double()
    if bool((gamma.abs() < 1e-6).any()):
        raise ArchitectureError("the decoder's final layer norm has a (near) zero gain: no constant-logit row "
                                "exists for the tokenizer's unused language ids")
    s = float((beta / gamma).sum())
    scale = max(float(beta.abs().max()), 1e-3) / float(gamma.abs().min())
    if abs(s) < 1e-3 * scale:
        raise ArchitectureError("the decoder's final layer norm gives sum(bias / gain) ~ 0: no constant-logit row "
                                "exists for the tokenizer's unused language ids")
    return (-(logit / s) / gamma).float()


def key_map(key: str) -> str:
    """fairseq state-dict key -> M2M100ForConditionalGeneration's (None: not stored there)."""
    if key.endswith(".version") or "embed_positions" in key or key.startswith("decoder.output_projection"):
        return None
    if key == "encoder.embed_tokens.weight":
        return "model.shared.weight"
    if key == "decoder.embed_tokens.weight":
        return None  # the same tensor (--share-all-embeddings)
    return "model." + key


def hf_config(src: Source, a: argparse.Namespace, vocab_size: int):
    tf = imports.transformers()
    layers = {side: 1 + max(int(k.split(".")[2]) for k in src.base if k.startswith(f"{side}.layers."))
              for side in ("encoder", "decoder")}
    return tf.M2M100Config(
        vocab_size=vocab_size,
        max_position_embeddings=int(max(a.max_source_positions, a.max_target_positions)),
        encoder_layers=layers["encoder"], decoder_layers=layers["decoder"],
        encoder_ffn_dim=a.encoder_ffn_embed_dim, decoder_ffn_dim=a.decoder_ffn_embed_dim,
        encoder_attention_heads=a.encoder_attention_heads, decoder_attention_heads=a.decoder_attention_heads,
        encoder_layerdrop=float(a.encoder_layerdrop or 0), decoder_layerdrop=float(a.decoder_layerdrop or 0),
        activation_function=ACTIVATIONS[a.activation_fn], d_model=a.encoder_embed_dim,
        dropout=float(a.dropout), attention_dropout=float(a.attention_dropout or 0),
        activation_dropout=float(a.activation_dropout or 0), scale_embedding=not a.no_scale_embedding,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, tie_word_embeddings=True,
    )


def hf_state_dict(src: Source, fs_of_hf: List[int]) -> "OrderedDict[str, torch.Tensor]":
    out = OrderedDict()
    for key, value in src.base.items():
        name = key_map(key)
        if name is None:
            continue
        if name == "model.shared.weight":
            emb = torch.empty(len(fs_of_hf), value.shape[1], dtype=torch.float32)
            dead = dead_row(src.base["decoder.layer_norm.weight"], src.base["decoder.layer_norm.bias"])
            for hf, fs in enumerate(fs_of_hf):
                emb[hf] = value[fs] if fs >= 0 else dead
            value = emb
        out[name] = value.float().contiguous()
    return out


def build_hf_model(src: Source):
    """(M2M100ForConditionalGeneration with the base weights, vocab.json dict, fs_of_hf, hf_of_fs)."""
    tf = imports.transformers()
    a = check_architecture(src)
    vocab, fs_of_hf, hf_of_fs, size = vocabulary_map(src)
    model = tf.M2M100ForConditionalGeneration(hf_config(src, a, size)).eval()
    state = hf_state_dict(src, fs_of_hf)
    result = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"}
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:
        raise CheckpointError(f"internal error: the fairseq weights do not fit M2M100 (missing {missing[:3]}, "
                              f"unexpected {result.unexpected_keys[:3]})")
    model.tie_weights()
    return model, vocab, fs_of_hf, hf_of_fs


def fairseq_base_model(src: Source):
    """fairseq's own ``transformer`` with the checkpoint's base weights (for checks)."""
    from fairseq.models.transformer import TransformerModel

    args = model_args({k: v for k, v in src.model_opts.items() if not k.startswith("lslo_")})
    task = StandInTask([], dictionary=copy.deepcopy(src.dictionary))
    model = TransformerModel.build_model(args, task)
    model.load_state_dict(src.base, strict=False)
    return model.eval()


@torch.no_grad()
def max_logit_difference(src: Source, hf_model, hf_of_fs: List[int]) -> float:
    """Teacher-forced log-probabilities of fairseq's model and the HF model on a few sentences made of
    the dictionary's symbols, both directions of two languages: the largest absolute difference."""
    fs = fairseq_base_model(src)
    d = src.dictionary
    g = torch.Generator().manual_seed(0)
    words = torch.randint(d.nspecial, len(d) - len(src.langs), (4, 9), generator=g)
    langs = (src.langs * 2)[:2] if len(src.langs) > 1 else src.langs * 2
    worst = 0.0
    for s, t in ((langs[0], langs[1]), (langs[1], langs[0])):
        source = torch.cat([torch.full((4, 1), src.lang_index(s)), words, torch.full((4, 1), d.eos())], 1)
        prev = torch.cat([torch.full((4, 1), d.eos()), torch.full((4, 1), src.lang_index(t)), words.flip(1)[:, :5]], 1)
        lengths = torch.full((4,), source.size(1))
        fs_lp = fs.get_normalized_probs(fs(source, lengths, prev), log_probs=True)  # (4, T, V_fs)
        m = torch.tensor(hf_of_fs)
        out = hf_model(input_ids=m[source], attention_mask=torch.ones_like(source), decoder_input_ids=m[prev])
        hf_lp = torch.log_softmax(out.logits.float(), -1)[..., m]
        worst = max(worst, float((fs_lp - hf_lp).abs().max()))
    return worst


def write_tokenizer(src: Source, vocab: Dict[str, int], out: str):
    tf = imports.transformers()
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, indent=0)
    shutil.copyfile(src.spm_path, os.path.join(out, "sentencepiece.bpe.model"))
    tok = tf.M2M100Tokenizer(os.path.join(out, "vocab.json"), os.path.join(out, "sentencepiece.bpe.model"),
                             src_lang=src.langs[0], tgt_lang=src.langs[1 % len(src.langs)])
    tok.save_pretrained(out)
    return tok


def generation_config(dead_ids: List[int]):
    """fairseq-generate's defaults: beam 5, length penalty 1, a sentence done once it has 5 finished
    hypotheses (early_stopping), up to max_len_b = 200 tokens and EOS."""
    tf = imports.transformers()
    return tf.GenerationConfig(decoder_start_token_id=2, bos_token_id=0, eos_token_id=2, pad_token_id=1,
                               num_beams=5, early_stopping=True, length_penalty=1.0, max_new_tokens=201,
                               suppress_tokens=dead_ids or None)


def export_hf(src: Source, out: str, check: bool = True) -> Dict:
    """Write the HF directory ``out``; returns what was written (also in ``lslo_export.json``)."""
    model, vocab, fs_of_hf, hf_of_fs = build_hf_model(src)
    worst = max_logit_difference(src, model, hf_of_fs) if check else None
    if worst is not None and worst > 1e-3:
        raise CheckpointError(f"internal error: the HF model's log-probabilities differ from fairseq's by {worst:.2g}")
    os.makedirs(out, exist_ok=True)
    dead = [i for i, row in enumerate(fs_of_hf) if row < 0]
    model.generation_config = generation_config(dead)
    model.save_pretrained(out, safe_serialization=True)
    write_tokenizer(src, vocab, out)
    info = {
        "from_checkpoint": os.path.abspath(src.path), "dictionary": os.path.abspath(src.dict_path),
        "sentencepiece": os.path.abspath(src.spm_path), "languages": list(src.langs),
        "language_token_ids": {lang: hf_of_fs[src.lang_index(lang)] for lang in src.langs},
        "vocab_size": len(fs_of_hf), "fairseq_vocab_size": len(src.dictionary), "unused_language_ids": len(dead),
        "lslo_checkpoint": src.is_lslo, "max_logprob_difference_to_fairseq": worst,
        "note": "frozen base only" + ("; the LSLo adapters are exported by lslo-export peft" if src.is_lslo else ""),
    }
    with open(os.path.join(out, INFO_FILE), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
    return info


def read_info(hf_dir: str) -> Dict:
    path = os.path.join(hf_dir, INFO_FILE)
    if not os.path.isfile(path):
        raise CheckpointError(f"--base-model: {hf_dir} has no {INFO_FILE} (not written by lslo-export hf)")
    with open(path, encoding="utf-8") as f:
        return json.load(f)
