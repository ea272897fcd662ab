"""Writing files so that a reader (or a crash) never sees half of one, and the one downloader.

Every file the plugin writes (run files, score tables, checkpoints, prepared-data summaries) goes
through :func:`_write_atomic`: a temporary file in the target's folder, synced, then
``os.replace``-d onto the target, which is then either the old file or the complete new one.
"""
import csv
import io
import json
import os
import tempfile
from typing import IO, Callable, Iterable, Sequence


def _write_atomic(path: str, suffix: str, mode: str, write: Callable[[IO], None]) -> None:
    """``write(f)`` into a temporary file in ``path``'s folder, synced, given the permissions a plain
    ``open()`` would (``mkstemp`` makes 0600), then ``os.replace``-d onto ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8", "newline": ""} if "b" not in mode else {})) as f:
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


def write_text_atomic(path: str, text: str) -> None:
    """``text`` (UTF-8, newlines as given) at ``path``, atomically."""
    _write_atomic(path, ".txt", "w", lambda f: f.write(text))


def write_json_atomic(path: str, obj, indent: int = 1) -> None:
    """``obj`` as indented JSON (non-ASCII kept, final newline) at ``path``, atomically."""
    write_text_atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def write_csv_atomic(path: str, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """A CSV table (``csv`` module defaults) at ``path``, atomically."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(list(header))
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def torch_save_atomic(path: str, obj) -> None:
    """``torch.save(obj)`` at ``path``, atomically: never a truncated checkpoint."""
    import torch

    _write_atomic(path, ".pt", "wb", lambda f: torch.save(obj, f))


def copy_file_atomic(src: str, path: str) -> None:
    """A copy of the file ``src`` at ``path``, atomically."""
    import shutil

    with open(src, "rb") as r:
        _write_atomic(path, ".part", "wb", lambda f: shutil.copyfileobj(r, f))


def publish_files(folder: str, out: str) -> list:
    """Copy every file of ``folder`` into ``out`` (created if missing), each atomically; returns
    their names.

    For writers that save plain files (HF's and PEFT's ``save_pretrained``, CTranslate2's converter):
    they write into a temporary folder and each file is published from there, so a reader never sees
    half a file. ``out`` itself is not swapped by a rename: it may already exist and hold more than one
    export writes (the user's ``--out``; ``lslo-export peft``'s one folder per direction beside
    ``lslo_export.json``), and ``os.replace`` cannot put a folder onto a non-empty one."""
    os.makedirs(out, exist_ok=True)
    names = sorted(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n)))
    for name in names:
        copy_file_atomic(os.path.join(folder, name), os.path.join(out, name))
    return names


def download_atomic(url: str, path: str, timeout: float = 30.0) -> None:
    """Fetch ``url`` into ``path`` atomically (nothing is left behind on failure). Raises what
    ``urllib`` raises (``URLError``, ``OSError``): callers turn it into a message that says what to
    do offline."""
    import shutil
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as r:
        _write_atomic(path, ".part", "wb", lambda f: shutil.copyfileobj(r, f))


def file_digest(path, algorithm: str) -> str:
    """Hex digest (``hashlib`` algorithm name, e.g. ``sha256``, ``md5``) of a file's bytes, read in 1 MiB blocks."""
    import hashlib

    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
