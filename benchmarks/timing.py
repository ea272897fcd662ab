"""Shared benchmark machinery: common flags, interleaved timing, medians, machine line, tables and
peak-memory measurement in a fresh process.

Honesty rules (the machine is shared): every variant is timed round-robin in each repeat (the
starting variant rotates, so none always runs first), the figure reported is the median over
repeats, ratios are medians of per-repeat ratios taken within the same round, and the load average
and thread count are printed with every table.

Timing: ``time.perf_counter`` around the call on CPU; CUDA events (synchronised) on ``cuda``.
Peak memory: on CPU, ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the process's high-water mark)
of a worker process minus its resident set size just before the measured configuration is built
(the interpreter, torch and fairseq are loaded then), each configuration in its own process; on
CUDA, ``torch.cuda.max_memory_allocated``.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch


def add_common_args(parser: argparse.ArgumentParser, repeats: int = 7, warmup: int = 2) -> None:
    g = parser.add_argument_group("timing")
    g.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to run (default cpu)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: the number of cores, os.cpu_count())")
    g.add_argument("--repeats", type=int, default=repeats, help=f"timed rounds per variant (default {repeats})")
    g.add_argument("--warmup", type=int, default=warmup, help=f"untimed rounds first (default {warmup})")
    g.add_argument("--amp", action="store_true",
                   help="run under torch.autocast (fp16 on cuda, bf16 on cpu); adapters stay fp32")
    g.add_argument("--quick", action="store_true", help="tiny sizes and 1 repeat: checks that the script runs")
    g.add_argument("--json", default=None, metavar="FILE", help="also write the results to FILE as JSON")


def setup(args) -> torch.device:
    """Apply ``--threads`` and check ``--device``; returns the device."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available to this torch build")
    if args.threads is not None and args.threads < 1:
        raise SystemExit(f"--threads: must be >= 1, got {args.threads}")
    args.threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(args.threads)
    if args.quick:
        args.repeats, args.warmup = 1, 1
    if args.repeats < 1 or args.warmup < 0:
        raise SystemExit("--repeats must be >= 1 and --warmup >= 0")
    return torch.device(args.device)


def autocast(device: torch.device, amp: bool):
    """``torch.autocast`` for ``--amp`` (fp16 on cuda, bf16 on cpu), else a no-op context."""
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes (CUDA events on cuda)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1000.0
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(variants: Dict[str, Callable[[], object]], repeats: int, warmup: int,
                device: torch.device, prepare: Optional[Dict[str, Callable[[], object]]] = None
                ) -> Dict[str, List[float]]:
    """Time every variant once per round, round-robin with a rotating start; ``warmup`` untimed
    rounds first; ``prepare[name]`` (untimed) runs before each call of ``name``. Returns the
    per-round seconds of each variant (same round order in every list)."""
    names = list(variants)
    prepare = prepare or {}
    for _ in range(warmup):
        for name in names:
            prepare.get(name, _nothing)()
            variants[name]()
    times: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            prepare.get(name, _nothing)()
            times[name].append(time_call(variants[name], device))
    return times


def _nothing():
    return None


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ratio(times: Dict[str, List[float]], num: str, den: str) -> float:
    """Median over rounds of time[num] / time[den] measured in the same round."""
    return median([a / b for a, b in zip(times[num], times[den])])


def loadavg() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def machine_line(args) -> str:
    """Date, CPU/GPU, cores, torch version and threads: printed above every table."""
    if args.device == "cuda":
        what = torch.cuda.get_device_name(0)
    else:
        what = platform.processor() or platform.machine()
    return (f"{datetime.datetime.now().isoformat(timespec='seconds')} | {args.device} ({what}), "
            f"nproc={os.cpu_count()}, torch {torch.__version__}, torch.set_num_threads({args.threads})"
            f"{', amp' if args.amp else ''} | {loadavg()}")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain markdown table (it pastes into RESULTS.md as is)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(r) for r in cells[1:]])


def _fmt(c) -> str:
    if isinstance(c, float):
        return f"{c:.3g}" if abs(c) < 100 else f"{c:.0f}"
    return str(c)


def write_json(path: Optional[str], payload: dict) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=1)


# -- peak memory in a fresh process --------------------------------------------------------------
def max_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_bytes() -> int:
    """Current resident set size of this process (``VmRSS`` of /proc/self/status; Linux)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


WORKER_TAG = "BENCH_RESULT "


def emit(result) -> None:
    """What a worker process hands back (one tagged JSON line on stdout)."""
    print(WORKER_TAG + json.dumps(result), flush=True)


def run_worker(argv: Sequence[str], threads: int, timeout: float = 1800):
    """Run ``python argv...`` in a fresh process and return what it ``emit``-ted."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith(WORKER_TAG):
            return json.loads(line[len(WORKER_TAG):])
    raise RuntimeError(f"worker {' '.join(argv)} exited with {proc.returncode} and no result;\n"
                       f"stderr tail:\n{proc.stderr[-3000:]}")
