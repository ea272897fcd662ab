"""The frozen base of a fairseq translation checkpoint as a Hugging Face ``M2M100ForConditionalGeneration``
directory (``config.json``, ``model.safetensors``, ``generation_config.json`` and a fast tokenizer,
``tokenizer.json``), loadable offline with ``from_pretrained(DIR)`` and ``AutoTokenizer.from_pretrained(DIR)``.

The architectures correspond one to one: M2M100 *is* fairseq's pre-norm transformer with shared
embeddings, scaled sinusoidal positions (offset by the padding index) and a final layer norm on
each side, and its layers use fairseq's module names. :func:`check_architecture` refuses, naming the
option, anything M2M100 cannot express (post-norm, learned positions, separate embeddings, ...).

Vocabulary: fairseq's ids, unchanged. fairseq's dictionary is ``<s> <pad> </s> <unk>``, ``dict.txt``'s
entries, then one ``__xx__`` token per language of the task, in the task's order; the HF model's
embedding rows and the tokenizer's ids are those (no remapping, so any number of languages, e.g. the
124 of M2M-124, and any language code). The tokenizer (:mod:`.tokenizer`) is built from the
SentencePiece model and this dictionary and encodes text as fairseq does (SentencePiece pieces
looked up in ``dict.txt``); the language tokens are special tokens at their fairseq ids:

    tok = AutoTokenizer.from_pretrained(DIR)
    batch = tok(["__kam__ " + text], return_tensors="pt")       # [__kam__] + pieces + [</s>]
    model.generate(**batch, forced_bos_token_id=tok.convert_tokens_to_ids("__en__"))

Pieces the SentencePiece model can produce but ``dict.txt`` lacks (fairseq reads them as ``<unk>``)
get the ids after fairseq's. Their input rows are ``<unk>``'s, and their output rows are *dead*: the
output projection is then stored untied from the input embedding (``tie_word_embeddings`` false), and
the decoder's last layer norm gives ``h = g * n + b`` with ``sum_k n_k = 0``, so the row
``e = -(T / S) / g`` (with ``S = sum_k b_k / g_k``) has the logit ``e . h = -T`` for every hidden state:
``exp(-T)`` is 0 in float32, so those ids add nothing to any softmax and every score equals fairseq's
(``generation_config.suppress_tokens`` lists them as well). Without such pieces the embeddings stay tied.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
from collections import OrderedDict
from typing import TYPE_CHECKING, Dict, List, Tuple

import torch

from ..checkpoints.reading import CheckpointError, StandInTask
from ..config import LSLoConfigError
from ..files import publish_files, write_json_atomic
from ..runfiles import RunFileError, export_info
from . import imports
from .source import Source

if TYPE_CHECKING:
    from .tokenizer import SpmModel

DEAD_LOGIT = 1000.0  # the constant logit -T of the dead rows; exp(-1000) is 0 in float32 and float64

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


def tokenizer_plan(src: Source) -> Tuple["SpmModel", List[str], List[str]]:
    """(the SentencePiece model, fairseq's symbols in id order, the pieces given ids after them); refuses,
    naming ``--spm``/``--dict``, what the tokenizer cannot reproduce."""
    from .tokenizer import check_spm, read_spm, vocabulary

    spm = read_spm(src.spm_path)
    check_spm(spm, src.spm_path)
    d = src.dictionary
    symbols = [d[i] for i in range(len(d))]
    _, extra = vocabulary(symbols, spm)
    return spm, symbols, extra


def dead_row(gamma: torch.Tensor, beta: torch.Tensor, logit: float = DEAD_LOGIT) -> torch.Tensor:
    """An embedding row whose logit after the layer norm (gamma, beta) is ``-logit`` for every input."""
    gamma, beta = gamma.detach().double(), beta.detach().double()
    if bool((gamma.abs() < 1e-6).any()):
        raise ArchitectureError("the decoder's final layer norm has a (near) zero gain: no constant-logit row "
                                "exists for the ids of pieces outside dict.txt")
    s = float((beta / gamma).sum())
    scale = max(float(beta.abs().max()), 1e-3) / float(gamma.abs().min())
    if abs(s) < 1e-3 * scale:
        raise ArchitectureError("the decoder's final layer norm gives sum(bias / gain) ~ 0: no constant-logit row "
                                "exists for the ids of pieces outside dict.txt")
    return (-(logit / s) / gamma).float()


def check_hf(src: Source) -> List[str]:
    """Every refusal of the HF export, before any work: the architecture, the tokenizer, and for pieces
    outside ``dict.txt`` their dead output rows; returns those pieces."""
    check_architecture(src)
    _, _, extra = tokenizer_plan(src)
    if extra:
        dead_row(src.base["decoder.layer_norm.weight"], src.base["decoder.layer_norm.bias"])
    return extra


def key_map(key: str) -> str:
    """fairseq state-dict key -> M2M100ForConditionalGeneration's (None: not stored there)."""
    if key.endswith(".version") or "embed_positions" in key or key.startswith("decoder.output_projection"):
        return None
    if key == "encoder.embed_tokens.weight":
        return "model.shared.weight"
    if key == "decoder.embed_tokens.weight":
        return None  # the same tensor (--share-all-embeddings)
    return "model." + key


def hf_config(src: Source, a: argparse.Namespace, vocab_size: int, tied: bool):
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
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, tie_word_embeddings=tied,
    )


def hf_state_dict(src: Source, n_extra: int) -> "OrderedDict[str, torch.Tensor]":
    """M2M100's weights: fairseq's rows at their ids. With ``n_extra`` more ids, their input rows are
    ``<unk>``'s and their output rows dead, so the embeddings are stored untied (transformers then keeps
    the encoder's, the decoder's and the shared one apart as well)."""
    out = OrderedDict()
    d = src.dictionary
    for key, value in src.base.items():
        name = key_map(key)
        if name is None:
            continue
        value = value.float()
        if name == "model.shared.weight" and n_extra:
            dead = dead_row(src.base["decoder.layer_norm.weight"], src.base["decoder.layer_norm.bias"])
            out["lm_head.weight"] = torch.cat([value, dead.expand(n_extra, -1)]).contiguous()
            value = torch.cat([value, value[d.unk()].expand(n_extra, -1)]).contiguous()
            for side in ("encoder", "decoder"):
                out[f"model.{side}.embed_tokens.weight"] = value
        out[name] = value.contiguous()
    return out


def build_hf_model(src: Source):
    """(M2M100ForConditionalGeneration with the base weights, the ids after fairseq's: pieces outside
    ``dict.txt``)."""
    tf = imports.transformers()
    a = check_architecture(src)
    _, symbols, extra = tokenizer_plan(src)
    size = len(symbols) + len(extra)
    model = tf.M2M100ForConditionalGeneration(hf_config(src, a, size, tied=not extra)).eval()
    state = hf_state_dict(src, len(extra))
    result = model.load_state_dict(state, strict=False)
    tied = set() if extra else {"lm_head.weight", "model.encoder.embed_tokens.weight",
                                "model.decoder.embed_tokens.weight"}
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:
        raise CheckpointError(f"internal error: the fairseq weights do not fit M2M100 (missing {missing[:3]}, "
                              f"unexpected {result.unexpected_keys[:3]})")
    if not extra:
        model.tie_weights()
    return model, list(range(len(symbols), size))


def fairseq_base_model(src: Source):
    """fairseq's own ``transformer`` with the checkpoint's base weights (for checks)."""
    from fairseq.models.transformer import TransformerModel

    args = model_args({k: v for k, v in src.model_opts.items() if not k.startswith("lslo_")})
    task = StandInTask([], dictionary=copy.deepcopy(src.dictionary))
    model = TransformerModel.build_model(args, task)
    model.load_state_dict(src.base, strict=False)
    return model.eval()


@torch.no_grad()
def max_logit_difference(src: Source, hf_model, extra_ids: List[int] = ()) -> float:
    """Teacher-forced log-probabilities of fairseq's model and the HF model on a few sentences made of
    the dictionary's symbols, both directions of two languages: the largest absolute difference. HF's
    softmax runs over all its ids; with ``extra_ids``, one source token is such an id for HF and
    ``<unk>`` for fairseq."""
    fs = fairseq_base_model(src)
    d = src.dictionary
    g = torch.Generator().manual_seed(0)
    words = torch.randint(d.nspecial, len(d) - len(src.langs), (4, 9), generator=g)
    langs = (src.langs * 2)[:2] if len(src.langs) > 1 else src.langs * 2
    worst = 0.0
    for s, t in ((langs[0], langs[1]), (langs[1], langs[0])):
        source = torch.cat([torch.full((4, 1), src.lang_index(s)), words, torch.full((4, 1), d.eos())], 1)
        prev = torch.cat([torch.full((4, 1), d.eos()), torch.full((4, 1), src.lang_index(t)), words.flip(1)[:, :5]], 1)
        hf_source = source.clone()
        if extra_ids:
            source[:, 2] = d.unk()
            hf_source[:, 2] = torch.tensor(list(extra_ids))[torch.arange(4) % len(extra_ids)]
        lengths = torch.full((4,), source.size(1))
        fs_lp = fs.get_normalized_probs(fs(source, lengths, prev), log_probs=True)  # (4, T, V_fs)
        out = hf_model(input_ids=hf_source, attention_mask=torch.ones_like(source), decoder_input_ids=prev)
        hf_lp = torch.log_softmax(out.logits.float(), -1)
        if bool((hf_lp[..., len(d):] > -100).any()):  # the extra ids must take no probability
            return float("inf")
        worst = max(worst, float((fs_lp - hf_lp[..., :len(d)]).abs().max()))
    return worst


def build_tokenizer(src: Source):
    """The ``PreTrainedTokenizerFast`` of :mod:`.tokenizer` for ``src``."""
    from .tokenizer import build_tokenizer as build

    tf = imports.transformers()
    spm, symbols, _ = tokenizer_plan(src)
    d = src.dictionary
    special = [d.bos_word, d.pad_word, d.eos_word, d.unk_word] + [src.lang_token(lang) for lang in src.langs]
    a = model_args(src.model_opts)
    return tf.PreTrainedTokenizerFast(
        tokenizer_object=build(symbols, special, spm), bos_token=d.bos_word, eos_token=d.eos_word,
        unk_token=d.unk_word, pad_token=d.pad_word, model_max_length=int(a.max_source_positions),
        padding_side="right")


def generation_config(dead_ids: List[int]):
    """fairseq-generate's defaults: beam 5, length penalty 1, a sentence done once it has 5 finished
    hypotheses (early_stopping), up to max_len_b = 200 tokens and EOS."""
    tf = imports.transformers()
    return tf.GenerationConfig(decoder_start_token_id=2, bos_token_id=0, eos_token_id=2, pad_token_id=1,
                               num_beams=5, early_stopping=True, length_penalty=1.0, max_new_tokens=201,
                               suppress_tokens=dead_ids or None)


def export_hf(src: Source, out: str, check: bool = True) -> Dict:
    """Write the HF directory ``out``; returns what was written (also in ``lslo_export.json``)."""
    from .tokenizer import unknown_runs

    model, extra_ids = build_hf_model(src)
    tokenizer = build_tokenizer(src)
    spm, symbols, _ = tokenizer_plan(src)
    entries = symbols[src.dictionary.nspecial:len(symbols) - len(src.langs)]  # dict.txt's
    worst = max_logit_difference(src, model, extra_ids) if check else None
    if worst is not None and worst > 1e-3:
        raise CheckpointError(f"internal error: the HF model's log-probabilities differ from fairseq's by {worst:.2g}")
    model.generation_config = generation_config(extra_ids)
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".lslo-hf-", dir=out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        config = os.path.join(tmp, "tokenizer_config.json")
        with open(config, encoding="utf-8") as f:
            tok_config = json.load(f)
        # the class name transformers 4 knows as well (5 maps it to its TokenizersBackend)
        write_json_atomic(config, dict(tok_config, tokenizer_class="PreTrainedTokenizerFast"))
        files = publish_files(tmp, out)
    info = {
        "from_checkpoint": os.path.abspath(src.path), "dictionary": os.path.abspath(src.dict_path),
        "sentencepiece": os.path.abspath(src.spm_path), "languages": list(src.langs),
        "language_token_ids": {lang: src.lang_index(lang) for lang in src.langs},
        "vocab_size": len(src.dictionary) + len(extra_ids), "fairseq_vocab_size": len(src.dictionary),
        "pieces_outside_dict": [tokenizer.convert_ids_to_tokens(i) for i in extra_ids],
        "dict_entries_of_unknown_characters": unknown_runs(entries, spm),
        "tied_embeddings": not extra_ids, "tokenizer": type(tokenizer).__name__, "files": files + [export_info.FILENAME],
        "lslo_checkpoint": src.is_lslo, "max_logprob_difference_to_fairseq": worst,
        "note": "frozen base only" + ("; the LSLo adapters are exported by lslo-export peft" if src.is_lslo else ""),
    }
    export_info.write(out, "hf", info)
    return info


def read_info(hf_dir: str) -> Dict:
    """The ``lslo_export.json`` of a directory ``lslo-export hf`` wrote (``--base-model``)."""
    if not os.path.isfile(os.path.join(hf_dir, export_info.FILENAME)):
        raise CheckpointError(f"--base-model: {hf_dir} has no {export_info.FILENAME} (not written by lslo-export hf)")
    try:
        return export_info.load(hf_dir, "hf")
    except RunFileError as e:
        raise CheckpointError(f"--base-model: {e}") from None
