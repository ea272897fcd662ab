"""The one way every ``lslo-*`` console script reports bad input.

``run(prog, body)`` calls ``body()``; an :class:`~lslo_fairseq.errors.LSLoError` becomes
``prog: error: MESSAGE`` on stderr and exit status 2 (argparse's convention for usage errors).
Nothing else is caught: a bug shows its traceback instead of looking like bad input.
"""
from __future__ import annotations

import sys
from typing import Callable, Optional

from .errors import LSLoError


def run(prog: str, body: Callable[[], Optional[int]]) -> int:
    """``body()``'s exit status (None counts as 0), or 2 after printing an LSLoError."""
    try:
        status = body()
    except LSLoError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    return 0 if status is None else status
