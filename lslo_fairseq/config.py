"""The parsing/validation of every ``--lslo-*`` option and the resolved adapter layout
(:class:`LSLoConfig`). The paper's language table is :mod:`.groups`, model shapes :mod:`.shapes`.

Everything here is plain Python (no fairseq, no torch) so that the CLIs and the task can validate a
run before any data or weights are touched. Every error names the flag it is about.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from .errors import LSLoError
from .groups import PRESETS
from .names import ALL_MODULES, INDEX_CHOICES
from .runfiles import RunFileError, merge_weights, weight_learning

MODULE_SETS = {
    "all": ALL_MODULES,
    "fc": ("fc1", "fc2"),
    "attn": ("q", "k", "v", "c-q", "c-k", "c-v"),
}
# Modular fine-tuning (the follow-up's English-centric adapters): every adapted matrix holds an input
# bank routed by the source language and an output bank routed by the target language.
MODULAR_INDEX = "modular"
DEFAULT_PIVOT = "en"
MERGE_MODES = ("outputs", "ab")


class LSLoConfigError(LSLoError):
    """A bad ``--lslo-*`` option (or a combination with the task's options)."""


def _split_list(spec: str) -> List[str]:
    return [item.strip() for item in spec.replace(";", ",").split(",") if item.strip()]


def _parse_pairs(spec: str, flag: str, what: str) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for item in _split_list(spec):
        if ":" not in item:
            raise LSLoConfigError(f"{flag}: expected {what} entries like 'en:2', got {item!r}")
        key, value = (x.strip() for x in item.split(":", 1))
        if not key or not value:
            raise LSLoConfigError(f"{flag}: empty name or value in {item!r}")
        if key in out:
            raise LSLoConfigError(f"{flag}: {key!r} is given twice")
        out[key] = value
    if not out:
        raise LSLoConfigError(f"{flag}: empty value")
    return out


def parse_lang_groups(spec: str, flag: str = "--lslo-lang-groups") -> Dict[str, str]:
    """A language -> resource group map: a preset (lang12, lang30), ``en:H,fr:H,...``, or a file of
    ``lang group`` lines (tab, space or colon separated; ``#`` comments). Errors name ``flag``
    (``--lang-groups`` in the tools that take groups outside fairseq)."""
    spec = spec.strip()
    if spec in PRESETS:
        return dict(PRESETS[spec])
    if os.path.isfile(spec):
        entries = []
        with open(spec, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                parts = line.replace(":", " ").split()
                if len(parts) != 2:
                    raise LSLoConfigError(f"{flag}: {spec} line {n}: expected 'lang group', got {line!r}")
                entries.append(f"{parts[0]}:{parts[1]}")
        return _parse_pairs(",".join(entries), flag, "lang:group")
    if ":" not in spec:
        raise LSLoConfigError(
            f"{flag}: {spec!r} is neither a preset ({', '.join(PRESETS)}), an existing file, "
            "nor a list like 'en:H,fr:H,oc:V'"
        )
    return _parse_pairs(spec, flag, "lang:group")


def parse_ranks(spec: str) -> Dict[str, int]:
    """``--lslo-ranks``: ``H:2,M:2,V:8`` (per group) or ``en:2,...,wo:8`` (per language)."""
    flag = "--lslo-ranks"
    out = {}
    for key, value in _parse_pairs(spec, flag, "name:rank").items():
        try:
            rank = int(value)
        except ValueError:
            raise LSLoConfigError(f"{flag}: rank of {key!r} must be an integer, got {value!r}") from None
        if rank < 1:
            raise LSLoConfigError(f"{flag}: rank of {key!r} must be >= 1, got {rank}")
        out[key] = rank
    return out


def parse_modules(spec: str) -> List[str]:
    """``--lslo-modules``: all | fc | attn | a list of q,k,v,c-q,c-k,c-v,fc1,fc2."""
    flag = "--lslo-modules"
    spec = spec.strip()
    if spec in MODULE_SETS:
        return list(MODULE_SETS[spec])
    names = _split_list(spec)
    unknown = [n for n in names if n not in ALL_MODULES]
    if unknown or not names:
        raise LSLoConfigError(
            f"{flag}: unknown module(s) {unknown or [spec]}; use all, fc, attn or a list of "
            + ",".join(ALL_MODULES)
        )
    return [m for m in ALL_MODULES if m in names]  # canonical order, no duplicates


def default_index(side: str, num_layers: int) -> List[str]:
    """The paper's learned indexing (section 6.1): decoder all target-indexed; encoder
    source-indexed except the top quarter of layers (layers 10-12 of 12)."""
    if side == "decoder":
        return ["tgt"] * num_layers
    n_tgt = math.ceil(num_layers / 4)
    return ["src"] * (num_layers - n_tgt) + ["tgt"] * n_tgt


def parse_index(spec: Optional[str], num_layers: int, side: str) -> List[str]:
    """``--lslo-{encoder,decoder}-index``: per-layer ``src``/``tgt``, comma separated, with
    ``src*9`` for repeats; a single value applies to every layer; ``paper`` (or empty) is the
    default of :func:`default_index`; a path to a weight-learning JSON takes its chosen indexes."""
    flag = f"--lslo-{side}-index"
    if spec is None or spec.strip() in ("", "paper"):
        return default_index(side, num_layers)
    spec = spec.strip()
    if spec.endswith(".json") or os.path.isfile(spec):
        try:
            chosen = weight_learning.indexes(spec, side)
        except RunFileError as e:
            raise LSLoConfigError(f"{flag}: cannot read '{side}_index' from {spec}: {e}") from None
        spec = ",".join(chosen)
    out: List[str] = []
    for item in _split_list(spec):
        value, _, times = item.partition("*")
        value = value.strip()
        if value not in INDEX_CHOICES:
            raise LSLoConfigError(f"{flag}: entries must be 'src' or 'tgt' (optionally 'src*N'), got {item!r}")
        try:
            count = int(times) if times else 1
        except ValueError:
            raise LSLoConfigError(f"{flag}: bad repeat count in {item!r}") from None
        out.extend([value] * count)
    if len(out) == 1:
        out = out * num_layers
    if len(out) != num_layers:
        raise LSLoConfigError(
            f"{flag}: {len(out)} entries for {num_layers} {side} layers (--{side}-layers); give one "
            f"per layer, a single value for all, or repeats like 'src*{num_layers - 1},tgt'"
        )
    return out


PRUNE_KINDS = ("none", "gps", "ise", "lsp")
# The pruning defaults, the paper's (the one place they are set: options, help texts and recipes
# use these): table 1's best GPS ratio, appendix B's P_ISE = P_LSP = 0.7, start E = 2, duration k = 8.
PRUNE_DEFAULT_RATIO = {"gps": 0.9, "ise": 0.7, "lsp": 0.7}
PRUNE_DEFAULT_START = 2
PRUNE_DEFAULT_DURATION = 8


def check_prune_ratio(ratio: float) -> float:
    """``--lslo-prune-ratio`` must be in [0, 1): at 1 every entry would go."""
    if not 0.0 <= ratio < 1.0:
        raise LSLoConfigError(f"--lslo-prune-ratio: must be in [0, 1), got {ratio}")
    return ratio


@dataclass
class PruneConfig:
    """What is pruned, how far and when (section 3.2, 4.2, 7.3; appendix B)."""

    kind: str = "none"  # gps: per B matrix of the target languages; ise: per layer across
    # languages; lsp: per language across layers
    ratio: float = 0.0
    start: int = PRUNE_DEFAULT_START  # E
    duration: int = PRUNE_DEFAULT_DURATION  # k
    unit: str = "epoch"
    targets: List[str] = field(default_factory=list)  # gps: languages pruned
    matrices: List[str] = field(default_factory=lambda: ["B"])


@dataclass
class LSLoConfig:
    """The resolved adapter layout of one model."""

    languages: List[str]  # ordered; the adapter row order in every LSLo layer
    ranks: List[int]  # aligned with languages
    modules: List[str]
    encoder_index: List[str]
    decoder_index: List[str]
    groups: Dict[str, str] = field(default_factory=dict)  # language -> resource group (may be empty)
    prune: PruneConfig = field(default_factory=PruneConfig)
    adapter_shape: str = "full"  # full: LoRA over the whole matrix; paper: the authors' d_model x d_model
    fc_offset: int = 0  # paper shape: first column of fc1's output / fc2's input slice
    init: str = "lora"  # A's initialisation: lora (fan-in k) or paper (fan-in r_l)
    alpha: Optional[float] = None  # None: no scaling (the paper); else delta x alpha / r_l
    pivot: Optional[str] = None  # modular fine-tuning: the pivot language (rank 0: no adapters, by default)
    train_langs: Optional[List[str]] = None  # --lslo-train-langs: the only languages whose adapters train
    token_ids: Optional[List[int]] = None  # each language's __xx__ token id, set by the model

    @property
    def modular(self) -> bool:
        return self.pivot is not None

    def rank_of(self, lang: str) -> int:
        return self.ranks[self.languages.index(lang)]


def resolve_languages(
    ranks_spec: str,
    groups_spec: Optional[str],
    known_langs: Optional[Sequence[str]],
    required_langs: Sequence[str],
    required_flag: str = "--lang-pairs/--langs",
) -> (List[str], List[int], Dict[str, str]):
    """Decide which languages get adapters and with which rank.

    ``known_langs``: every language the task knows (``--langs``/``--lang-dict``/``--lang-pairs``);
    a language of an explicit map outside it is an error (presets may hold more languages; those
    are skipped). ``required_langs``: languages that must have a rank (those the run trains or
    decodes). Adapters are built for the required languages plus any other known language the maps
    name, in the order of the rank map (per-language ranks) or of the group map.
    """
    ranks = parse_ranks(ranks_spec)
    groups = parse_lang_groups(groups_spec) if groups_spec else {}
    known = set(known_langs) if known_langs is not None else None
    explicit_groups = bool(groups_spec) and groups_spec.strip() not in PRESETS

    def check_known(langs, flag):
        if known is None:
            return
        unknown = [lang for lang in langs if lang not in known]
        if unknown:
            raise LSLoConfigError(
                f"{flag}: unknown language(s) {unknown}; the task's languages are {sorted(known)}"
            )

    if explicit_groups:
        check_known(groups, "--lslo-lang-groups")
    group_names = set(groups.values())
    by_group = bool(groups) and any(k in group_names for k in ranks)
    if by_group:
        bad = [k for k in ranks if k not in group_names]
        if bad:
            raise LSLoConfigError(
                f"--lslo-ranks: {bad} are not groups of --lslo-lang-groups ({sorted(group_names)}); "
                "give ranks per group or per language, not both"
            )

    if by_group:
        missing_groups = sorted({groups[l] for l in required_langs if l in groups} - set(ranks))
        if missing_groups:
            raise LSLoConfigError(
                f"--lslo-ranks: no rank for group(s) {missing_groups} of --lslo-lang-groups"
            )
        candidates = [l for l in groups if known is None or l in known or l in required_langs]
        lang_rank = {l: ranks[groups[l]] for l in candidates if groups[l] in ranks}
    else:
        if not groups and any(k.isupper() for k in ranks):
            raise LSLoConfigError(
                f"--lslo-ranks: {ranks_spec!r} looks like per-group ranks but --lslo-lang-groups "
                f"is not set (use a preset: {', '.join(PRESETS)}, or a lang:group list)"
            )
        check_known(ranks, "--lslo-ranks")
        lang_rank = dict(ranks)

    missing = [l for l in required_langs if l not in lang_rank]
    if missing:
        where = "--lslo-lang-groups" if by_group else "--lslo-ranks"
        raise LSLoConfigError(
            f"language(s) {missing} of {required_flag} have no LSLo rank: add them to {where}"
        )
    languages = list(lang_rank)
    return languages, [lang_rank[l] for l in languages], {l: groups[l] for l in languages if l in groups}


def as_list(value) -> List[str]:
    """A comma string (as fairseq sometimes keeps ``--langs``/``--lang-pairs``) or a list."""
    if value is None:
        return []
    return _split_list(value) if isinstance(value, str) else [str(v) for v in value]


def languages_of_pairs(lang_pairs) -> List[str]:
    out: List[str] = []
    for pair in as_list(lang_pairs):
        for lang in pair.split("-"):
            if lang and lang not in out:
                out.append(lang)
    return out


ADAPTER_SHAPES = ("full", "paper")
INITS = ("lora", "paper")


def resolve_shape(args) -> dict:
    """``--lslo-adapter-shape``, ``--lslo-fc-offset``, ``--lslo-init``, ``--lslo-alpha``; the offset
    must leave the d_model-wide slice inside fc1's output and fc2's input (the FFN width)."""
    shape = getattr(args, "lslo_adapter_shape", None) or "full"
    if shape not in ADAPTER_SHAPES:
        raise LSLoConfigError(f"--lslo-adapter-shape: one of {', '.join(ADAPTER_SHAPES)}, got {shape!r}")
    init = getattr(args, "lslo_init", None) or "lora"
    if init not in INITS:
        raise LSLoConfigError(f"--lslo-init: one of {', '.join(INITS)}, got {init!r}")
    offset = getattr(args, "lslo_fc_offset", None)
    offset = 0 if offset is None else int(offset)
    if offset < 0:
        raise LSLoConfigError(f"--lslo-fc-offset: must be >= 0, got {offset}")
    if offset and shape != "paper":
        raise LSLoConfigError("--lslo-fc-offset applies to --lslo-adapter-shape paper only (a full-shape "
                              "adapter spans the whole matrix)")
    if shape == "paper":
        for side in ("encoder", "decoder"):
            dim, ffn = getattr(args, f"{side}_embed_dim", None), getattr(args, f"{side}_ffn_embed_dim", None)
            if dim is None or ffn is None or ffn == dim:
                continue
            if ffn < dim:
                raise LSLoConfigError(
                    f"--lslo-adapter-shape paper slices the FFN's {dim}-wide window out of its wider side, but "
                    f"--{side}-ffn-embed-dim {ffn} < --{side}-embed-dim {dim}; use --lslo-adapter-shape full")
            if offset + dim > ffn:
                raise LSLoConfigError(
                    f"--lslo-fc-offset: {offset} + d_model {dim} exceeds the {side} FFN width {ffn} "
                    f"(--{side}-ffn-embed-dim); give 0 <= START <= {ffn - dim}")
    alpha = getattr(args, "lslo_alpha", None)
    if alpha is not None:
        alpha = float(alpha)
        if not (alpha > 0 and math.isfinite(alpha)):
            raise LSLoConfigError(f"--lslo-alpha: must be a finite number > 0, got {alpha}")
    return dict(adapter_shape=shape, fc_offset=offset, init=init, alpha=alpha)


def resolve_config(args, known_langs=None) -> LSLoConfig:
    """Build the :class:`LSLoConfig` from a fairseq args namespace.

    Once a model has been built, ``args.lslo_langs`` records the resolved language order so that a
    checkpoint rebuilds the same layout wherever it is loaded.
    """
    if not getattr(args, "lslo_ranks", None):
        raise LSLoConfigError("--lslo-ranks is required, e.g. --lslo-ranks H:2,M:2,V:8 --lslo-lang-groups lang12")
    modules = parse_modules(getattr(args, "lslo_modules", "all") or "all")
    modular = bool(getattr(args, "lslo_modular", False))
    if modular:
        for flag, value in (("--lslo-weight-learning", getattr(args, "lslo_weight_learning", False)),
                            ("--lslo-encoder-index", getattr(args, "lslo_encoder_index", None) not in
                             (None, "", "paper", MODULAR_INDEX)),
                            ("--lslo-decoder-index", getattr(args, "lslo_decoder_index", None) not in
                             (None, "", "paper", MODULAR_INDEX))):
            if value:
                raise LSLoConfigError(f"--lslo-modular gives every layer an input (source-routed) and an output "
                                      f"(target-routed) bank; drop {flag}")
        enc_index = [MODULAR_INDEX] * args.encoder_layers
        dec_index = [MODULAR_INDEX] * args.decoder_layers
    elif getattr(args, "lslo_weight_learning", False):
        for side in ("encoder", "decoder"):
            spec = getattr(args, f"lslo_{side}_index", None)
            if spec not in (None, "", "paper"):
                raise LSLoConfigError(
                    f"--lslo-weight-learning learns every layer's index; drop --lslo-{side}-index {spec}"
                )
        enc_index = ["learned"] * args.encoder_layers
        dec_index = ["learned"] * args.decoder_layers
    else:
        enc_index = parse_index(getattr(args, "lslo_encoder_index", None), args.encoder_layers, "encoder")
        dec_index = parse_index(getattr(args, "lslo_decoder_index", None), args.decoder_layers, "decoder")
    fixed = getattr(args, "lslo_langs", None)
    if fixed:
        required = as_list(fixed)
        flag = "--lslo-langs"
        if known_langs is not None and any(l not in known_langs for l in required):
            raise LSLoConfigError(
                f"--lslo-langs (given, or recorded in the checkpoint): language(s) "
                f"{[l for l in required if l not in known_langs]} are not languages of the task "
                f"({list(known_langs)}, from --langs/--lang-dict/--lang-pairs), so they have no __xx__ "
                "token; pass the language list the model was trained with"
            )
    else:
        required = languages_of_pairs(getattr(args, "lang_pairs", None))
        for lang in as_list(getattr(args, "langs", None)):
            if lang not in required:
                required.append(lang)
        flag = "--lang-pairs/--langs"
    languages, ranks, groups = resolve_languages(
        args.lslo_ranks, getattr(args, "lslo_lang_groups", None), known_langs, required, flag
    )
    if fixed:  # keep exactly the recorded order
        languages, ranks = required, [ranks[languages.index(l)] for l in required]
        groups = {l: g for l, g in groups.items() if l in required}
    pivot = None
    if modular:
        pivot = getattr(args, "lslo_pivot", None) or DEFAULT_PIVOT
        if pivot not in languages:
            raise LSLoConfigError(f"--lslo-pivot {pivot}: not one of the LSLo languages {languages} "
                                  "(every training pair of --lslo-modular has the pivot on one side)")
        pivot_rank = int(getattr(args, "lslo_pivot_rank", 0) or 0)
        if pivot_rank < 0:
            raise LSLoConfigError(f"--lslo-pivot-rank: a rank >= 0 (0: the pivot has no adapters), got {pivot_rank}")
        # the pivot's adapters: none (rank 0, ours), or the follow-up's, trained on pivot->pivot copies
        ranks = [pivot_rank if l == pivot else r for l, r in zip(languages, ranks)]
    train_langs = parse_train_langs(getattr(args, "lslo_train_langs", None), languages, pivot,
                                    ranks[languages.index(pivot)] if pivot else 0)
    prune = resolve_prune(args, languages, groups)
    prune.targets = [l for l, r in zip(languages, ranks)
                     if l in prune.targets and r > 0 and (train_langs is None or l in train_langs)]
    if prune.kind == "ise" and train_langs is not None:
        raise LSLoConfigError("--lslo-prune ise prunes every language's adapters of a layer as one pool, so it "
                              "would change the adapters that --lslo-train-langs keeps fixed; use gps or lsp")
    if prune.kind != "none" and not prune.targets:
        raise LSLoConfigError(f"--lslo-prune {prune.kind}: no language left to prune (targets must have "
                              "adapters and be among --lslo-train-langs)")
    if prune.kind != "none" and "learned" in enc_index:
        raise LSLoConfigError(
            "--lslo-prune with --lslo-weight-learning: learn the indexes first, then prune with "
            "--lslo-encoder-index/--lslo-decoder-index set to the learned JSON (as the paper does)"
        )
    return LSLoConfig(languages, ranks, modules, enc_index, dec_index, groups, prune, **resolve_shape(args),
                      pivot=pivot, train_langs=train_langs)


def parse_train_langs(spec: Optional[str], languages: Sequence[str], pivot: Optional[str],
                      pivot_rank: int = 0) -> Optional[List[str]]:
    """``--lslo-train-langs``: the languages whose adapters train (None: all)."""
    if not spec:
        return None
    flag = "--lslo-train-langs"
    langs = _split_list(spec)
    unknown = [l for l in langs if l not in languages]
    if unknown or not langs:
        raise LSLoConfigError(f"{flag}: {unknown or spec!r} are not LSLo languages ({', '.join(languages)})")
    if pivot in langs and not pivot_rank:
        raise LSLoConfigError(f"{flag}: the pivot {pivot} has no adapters under --lslo-modular (--lslo-pivot-rank 0); "
                              "list other languages")
    return [l for l in languages if l in langs]


def parse_merge_weights(spec, flag: str = "--lslo-merge-weights"):
    """``W_IN,W_OUT`` (both in [0, 1], not both 0) -> (w_in, w_out); the check is the merge-weights
    file's (:func:`.runfiles.merge_weights.pair`)."""
    try:
        return merge_weights.pair(spec, flag)
    except RunFileError as e:
        raise LSLoConfigError(str(e)) from None


def resolve_prune(args, languages: Sequence[str], groups: Dict[str, str]) -> PruneConfig:
    """``--lslo-prune*`` options; ``--lslo-prune-targets`` takes groups (H,M) or languages."""
    kind = getattr(args, "lslo_prune", None) or "none"
    if kind not in PRUNE_KINDS:
        raise LSLoConfigError(f"--lslo-prune: one of {', '.join(PRUNE_KINDS)}, got {kind!r}")
    if kind == "none":
        return PruneConfig()
    ratio = getattr(args, "lslo_prune_ratio", None)
    ratio = check_prune_ratio(PRUNE_DEFAULT_RATIO[kind] if ratio is None else float(ratio))
    matrices = _split_list(getattr(args, "lslo_prune_matrices", None) or "B")
    if any(m not in ("A", "B") for m in matrices):
        raise LSLoConfigError(f"--lslo-prune-matrices: A, B or A,B, got {matrices}")
    targets = list(languages)
    spec = getattr(args, "lslo_prune_targets", None)
    if kind == "gps":
        if not spec:  # the paper prunes the high and medium resource groups (table 1)
            present = set(groups.values())
            spec = ",".join(g for g in ("H", "M") if g in present)
            if not spec:
                raise LSLoConfigError(
                    "--lslo-prune gps prunes the H and M groups unless --lslo-prune-targets is given, but "
                    + (f"--lslo-lang-groups has neither (groups {sorted(present)})" if present
                       else "--lslo-lang-groups is not set")
                    + ": give --lslo-prune-targets (languages such as en,fr, or groups)"
                )
        targets = []
        for item in _split_list(spec):
            if item in languages:
                targets.append(item)
            elif item in set(groups.values()):
                targets.extend(l for l in languages if groups.get(l) == item)
            else:
                raise LSLoConfigError(
                    f"--lslo-prune-targets: {item!r} is neither an LSLo language {list(languages)} nor "
                    f"a group {sorted(set(groups.values()))}"
                )
    elif spec:
        raise LSLoConfigError(f"--lslo-prune-targets applies to --lslo-prune gps only ({kind} prunes every language)")
    unit = getattr(args, "lslo_prune_unit", None) or "epoch"
    start = getattr(args, "lslo_prune_start", None)
    duration = getattr(args, "lslo_prune_duration", None)
    return PruneConfig(kind, ratio, PRUNE_DEFAULT_START if start is None else int(start),
                       PRUNE_DEFAULT_DURATION if duration is None else int(duration),
                       unit, targets, matrices)
