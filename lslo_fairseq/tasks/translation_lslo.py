"""``translation_multi_simple_epoch_lslo``: fairseq's many-to-many task, plus what LSLo needs.

- Validates every ``--lslo-*`` option against the task's languages and dictionary at set-up,
  before data or weights are loaded.
- In training, refuses a truncated or foreign checkpoint to load (:mod:`..checkpoints.guard`) and a
  multi-process run without ``--load-checkpoint-on-all-dp-ranks`` (see :meth:`check_data_parallel`).
- At inference, hands the target language to the encoder (``net_input['lslo_tgt_langtok']``), so
  target-indexed encoder layers route exactly as in teacher forcing.
- Modular fine-tuning: training pairs must have the pivot on one side; at generation
  ``--lslo-merge``/``--lslo-merge-weights`` set how input and output adapters are merged.
- ``--lslo-train-langs``: the other languages' adapter blocks are kept fixed around every optimizer
  step (:mod:`..modules.frozen_langs`).
"""
from __future__ import annotations

import logging

import torch
from fairseq.tasks import register_task
from fairseq.tasks.translation_multi_simple_epoch import TranslationMultiSimpleEpochTask

from ..checkpoints.guard import check_checkpoint_to_load
from ..config import LSLoConfigError, as_list, resolve_config
from ..merging import add_merge_options, apply_merge
from ..runfiles import weight_learning
from ..models.lslo_transformer import LSLoTransformerModel, lang_token_ids
from ..pruning.controller import PruningController, is_master
from ..pruning.schedule import GradualPruningSchedule

logger = logging.getLogger(__name__)


def is_lslo_run(args) -> bool:
    return bool(getattr(args, "lslo_ranks", None)) or str(getattr(args, "arch", "")).startswith("lslo_")


def unwrap_model(model):
    """The model inside fairseq's data-parallel wrappers: ``train_step`` receives
    ModuleProxyWrapper(DDP(model)) in a multi-process run, so one ``.module`` is not enough."""
    while not isinstance(model, LSLoTransformerModel) and isinstance(getattr(model, "module", None), torch.nn.Module):
        model = model.module
    return model


@register_task("translation_multi_simple_epoch_lslo")
class TranslationMultiSimpleEpochLSLoTask(TranslationMultiSimpleEpochTask):
    """Many-to-many translation with Language-Specific LoRA models (``--arch lslo_*``)."""

    routes_lslo = True  # what LSLoTransformerModel.build_model requires of a fairseq task

    @staticmethod
    def add_args(parser):
        TranslationMultiSimpleEpochTask.add_args(parser)
        add_merge_options(
            parser,
            "modular checkpoints, directions without the pivot: outputs (default): h = Wx + w_in B_in A_in x + "
            "w_out B_out A_out x (any ranks); ab: (sqrt(w_in) B_in + sqrt(w_out) B_out)(sqrt(w_in) A_in + "
            "sqrt(w_out) A_out) x (equal ranks)",
            "modular checkpoints: the merge weights (default 0.5,0.5; both >= 0; 1,0 = LoRA_in only, 0,1 = "
            "LoRA_out only), or a JSON file written by lslo-score --merge-search ({'weights': [w_in, w_out], "
            "'directions': {'fr-oc': [...]}})")

    @classmethod
    def setup_task(cls, args, **kwargs):
        task = super().setup_task(args, **kwargs)
        if is_lslo_run(args):
            task.validate_lslo_args(args)
        cls.check_data_parallel(args)
        return task

    @staticmethod
    def check_data_parallel(args) -> None:
        """With torch >= 2.6, rank 0 of fairseq's multi-process training loads a checkpoint and
        broadcasts it pickled with its options as an omegaconf ``DictConfig``, which the other ranks'
        ``torch.load(weights_only=True)`` refuses (``Unsupported global: omegaconf...DictConfig``):
        every rank must read the file itself."""
        import torch.distributed as dist

        if (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
                and not getattr(args, "load_checkpoint_on_all_dp_ranks", False)):
            raise LSLoConfigError(
                "multi-process training needs --load-checkpoint-on-all-dp-ranks: without it rank 0 "
                "broadcasts the loaded checkpoint, which torch's weights_only loading refuses on the "
                "other ranks (--finetune-from-model and every resume would fail)"
            )

    def build_model(self, args, from_checkpoint=False):
        if not from_checkpoint:  # fairseq-train: the checkpoint it loads next must be intact
            check_checkpoint_to_load(args)
        model = super().build_model(args, from_checkpoint)
        if isinstance(model, LSLoTransformerModel):  # fairseq-generate --path: no --lslo-* flags given
            self.check_langtoks(self.args)
            if not from_checkpoint:
                model.refer_to_frozen_base(getattr(args, "lslo_checkpoint", "adapters"),
                                           getattr(self.args, "finetune_from_model", None))
        self.configure_merge(model)
        return model

    def configure_merge(self, model) -> None:
        """Hand ``--lslo-merge``/``--lslo-merge-weights`` to a modular model's router
        (:func:`..merging.apply_merge`; refused for other models)."""
        apply_merge(model if isinstance(model, LSLoTransformerModel) else None,
                    getattr(self.args, "lslo_merge", "outputs"), getattr(self.args, "lslo_merge_weights", None),
                    getattr(self.args, "source_lang", None), getattr(self.args, "target_lang", None))

    @staticmethod
    def check_langtoks(args) -> None:
        """LSLo routes by the language tokens: both langtok flags, as M2M-100 is trained."""
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

    def validate_lslo_args(self, args) -> None:
        """Fail fast, naming the flag: language maps, ranks, modules, per-layer indexes, langtoks."""
        self.check_langtoks(args)
        cfg = resolve_config(args, known_langs=self.langs)
        if cfg.modular:
            pairs = [p.split("-") for p in as_list(getattr(args, "lang_pairs", None))]
            other = ["-".join(p) for p in pairs if cfg.pivot not in p]
            if other:
                raise LSLoConfigError(
                    f"--lang-pairs: --lslo-modular trains on pairs with the pivot {cfg.pivot} only (X-{cfg.pivot} "
                    f"trains LoRA_in(X), {cfg.pivot}-Y LoRA_out(Y)); {', '.join(other[:5])} "
                    f"{'have' if len(other) > 1 else 'has'} no {cfg.pivot}. Translate those by merging at generation")
            copies, pivot_rank = [cfg.pivot, cfg.pivot] in pairs, cfg.rank_of(cfg.pivot)
            if pivot_rank and not copies:
                raise LSLoConfigError(f"--lslo-pivot-rank {pivot_rank}: the pivot's adapters train on {cfg.pivot}-"
                                      f"{cfg.pivot} copies; add {cfg.pivot}-{cfg.pivot} to --lang-pairs (its data: the "
                                      f"{cfg.pivot} side as both source and target)")
            if copies and not pivot_rank:
                raise LSLoConfigError(f"--lang-pairs: {cfg.pivot}-{cfg.pivot} trains the pivot's own adapters, which "
                                      "exist with --lslo-pivot-rank R > 0 only; drop the pair or give the rank")
        if cfg.train_langs is not None and float(getattr(args, "weight_decay", 0) or 0) > 0 and (
                getattr(args, "fp16", False) or getattr(args, "bf16", False)):
            raise LSLoConfigError(
                "--lslo-train-langs with --weight-decay under --fp16/--bf16: the optimizer's fp32 copy of the "
                "frozen languages' adapters would decay; use --weight-decay 0 (or --memory-efficient-fp16)")
        lang_token_ids(self.source_dictionary, cfg.languages, args.lang_tok_style)
        if cfg.prune.kind != "none":
            GradualPruningSchedule(cfg.prune.ratio, cfg.prune.start, cfg.prune.duration,
                                   self._schedule_length(cfg), cfg.prune.unit)
        logger.info(
            "LSLo: %d languages %s, ranks %s, modules %s, encoder index %s, decoder index %s, adapter shape "
            "%s (fc offset %d), init %s, alpha %s",
            len(cfg.languages), cfg.languages, cfg.ranks, cfg.modules, cfg.encoder_index, cfg.decoder_index,
            cfg.adapter_shape, cfg.fc_offset, cfg.init, cfg.alpha,
        )

    # -- training-time hooks: pruning schedule and weight learning ----------------------------
    def _schedule_length(self, cfg):
        """T of eq. 4: --max-epoch or --max-update (None when unbounded)."""
        total = getattr(self.args, "max_epoch" if cfg.prune.unit == "epoch" else "max_update", 0)
        return total or None

    def _out_dir(self):
        return getattr(self.args, "save_dir", None) or "."

    def _controller(self, model):
        model = unwrap_model(model)
        if not isinstance(model, LSLoTransformerModel) or model.lslo_config.prune.kind == "none":
            return None
        if getattr(self, "_pruning", None) is None or self._pruning[0] is not model:
            ctrl = PruningController(model, self._schedule_length(model.lslo_config), self._out_dir())
            self._pruning = (model, ctrl)
        return self._pruning[1]

    def begin_epoch(self, epoch, model):
        super().begin_epoch(epoch, model)
        ctrl = self._controller(model)
        if ctrl is not None and ctrl.schedule.unit == "epoch":
            ctrl.step(epoch)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        self._updates = update_num + 1  # the update this step belongs to (for weight_learning.json)
        ctrl = self._controller(model)
        if ctrl is not None and ctrl.schedule.unit == "update":
            ctrl.step(update_num + 1)
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)

    def optimizer_step(self, optimizer, model, update_num):
        """``--lslo-train-langs``: the frozen languages' adapter blocks are put back after the step."""
        frozen = getattr(unwrap_model(model), "lslo_frozen", None)
        saved = frozen.save() if frozen is not None else None
        super().optimizer_step(optimizer, model, update_num)
        if frozen is not None:
            frozen.restore(saved)

    def begin_valid_epoch(self, epoch, model):
        """End of a training stretch: log the weight-learning weights and write them (with the
        chosen indexes) to SAVE_DIR/weight_learning.json."""
        super().begin_valid_epoch(epoch, model)
        model = unwrap_model(model)
        if not isinstance(model, LSLoTransformerModel) or "learned" not in (
            model.lslo_config.encoder_index + model.lslo_config.decoder_index
        ):
            return
        weights = model.index_weights()
        for side in ("encoder", "decoder"):
            logger.info("LSLo weight learning, %s (w_src, w_tgt) per layer: %s", side,
                        " ".join(f"({a:.3f},{b:.3f})" for a, b in weights[side]))
        if is_master():
            weight_learning.write(self._out_dir(), weights, epoch, getattr(self, "_updates", 0))

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

