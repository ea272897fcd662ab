"""Every direction of a run translated by ``fairseq_cli.generate`` in this process (one model load
per direction, options parsed once); fairseq is imported only here."""
from __future__ import annotations

import copy
import logging
import os
import sys
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

from . import DEFAULT_TASK, Direction, ScoringError
from .outputs import DIRECTION_RE, missing_ids

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
    results_path: str,
    user_dir: Optional[str] = None,
    extra_args: Sequence[str] = (),
    beam: int = 5,
    gen_subset: str = "test",
    task: str = DEFAULT_TASK,
) -> List[str]:
    """``fairseq-generate`` arguments for one direction ``src``-``tgt`` (``extra_args`` last, so
    they override the defaults here).

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
        "--results-path", results_path,
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


def for_direction(template, pristine_task, src: str, tgt: str, results_path: str):
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
    """Translate ``gen_subset`` of every direction of ``pairs`` with ``fairseq_cli.generate.main``,
    all in this process, into ``results_dir/<src>-<tgt>/generate-<gen_subset>.txt``; return
    ``{(src, tgt): path}``. After each direction, ``progress(direction, path, seconds)`` is called
    (default: a line on stderr)."""
    from fairseq_cli import generate

    directions = parse_pairs(pairs)
    root = logging.getLogger()
    outputs: Dict[Direction, str] = {}
    template = pristine_task = None
    for i, (src, tgt) in enumerate(directions, 1):
        results_path = os.path.join(results_dir, f"{src}-{tgt}")
        if template is None:  # parsing composes a Hydra config (~5 s): once, then copy
            template = parse_generation_args(generation_args(
                data_dir, checkpoint, src, tgt, directions, results_path, user_dir, extra_args,
                beam, gen_subset, task,
            ), user_dir)
            pristine_task = copy.deepcopy(template.task)
        cfg = for_direction(template, pristine_task, src, tgt, results_path)
        # fairseq's generate calls logging.basicConfig(stream=<this output file>); drop what it
        # adds so that the next direction's log does not go to a closed file.
        handlers, level = list(root.handlers), root.level
        start = time.time()
        try:
            generate.main(cfg)
        finally:
            for h in list(root.handlers):
                if h not in handlers:
                    root.removeHandler(h)
            root.setLevel(level)
        path = os.path.join(results_path, f"generate-{gen_subset}.txt")
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
