"""Atomic file writes: a reader (or a crash) never sees half a file."""
import json
import os
import tempfile
from typing import Callable, IO


def _write_atomic(path: str, suffix: str, mode: str, write: Callable[[IO], None]) -> None:
    """``write(f)`` into a temporary file in ``path``'s folder, synced, given the permissions a plain
    ``open()`` would (``mkstemp`` makes 0600), then ``os.replace``-d onto ``path``: the target is
    either the old file or the complete new one."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path: str, obj) -> None:
    """``obj`` as indented JSON at ``path``, atomically."""
    _write_atomic(path, ".json", "w", lambda f: json.dump(obj, f, indent=1))


def torch_save_atomic(path: str, obj) -> None:
    """``torch.save(obj)`` at ``path``, atomically: never a truncated checkpoint."""
    import torch

    _write_atomic(path, ".pt", "wb", lambda f: torch.save(obj, f))
