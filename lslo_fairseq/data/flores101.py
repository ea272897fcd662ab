"""FLORES-101 -> fairseq data for fine-tuning a released M2M-124 checkpoint (paper, section 5).

The released ``flores101_dataset`` (a directory or the ``.tar.gz``) holds ``dev/<code>.dev`` and
``devtest/<code>.devtest`` for 101 languages, the same sentences in every language. As in the paper,
``dev`` (997 sentences) is the training set and ``devtest`` (1012) the test set. The paper has no
validation set; ``valid`` here is the training split again, so that fairseq's validation (and the
weight-learning report written at validation) runs without touching the test set. Evaluate
``checkpoint_last.pt``: nothing is selected on ``valid``.

Text is encoded with the checkpoint's ``sentencepiece.bpe.model`` and binarized with its ``dict.txt``
for every direction (both directions of every pair), through the writer shared with
:mod:`lslo_fairseq.data.multiparallel`. Before any of that, the model directory is checked: the
checkpoint's embedding must have exactly ``len(dict.txt) + number of languages`` rows (fairseq
appends one ``__xx__`` token per language of ``--lang-dict``), and every requested language must
be one of the model's. The model's language list (in the order the checkpoint was trained with,
which fixes the language-token ids) is written to ``<out>/lang_dict.txt``, for ``--lang-dict``. That
order is accepted only when proven (:func:`model_languages`: ``--model-langs``, a recorded
``langs``/``lang_dict``, or recorded ``lang_pairs`` that fairseq's own inference turns into exactly the
embedding's rows and ``language_pairs.txt``'s languages); what the checkpoint records (format, weight
dtype, language options, rows) is reported either way.
"""
from __future__ import annotations

import argparse
import io
import logging
import os
import shlex
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from ..layout.frozen_base import read_fairseq_checkpoint
from ..config import parse_lang_groups
from ..groups import PRESETS
from ..errors import LSLoError
from ..files import download_atomic
from ..runfiles import prepared
from .multiparallel import PathLike, _link, _write_lines, encode_splits, lang_pairs, write_splits

logger = logging.getLogger(__name__)

FLORES101_URL = "https://dl.fbaipublicfiles.com/flores101/dataset/flores101_dataset.tar.gz"
SPLIT_SOURCES = {"train": "dev", "valid": "dev", "test": "devtest"}

# M2M-124 language code -> FLORES-101 file stem (``dev/<stem>.dev``). Codes as in the paper's
# tables 5-6 (the M2M-124 model's codes); override or extend with ``--flores-code xx=stem``.
FLORES101_CODES: Dict[str, str] = {
    "af": "afr", "am": "amh", "ar": "ara", "as": "asm", "ast": "ast", "az": "azj", "be": "bel",
    "bg": "bul", "bn": "ben", "bs": "bos", "ca": "cat", "ceb": "ceb", "cs": "ces", "cy": "cym",
    "da": "dan", "de": "deu", "el": "ell", "en": "eng", "es": "spa", "et": "est", "fa": "fas",
    "ff": "ful", "fi": "fin", "fr": "fra", "ga": "gle", "gl": "glg", "gu": "guj", "ha": "hau",
    "he": "heb", "hi": "hin", "hr": "hrv", "hu": "hun", "hy": "hye", "id": "ind", "ig": "ibo",
    "is": "isl", "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat", "kam": "kam", "kea": "kea",
    "kk": "kaz", "km": "khm", "kn": "kan", "ko": "kor", "ku": "ckb", "ky": "kir", "lb": "ltz",
    "lg": "lug", "ln": "lin", "lo": "lao", "lt": "lit", "luo": "luo", "lv": "lav", "mi": "mri",
    "mk": "mkd", "ml": "mal", "mn": "mon", "mr": "mar", "ms": "msa", "mt": "mlt", "my": "mya",
    "ne": "npi", "nl": "nld", "no": "nob", "ns": "nso", "ny": "nya", "oc": "oci", "om": "orm",
    "or": "ory", "pa": "pan", "pl": "pol", "ps": "pus", "pt": "por", "ro": "ron", "ru": "rus",
    "sd": "snd", "sk": "slk", "sl": "slv", "sn": "sna", "so": "som", "sr": "srp", "sv": "swe",
    "sw": "swh", "ta": "tam", "te": "tel", "tg": "tgk", "th": "tha", "tl": "tgl", "tr": "tur",
    "uk": "ukr", "umb": "umb", "ur": "urd", "uz": "uzb", "vi": "vie", "wo": "wol", "xh": "xho",
    "yo": "yor", "zh": "zho_simpl", "zu": "zul",
}
MODEL_FILES = ("model.pt", "dict.txt", "sentencepiece.bpe.model")


class FloresError(LSLoError):
    """Bad FLORES-101 / model-directory input; the message names the file or flag."""


# ---- the dataset -------------------------------------------------------------------------------


def download_flores101(dest_dir: PathLike, url: Optional[str] = None, timeout: float = 30.0) -> Path:
    """Download the FLORES-101 tarball (``url``, default :data:`FLORES101_URL` as it is at call
    time) into ``dest_dir`` (atomically); a clear error offline."""
    url = url or FLORES101_URL
    dest = Path(dest_dir) / Path(url).name
    if dest.is_file():
        return dest
    try:
        download_atomic(url, str(dest), timeout)
    except (urllib.error.URLError, OSError) as e:
        raise FloresError(
            f"could not download FLORES-101 from {url} ({getattr(e, 'reason', e)}). Without a "
            "network, fetch flores101_dataset.tar.gz on another machine and pass it (or the "
            "unpacked flores101_dataset directory) with --flores PATH"
        ) from None
    return dest


def _dataset_members(path: Path) -> Dict[str, str]:
    """``{"dev/eng.dev": member name or file path}`` of a FLORES-101 directory or tarball."""
    found: Dict[str, str] = {}
    if path.is_dir():
        for split in ("dev", "devtest"):
            for f in (path / split).glob(f"*.{split}"):
                found[f"{split}/{f.name}"] = str(f)
    elif tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                parts = Path(m.name).parts
                if m.isfile() and len(parts) >= 2 and parts[-2] in ("dev", "devtest"):
                    found[f"{parts[-2]}/{parts[-1]}"] = m.name
    return found


def read_flores(path: PathLike, langs: Sequence[str], codes: Dict[str, str]) -> Dict[str, Dict[str, List[str]]]:
    """``{"dev"|"devtest": {lang: sentences}}`` for ``langs`` from a FLORES-101 directory (the one
    holding ``dev/`` and ``devtest/``) or tarball; every language must have the same line count."""
    path = Path(path)
    if not path.exists():
        raise FloresError(f"--flores: {path} does not exist")
    members = _dataset_members(path)
    if not members:
        raise FloresError(
            f"--flores: {path} is not a FLORES-101 dataset (expected dev/<code>.dev and "
            "devtest/<code>.devtest files, as in flores101_dataset/ or its .tar.gz)"
        )
    missing_code = [lang for lang in langs if lang not in codes]
    if missing_code:
        raise FloresError(
            f"no FLORES-101 file name known for {', '.join(missing_code)}; give it with "
            "--flores-code LANG=STEM (e.g. --flores-code zh=zho_simpl)"
        )
    wanted = {(split, lang): f"{split}/{codes[lang]}.{split}" for split in ("dev", "devtest") for lang in langs}
    absent = sorted({codes[lang] for (split, lang), key in wanted.items() if key not in members})
    if absent:
        stems = sorted({Path(k).stem for k in members})
        raise FloresError(
            f"--flores: {path} has no dev/devtest file for {', '.join(absent)}; it has: {', '.join(stems)}"
        )
    out: Dict[str, Dict[str, List[str]]] = {"dev": {}, "devtest": {}}
    tar = tarfile.open(path) if not path.is_dir() else None
    try:
        for (split, lang), key in wanted.items():
            if tar is None:
                data = Path(members[key]).read_bytes()
            else:
                data = tar.extractfile(members[key]).read()
            out[split][lang] = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8").read().splitlines()
    finally:
        if tar is not None:
            tar.close()
    for split, by_lang in out.items():
        sizes = {lang: len(lines) for lang, lines in by_lang.items()}
        if len(set(sizes.values())) != 1:
            raise FloresError(f"--flores: {split} files differ in line count (not parallel): {sizes}")
        empty = [lang for lang, lines in by_lang.items() for i, s in enumerate(lines) if not s.strip()][:5]
        if empty:
            raise FloresError(f"--flores: {split} has empty lines for {', '.join(sorted(set(empty)))}")
    return out


# ---- the model directory ---------------------------------------------------------------------


LANGUAGE_OPTIONS = ("langs", "lang_dict", "lang_pairs")
LANG_PAIRS_FILE = "language_pairs.txt"


def _get(section, key):
    """``section.key`` of a Namespace or a dict (fairseq writes both); None when absent."""
    return section.get(key) if isinstance(section, dict) else getattr(section, key, None)


def _as_list(value) -> List[str]:
    """A recorded ``--langs``/``--lang-pairs`` value (a list, or fairseq's comma-separated string)."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return [str(x).strip() for x in items if str(x).strip()]


def recorded_options(ckpt: dict) -> Dict[str, tuple]:
    """``{option: (value, where)}`` for each of ``langs``, ``lang_dict``, ``lang_pairs`` the checkpoint
    records (``where``: ``cfg.task``, ``cfg.model`` or ``args``), in fairseq's priority (cfg before args)."""
    cfg, args = ckpt.get("cfg"), ckpt.get("args")
    places = []
    if cfg is not None:
        places += [(f"cfg.{name}", _get(cfg, name)) for name in ("task", "model")]
    places.append(("args", args))
    found = {}
    for key in LANGUAGE_OPTIONS:
        for where, section in places:
            value = _get(section, key) if section is not None else None
            if value:
                found[key] = (value, where)
                break
    return found


def checkpoint_format(ckpt: dict) -> str:
    if ckpt.get("cfg") is not None:
        return "cfg (fairseq >= 0.10)"
    if isinstance(ckpt.get("args"), argparse.Namespace):
        return "args as argparse.Namespace (fairseq < 0.10)"
    return "neither cfg nor args"


def weights_dtype(state: dict) -> str:
    """``float16``, ``float32`` ... of the floating-point weights, or ``mixed: ...`` with counts."""
    counts = Counter(str(v.dtype).replace("torch.", "") for v in state.values()
                     if hasattr(v, "dtype") and v.dtype.is_floating_point)
    if len(counts) == 1:
        return next(iter(counts))
    return "mixed: " + ", ".join(f"{t} ({n} tensors)" for t, n in counts.most_common())


def read_language_pairs(path: Path) -> List[str]:
    """The pairs of ``language_pairs.txt`` (comma- or line-separated ``src-tgt``)."""
    return [p.strip() for p in path.read_text(encoding="utf-8").replace("\n", ",").split(",") if p.strip()]


def inferred_languages(pairs: Sequence[str]) -> List[str]:
    """fairseq 0.12's language list when neither --langs nor --lang-dict is given
    (``MultilingualDatasetManager.load_langs``): the sorted set of the languages of --lang-pairs."""
    return sorted({lang for pair in pairs for lang in pair.split("-")})


def read_model_langs(path: PathLike, flag: str) -> List[str]:
    if not os.path.isfile(path):
        raise FloresError(f"{flag}: {path} does not exist (expected the model's languages, one per line, in the "
                          "order of its language tokens)")
    langs = [x.strip() for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]
    twice = sorted({x for x in langs if langs.count(x) > 1})
    if not langs or twice:
        raise FloresError(f"{flag}: {path} " + (f"lists {', '.join(twice)} twice" if twice else "is empty")
                          + " (expected the model's languages, one per line, each once)")
    return langs


def fix_command(model_dir: Path) -> str:
    """What to run when the language-token order cannot be proven."""
    pairs = model_dir / LANG_PAIRS_FILE
    manual = ("Write the model's languages in the order of its language tokens, one per line, to a file and "
              "rerun lslo-prepare-flores with --model-langs FILE")
    if not pairs.is_file():
        return manual
    one_liner = (f"tr -s ',[:space:]-' '\\n' < {shlex.quote(str(pairs))} | grep . | LC_ALL=C sort -u "
                 "> model_langs.txt")
    return (f"{manual}. If model.pt was trained with --lang-pairs from {LANG_PAIRS_FILE} and neither "
            f"--langs nor --lang-dict, fairseq 0.12 gave its language tokens the sorted languages of those pairs "
            f"(MultilingualDatasetManager.load_langs); to accept that order run: {one_liner} && "
            "lslo-prepare-flores --model-langs model_langs.txt (with your other options)")


def model_languages(model_dir: Path, ckpt: dict, rows: int, dict_size: int,
                    model_langs_file: Optional[PathLike] = None) -> tuple:
    """(the model's languages in token-id order, how that order is known, the report). The order is
    accepted only when proven: ``--model-langs FILE``; a recorded ``langs`` or ``lang_dict``; or recorded
    training ``lang_pairs`` whose sorted languages (fairseq's inference without --langs/--lang-dict)
    fill the embedding's rows and are the languages of ``language_pairs.txt``. Otherwise a FloresError
    names the checkpoint, what is missing and the command that fixes it."""
    ckpt_path = model_dir / "model.pt"
    recorded = recorded_options(ckpt)
    report = {
        "format": checkpoint_format(ckpt),
        "weights_dtype": weights_dtype(ckpt["model"]),
        "language_options": {k: (f"{recorded[k][1]}.{k}" if k in recorded else "not recorded")
                             for k in LANGUAGE_OPTIONS},
        "embedding_rows": rows,
        "dict_size": dict_size,
    }

    def found() -> str:
        opts = "; ".join(f"{k}: {v}" for k, v in report["language_options"].items())
        return (f"found: {report['format']}, {report['weights_dtype']} weights, {rows} embedding rows, "
                f"dict.txt {dict_size} entries with specials; {opts}")

    if model_langs_file:
        return read_model_langs(model_langs_file, "--model-langs"), f"--model-langs {model_langs_file}", report
    if "lang_dict" in recorded:
        value, where = recorded["lang_dict"]
        if not os.path.isfile(value):
            raise FloresError(
                f"{ckpt_path} records {where}.lang_dict {value}, which does not exist here (it orders the language "
                f"tokens): copy that file there. Or: {fix_command(model_dir)} ({found()})")
        return read_model_langs(value, f"{ckpt_path}'s {where}.lang_dict"), f"{where}.lang_dict {value}", report
    if "langs" in recorded:
        value, where = recorded["langs"]
        return _as_list(value), f"{where}.langs", report
    pairs_file = model_dir / LANG_PAIRS_FILE
    if "lang_pairs" in recorded:
        value, where = recorded["lang_pairs"]
        langs = inferred_languages(_as_list(value))
        problems = []
        if rows != dict_size + len(langs):
            problems.append(f"those {len(langs)} languages and dict.txt's {dict_size} entries give "
                            f"{dict_size + len(langs)} rows, not the embedding's {rows}")
        if pairs_file.is_file():
            listed = set(inferred_languages(read_language_pairs(pairs_file)))
            if listed != set(langs):
                diff = sorted(listed ^ set(langs))
                problems.append(f"{pairs_file} has other languages ({', '.join(diff[:10])} differ)")
        if not problems:
            return langs, f"sorted languages of {where}.lang_pairs (fairseq's inference)", report
        raise FloresError(
            f"{ckpt_path} records no language list (langs, lang_dict), and the sorted languages of its training "
            f"{where}.lang_pairs cannot be its token order: {'; '.join(problems)}. {fix_command(model_dir)} "
            f"({found()})")
    raise FloresError(
        f"{ckpt_path} records no language list (langs, lang_dict) and no training lang_pairs, so the order of "
        f"its language tokens is unknown. {fix_command(model_dir)} ({found()})")


def check_model_dir(model_dir: PathLike, langs: Sequence[str], model_langs_file: Optional[PathLike] = None) -> dict:
    """Check a released model directory against the languages to fine-tune; return its facts, with
    ``model_report``: what the checkpoint records (format, weight dtype, where its language options
    are, embedding rows against ``dict.txt`` + languages, where the token order comes from).

    The check that matters (the usual M2M fine-tuning failure, fairseq issues #3233, #4533): the
    checkpoint's ``encoder.embed_tokens.weight`` must have ``len(dict.txt)`` (with fairseq's 4
    specials) ``+ len(model languages)`` rows, because the task appends one ``__xx__`` per language,
    in an order that must be proven (:func:`model_languages`).
    """
    from fairseq.data import Dictionary

    model_dir = Path(model_dir)
    missing = [f for f in MODEL_FILES if not (model_dir / f).is_file()]
    if missing:
        raise FloresError(f"--model-dir: {model_dir} lacks {', '.join(missing)} (expected the released "
                          f"flores101_mm100_615M directory: {', '.join(MODEL_FILES)})")
    ckpt_path = model_dir / "model.pt"
    ckpt = read_fairseq_checkpoint(str(ckpt_path), "--model-dir", mmap=True)
    state = ckpt["model"]
    embed_key = next((k for k in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight") if k in state), None)
    if embed_key is None:
        raise FloresError(f"--model-dir: {ckpt_path} has no encoder.embed_tokens.weight; not a transformer checkpoint")
    rows = state[embed_key].shape[0]
    dict_size = len(Dictionary.load(str(model_dir / "dict.txt")))
    model_langs, order_from, report = model_languages(model_dir, ckpt, rows, dict_size, model_langs_file)
    report.update(languages=len(model_langs), token_order_from=order_from)
    logger.info("%s: %s", ckpt_path, describe(report))
    if rows != dict_size + len(model_langs):
        raise FloresError(
            f"dictionary mismatch: {ckpt_path} has {rows} embedding rows, but {model_dir / 'dict.txt'} "
            f"({dict_size} entries with specials) + {len(model_langs)} language tokens gives "
            f"{dict_size + len(model_langs)}. Use the dict.txt released with this checkpoint and its full "
            "language list in training order (--model-langs FILE); then pass that list to fairseq with "
            "--lang-dict and the dictionary with --fixed-dictionary (fairseq issues #3233, #4533)"
        )
    unknown = [lang for lang in langs if lang not in model_langs]
    if unknown:
        raise FloresError(f"languages {', '.join(unknown)} are not languages of {ckpt_path} "
                          f"(it has {len(model_langs)}: {', '.join(model_langs[:20])}...)")
    return {"checkpoint": str(ckpt_path), "embedding_rows": rows, "dict_size": dict_size,
            "model_langs": model_langs, "model_report": report}


def describe(report: dict) -> str:
    """One line of what :func:`check_model_dir` found."""
    opts = ", ".join(f"{k} {v}" for k, v in report["language_options"].items())
    rows, d, n = report["embedding_rows"], report["dict_size"], report.get("languages")
    sizes = f"{rows} embedding rows" + (f" {'=' if rows == d + n else '!='} dict.txt {d} + {n} language tokens"
                                         if n is not None else "")
    return (f"{report['format']}, {report['weights_dtype']} weights; language options: {opts}; {sizes}; "
            f"token order from {report.get('token_order_from')}")


# ---- the whole preparation -------------------------------------------------------------------


def resolve_langs(subset: Optional[str], langs: Optional[str], lang_groups: Optional[str]):
    """Languages and resource groups: a preset (``lang12``, ``lang30``, tables 5-6) or a user list
    ``--langs`` with ``--lang-groups`` (a preset, ``en:H,...`` or a file)."""
    if bool(subset) == bool(langs):
        raise FloresError("give exactly one of --subset (lang12, lang30) and --langs")
    if subset:
        if subset not in PRESETS:
            raise FloresError(f"--subset: {subset!r} is not one of {', '.join(PRESETS)}")
        groups = dict(PRESETS[subset])
        return list(groups), groups
    chosen = [x.strip() for x in langs.split(",") if x.strip()]
    if len(chosen) < 2 or len(set(chosen)) != len(chosen):
        raise FloresError(f"--langs: need two or more distinct languages, got {langs!r}")
    if not lang_groups:
        raise FloresError("--langs needs --lang-groups (e.g. 'en:H,fr:H,oc:V' or a preset) for the tables")
    groups = parse_lang_groups(lang_groups, flag="--lang-groups")
    ungrouped = [lang for lang in chosen if lang not in groups]
    if ungrouped:
        raise FloresError(f"--lang-groups gives no group for {', '.join(ungrouped)}")
    return chosen, {lang: groups[lang] for lang in chosen}


def prepare_flores101(
    flores: Optional[PathLike],
    model_dir: PathLike,
    out_dir: PathLike,
    langs: Sequence[str],
    groups: Dict[str, str],
    codes: Optional[Dict[str, str]] = None,
    model_langs_file: Optional[PathLike] = None,
    on_model: Optional[Callable[[dict], None]] = None,
) -> dict:
    """Check, encode and binarize; return the summary also written to ``<out_dir>/prepared.json``.

    ``flores`` None downloads the tarball into ``out_dir`` (clear error offline). ``on_model`` is
    called with :func:`check_model_dir`'s facts once the model directory is accepted.
    """
    import sentencepiece as spm
    from fairseq.data import Dictionary

    start = time.perf_counter()
    out = Path(out_dir).resolve()
    model_dir = Path(model_dir).resolve()
    codes = {**FLORES101_CODES, **(codes or {})}
    model = check_model_dir(model_dir, langs, model_langs_file)  # before any text is read
    if on_model is not None:
        on_model(model)
    source = Path(flores) if flores else download_flores101(out)
    text = read_flores(source, langs, codes)
    out.mkdir(parents=True, exist_ok=True)

    sp = spm.SentencePieceProcessor(model_file=str(model_dir / "sentencepiece.bpe.model"))
    raw = {split: text[src] for split, src in SPLIT_SOURCES.items()}
    encoded = encode_splits(sp, {split: raw[split] for split in ("train", "test")})
    for lang in langs:
        encoded["valid", lang] = encoded["train", lang]
    d = Dictionary.load(str(model_dir / "dict.txt"))
    dict_path = out / "dict.txt"
    shutil.copyfile(model_dir / "dict.txt", dict_path)
    for lang in langs:
        _link(dict_path, out / f"dict.{lang}.txt")
    _write_lines(out / "lang_dict.txt", model["model_langs"])
    pairs = lang_pairs(langs)
    _write_lines(out / "lang_pairs.txt", [",".join(pairs)])
    row_ids = {split: [f"{SPLIT_SOURCES[split]}:{i + 1}" for i in range(len(raw[split][langs[0]]))] for split in raw}
    tokens, unks = write_splits(out, langs, row_ids, raw, encoded, d)

    info = {
        "data_dir": str(out),
        "flores": str(source),
        "splits": dict(SPLIT_SOURCES),
        "langs": list(langs),
        "groups": dict(groups),
        "lang_pairs": pairs,
        "rows": {split: len(raw[split][langs[0]]) for split in raw},
        "model_dir": str(model_dir),
        **model,
        "spm_model": str(model_dir / "sentencepiece.bpe.model"),
        "dict": str(dict_path),
        "lang_dict": str(out / "lang_dict.txt"),
        "tokens": tokens,
        "unk_tokens": unks,
        "elapsed_s": round(time.perf_counter() - start, 3),
    }
    del info["model_langs"]
    info["n_model_langs"] = len(model["model_langs"])
    prepared.write(str(out), info)
    return info
