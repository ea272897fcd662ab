"""``translation_multi_simple_epoch_lslo``: fairseq's many-to-many task, plus what LSLo needs.

- Validates every ``--lslo-*`` option against the task's languages and dictionary at set-up,
  before data or weights are loaded.
- At inference, hands the target language to the encoder (``net_input['lslo_tgt_langtok']``), so
  target-indexed encoder layers route exactly as in teacher forcing.
"""
from __future__ import annotations

import logging

import torch
from fairseq.tasks import register_task
from fairseq.tasks.translation_multi_simple_epoch import TranslationMultiSimpleEpochTask

from ..config import LSLoConfigError, resolve_config
from ..models.lslo_transformer import LSLoTransformerModel, lang_token_ids

logger = logging.getLogger(__name__)


def is_lslo_run(args) -> bool:
    return bool(getattr(args, "lslo_ranks", None)) or str(getattr(args, "arch", "")).startswith("lslo_")


@register_task("translation_multi_simple_epoch_lslo")
class TranslationMultiSimpleEpochLSLoTask(TranslationMultiSimpleEpochTask):
    """Many-to-many translation with Language-Specific LoRA models (``--arch lslo_*``)."""

    @classmethod
    def setup_task(cls, args, **kwargs):
        task = super().setup_task(args, **kwargs)
        if is_lslo_run(args) and getattr(args, "lslo_ranks", None):
            task.validate_lslo_args(args)
        return task

    def validate_lslo_args(self, args) -> None:
        """Fail fast, naming the flag: language maps, ranks, modules, per-layer indexes, langtoks."""
        if getattr(args, "encoder_langtok", None) != "src":
            raise LSLoConfigError(
                "--encoder-langtok src is required: LSLo reads each sentence's source language from "
                "its __src__ token (as M2M-100 is trained)"
            )
        if not getattr(args, "decoder_langtok", False):
            raise LSLoConfigError(
                "--decoder-langtok is required: LSLo reads each sentence's target language from its "
                "__tgt__ token (as M2M-100 is trained)"
            )
        cfg = resolve_config(args, known_langs=self.langs)
        lang_token_ids(self.source_dictionary, cfg.languages, args.lang_tok_style)
        logger.info(
            "LSLo: %d languages %s, ranks %s, modules %s, encoder index %s, decoder index %s",
            len(cfg.languages), cfg.languages, cfg.ranks, cfg.modules, cfg.encoder_index, cfg.decoder_index,
        )

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        if any(isinstance(m, LSLoTransformerModel) for m in models):
            _, tgt_langtok_spec = self.args.langtoks["main"]
            if not tgt_langtok_spec:
                raise LSLoConfigError("--decoder-langtok is required to decode with an LSLo model")
            tok = self.data_manager.get_decoder_langtok(self.args.target_lang, tgt_langtok_spec)
            src_tokens = sample["net_input"]["src_tokens"]
            net_input = dict(sample["net_input"])
            net_input["lslo_tgt_langtok"] = torch.full(
                (src_tokens.size(0),), tok, dtype=torch.long, device=src_tokens.device
            )
            sample = dict(sample, net_input=net_input)
        return super().inference_step(generator, models, sample, prefix_tokens, constraints)
