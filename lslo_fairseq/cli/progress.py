"""A quiet console for long commands: one progress bar per stage, fairseq's logs in files.

* :func:`run_logged` runs a command (``fairseq-train``), writes all its output to a log file and
  moves a bar by the ``num_updates=`` of fairseq's progress lines;
* :func:`logs_to` sends this process's logging (fairseq's, when it runs in-process, e.g.
  ``fairseq_cli.generate``) and Python warnings to a file for the duration of a block;
* :func:`bar` is a ``tqdm`` bar with elapsed time and an estimate of the time left.

With ``verbose`` everything also goes to the console, as fairseq prints it.
"""
from __future__ import annotations

import contextlib
import logging
import re
import subprocess
import sys
from typing import Iterator, List, Optional, Sequence

from ..errors import LSLoError

UPDATES_RE = re.compile(r"num_updates[=: ]+(\d+)")
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar:24}| {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}]"


class CommandFailed(LSLoError):
    """A subprocess (fairseq-train) exited with an error; the message holds its log's tail."""


def bar(desc: str, total: int, unit: str, verbose: bool = False):
    """A progress bar on stderr (disabled with ``verbose``: the full logs are the progress then)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, bar_format=BAR_FORMAT, file=sys.stderr,
                disable=verbose, dynamic_ncols=True, mininterval=0.5)


def run_logged(cmd: Sequence[str], log_path: str, desc: str, total_updates: int,
               verbose: bool = False, env: Optional[dict] = None) -> List[str]:
    """Run ``cmd``, its stdout and stderr into ``log_path`` (and to the console with ``verbose``);
    a bar follows fairseq's ``num_updates``. Returns the output lines. A failure raises
    :class:`CommandFailed` with the log's last lines and its path."""
    lines: List[str] = []
    with open(log_path, "w", encoding="utf-8") as log, bar(desc, total_updates, "updates", verbose) as b:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, encoding="utf-8", errors="replace", env=env, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            lines.append(line)
            if verbose:
                sys.stderr.write(line)
            m = UPDATES_RE.search(line)
            if m:
                b.update(max(0, min(total_updates, int(m.group(1))) - b.n))
        rc = proc.wait()
        if rc == 0:
            b.update(total_updates - b.n)
    if rc != 0:
        tail = "".join(lines[-25:])
        raise CommandFailed(f"{cmd[0]} failed (exit {rc}); full log: {log_path}\n{tail}")
    return lines


@contextlib.contextmanager
def logs_to(log_path: str, verbose: bool = False) -> Iterator[None]:
    """Within the block, this process's log records (INFO and up) and warnings go to ``log_path``;
    the console's handlers are taken off unless ``verbose``. Everything is restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    handler = logging.FileHandler(log_path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)s | %(name)s | %(message)s"))
    if not verbose:
        for h in saved_handlers:
            root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(not verbose)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        handler.close()
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved_handlers:
            root.addHandler(h)
        root.setLevel(saved_level)
