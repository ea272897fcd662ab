"""Run a command and record what it cost: ``python3 measure.py --dir D --label L -- CMD ARGS...``.

Writes ``D/<step>.<label>.<rank>.<pid>.json``: wall seconds, the peak RSS of CMD's process tree
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``: the kernel's high-water mark of the largest process among
CMD and its waited-for descendants), CPU seconds, and where ``nvidia-smi`` exists the peak rise of each
GPU's used memory over its value at the start (sampled every 0.5 s; it includes CUDA contexts and
the caching allocator's reserve). ``<step>`` is ``$REHEARSE_STEP`` (the row), ``<rank>`` torchrun's
``$RANK``. Nothing is printed: CMD's output (a row's ``spbleu.txt``) is unchanged. Exit status: CMD's.

Standard library only, and run by path rather than as ``lslo_fairseq.stand_in.measure``: importing
the package imports fairseq (seconds and hundreds of MB per measured command). ``lslo-run --dir D``
prints the save directory of the first successful LSLo training measured in ``D``.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

GPU_SAMPLE_S = 0.5


def _files():
    """``lslo_fairseq/files.py`` (the atomic writers), loaded by path: see the module docstring."""
    spec = importlib.util.spec_from_file_location("_lslo_files", Path(__file__).resolve().parents[1] / "files.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gpu_used_mib() -> Optional[Dict[str, float]]:
    """``{gpu index: MiB used}`` from ``nvidia-smi``; None without one."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=index,memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    used = {}
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2:
            try:
                used[parts[0]] = float(parts[1])
            except ValueError:
                pass
    return used or None


class GpuSampler:
    """Peak rise of each GPU's used memory (``nvidia-smi``) over its value when sampling began."""

    def __init__(self, interval: float = GPU_SAMPLE_S):
        self.base = gpu_used_mib()
        self.peak = dict(self.base or {})
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True) if self.base else None

    def _run(self):
        while not self._stop.wait(self.interval):
            for gpu, mib in (gpu_used_mib() or {}).items():
                self.peak[gpu] = max(self.peak.get(gpu, 0.0), mib)

    def __enter__(self):
        if self._thread:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join()

    def rise_mib(self) -> Optional[Dict[str, float]]:
        if not self.base:
            return None
        return {gpu: round(self.peak[gpu] - self.base.get(gpu, 0.0), 1) for gpu in self.peak}


def maxrss_bytes(ru) -> int:
    return ru.ru_maxrss if sys.platform == "darwin" else ru.ru_maxrss * 1024  # bytes there, KiB on Linux


def measure(directory: Path, label: str, cmd: Sequence[str]) -> int:
    """Run ``cmd``; write its measurements to ``directory``; return its exit status (127: not found)."""
    step = os.environ.get("REHEARSE_STEP", "step")
    rank = os.environ.get("RANK", "0")
    start = time.perf_counter()
    with GpuSampler() as gpu:
        try:
            proc = subprocess.Popen(list(cmd))
        except OSError as e:
            print(f"measure.py: cannot run {cmd[0]}: {e}", file=sys.stderr)
            return 127
        try:
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            rc = proc.wait()
    wall = time.perf_counter() - start
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    record = dict(step=step, label=label, rank=int(rank) if rank.isdigit() else rank, argv=list(cmd),
                  cwd=os.getcwd(), returncode=rc, wall_s=round(wall, 3), peak_rss_bytes=maxrss_bytes(ru),
                  cpu_user_s=round(ru.ru_utime, 2), cpu_sys_s=round(ru.ru_stime, 2),
                  gpu_used_rise_mib=gpu.rise_mib(), omp_num_threads=os.environ.get("OMP_NUM_THREADS"))
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", step)
    _files().write_json_atomic(str(directory / f"{safe}.{label}.{rank}.{os.getpid()}.json"), record)
    return rc


def read_measures(directory: Path) -> List[dict]:
    """Every measurement in ``directory``, oldest first."""
    out = []
    for path in sorted(Path(directory).glob("*.json"), key=lambda p: p.stat().st_mtime):
        with open(path, encoding="utf-8") as f:
            out.append(json.load(f))
    return out


def option(argv: Sequence[str], flag: str) -> Optional[str]:
    """The value after the last ``flag`` in ``argv`` (None if absent)."""
    value = None
    for i, arg in enumerate(argv[:-1]):
        if arg == flag:
            value = argv[i + 1]
    return value


def lslo_run(directory: Path) -> Optional[str]:
    """The save directory of the first successful measured LSLo training (``--arch lslo_*``)."""
    for m in read_measures(directory):
        if m["label"] == "train" and m["returncode"] == 0 and (option(m["argv"], "--arch") or "").startswith("lslo_"):
            return option(m["argv"], "--save-dir")
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: measure.py --dir D --label L -- CMD ARGS... | measure.py lslo-run --dir D"
    if argv[:1] == ["lslo-run"]:
        directory = option(argv, "--dir")
        if not directory or not Path(directory).is_dir():
            print(f"measure.py lslo-run: --dir {directory}: not a directory of measurements\n{usage}", file=sys.stderr)
            return 2
        found = lslo_run(Path(directory))
        if found is None:
            print(f"measure.py lslo-run: {directory} holds no successful LSLo training", file=sys.stderr)
            return 1
        print(found)
        return 0
    if "--" not in argv:
        print(f"measure.py: no command after --\n{usage}", file=sys.stderr)
        return 2
    cut = argv.index("--")
    head, cmd = argv[:cut], argv[cut + 1:]
    directory, label = option(head, "--dir"), option(head, "--label")
    if not directory or not label or not cmd:
        print(f"measure.py: --dir, --label and a command are required\n{usage}", file=sys.stderr)
        return 2
    return measure(Path(directory), label, cmd)


if __name__ == "__main__":
    sys.exit(main())
