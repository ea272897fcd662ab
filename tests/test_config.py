"""Parsing and validation of the --lslo-* options: every error names its flag."""
import argparse

import pytest

from lslo_fairseq.config import (
    LSLoConfigError,
    default_index,
    parse_index,
    parse_modules,
    resolve_config,
)
from lslo_fairseq.groups import PRESETS


def args(**kw):
    base = dict(lslo_ranks="H:2,M:2,V:8", lslo_lang_groups="lang12", lslo_modules="all",
                lslo_encoder_index="paper", lslo_decoder_index="paper", lslo_langs=None,
                encoder_layers=12, decoder_layers=12, lang_pairs=["en-fr", "fr-oc"], langs=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_presets_follow_tables_5_and_6():
    assert len(PRESETS["lang12"]) == 12 and len(PRESETS["lang30"]) == 30
    assert [l for l, g in PRESETS["lang12"].items() if g == "V"] == ["oc", "or", "sd", "wo"]
    assert sum(g == "L" for g in PRESETS["lang30"].values()) == 8


def test_group_ranks_with_preset():
    cfg = resolve_config(args(), known_langs=["en", "fr", "oc"])
    assert cfg.languages == ["en", "fr", "oc"] and cfg.ranks == [2, 2, 8]
    assert cfg.encoder_index == ["src"] * 9 + ["tgt"] * 3 and cfg.decoder_index == ["tgt"] * 12


def test_per_language_ranks_need_no_groups():
    cfg = resolve_config(args(lslo_ranks="en:2,fr:3,oc:8", lslo_lang_groups=None))
    assert cfg.languages == ["en", "fr", "oc"] and cfg.ranks == [2, 3, 8]


def test_recorded_language_order_is_kept():
    cfg = resolve_config(args(lslo_langs="oc,en,fr", lang_pairs=["en-de"]))
    assert cfg.languages == ["oc", "en", "fr"] and cfg.ranks == [8, 2, 2]


@pytest.mark.parametrize("kw,flag,text", [
    (dict(lslo_ranks="en:2,fr:2,xx:8,oc:8", lslo_lang_groups=None), "--lslo-ranks", "unknown language"),
    (dict(lslo_lang_groups="en:H,fr:H,xx:V,oc:V"), "--lslo-lang-groups", "unknown language"),
    (dict(lslo_lang_groups="en:H,fr:H,oc:V"), "--lslo-ranks", "are not groups"),
    (dict(lslo_ranks="en:2,fr:2", lslo_lang_groups=None), "--lslo-ranks", "have no LSLo rank"),
    (dict(lslo_ranks="en:2,fr:0,oc:1", lslo_lang_groups=None), "--lslo-ranks", ">= 1"),
    (dict(lslo_ranks="H:2,M:2"), "--lslo-ranks", "no rank for group"),
    (dict(lslo_lang_groups=None), "--lslo-ranks", "--lslo-lang-groups is not set"),
    (dict(lslo_encoder_index="src,tgt"), "--lslo-encoder-index", "2 entries for 12 encoder layers"),
    (dict(lslo_decoder_index="src*11,both"), "--lslo-decoder-index", "'src' or 'tgt'"),
    (dict(lslo_modules="q,k,ffn"), "--lslo-modules", "unknown module"),
    (dict(lslo_ranks=None), "--lslo-ranks", "required"),
    (dict(lslo_lang_groups="nonsense"), "--lslo-lang-groups", "neither a preset"),
])
def test_bad_options_name_the_flag(kw, flag, text):
    with pytest.raises(LSLoConfigError) as e:
        resolve_config(args(**kw), known_langs=["en", "fr", "oc", "de"])
    assert flag in str(e.value) and text in str(e.value)


def test_langs_without_rank_is_an_error():
    with pytest.raises(LSLoConfigError, match=r"\['ko'\] of --lang-pairs/--langs have no LSLo rank"):
        resolve_config(args(lslo_ranks="en:2,fr:2,oc:8", lslo_lang_groups=None, langs=["en", "fr", "oc", "ko"]),
                       known_langs=["en", "fr", "oc", "ko"])


def test_index_syntax():
    assert parse_index("src*2,tgt", 3, "encoder") == ["src", "src", "tgt"]
    assert parse_index("tgt", 4, "decoder") == ["tgt"] * 4
    assert default_index("encoder", 2) == ["src", "tgt"]
    assert parse_modules("fc") == ["fc1", "fc2"] and parse_modules("v,q") == ["q", "v"]
