"""Code shared by the test modules: fairseq command lines on data made by ``prepare()``, running
fairseq's CLIs, the standard tiny LSLo run's options, and reading fairseq-train logs.

Test modules import from here (and conftest.py's fixtures), never from each other."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Mapping, Sequence, Union

import lslo_fairseq
from lslo_fairseq.data.commands import fairseq_bin  # noqa: F401  (the plugin's own; tests import it from here)
from lslo_fairseq.shapes import PRENORM_SHARED_ARGS, TINY_SHAPE, shape_args

# Tiny model shape (no --arch: add "--arch transformer" for a plain model, or a plugin arch).
TINY_ARCH_ARGS = [*PRENORM_SHARED_ARGS, *shape_args(**TINY_SHAPE)]

# Optimisation and bookkeeping for a short CPU run (~86 updates for 2 epochs of tiny_data).
TINY_TRAIN_ARGS = [
    "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)",
    "--lr", "0.002", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "20",
    "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
    "--max-tokens", "4096", "--max-epoch", "2",
    "--cpu", "--seed", "1", "--num-workers", "0", "--no-epoch-checkpoints",
    "--log-format", "simple", "--log-interval", "10",
]


def _prepared(data: Union[Mapping, str, os.PathLike]) -> Mapping:
    """A ``prepare()`` dict, or one read from a data directory's ``prepared.json``."""
    if isinstance(data, Mapping):
        return data
    with open(Path(data) / "prepared.json", encoding="utf-8") as f:
        return json.load(f)


def task_args(data: Union[Mapping, str, os.PathLike]) -> list:
    """Data directory plus the M2M-style multilingual task flags for a ``prepare()`` output.

    ``--langs`` fixes the order in which the task appends ``__xx__`` to the dictionary, i.e. the
    language-token ids: every run (train, fine-tune, generate) on one model must pass the same list.
    """
    info = _prepared(data)
    return [
        info["data_dir"],
        "--task", "translation_multi_simple_epoch",
        "--lang-pairs", ",".join(info["lang_pairs"]),
        "--langs", ",".join(info["langs"]),
        "--encoder-langtok", "src", "--decoder-langtok",
        "--fixed-dictionary", info["dict"],
    ]


def fairseq_env(threads: int = 1) -> dict:
    """Environment for a fairseq subprocess; one thread was fastest on the shared 2-core machine."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def run_fairseq(tool: str, args: Sequence[str], log_path: Union[str, os.PathLike], timeout: float = 600):
    """Run a fairseq CLI, log to ``log_path``; on failure raise with the command and the log's tail."""
    cmd = [fairseq_bin(tool), *map(str, args)]
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=fairseq_env(), timeout=timeout)
    _raise_on_failure(cmd, proc.returncode, log_path)
    return cmd


def _raise_on_failure(cmd, returncode, log_path):
    if returncode != 0:
        tail = Path(log_path).read_text(encoding="utf-8", errors="replace")[-4000:]
        raise RuntimeError(f"{' '.join(cmd)}\nexited with {returncode}; log tail:\n{tail}")


def run_fairseq_distributed(tool: str, args: Sequence[str], log_path: Union[str, os.PathLike],
                            nproc: int = 2, timeout: float = 300):
    """Run a fairseq CLI as ``nproc`` data-parallel CPU processes (gloo) under ``torchrun``.

    Each process gets its rank from torchrun's ``$RANK``; ``{RANK}`` in an argument becomes it (e.g.
    a per-rank ``--save-dir``). On timeout the whole process group is killed and
    ``subprocess.TimeoutExpired`` raised, so a hung collective fails a test instead of blocking it.
    Raises like :func:`run_fairseq` on a non-zero exit.
    """
    import signal

    launcher = [fairseq_bin("torchrun"), "--standalone", "--nproc_per_node", str(nproc), "--no-python",
                "bash", "-c", r'exec "$0" "${@//\{RANK\}/$RANK}" --distributed-rank "$RANK"']
    cmd = [*launcher, fairseq_bin(tool), *map(str, args), "--distributed-world-size", str(nproc),
           "--distributed-no-spawn", "--distributed-init-method", "env://", "--distributed-backend", "gloo"]
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=fairseq_env(),
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    _raise_on_failure(cmd, proc.returncode, log_path)
    return cmd


def kill_fairseq_at(tool: str, args: Sequence[str], log_path: Union[str, os.PathLike], pattern: str,
                    timeout: float = 300) -> str:
    """Start a fairseq CLI, poll its log (unbuffered) for the regex ``pattern``, and SIGKILL it
    there; returns the log at the moment of the kill. Raises if it exits or times out first."""
    import re
    import signal
    import time

    cmd = [fairseq_bin(tool), *map(str, args)]
    env = dict(fairseq_env(), PYTHONUNBUFFERED="1")
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                text = Path(log_path).read_text(encoding="utf-8", errors="replace")
                if re.search(pattern, text):
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return text
                if proc.poll() is not None:
                    raise RuntimeError(f"{' '.join(cmd)}\nexited ({proc.returncode}) before the log "
                                       f"showed {pattern!r}; log tail:\n{text[-4000:]}")
                time.sleep(0.01)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    raise subprocess.TimeoutExpired(cmd, timeout)


# ---- LSLo runs through fairseq-train: the standard tiny options ---------------------------------

USER_DIR = os.path.dirname(os.path.abspath(lslo_fairseq.__file__))  # --user-dir of the plugin
LSLO_ARGS = ["--user-dir", USER_DIR, "--arch", "lslo_transformer", *TINY_ARCH_ARGS,
             "--lslo-ranks", "en:2,fr:2,ko:2,oc:4", "--lslo-encoder-index", "src,tgt",
             "--lslo-decoder-index", "tgt,src"]
TRAIN_ARGS = ["--optimizer", "adam", "--lr", "0.003", "--lr-scheduler", "inverse_sqrt",
              "--warmup-updates", "5", "--criterion", "label_smoothed_cross_entropy",
              "--label-smoothing", "0.2", "--max-tokens", "2048", "--cpu", "--seed", "3",
              "--num-workers", "0", "--no-epoch-checkpoints", "--log-format", "simple",
              "--log-interval", "1", "--required-batch-size-multiple", "1"]


def lslo_task_args(data) -> list:
    """:func:`task_args` with the plugin's task ``translation_multi_simple_epoch_lslo``."""
    args = task_args(data)
    args[args.index("--task") + 1] = "translation_multi_simple_epoch_lslo"
    return args


def train_lslo(data, save_dir, extra, log) -> Path:
    """fairseq-train an LSLo model with LSLO_ARGS and TRAIN_ARGS (``extra`` last); returns ``save_dir``."""
    cmd = [*lslo_task_args(data), *LSLO_ARGS, *TRAIN_ARGS, "--save-dir", str(save_dir), *extra]
    run_fairseq("fairseq-train", cmd, log)
    return Path(save_dir)


# ---- LSLo runs with H/M/V language groups, GPS pruning, and reading their logs ------------------

GROUPS = ["--lslo-lang-groups", "en:H,fr:H,ko:M,oc:V", "--lslo-ranks", "H:2,M:2,V:4"]
GPS = ["--lslo-prune", "gps", "--lslo-prune-ratio", "0.8", "--lslo-prune-unit", "update",
       "--lslo-prune-start", "2", "--lslo-prune-duration", "6"]


def grouped_lslo_args(extra) -> list:
    """LSLO_ARGS with the per-language ranks replaced by GROUPS, then ``extra``."""
    args = list(LSLO_ARGS)
    i = args.index("--lslo-ranks")
    del args[i:i + 2]
    return [*args, *GROUPS, *extra]


def grouped_train_args(data, save_dir, extra) -> list:
    """fairseq-train arguments of an LSLo run with H/M/V groups on ``data`` (``extra`` last)."""
    return [*lslo_task_args(data), *grouped_lslo_args(extra), *TRAIN_ARGS, "--save-dir", str(save_dir)]


def train_grouped(data, save_dir, extra, log) -> str:
    """fairseq-train with :func:`grouped_train_args`; returns the log's text."""
    run_fairseq("fairseq-train", grouped_train_args(data, save_dir, extra), log)
    return Path(log).read_text()


def losses(log: str) -> dict:
    """update number -> training loss, from fairseq's train_inner lines (--log-interval 1)."""
    out = {}
    for m in re.finditer(r"train_inner \|.*?loss=([0-9.]+),.*?num_updates=(\d+)", log):
        out[int(m.group(2))] = m.group(1)
    return out


def pruning_lines(log: str) -> dict:
    """update -> the controller's log line after 'ratio' (ratio, newly pruned, sparsity per group)."""
    return dict((int(u), rest) for u, rest in re.findall(r"pruning, update (\d+): (ratio .*)", log))


# ---- fairseq-generate output ---------------------------------------------------------------------

def read_hypotheses(path):
    """{sentence id: {score, tokens, positional}} from H- and P- lines."""
    hyps = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        tag, _, rest = line.partition("\t")
        if tag.startswith("H-"):
            score, _, tokens = rest.partition("\t")
            hyps.setdefault(int(tag[2:]), {}).update(score=float(score), tokens=tokens)
        elif tag.startswith("P-"):
            hyps.setdefault(int(tag[2:]), {})["positional"] = [float(x) for x in rest.split()]
    return hyps


def assert_same_hypotheses(a, b, tol=1.5e-4):
    """Same tokens; scores equal up to one unit of fairseq's 4 printed decimals (float rounding of
    W + BA against W x + B A x can tip the last digit)."""
    assert sorted(a) == sorted(b) and len(a) > 0
    for i in a:
        assert a[i]["tokens"] == b[i]["tokens"], f"sentence {i}"
        assert abs(a[i]["score"] - b[i]["score"]) < tol, f"sentence {i}"
        assert len(a[i]["positional"]) == len(b[i]["positional"])
        assert max(abs(x - y) for x, y in zip(a[i]["positional"], b[i]["positional"])) < tol, f"sentence {i}"


def write_generate(path, hyps, refs):
    """A fairseq-generate output file at ``path`` with these hypotheses and references (S/T/H/D/P lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (h, r) in enumerate(zip(hyps, refs)):
        lines += [f"S-{i}\tsource {i}", f"T-{i}\t{r}", f"H-{i}\t-0.5\t{h}", f"D-{i}\t-0.5\t{h}", f"P-{i}\t-0.5"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
