"""spBLEU scoring of many translation directions, grouped by resource type as in the paper's tables.

spBLEU (FLORES-101): hypotheses and references are split into SentencePiece pieces with a given
model, then BLEU is computed on the pieces by sacrebleu with no further tokenization. This module
takes the SentencePiece model as a file, so nothing is ever downloaded.

fairseq is imported only by the generation helpers (:func:`generation_args` parses nothing;
:func:`generate_all_directions` runs ``fairseq_cli.generate`` in this process).
"""
from __future__ import annotations

import copy
import hashlib
import logging
import os
import re
import sys
import time
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from .config import GROUP_ORDER
from .errors import LSLoError
from .files import download_atomic, write_csv_atomic, write_json_atomic

Direction = Tuple[str, str]

DEFAULT_TASK = "translation_multi_simple_epoch_lslo"


class ScoringError(LSLoError):
    """Bad scoring input: an unreadable generate file, missing outputs, ungrouped languages."""


# --------------------------------------------------------------------------------------------------
# fairseq-generate output
# --------------------------------------------------------------------------------------------------
_LINE_RE = re.compile(r"^([STHD])-(\d+)\t")


def read_generate_output(path: str) -> Tuple[List[str], List[str]]:
    """Hypotheses (``D-`` lines, i.e. detokenized after ``--post-process``) and references
    (``T-`` lines) of a ``fairseq-generate`` output file, matched by sentence id and sorted by id.

    With ``--nbest`` > 1 the first (best) hypothesis of each id is kept. A file without ``D-`` lines
    (not written by fairseq >= 0.10) falls back to its ``H-`` lines. Other lines (``S-``, ``P-``,
    logging) are ignored.
    """
    hyps_d: Dict[int, str] = {}
    hyps_h: Dict[int, str] = {}
    refs: Dict[int, str] = {}
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise ScoringError(f"cannot read generate output {path}: {e}") from None
    with f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            m = _LINE_RE.match(line)
            if not m:
                continue
            kind, sid = m.group(1), int(m.group(2))
            rest = line[m.end():]
            if kind == "T":
                if sid in refs:
                    raise ScoringError(f"{path} line {n}: reference T-{sid} appears twice")
                refs[sid] = rest
            elif kind in ("D", "H"):
                parts = rest.split("\t", 1)
                if len(parts) != 2:
                    raise ScoringError(
                        f"{path} line {n}: expected '{kind}-<id>\\t<score>\\t<text>', got {line!r}"
                    )
                target = hyps_d if kind == "D" else hyps_h
                target.setdefault(sid, parts[1])  # first = best of the n-best list
    hyps = hyps_d or hyps_h
    if not hyps:
        raise ScoringError(
            f"{path}: no hypotheses (no 'D-<id>' or 'H-<id>' lines); is it a fairseq-generate output "
            "file, and did generation finish?"
        )
    if not refs:
        raise ScoringError(
            f"{path}: no references ('T-<id>' lines); the test set must have targets to be scored"
        )
    if set(hyps) != set(refs):
        no_ref = sorted(set(hyps) - set(refs))
        no_hyp = sorted(set(refs) - set(hyps))
        raise ScoringError(
            f"{path}: sentence ids of hypotheses and references differ: "
            f"{len(no_ref)} hypotheses without reference (ids {no_ref[:10]}), "
            f"{len(no_hyp)} references without hypothesis (ids {no_hyp[:10]})"
        )
    ids = sorted(hyps)
    return [hyps[i] for i in ids], [refs[i] for i in ids]


def missing_ids(path: str) -> List[int]:
    """Sentence ids below the largest id of a generate output that have no hypothesis: sentences
    fairseq skipped (a dropped last batch, ``--skip-invalid-size-inputs-valid-test``). Skipped
    sentences above the largest id cannot be seen here."""
    ids = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = _LINE_RE.match(line)
            if m and m.group(1) in ("D", "H"):
                ids.add(int(m.group(2)))
    return [i for i in range(max(ids) + 1) if i not in ids] if ids else []


# --------------------------------------------------------------------------------------------------
# spBLEU
# --------------------------------------------------------------------------------------------------
_SPM_CACHE: Dict[Tuple[str, int, int], object] = {}


def load_spm(spm_model_path: str):
    """The ``SentencePieceProcessor`` of a model file, loaded once per (path, mtime, size)."""
    import sentencepiece as spm

    path = os.path.abspath(spm_model_path)
    try:
        st = os.stat(path)
    except OSError as e:
        raise ScoringError(f"SentencePiece model {spm_model_path}: {e}") from None
    key = (path, st.st_mtime_ns, st.st_size)
    proc = _SPM_CACHE.get(key)
    if proc is None:
        proc = spm.SentencePieceProcessor()
        try:
            proc.Load(path)
        except (OSError, RuntimeError) as e:
            raise ScoringError(f"{spm_model_path} is not a SentencePiece model: {e}") from None
        _SPM_CACHE[key] = proc
    return proc


FLORES101_SPM_URL = "https://dl.fbaipublicfiles.com/fairseq/models/flores/sacrebleu_tokenizer_spm.model"


def flores101_spm_path() -> str:
    """Where sacrebleu keeps the FLORES-101 SentencePiece model (``$SACREBLEU/models/...``,
    default ``~/.sacrebleu``): sacrebleu's ``flores101``/``spm`` tokenizers use the file found there."""
    root = os.environ.get("SACREBLEU", os.path.join(os.path.expanduser("~"), ".sacrebleu"))
    return os.path.join(root, "models", os.path.basename(FLORES101_SPM_URL))


def resolve_spm(spec: str, timeout: float = 30.0) -> str:
    """The SentencePiece model file for ``--spm``: a path, or ``flores101`` for the FLORES-101
    tokenizer model (sacrebleu's cached copy, else downloaded there; a clear error offline)."""
    if spec != "flores101":
        if not os.path.isfile(spec):
            raise ScoringError(f"--spm: SentencePiece model {spec} does not exist")
        return spec
    path = flores101_spm_path()
    if os.path.isfile(path):
        return path
    import urllib.error

    try:
        download_atomic(FLORES101_SPM_URL, path, timeout)
    except (urllib.error.URLError, OSError) as e:
        raise ScoringError(
            f"--spm flores101: the FLORES-101 SentencePiece model is not at {path} and cannot be "
            f"downloaded from {FLORES101_SPM_URL} ({getattr(e, 'reason', e)}); fetch it elsewhere and "
            "pass --spm PATH (or put it at that path)"
        ) from None
    return path


def spm_pieces(lines: Sequence[str], spm_model_path: str) -> List[str]:
    """Each line split into SentencePiece pieces joined by single spaces, exactly as sacrebleu's
    ``flores101``/``spm`` tokenizer does (BLEU strips trailing whitespace before tokenizing)."""
    proc = load_spm(spm_model_path)
    encoded = proc.encode([line.rstrip() for line in lines], out_type=str)
    return [" ".join(pieces) for pieces in encoded]


def _bleu_metric():
    from sacrebleu.metrics import BLEU

    # force=True only silences the "looks tokenized" warning, which pieces always trigger.
    return BLEU(tokenize="none", force=True)


def spbleu(hyps: Sequence[str], refs: Sequence[str], spm_model_path: str) -> float:
    """Corpus spBLEU (FLORES-101 definition) of ``hyps`` against one reference each, with the
    SentencePiece model at ``spm_model_path``."""
    if len(hyps) != len(refs):
        raise ScoringError(f"spbleu: {len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        raise ScoringError("spbleu: no sentences to score")
    metric = _bleu_metric()
    return float(
        metric.corpus_score(spm_pieces(hyps, spm_model_path), [spm_pieces(refs, spm_model_path)]).score
    )


def md5sum(path: str) -> str:
    """Hex MD5 of a file's bytes."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def scoring_meta(spm_model_path: str) -> dict:
    """What a score table must record: the SentencePiece model (path, md5, vocabulary size) and
    sacrebleu's version and BLEU signature. ``sacrebleu_signature`` is sacrebleu's own (``tok:none``,
    since pieces are made here); ``spbleu_signature`` names the piece model instead."""
    import sacrebleu

    metric = _bleu_metric()
    metric.corpus_score(["a"], [["a"]])  # the signature's nrefs is fixed by a first call
    signature = str(metric.get_signature())
    md5 = md5sum(spm_model_path)
    return {
        "metric": "spBLEU (FLORES-101): sacrebleu corpus BLEU on SentencePiece pieces",
        "spm_model": {
            "path": os.path.abspath(spm_model_path),
            "md5": md5,
            "vocab_size": int(load_spm(spm_model_path).get_piece_size()),
        },
        "sacrebleu": {
            "version": sacrebleu.__version__,
            "sacrebleu_signature": signature,
            "spbleu_signature": signature.replace("tok:none", f"tok:spm-md5:{md5[:8]}"),
        },
    }


# --------------------------------------------------------------------------------------------------
# Finding per-direction outputs
# --------------------------------------------------------------------------------------------------
_LANG = r"[A-Za-z0-9_]+"
_DIR_RE = re.compile(rf"^({_LANG})-({_LANG})$")
_FLAT_GEN_RE = re.compile(rf"^generate-({_LANG})-({_LANG})\.txt$")
_FLAT_RE = re.compile(rf"^({_LANG})-({_LANG})\.txt$")


def find_direction_outputs(run_dir: str, subset: str = "test") -> Dict[Direction, str]:
    """Generate output file of every direction under ``run_dir``, as ``{(src, tgt): path}``.

    Accepted layouts: ``RUN/<src>-<tgt>/generate-<subset>.txt`` (fairseq's ``--results-path``; a
    direction folder holding a single ``generate-*.txt`` of another subset is used too),
    ``RUN/generate-<src>-<tgt>.txt`` and ``RUN/<src>-<tgt>.txt``.
    """
    if not os.path.isdir(run_dir):
        raise ScoringError(f"run directory {run_dir} does not exist")
    found: Dict[Direction, str] = {}

    def add(direction: Direction, path: str):
        if direction in found:
            raise ScoringError(
                f"{run_dir}: direction {direction[0]}-{direction[1]} has two outputs: "
                f"{found[direction]} and {path}; keep one"
            )
        found[direction] = path

    for name in sorted(os.listdir(run_dir)):
        path = os.path.join(run_dir, name)
        if os.path.isdir(path):
            m = _DIR_RE.match(name)
            if not m:
                continue
            wanted = os.path.join(path, f"generate-{subset}.txt")
            if os.path.isfile(wanted):
                add((m.group(1), m.group(2)), wanted)
                continue
            others = sorted(f for f in os.listdir(path) if f.startswith("generate-") and f.endswith(".txt"))
            if len(others) == 1:
                add((m.group(1), m.group(2)), os.path.join(path, others[0]))
            elif others:
                raise ScoringError(
                    f"{path}: no generate-{subset}.txt but several other outputs {others}; "
                    "choose the subset"
                )
        elif os.path.isfile(path):
            m = _FLAT_GEN_RE.match(name)
            if m is None and not name.startswith("generate-"):
                m = _FLAT_RE.match(name)
            if m:
                add((m.group(1), m.group(2)), path)
    if not found:
        raise ScoringError(
            f"no generate outputs found in {run_dir}: expected <src>-<tgt>/generate-{subset}.txt, "
            "generate-<src>-<tgt>.txt or <src>-<tgt>.txt"
        )
    return dict(sorted(found.items()))


def score_run(run_dir: str, spm_model_path: str, subset: str = "test") -> Dict[Direction, float]:
    """spBLEU of every direction found under ``run_dir`` (see :func:`find_direction_outputs`)."""
    return {
        direction: spbleu(*read_generate_output(path), spm_model_path)
        for direction, path in find_direction_outputs(run_dir, subset).items()
    }


# --------------------------------------------------------------------------------------------------
# Group tables
# --------------------------------------------------------------------------------------------------
def order_groups(groups: Iterable[str]) -> List[str]:
    """Group names in table order: those of ``GROUP_ORDER`` (H, M, L, V) first, others sorted."""
    groups = set(groups)
    return [g for g in GROUP_ORDER if g in groups] + sorted(groups - set(GROUP_ORDER))


def check_grouped(directions: Iterable[Direction], lang_groups: Mapping[str, str]) -> None:
    """Raise :class:`ScoringError` naming every language of ``directions`` that has no group."""
    missing: Dict[str, List[str]] = {}
    for src, tgt in directions:
        for lang in (src, tgt):
            if lang not in lang_groups:
                missing.setdefault(lang, []).append(f"{src}-{tgt}")
    if missing:
        detail = "; ".join(f"{lang} (in {', '.join(d[:4])}{', ...' if len(d) > 4 else ''})"
                           for lang, d in sorted(missing.items()))
        raise ScoringError(
            f"language(s) with no resource group: {detail}; add them to the language groups "
            f"(e.g. 'xx:L'), known: {', '.join(sorted(lang_groups))}"
        )


def group_table(
    scores: Mapping[Direction, float], lang_groups: Mapping[str, str]
) -> Tuple[List[str], List[float]]:
    """Columns ``X2Y`` and their mean score over the directions with source in group X and target
    in group Y, then ``AVG``, the mean over all directions (direction-weighted, not the mean of the
    cells).

    Groups are those of the scored directions' languages, ordered by :func:`order_groups`; a pair
    X2Y without any direction (e.g. V2V with one V language) has no column.
    """
    if not scores:
        raise ScoringError("group_table: no scores")
    check_grouped(scores, lang_groups)
    cells: Dict[Tuple[str, str], List[float]] = {}
    for (src, tgt), value in scores.items():
        cells.setdefault((lang_groups[src], lang_groups[tgt]), []).append(float(value))
    order = order_groups({g for pair in cells for g in pair})
    columns, values = [], []
    for x in order:
        for y in order:
            if (x, y) in cells:
                columns.append(f"{x}2{y}")
                values.append(sum(cells[x, y]) / len(cells[x, y]))
    all_values = [float(v) for v in scores.values()]
    columns.append("AVG")
    values.append(sum(all_values) / len(all_values))
    return columns, values


def merge_tables(
    tables: Sequence[Tuple[str, List[str], List[float]]],
) -> Tuple[List[str], List[Tuple[str, List[Optional[float]]]]]:
    """Rows of several runs' ``(name, columns, values)`` on the union of their columns, in table
    order; a run without a column gets ``None`` there."""
    cells = set()
    for _, columns, _ in tables:
        cells.update(c for c in columns if c != "AVG")
    groups = order_groups({g for c in cells for g in c.split("2", 1)})
    union = [f"{x}2{y}" for x in groups for y in groups if f"{x}2{y}" in cells] + ["AVG"]
    rows = []
    for name, columns, values in tables:
        by_col = dict(zip(columns, values))
        rows.append((name, [by_col.get(c) for c in union]))
    return union, rows


def format_table(rows: Sequence[Tuple[str, Sequence[Optional[float]]]], columns: Sequence[str]) -> str:
    """Fixed-width text table, one row per run, values with 2 decimals (``-`` where missing)."""
    for name, values in rows:
        if len(values) != len(columns):
            raise ScoringError(f"format_table: row {name!r} has {len(values)} values for {len(columns)} columns")
    name_width = max([len("Run")] + [len(name) for name, _ in rows])
    cells = [[("-" if v is None else f"{v:.2f}") for v in values] for _, values in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(["Run".ljust(name_width)] + [c.rjust(w) for c, w in zip(columns, widths)])]
    for (name, _), row in zip(rows, cells):
        lines.append("  ".join([name.ljust(name_width)] + [c.rjust(w) for c, w in zip(row, widths)]))
    return "\n".join(lines)


def write_results(
    path_prefix: str,
    rows: Sequence[Tuple[str, Sequence[Optional[float]]]],
    columns: Sequence[str],
    per_direction: Mapping[str, Mapping[Direction, float]],
    meta: Mapping,
    comparison_rows: Sequence[Tuple[str, Sequence[Optional[float]]]] = (),
) -> Tuple[str, str]:
    """Write ``<prefix>.csv`` (the table, one row per run, then ``comparison_rows`` such as the
    paper's row and the differences) and ``<prefix>.json`` (the table, the comparison rows apart,
    every run's per-direction scores keyed ``src-tgt``, and ``meta``); return both paths."""
    csv_path, json_path = path_prefix + ".csv", path_prefix + ".json"
    write_csv_atomic(csv_path, ["run"] + list(columns),
                     ([name] + ["" if v is None else f"{v:.4f}" for v in values]
                      for name, values in [*rows, *comparison_rows]))
    doc = {
        "columns": list(columns),
        "table": [{"run": name, **{c: v for c, v in zip(columns, values)}} for name, values in rows],
        "comparison": [{"row": name, **{c: v for c, v in zip(columns, values)}}
                       for name, values in comparison_rows],
        "per_direction": {
            run: {f"{src}-{tgt}": value for (src, tgt), value in sorted(scores.items())}
            for run, scores in per_direction.items()
        },
        "meta": dict(meta),
    }
    write_json_atomic(json_path, doc, indent=2)
    return csv_path, json_path


# --------------------------------------------------------------------------------------------------
# Generation (fairseq, in this process)
# --------------------------------------------------------------------------------------------------
def parse_pairs(pairs: Union[str, Iterable[Union[str, Direction]]]) -> List[Direction]:
    """Directions from ``"en-fr,fr-en"``, ``["en-fr", ...]`` or ``[("en", "fr"), ...]``."""
    if isinstance(pairs, str):
        pairs = [p for p in pairs.replace(";", ",").split(",") if p.strip()]
    out: List[Direction] = []
    for pair in pairs:
        if isinstance(pair, str):
            m = _DIR_RE.match(pair.strip())
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
) -> Dict[Direction, str]:
    """Translate ``gen_subset`` of every direction of ``pairs`` with ``fairseq_cli.generate.main``,
    all in this process, into ``results_dir/<src>-<tgt>/generate-<gen_subset>.txt``; return
    ``{(src, tgt): path}``."""
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
        print(f"[{i}/{len(directions)}] {src}-{tgt}: {path} ({time.time() - start:.1f} s)",
              file=sys.stderr, flush=True)
    return outputs
