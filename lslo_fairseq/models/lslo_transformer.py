"""``lslo_transformer``: fairseq's own transformer with LSLo layers put in place of its projections.

Nothing of fairseq's layer code is copied: the encoder/decoder subclasses only route languages
(``forward``) and carry them through beam search (``reorder_encoder_out``); :func:`inject_lslo`
swaps the chosen ``nn.Linear`` of every layer for an :class:`LSLoLinear` wrapping it. The base
is frozen. A plain transformer checkpoint (M2M-124's ``model.pt``) loads into it with fresh
adapters; an LSLo checkpoint loads exactly.
"""
from __future__ import annotations

import argparse
import logging
import os
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from fairseq.data.multilingual.multilingual_utils import get_lang_tok
from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer import (
    TransformerDecoder,
    TransformerEncoder,
    TransformerModel,
    base_architecture,
)
import torch
from torch import nn

from ..layout import frozen_base
from ..layout.frozen_base import complete_frozen_base, frozen_base_path
from ..layout.keys import is_adapter_key
from ..layout.languages import added_languages, expand_state
from ..layout.record import LAYOUT_KEY, decode_layout, encode_layout, layout_differences, layout_of
from ..runfiles import weight_learning
from ..config import (
    DEFAULT_PIVOT,
    PRUNE_DEFAULT_DURATION,
    PRUNE_DEFAULT_RATIO,
    PRUNE_DEFAULT_START,
    LSLoConfig,
    LSLoConfigError,
    resolve_config,
)
from ..shapes import TINY_SHAPE
from ..names import DECODER_MODULES, ENCODER_MODULES
from ..modules.frozen_langs import FrozenLanguages
from ..modules.lslo_linear import LSLoLinear, adapter_spans
from ..modules.modes import MODES, IndexWeights
from ..pruning.pools import make_prunable
from ..routing import ENC_OUT_SRC, ENC_OUT_TGT, LanguageRouter, reorder

logger = logging.getLogger(__name__)

# module name (paper) -> (attribute of the fairseq layer holding the projection, projection name)
MODULE_PATHS: Dict[str, Tuple[Optional[str], str]] = {
    "q": ("self_attn", "q_proj"),
    "k": ("self_attn", "k_proj"),
    "v": ("self_attn", "v_proj"),
    "c-q": ("encoder_attn", "q_proj"),
    "c-k": ("encoder_attn", "k_proj"),
    "c-v": ("encoder_attn", "v_proj"),
    "fc1": (None, "fc1"),
    "fc2": (None, "fc2"),
}


def add_lslo_args(parser) -> None:
    """The ``--lslo-*`` model options (argparse, as fairseq's legacy transformer). fairseq hands
    ``add_args`` a model argument group already; a new group is only made on a bare parser (nesting
    groups is deprecated in Python 3.11)."""
    group = (parser.add_argument_group("Language-Specific LoRA (LSLo)")
             if isinstance(parser, argparse.ArgumentParser) else parser)
    group.add_argument("--lslo-ranks", type=str, metavar="SPEC",
                       help="LoRA rank per resource group (H:2,M:2,V:8; needs --lslo-lang-groups) "
                            "or per language (en:2,fr:2,oc:8)")
    group.add_argument("--lslo-lang-groups", type=str, metavar="SPEC",
                       help="language -> resource group: a preset (lang12, lang30 from the paper's "
                            "tables 5-6), a list en:H,fr:H,oc:V, or a file of 'lang group' lines")
    group.add_argument("--lslo-modules", type=str, default="all", metavar="SPEC",
                       help="projections to adapt: all, fc, attn, or a list of q,k,v,c-q,c-k,c-v,fc1,fc2")
    group.add_argument("--lslo-encoder-index", type=str, default="paper", metavar="SPEC",
                       help="per encoder layer 'src' or 'tgt' (comma list, 'src*9,tgt*3' repeats, one "
                            "value for all, or a weight-learning JSON); 'paper': top quarter tgt, rest src")
    group.add_argument("--lslo-decoder-index", type=str, default="paper", metavar="SPEC",
                       help="per decoder layer 'src' or 'tgt', same syntax; 'paper': all tgt")
    group.add_argument("--lslo-weight-learning", action="store_true", default=False,
                       help="weight learning (eq. 5): every adapted matrix gets a source- and a "
                            "target-indexed LSLo, mixed per layer by learned softmax weights; writes "
                            "the chosen indexes to SAVE_DIR/weight_learning.json")
    group.add_argument("--lslo-prune", type=str, default="none", choices=["none", "gps", "ise", "lsp"],
                       help="gradual pruning (eq. 4) of the adapters: gps = each B matrix of the "
                            "--lslo-prune-targets languages (l1_unstructured); ise = per layer, all "
                            "languages' B matrices in one pool (eq. 6 analysis); lsp = per language, "
                            "all its B matrices in one pool")
    group.add_argument("--lslo-prune-ratio", type=float, default=None, metavar="P",
                       help="target pruning ratio P in [0, 1) (default: "
                            + ", ".join(f"{v} for {k}" for k, v in PRUNE_DEFAULT_RATIO.items()) + ")")
    group.add_argument("--lslo-prune-start", type=int, default=None, metavar="E",
                       help=f"no pruning up to epoch (or update) E (default {PRUNE_DEFAULT_START})")
    group.add_argument("--lslo-prune-duration", type=int, default=None, metavar="K",
                       help=f"the ratio rises to P over K epochs (or updates) (default {PRUNE_DEFAULT_DURATION})")
    group.add_argument("--lslo-prune-unit", type=str, default="epoch", choices=["epoch", "update"],
                       help="E and K count epochs (default) or updates")
    group.add_argument("--lslo-prune-targets", type=str, default=None, metavar="GROUPS_OR_LANGS",
                       help="gps: groups or languages to prune (default H,M; V is left unpruned)")
    group.add_argument("--lslo-prune-matrices", type=str, default="B", metavar="B|A,B",
                       help="which LoRA matrices are pruned (default B)")
    group.add_argument("--lslo-langs", type=str, default=None, metavar="LANGS",
                       help="languages that get adapters, in adapter order (default: those of "
                            "--lang-pairs and --langs; recorded in checkpoints)")
    group.add_argument("--lslo-adapter-shape", type=str, default="full", choices=["full", "paper"],
                       help="full (default): each adapter spans its whole matrix (LoRA, PEFT); paper: the "
                            "authors' released code, every adapter d_model x d_model: fc1's adds to "
                            "output columns [START, START+d_model), fc2's reads input columns "
                            "[START, START+d_model) (START = --lslo-fc-offset)")
    group.add_argument("--lslo-fc-offset", type=int, default=0, metavar="START",
                       help="paper shape: first FFN column of fc1's output and fc2's input slice (default 0, "
                            "the authors' --start-idx)")
    group.add_argument("--lslo-init", type=str, default="lora", choices=["lora", "paper"],
                       help="initialisation of A (B = 0 either way): lora (default) Kaiming-uniform with "
                            "fan-in k, bound 1/sqrt(k), as PEFT; paper: the authors' bound 1/sqrt(r_l) per "
                            "language block")
    group.add_argument("--lslo-modular", action="store_true", default=False,
                       help="modular fine-tuning (the follow-up's English-centric adapters): every adapted "
                            "matrix gets an input bank routed by the source language and an output bank "
                            "routed by the target language; train on pairs with the pivot only (X->pivot "
                            "trains LoRA_in(X) alone, pivot->Y LoRA_out(Y) alone; the pivot has no "
                            "adapters) and translate any X->Y by merging (--lslo-merge at generation)")
    group.add_argument("--lslo-pivot", type=str, default=DEFAULT_PIVOT, metavar="LANG",
                       help=f"--lslo-modular: the pivot language (default {DEFAULT_PIVOT})")
    group.add_argument("--lslo-pivot-rank", type=int, default=0, metavar="R",
                       help="--lslo-modular: the pivot's own LoRA_in and LoRA_out, of rank R, trained on pivot->pivot "
                            "copies (en-en in --lang-pairs; each copy sentence trains one of the two alone, "
                            "alternately) and merged at generation like any language's, X->pivot and pivot->Y "
                            "included (the follow-up papers' setting). Default 0: the pivot has no adapters and "
                            "X->pivot, pivot->Y use the one adapter they trained")
    group.add_argument("--lslo-train-langs", type=str, default=None, metavar="LANGS",
                       help="only these languages' adapters train (comma list); every other tensor stays "
                            "bitwise unchanged. With languages added to --lslo-langs and a checkpoint of "
                            "the others (--finetune-from-model), adds languages without retraining")
    group.add_argument("--lslo-checkpoint", type=str, default="adapters", choices=list(frozen_base.CHECKPOINT_MODES),
                       help="what fairseq-train writes into checkpoint*.pt: adapters (default) = what training "
                            "changes (adapters, weight-learning logits, pruning masks) with the optimizer and "
                            "trainer state, and a reference (path, SHA-256) to the frozen --finetune-from-model "
                            "file, read back from it on loading ($LSLO_FROZEN_BASE if it moved); full = the "
                            "whole model, as fairseq writes it")
    group.add_argument("--lslo-alpha", type=float, default=None, metavar="A",
                       help="scale each language's delta by A / r_l (PEFT's lora_alpha); default: no "
                            "scaling, as the paper")


def lang_token_ids(dictionary, languages: List[str], lang_tok_style: str) -> List[int]:
    ids = []
    for lang in languages:
        tok = get_lang_tok(lang, lang_tok_style)
        idx = dictionary.index(tok)
        if idx == dictionary.unk():
            raise LSLoConfigError(
                f"language token {tok} of LSLo language '{lang}' is not in the dictionary; "
                "list the language in --langs (or --lang-dict) so the task adds it"
            )
        ids.append(idx)
    return ids


def check_task(task, args) -> None:
    """An LSLo model runs under ``translation_multi_simple_epoch_lslo`` only: another fairseq task
    neither checks the ``--lslo-*`` options nor hands target-indexed encoder layers the target
    language at inference (stand-in tasks of the plugin's own tools, not fairseq tasks, pass). The
    task says so with its ``routes_lslo`` attribute, so that models need not import tasks."""
    from fairseq.tasks import TASK_REGISTRY, FairseqTask

    if isinstance(task, FairseqTask) and not getattr(task, "routes_lslo", False):
        name = next((k for k, v in TASK_REGISTRY.items() if v is type(task)), type(task).__name__)
        raise LSLoConfigError(
            f"--task {name} cannot run an LSLo model (--arch {getattr(args, 'arch', None)}, or a checkpoint "
            "of one): use --task translation_multi_simple_epoch_lslo (with --user-dir lslo_fairseq); it "
            "checks the --lslo-* options and gives target-indexed encoder layers the target language "
            "at inference"
        )


def all_layers(layers):
    """(index, layer) of every layer. Iterating fairseq's ``LayerDropModuleList`` itself skips
    layers at random in training mode (``--encoder-layerdrop``/``--decoder-layerdrop``)."""
    return [(i, layers[i]) for i in range(len(layers))]


def inject_lslo(model: nn.Module, cfg: LSLoConfig, router: LanguageRouter) -> "OrderedDict[str, LSLoLinear]":
    """Wrap the configured projections of every encoder/decoder layer in place; returns the LSLo
    layers by their module path. Attention whose q/k/v are wrapped has fairseq's fused fast path
    (``F.multi_head_attention_forward`` reading ``q_proj.weight`` directly) turned off."""
    wrapped: "OrderedDict[str, LSLoLinear]" = OrderedDict()
    for side, layers, index, allowed in (
        ("encoder", model.encoder.layers, cfg.encoder_index, ENCODER_MODULES),
        ("decoder", model.decoder.layers, cfg.decoder_index, DECODER_MODULES),
    ):
        for i, layer in all_layers(layers):
            for name in cfg.modules:
                if name not in allowed:
                    continue
                owner_attr, proj = MODULE_PATHS[name]
                owner = getattr(layer, owner_attr) if owner_attr else layer
                weights = None
                if MODES[index[i]].needs_index_weights:  # one pair of logits per transformer layer
                    if not hasattr(layer, "lslo_index_weights"):
                        layer.lslo_index_weights = IndexWeights()
                    weights = layer.lslo_index_weights
                base = getattr(owner, proj)
                in_span, out_span = adapter_spans(base.in_features, base.out_features, cfg.adapter_shape,
                                                  cfg.fc_offset)
                lslo = LSLoLinear(base, cfg.ranks, router, index[i], weights, in_span, out_span, cfg.init,
                                  cfg.alpha)
                setattr(owner, proj, lslo)
                if owner_attr:
                    owner._set_skip_embed_dim_check()  # no fused path: it would skip the adapters
                path = f"{side}.layers.{i}." + (f"{owner_attr}.{proj}" if owner_attr else proj)
                lslo.site = (side, i, name)  # e.g. ("decoder", 3, "c-k")
                wrapped[path] = lslo
    return wrapped


def freeze_base(model: nn.Module) -> None:
    """Only adapters (and weight-learning logits) train."""
    for p in model.parameters():
        p.requires_grad = False
    for module in model.modules():
        if isinstance(module, LSLoLinear):
            for name in module.param_names():
                module.raw(name).requires_grad = True
        elif isinstance(module, IndexWeights):
            module.logits.requires_grad = True


def parameter_report(cfg: LSLoConfig, layers: Dict[str, LSLoLinear]) -> Dict[str, Dict[str, int]]:
    """Trainable parameters per language and module name: sum over layers and banks of r_l (k + d),
    with k x d the adapter's own shape (``--lslo-adapter-shape``)."""
    report: Dict[str, Dict[str, int]] = {lang: {} for lang in cfg.languages}
    for lslo in layers.values():
        module = lslo.site[2]
        for row, lang in enumerate(cfg.languages):
            n = len(lslo.banks) * cfg.ranks[row] * (lslo.adapter_in + lslo.adapter_out)
            report[lang][module] = report[lang].get(module, 0) + n
    return report


class LSLoTransformerEncoder(TransformerEncoder):
    """Routes by the source langtok; takes the target language from the model (teacher forcing)
    or the task (inference) as ``lslo_tgt_langtok``; returns both languages in its output."""

    router: LanguageRouter

    def forward(self, src_tokens, src_lengths=None, return_all_hiddens: bool = False,
                token_embeddings=None, lslo_tgt_langtok=None, **unused):
        src = self.router.source_langs(src_tokens, self.padding_idx)
        tgt = None
        if lslo_tgt_langtok is not None:
            tgt = self.router.lookup(lslo_tgt_langtok.to(src_tokens.device).view(-1), "target language token")
        self.router.set(src, tgt)
        out = super().forward(src_tokens, src_lengths, return_all_hiddens, token_embeddings)
        out[ENC_OUT_SRC] = [src]
        out[ENC_OUT_TGT] = [tgt] if tgt is not None else []
        return out

    def reorder_encoder_out(self, encoder_out, new_order):
        new = super().reorder_encoder_out(encoder_out, new_order)
        for key in (ENC_OUT_SRC, ENC_OUT_TGT):
            new[key] = reorder(encoder_out.get(key, []), new_order)
        return new


class LSLoTransformerDecoder(TransformerDecoder):
    """Routes by the languages carried in ``encoder_out`` (reordered with the beams)."""

    router: LanguageRouter

    def forward(self, prev_output_tokens, encoder_out=None, incremental_state=None, **kwargs):
        self.router.set_from_encoder_out(encoder_out)
        return super().forward(prev_output_tokens, encoder_out=encoder_out,
                               incremental_state=incremental_state, **kwargs)

    def set_beam_size(self, beam_size):
        super().set_beam_size(beam_size)
        self.router.beam_size = beam_size

    def output_layer(self, features):
        """fairseq's output projection, applied to the features flattened to 2-D.

        With the embeddings frozen (``requires_grad=False``), torch's ``matmul`` folds a 3-D input into
        one GEMM only if its leading strides are contiguous. fairseq's decoder output is a
        (time, batch) transpose, so it is not, and torch runs a batched GEMM over a broadcast copy
        of the vocabulary matrix instead. That made beam-5 decoding 3.8x slower than the same
        unfrozen base at a 128k vocabulary (benchmarks/decode.py). Flattening first gives the GEMM
        that the base model runs.
        """
        if self.adaptive_softmax is not None:
            return super().output_layer(features)
        lead = features.shape[:-1]
        return self.output_projection(features.reshape(-1, features.shape[-1])).view(*lead, -1)


@register_model("lslo_transformer")
class LSLoTransformerModel(TransformerModel):
    """fairseq's transformer with LSLo adapters; every transformer option applies unchanged."""

    @staticmethod
    def add_args(parser):
        TransformerModel.add_args(parser)
        add_lslo_args(parser)

    @classmethod
    def build_encoder(cls, args, src_dict, embed_tokens):
        return LSLoTransformerEncoder(args, src_dict, embed_tokens)

    @classmethod
    def build_decoder(cls, args, tgt_dict, embed_tokens):
        return LSLoTransformerDecoder(args, tgt_dict, embed_tokens, no_encoder_attn=False)

    @classmethod
    def build_model(cls, args, task):
        check_task(task, args)
        lslo_base_architecture(args)
        known = getattr(task, "langs", None)
        cfg = resolve_config(args, known_langs=known)
        # recorded in the checkpoint's args, so that it rebuilds without the files they came from
        args.lslo_langs = ",".join(cfg.languages)
        if not getattr(args, "lslo_weight_learning", False) and not cfg.modular:
            args.lslo_encoder_index = ",".join(cfg.encoder_index)
            args.lslo_decoder_index = ",".join(cfg.decoder_index)
        model = super().build_model(args, task)
        model.setup_lslo(cfg, task.source_dictionary, getattr(args, "lang_tok_style", "multilingual"))
        return model

    def setup_lslo(self, cfg: LSLoConfig, dictionary, lang_tok_style: str) -> None:
        self.lslo_config = cfg
        tok_ids = lang_token_ids(dictionary, cfg.languages, lang_tok_style)
        cfg.token_ids = tok_ids
        self.lslo_router = LanguageRouter(cfg.languages, tok_ids, len(dictionary))
        self.lslo_router.set_layer_counts(len(self.encoder.layers), len(self.decoder.layers))
        if cfg.modular:
            self.lslo_router.configure_merge(cfg.pivot, cfg.ranks)
        for part in (self.encoder, self.decoder):
            object.__setattr__(part, "router", self.lslo_router)
        self.lslo_layers = inject_lslo(self, cfg, self.lslo_router)
        # the adapter layout travels in every checkpoint, so that a mismatch is named on load
        self.register_buffer(LAYOUT_KEY, encode_layout(layout_of(cfg)))
        if cfg.prune.kind != "none":
            make_prunable(self.lslo_layers, cfg)
        freeze_base(self)
        self.lslo_base_path = None  # set by refer_to_frozen_base (fairseq-train) or loading an adapter-only checkpoint
        self.lslo_checkpoint_mode = "full"
        self.lslo_frozen = None
        if cfg.train_langs is not None:
            for module in self.modules():
                if isinstance(module, IndexWeights):
                    module.logits.requires_grad = False
            self.lslo_frozen = FrozenLanguages(self.lslo_layers, cfg.languages, cfg.train_langs)
        self.log_parameters()

    def index_weights(self) -> dict:
        """Weight learning (eq. 5): (w_src, w_tgt) per layer and the chosen index (larger weight),
        in the JSON layout --lslo-encoder-index/--lslo-decoder-index accept."""
        out = {}
        for side, layers in (("encoder", self.encoder.layers), ("decoder", self.decoder.layers)):
            weights = [layer.lslo_index_weights().tolist() for _, layer in all_layers(layers)
                       if hasattr(layer, "lslo_index_weights")]
            out[side] = weights
            out[f"{side}_index"] = [weight_learning.chosen_index(*w) for w in weights]
        return out

    def log_parameters(self) -> None:
        report = parameter_report(self.lslo_config, self.lslo_layers)
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        for lang, row in report.items():
            rank = self.lslo_config.rank_of(lang)
            group = self.lslo_config.groups.get(lang, "-")
            detail = " ".join(f"{m}={n:,}" for m, n in row.items())
            logger.info(f"LSLo {lang} (group {group}, rank {rank}): {sum(row.values()):,} params [{detail}]")
        logger.info(
            f"LSLo trainable parameters: {trainable:,} of {total:,} ({100.0 * trainable / total:.2f}% of the model)"
        )

    def forward(self, src_tokens, src_lengths, prev_output_tokens, return_all_hiddens: bool = True,
                features_only: bool = False, alignment_layer=None, alignment_heads=None, **unused):
        """Teacher forcing: the target language of each sentence comes from its decoder input."""
        tgt_tok = self.lslo_router.target_langtoks(prev_output_tokens)
        encoder_out = self.encoder(src_tokens, src_lengths=src_lengths,
                                   return_all_hiddens=return_all_hiddens, lslo_tgt_langtok=tgt_tok)
        out = self.decoder(prev_output_tokens, encoder_out=encoder_out, features_only=features_only,
                           alignment_layer=alignment_layer, alignment_heads=alignment_heads,
                           src_lengths=src_lengths, return_all_hiddens=return_all_hiddens)
        if self.training and torch.is_grad_enabled() and not out[0].requires_grad:
            # layerdrop skipped every layer: with the base frozen the loss depends on no trainable
            # tensor and fairseq's backward would fail. Its true gradient is zero; tie it to one
            # adapter tensor with a factor of zero so that backward gives exactly that.
            anchor = next(p for p in self.parameters() if p.requires_grad)
            out = (out[0] + 0.0 * anchor.reshape(-1)[0].to(out[0].dtype), *out[1:])
        return out

    # -- checkpoints ---------------------------------------------------------------------------
    def refer_to_frozen_base(self, mode: str, finetune_from: Optional[str]) -> None:
        """fairseq-train: with ``--lslo-checkpoint adapters``, checkpoints leave out the frozen base and
        refer to ``--finetune-from-model`` (or to the base of the adapter-only checkpoint it resumes from,
        see :meth:`load_state_dict`)."""
        self.lslo_checkpoint_mode = mode
        if mode != "adapters":
            return
        if finetune_from and os.path.isfile(finetune_from):
            self.lslo_base_path = os.path.abspath(finetune_from)
        else:
            logger.info("LSLo: no --finetune-from-model file to refer to: checkpoints hold the whole model")

    def full_state_dict(self) -> "OrderedDict[str, torch.Tensor]":
        """Every tensor of the model, whatever ``--lslo-checkpoint`` says."""
        return super().state_dict()

    def state_dict(self, *args, **kwargs):
        """fairseq writes this into checkpoints: without the frozen base when the model refers to one
        (:mod:`lslo_fairseq.layout.frozen_base`); a call with torch's arguments gets every tensor."""
        state = super().state_dict(*args, **kwargs)
        if self.lslo_base_path is None or args or kwargs:
            return state
        frozen = [n for n, p in self.named_parameters(remove_duplicate=False)
                  if not p.requires_grad and not is_adapter_key(n)]
        return frozen_base.strip(state, frozen, frozen_base.new_reference(self.lslo_base_path))

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        """An adapter-only checkpoint gets its frozen base back first (checked against its SHA-256); a
        run resumed from one keeps referring to that base."""
        ref = frozen_base.reference_of(state_dict)
        if ref is not None:
            where = f"an adapter-only checkpoint (frozen base recorded as {ref['path']})"
            path = frozen_base_path(ref, where)
            state_dict = complete_frozen_base(state_dict, where)
            if self.lslo_checkpoint_mode == "adapters":
                self.lslo_base_path = path
        return super().load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)

    def upgrade_state_dict_named(self, state_dict, name):
        """Accept a plain transformer checkpoint: rename ``X.weight`` to ``X.base_layer.weight`` for
        every wrapped projection and give it this model's fresh adapters. An LSLo checkpoint must
        have this model's adapter layout (``lslo_layout``: languages, ranks, modules, indexes);
        otherwise the error names every field that differs and the flag that sets it."""
        super().upgrade_state_dict_named(state_dict, name)
        prefix = f"{name}." if name else ""
        own = self.full_state_dict()
        adapter_keys = [k for k in own if is_adapter_key(k)]
        for path in getattr(self, "lslo_layers", {}):
            for p in ("weight", "bias"):
                old, new = f"{prefix}{path}.{p}", f"{prefix}{path}.base_layer.{p}"
                if old in state_dict and new not in state_dict:
                    state_dict[new] = state_dict.pop(old)
        trained = [k for k in adapter_keys if not k.endswith("_mask")]
        present = [k for k in trained if prefix + k in state_dict]
        for key in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
            if prefix + key in state_dict and key in own and state_dict[prefix + key].shape != own[key].shape:
                raise LSLoConfigError(
                    f"the checkpoint's dictionary has {state_dict[prefix + key].shape[0]} entries and this "
                    f"model's {own[key].shape[0]}: the language tokens (--langs or --lang-dict) differ from "
                    "the checkpoint's run; keep them exactly as they were (M2M-100's fixed --lang-dict never "
                    "moves them), listing a language to add there from the start")
        if prefix + LAYOUT_KEY in state_dict and LAYOUT_KEY in own:
            theirs, ours = decode_layout(state_dict[prefix + LAYOUT_KEY]), layout_of(self.lslo_config)
            added = added_languages(theirs, ours)
            if added:
                logger.info("LSLo: languages %s added to the checkpoint's %s: fresh adapters (B = 0) for them, "
                            "the others loaded", added, theirs["languages"])
                expand_state(state_dict, prefix, self.lslo_layers, theirs, ours, own)
            diff = [] if added else layout_differences(theirs, ours, "the checkpoint")
            if diff:
                raise LSLoConfigError(
                    "the checkpoint's LSLo adapters were trained with another configuration than this "
                    "model's: " + "; ".join(diff) + ". Use the checkpoint's options, or a plain "
                    "transformer checkpoint (lslo-export fold/adapters can convert it)"
                )
        if present and len(present) < len(trained):
            missing = sorted(set(trained) - set(present))
            raise LSLoConfigError(
                f"checkpoint has {len(present)} of this model's {len(trained)} LSLo tensors (missing e.g. "
                f"{missing[0]}): it was trained with other --lslo-modules / index options; use the same "
                "options, or a plain transformer checkpoint"
            )
        for k in present:  # an LSLo checkpoint written before lslo_layout existed: shapes at least
            theirs, ours = tuple(state_dict[prefix + k].shape), tuple(own[k].shape)
            if theirs != ours:
                raise LSLoConfigError(
                    f"LSLo tensor {k} has shape {theirs} in the checkpoint and {ours} in this model: the "
                    f"checkpoint was trained with other --lslo-ranks or languages (this model: languages "
                    f"{self.lslo_config.languages}, ranks {self.lslo_config.ranks})"
                )
        if not present and trained:
            logger.info("plain transformer checkpoint: LSLo adapters start fresh (B = 0)")
            for k in adapter_keys:
                state_dict[prefix + k] = own[k].clone()
        if LAYOUT_KEY in own:  # agreed (or absent): the model's own, which may record more fields
            state_dict[prefix + LAYOUT_KEY] = own[LAYOUT_KEY].clone()


def lslo_base_architecture(args):
    base_architecture(args)
    args.lslo_modules = getattr(args, "lslo_modules", "all")
    args.lslo_encoder_index = getattr(args, "lslo_encoder_index", "paper")
    args.lslo_decoder_index = getattr(args, "lslo_decoder_index", "paper")
    args.lslo_langs = getattr(args, "lslo_langs", None)
    # checkpoints written before these options existed: the full shape, LoRA init, no scaling
    args.lslo_adapter_shape = getattr(args, "lslo_adapter_shape", "full")
    args.lslo_fc_offset = getattr(args, "lslo_fc_offset", 0)
    args.lslo_init = getattr(args, "lslo_init", "lora")
    args.lslo_alpha = getattr(args, "lslo_alpha", None)


@register_model_architecture("lslo_transformer", "lslo_transformer")
def lslo_transformer(args):
    lslo_base_architecture(args)


def set_shape(args, layers: int, dim: int, ffn: int, heads: int) -> None:
    """Pre-norm encoder-decoder of ``layers``+``layers`` layers with shared embeddings; options
    given on the command line win."""
    for side in ("encoder", "decoder"):
        for key, value in (("layers", layers), ("embed_dim", dim), ("ffn_embed_dim", ffn),
                           ("attention_heads", heads), ("normalize_before", True)):
            setattr(args, f"{side}_{key}", getattr(args, f"{side}_{key}", value))
    args.share_all_embeddings = getattr(args, "share_all_embeddings", True)
    args.share_decoder_input_output_embed = getattr(args, "share_decoder_input_output_embed", True)


def m2m100_615m_shape(args) -> None:
    """M2M-124 615M (flores101_mm100_615M): 12+12 pre-norm layers, 1024/4096, 16 heads, shared
    embeddings, dropout 0.1."""
    set_shape(args, layers=12, dim=1024, ffn=4096, heads=16)
    args.dropout = getattr(args, "dropout", 0.1)
    args.attention_dropout = getattr(args, "attention_dropout", 0.1)
    args.relu_dropout = getattr(args, "relu_dropout", 0.0)


@register_model_architecture("lslo_transformer", "lslo_m2m100_615m")
def lslo_m2m100_615m(args):
    """M2M-124 615M with LSLo adapters (:func:`m2m100_615m_shape`)."""
    m2m100_615m_shape(args)
    lslo_base_architecture(args)


@register_model_architecture("transformer", "transformer_m2m100_615m")
def transformer_m2m100_615m(args):
    """Stock fairseq transformer of the M2M-124 615M shape, for full fine-tuning (the Ft-all
    baseline); registered by the plugin, so it needs ``--user-dir``."""
    m2m100_615m_shape(args)
    base_architecture(args)


@register_model_architecture("lslo_transformer", "lslo_transformer_tiny")
def lslo_transformer_tiny(args):
    """``shapes.TINY_SHAPE`` (2+2 pre-norm layers, 64/128, 4 heads), shared embeddings: for tests and
    the demo's quick mode."""
    set_shape(args, **TINY_SHAPE)
    lslo_base_architecture(args)
