"""The paper's languages and resource groups: the table order of the groups (H, M, L, V) and their
names, the ``lang12``/``lang30`` presets of ``--lslo-lang-groups`` (tables 5 and 6) and each
language's bitext with English.

Plain Python (no fairseq, no torch); :func:`lslo_fairseq.config.parse_lang_groups` reads the
``--lslo-lang-groups`` flag.
"""
from typing import Dict, Iterable, List, Optional

# Resource groups in the order the paper's tables use them.
GROUP_ORDER = ("H", "M", "L", "V")
GROUP_NAMES = {"H": "High", "M": "Medium", "L": "Low", "V": "Very low"}


def order_groups(groups: Iterable[str]) -> List[str]:
    """Group names in table order: those of ``GROUP_ORDER`` (H, M, L, V) first, others sorted."""
    groups = set(groups)
    return [g for g in GROUP_ORDER if g in groups] + sorted(groups - set(GROUP_ORDER))


# Paper, table 5 (lang12) and table 6 (lang30): language -> (group, bitext with English).
# Bitext sizes in sentence pairs as printed (M = 1e6, K = 1e3); English has none ("-").
_LANG30_TABLE = [
    ("en", "H", None), ("fr", "H", 289e6), ("de", "H", 216e6), ("it", "H", 116e6),
    ("pt", "H", 137e6), ("ru", "H", 127e6), ("es", "H", 315e6),
    ("ar", "M", 25.2e6), ("zh", "M", 37.9e6), ("nl", "M", 82.4e6), ("he", "M", 6.64e6),
    ("hi", "M", 3.3e6), ("ja", "M", 23.2e6), ("ko", "M", 7.46e6), ("mt", "M", 5.82e6),
    ("no", "M", 10.9e6),
    ("af", "L", 570e3), ("am", "L", 339e3), ("hy", "L", 977e3), ("ha", "L", 335e3),
    ("ny", "L", 932e3), ("sn", "L", 877e3), ("yo", "L", 171e3), ("zu", "L", 123e3),
    ("ff", "V", 71e3), ("kam", "V", 50e3), ("oc", "V", 5.11e3), ("or", "V", 5e3),
    ("sd", "V", 21.8e3), ("wo", "V", 86.9e3),
]
_LANG12 = ["en", "fr", "de", "it", "zh", "nl", "ja", "ko", "oc", "or", "sd", "wo"]

PRESETS: Dict[str, Dict[str, str]] = {
    "lang30": {lang: group for lang, group, _ in _LANG30_TABLE},
    "lang12": {lang: group for lang, group, _ in _LANG30_TABLE if lang in _LANG12},
}
BITEXT_WITH_EN: Dict[str, Optional[float]] = {lang: size for lang, _, size in _LANG30_TABLE}
