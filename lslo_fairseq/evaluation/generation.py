"""Every direction of a run translated with fairseq in this process: the checkpoint is loaded and the
task set up once (:class:`Translator`), then each direction is decoded as ``fairseq-generate`` does
and written in its format; fairseq is imported only here."""
from __future__ import annotations

import ast
import contextlib
import copy
import logging
import math
import os
import sys
import time
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

from . import DEFAULT_TASK, Direction, ScoringError
from ..files import write_text_atomic
from .outputs import DIRECTION_RE, missing_ids

logger = logging.getLogger(__name__)

def parse_pairs(pairs: Union[str, Iterable[Union[str, Direction]]]) -> List[Direction]:
    """Directions from ``"en-fr,fr-en"``, ``["en-fr", ...]`` or ``[("en", "fr"), ...]``."""
    if isinstance(pairs, str):
        pairs = [p for p in pairs.replace(";", ",").split(",") if p.strip()]
    out: List[Direction] = []
    for pair in pairs:
        if isinstance(pair, str):
            m = DIRECTION_RE.match(pair.strip())
            if not m:
                raise ScoringError(f"bad language pair {pair!r}: expected 'src-tgt', e.g. 'en-fr'")
            pair = (m.group(1), m.group(2))
        src, tgt = pair
        if src == tgt:
            raise ScoringError(f"language pair {src}-{tgt} translates a language into itself")
        if (src, tgt) not in out:
            out.append((src, tgt))
    if not out:
        raise ScoringError("no language pairs given")
    return out


def generation_args(
    data_dir: str,
    checkpoint: str,
    src: str,
    tgt: str,
    pairs: Sequence[Direction],
    results_path: Optional[str],
    user_dir: Optional[str] = None,
    extra_args: Sequence[str] = (),
    beam: int = 5,
    gen_subset: str = "test",
    task: str = DEFAULT_TASK,
) -> List[str]:
    """``fairseq-generate`` arguments for one direction ``src``-``tgt`` (``extra_args`` last, so
    they override the defaults here); no ``--results-path`` when ``results_path`` is None.

    ``--required-batch-size-multiple 1``: with fairseq's default of 8, this fairseq build's
    ``data_utils.batch_by_size`` drops the last batch when its size is not a multiple of 8, so the
    longest test sentences would silently go untranslated and unscored.
    """
    args = [data_dir, "--path", checkpoint]
    if user_dir:
        args += ["--user-dir", user_dir]
    args += [
        "--task", task,
        "--source-lang", src,
        "--target-lang", tgt,
        "--lang-pairs", ",".join(f"{s}-{t}" for s, t in pairs),
        "--gen-subset", gen_subset,
        "--beam", str(beam),
        "--required-batch-size-multiple", "1",
        "--post-process", "sentencepiece",
        *(["--results-path", results_path] if results_path is not None else []),
        "--num-workers", "0",  # a worker process per direction costs ~5 s to start and join
    ]
    return args + list(extra_args)


def parse_generation_args(input_args: Sequence[str], user_dir: Optional[str] = None):
    """fairseq's generation config (an omegaconf ``DictConfig``) for ``input_args``, built as
    ``fairseq-generate`` builds it; the user dir is imported first so its tasks are choices."""
    from argparse import Namespace

    from fairseq import options, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    if user_dir:
        utils.import_user_module(Namespace(user_dir=user_dir))
    parser = options.get_generation_parser()
    args = options.parse_args_and_arch(parser, input_args=list(input_args))
    return convert_namespace_to_omegaconf(args)


def for_direction(template, pristine_task, src: str, tgt: str, results_path: Optional[str]):
    """The parsed generation config for direction ``src``-``tgt``: the three fields that
    :func:`generation_args` sets per direction, on a fresh copy of the task options (fairseq's
    task set-up rewrites some of them in place, e.g. ``left_pad_source``, and is not idempotent)."""
    from fairseq.dataclass.utils import omegaconf_no_object_check
    from omegaconf import open_dict

    cfg = copy.deepcopy(template)
    task_args = copy.deepcopy(pristine_task)
    task_args.source_lang, task_args.target_lang = src, tgt
    task_args.results_path = results_path
    with omegaconf_no_object_check(), open_dict(cfg):  # as fairseq itself puts a Namespace there
        cfg.task = task_args
        cfg.common_eval.results_path = results_path
    return cfg


# generation options that fairseq-generate supports and :class:`Translator` does not reproduce
UNSUPPORTED = (("generation", "lm_path", "--lm-path"), ("generation", "replace_unk", "--replace-unk"),
               ("generation", "print_alignment", "--print-alignment"), ("generation", "print_step", "--print-step"),
               ("generation", "retain_iter_history", "--retain-iter-history"))


def _rng_state():
    import numpy as np
    import torch

    return (torch.get_rng_state(), np.random.get_state(),
            torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)


def _set_rng_state(state) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state[0])
    np.random.set_state(state[1])
    if state[2] is not None:
        torch.cuda.set_rng_state_all(state[2])


@contextlib.contextmanager
def _dictionaries_kept(dicts) -> Iterator[None]:
    """Within the block, symbols that scoring adds (``encode_line(add_if_not_exist=True)``, as
    fairseq-generate scores) are taken out of ``dicts`` again afterwards, counts restored."""
    saved = [(d, len(d), list(d.count)) for d in {id(d): d for d in dicts}.values()]
    try:
        yield
    finally:
        for d, n, count in saved:
            for sym in d.symbols[n:]:
                del d.indices[sym]
            del d.symbols[n:]
            d.count[:] = count


class Translator:
    """A checkpoint loaded, and its fairseq task set up, once; :meth:`translate` then decodes one
    direction after the other with them, as ``fairseq-generate`` with the options of
    :func:`generation_args` (+ ``extra_args``) would, into the same ``generate-<subset>.txt``.

    Each direction gets a task object of the set-up task's class over the same dictionaries (no file
    is read again) and options with its source and target language: nothing of one direction (its
    languages, data set, batch iterator, generator and its language-token options, random state,
    symbols added by scoring) reaches the next.
    """

    def __init__(self, data_dir: str, checkpoint: str, pairs: Union[str, Iterable[Union[str, Direction]]],
                 user_dir: Optional[str] = None, extra_args: Sequence[str] = (), beam: int = 5,
                 gen_subset: str = "test", task: str = DEFAULT_TASK):
        import numpy as np
        import torch
        from fairseq import checkpoint_utils, tasks, utils
        from fairseq.tasks.translation_multi_simple_epoch import TranslationMultiSimpleEpochTask

        directions = parse_pairs(pairs)
        # parsing composes a Hydra config (~5 s): once; each direction gets a copy
        self.cfg = cfg = parse_generation_args(generation_args(
            data_dir, checkpoint, *directions[0], directions, None, user_dir, extra_args, beam, gen_subset, task,
        ), user_dir)
        for section, key, flag in UNSUPPORTED:
            if cfg[section].get(key):
                raise ScoringError(f"{flag} (a fairseq argument after '--'): not supported when every direction is "
                                   "decoded with one loaded model; run fairseq-generate for each direction instead")
        if cfg.dataset.max_tokens is None and cfg.dataset.batch_size is None:
            cfg.dataset.max_tokens = 12000  # as fairseq-generate
        self.pristine_task = copy.deepcopy(cfg.task)
        if cfg.common.seed is not None and not cfg.generation.no_seed_provided:
            np.random.seed(cfg.common.seed)
            utils.set_torch_seed(cfg.common.seed)
        self.use_cuda = torch.cuda.is_available() and not cfg.common.cpu
        self.task = tasks.setup_task(for_direction(cfg, self.pristine_task, *directions[0], None).task)
        if not isinstance(self.task, TranslationMultiSimpleEpochTask):
            raise ScoringError(f"--task {cfg.task._name}: decoding every direction with one loaded model needs "
                               "translation_multi_simple_epoch or a task derived from it")
        start = time.time()
        logger.info("loading model(s) from %s", cfg.common_eval.path)
        self.models, self.saved_cfg = checkpoint_utils.load_model_ensemble(
            utils.split_paths(cfg.common_eval.path),
            arg_overrides=ast.literal_eval(cfg.common_eval.model_overrides),
            task=self.task,
            suffix=cfg.checkpoint.checkpoint_suffix,
            strict=(cfg.checkpoint.checkpoint_shard_count == 1),
            num_shards=cfg.checkpoint.checkpoint_shard_count,
        )
        for model in self.models:
            if cfg.common.fp16:
                model.half()
            if self.use_cuda and not cfg.distributed_training.pipeline_model_parallel:
                model.cuda()
            model.prepare_for_inference_(cfg)
        self.load_seconds = time.time() - start
        self.rng = _rng_state()  # where a fresh fairseq-generate would be now: each direction starts here
        self.task_args = copy.deepcopy(self.task.args)  # as the task set-up left them (normalised)
        self.dicts = dict(self.task.dicts)
        self.tokenizer = self.task.build_tokenizer(cfg.tokenizer)
        self.bpe = self.task.build_bpe(cfg.bpe)

    def _dictionaries(self, src: str, tgt: str) -> Dict[str, object]:
        """The dictionaries of src and tgt: the one fixed dictionary, or each language's, read once."""
        from fairseq.data.multilingual.multilingual_data_manager import MultilingualDatasetManager

        if self.task_args.fixed_dictionary is not None:
            fixed = next(iter(self.dicts.values()))
            return {src: fixed, tgt: fixed}
        if src not in self.dicts or tgt not in self.dicts:
            args = for_direction(self.cfg, self.pristine_task, src, tgt, None).task
            _, dicts, _ = MultilingualDatasetManager.prepare(type(self.task).load_dictionary, args)
            for lang in (src, tgt):
                self.dicts.setdefault(lang, dicts[lang])
        return {src: self.dicts[src], tgt: self.dicts[tgt]}

    def task_for(self, src: str, tgt: str, task_options: Optional[Dict[str, object]] = None):
        """A task for the direction src -> tgt alone (fairseq's inference set-up of it), with
        ``task_options`` (e.g. ``{"lslo_merge_weights": "0.3,0.7"}``) in place of the parsed ones;
        the models are configured for it (``configure_merge`` of the LSLo task)."""
        args = copy.deepcopy(self.task_args)
        args.source_lang, args.target_lang = src, tgt
        for key, value in (task_options or {}).items():
            if not hasattr(args, key):
                raise ScoringError(f"internal error: the task has no option {key}")
            setattr(args, key, value)
        task = type(self.task)(args, self.task.langs, self._dictionaries(src, tgt), training=False)
        task.load_state_dict(self.task.state_dict())
        configure = getattr(task, "configure_merge", None)
        for model in self.models if configure is not None else ():
            configure(model)
        return task

    def batches(self, src: str, tgt: str, task_options: Optional[Dict[str, object]] = None):
        """(task, batches): :meth:`task_for` src -> tgt and its ``gen_subset`` batched as
        ``fairseq-generate`` batches it (random state reset, no shuffling); the models are configured
        for the direction."""
        from fairseq import utils

        cfg, subset = self.cfg, self.cfg.dataset.gen_subset
        task = self.task_for(src, tgt, task_options)
        _set_rng_state(self.rng)
        task.load_dataset(subset, task_cfg=self.saved_cfg.task)
        itr = task.get_batch_iterator(
            dataset=task.dataset(subset),
            max_tokens=cfg.dataset.max_tokens,
            max_sentences=cfg.dataset.batch_size,
            max_positions=utils.resolve_max_positions(task.max_positions(), *[m.max_positions() for m in self.models]),
            ignore_invalid_inputs=cfg.dataset.skip_invalid_size_inputs_valid_test,
            required_batch_size_multiple=cfg.dataset.required_batch_size_multiple,
            seed=cfg.common.seed,
            num_shards=cfg.distributed_training.distributed_world_size,
            shard_id=cfg.distributed_training.distributed_rank,
            num_workers=cfg.dataset.num_workers,
            data_buffer_size=cfg.dataset.data_buffer_size,
        ).next_epoch_itr(shuffle=False)
        return task, itr

    def translate(self, src: str, tgt: str, results_path: str,
                  task_options: Optional[Dict[str, object]] = None) -> str:
        """Decode the subset of src -> tgt into ``results_path/generate-<subset>.txt`` (written
        atomically, in fairseq-generate's format: S-, T-, H-, D-, P- lines and its score line); return the path."""
        import torch
        from fairseq import scoring, utils
        from fairseq.logging.meters import StopwatchMeter
        from fairseq_cli.generate import get_symbols_to_strip_from_output

        cfg, subset = self.cfg, self.cfg.dataset.gen_subset
        task, itr = self.batches(src, tgt, task_options)
        src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
        generator = task.build_generator(self.models, cfg.generation,
                                         extra_gen_cls_kwargs={"lm_model": None, "lm_weight": cfg.generation.lm_weight})
        strip = get_symbols_to_strip_from_output(generator)
        post_process, quiet = cfg.common_eval.post_process, cfg.common_eval.quiet

        def decode_fn(x):
            if self.bpe is not None:
                x = self.bpe.decode(x)
            if self.tokenizer is not None:
                x = self.tokenizer.decode(x)
            return x

        out: List[str] = []
        timer, sentences, has_target = StopwatchMeter(), 0, True
        with _dictionaries_kept([src_dict, tgt_dict]):
            scorer = scoring.build_scorer(cfg.scoring, tgt_dict)
            for sample in itr:
                sample = utils.move_to_cuda(sample) if self.use_cuda else sample
                if "net_input" not in sample:
                    continue
                prefix_tokens = None
                if cfg.generation.prefix_size > 0:
                    prefix_tokens = sample["target"][:, : cfg.generation.prefix_size]
                timer.start()
                hypos = task.inference_step(generator, self.models, sample, prefix_tokens=prefix_tokens,
                                            constraints=sample.get("constraints"))
                timer.stop(sum(len(h[0]["tokens"]) for h in hypos))
                for i, sample_id in enumerate(sample["id"].tolist()):
                    has_target = sample["target"] is not None
                    src_tokens = (utils.strip_pad(sample["net_input"]["src_tokens"][i, :], tgt_dict.pad())
                                  if "src_tokens" in sample["net_input"] else None)
                    src_str = decode_fn(src_dict.string(src_tokens, post_process) if src_dict is not None else "")
                    if has_target:
                        target_tokens = utils.strip_pad(sample["target"][i, :], tgt_dict.pad()).int().cpu()
                        target_str = decode_fn(tgt_dict.string(target_tokens, post_process, escape_unk=True,
                                                               extra_symbols_to_ignore=strip))
                    if not quiet:
                        if src_dict is not None:
                            out.append(f"S-{sample_id}\t{src_str}")
                        if has_target:
                            out.append(f"T-{sample_id}\t{target_str}")
                    for j, hypo in enumerate(hypos[i][: cfg.generation.nbest]):
                        hypo_tokens, hypo_str, _ = utils.post_process_prediction(
                            hypo_tokens=hypo["tokens"].int().cpu(), src_str=src_str, alignment=hypo["alignment"],
                            align_dict=None, tgt_dict=tgt_dict, remove_bpe=post_process,
                            extra_symbols_to_ignore=strip)
                        detok_hypo_str = decode_fn(hypo_str)
                        if not quiet:
                            score = hypo["score"] / math.log(2)  # base 2, as fairseq-generate prints
                            positional = hypo["positional_scores"].div_(math.log(2)).tolist()
                            out.append(f"H-{sample_id}\t{score}\t{hypo_str}")
                            out.append(f"D-{sample_id}\t{score}\t{detok_hypo_str}")
                            out.append(f"P-{sample_id}\t" + " ".join(f"{x:.4f}" for x in positional))
                        if has_target and j == 0:
                            if post_process is not None:  # scored on the text, re-encoded
                                target_tokens = tgt_dict.encode_line(target_str, add_if_not_exist=True)
                                hypo_tokens = tgt_dict.encode_line(detok_hypo_str, add_if_not_exist=True)
                            if hasattr(scorer, "add_string"):
                                scorer.add_string(target_str, detok_hypo_str)
                            else:
                                scorer.add(target_tokens, hypo_tokens)
                sentences += sample["nsentences"] if "nsentences" in sample else sample["id"].numel()
            if has_target:
                out.append(f"Generate {subset} with beam={cfg.generation.beam}: {scorer.result_string()}")
        logger.info("%s-%s: translated %s sentences (%s tokens) in %.1fs", src, tgt, f"{sentences:,}",
                    f"{timer.n:,}", timer.sum)
        path = os.path.join(results_path, f"generate-{subset}.txt")
        write_text_atomic(path, "".join(line + "\n" for line in out))
        return path

    def translate_all(self, directions: Union[str, Iterable[Union[str, Direction]]], results_dir: str,
                      progress: Optional[Callable[[Direction, str, float], None]] = None,
                      task_options: Optional[Dict[str, object]] = None) -> Dict[Direction, str]:
        """:meth:`translate` every direction into ``results_dir/<src>-<tgt>/``; see
        :func:`generate_all_directions`."""
        directions = parse_pairs(directions)
        outputs: Dict[Direction, str] = {}
        for i, (src, tgt) in enumerate(directions, 1):
            start = time.time()
            path = self.translate(src, tgt, os.path.join(results_dir, f"{src}-{tgt}"), task_options)
            gaps = missing_ids(path)
            if gaps:
                raise ScoringError(
                    f"{path}: fairseq left {len(gaps)} sentence(s) untranslated (ids {gaps[:10]}); a "
                    "score on the rest would be biased. Check --skip-invalid-size-inputs-valid-test and "
                    "keep --required-batch-size-multiple 1 in the extra arguments"
                )
            outputs[(src, tgt)] = path
            if progress is not None:
                progress((src, tgt), path, time.time() - start)
            else:
                print(f"[{i}/{len(directions)}] {src}-{tgt}: {path} ({time.time() - start:.1f} s)",
                      file=sys.stderr, flush=True)
        return outputs


def generate_all_directions(
    data_dir: str,
    checkpoint: str,
    pairs: Union[str, Iterable[Union[str, Direction]]],
    results_dir: str,
    user_dir: Optional[str],
    extra_args: Sequence[str] = (),
    beam: int = 5,
    gen_subset: str = "test",
    task: str = DEFAULT_TASK,
    progress: Optional[Callable[[Direction, str, float], None]] = None,
) -> Dict[Direction, str]:
    """Translate ``gen_subset`` of every direction of ``pairs`` with one :class:`Translator` (the
    checkpoint loaded once), all in this process, into ``results_dir/<src>-<tgt>/generate-<gen_subset>.txt``;
    return ``{(src, tgt): path}``. After each direction, ``progress(direction, path, seconds)`` is
    called (default: a line on stderr)."""
    translator = Translator(data_dir, checkpoint, pairs, user_dir, extra_args, beam, gen_subset, task)
    if progress is None:
        print(f"loaded {checkpoint} in {translator.load_seconds:.1f} s", file=sys.stderr, flush=True)
    return translator.translate_all(pairs, results_dir, progress)
