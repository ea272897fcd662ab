"""Shared fixtures: a tiny prepared data set, a plain fairseq transformer trained on it and one
standard LSLo run fine-tuned from that (session-wide), and the routing-kernel parametrization."""
import os
import time
from pathlib import Path

import pytest
import torch

from helpers import TINY_ARCH_ARGS, TINY_TRAIN_ARGS, run_fairseq, task_args, train_lslo
from lslo_fairseq.data.multiparallel import LIBREOFFICE_TSV, prepare

TINY_LANGS = ("en", "fr", "ko", "oc")

if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: share the cores among the workers
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))

# Fixtures that train with fairseq-train. A test that uses one, directly or through another fixture,
# trains (or waits for the run): it must be marked slow, so that -m "not slow" stays a unit-test run.
TRAINING_FIXTURES = {"tiny_base_checkpoint", "lslo_run"}


def pytest_collection_modifyitems(config, items):
    unmarked = [item.nodeid for item in items
                if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("slow")]
    if unmarked:
        raise pytest.UsageError("tests using a fixture that trains (" + ", ".join(sorted(TRAINING_FIXTURES))
                                + ") must be marked slow: " + ", ".join(unmarked))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """``prepare()`` dict for en/fr/ko/oc of the shipped table: 300 train, 30 valid, 30 test, vocab 800."""
    out = tmp_path_factory.mktemp("tiny_data")
    return prepare(
        LIBREOFFICE_TSV, TINY_LANGS, out, n_valid=30, n_test=30, vocab_size=800, seed=1,
        max_train_rows=300,
    )


@pytest.fixture(scope="session")
def tiny_base_checkpoint(tiny_data, tmp_path_factory):
    """``checkpoint_last.pt`` (a Path) of a stock ``--arch transformer`` trained 2 epochs on tiny_data.

    Stand-in for a released M2M ``model.pt``; ``train.log`` and ``train.cmd`` sit beside it.
    """
    save_dir = tmp_path_factory.mktemp("tiny_base")
    args = [*task_args(tiny_data), "--arch", "transformer", *TINY_ARCH_ARGS, *TINY_TRAIN_ARGS,
            "--save-dir", str(save_dir)]
    start = time.perf_counter()
    cmd = run_fairseq("fairseq-train", args, save_dir / "train.log")
    (save_dir / "train.cmd").write_text(
        " ".join(cmd) + f"\n# {time.perf_counter() - start:.1f} s\n", encoding="utf-8"
    )
    ckpt = Path(save_dir) / "checkpoint_last.pt"
    if not ckpt.is_file():
        raise RuntimeError(f"fairseq-train wrote no {ckpt}; see {save_dir / 'train.log'}")
    return ckpt


@pytest.fixture(scope="session")
def lslo_run(tiny_data, tiny_base_checkpoint, tmp_path_factory):
    """The session's one standard LSLo run (LSLO_ARGS + TRAIN_ARGS of helpers): fine-tuned from
    tiny_base_checkpoint for 16 updates, saving at 8 and 16 (``checkpoint_1_8.pt``,
    ``checkpoint_1_16.pt``, ``checkpoint_last.pt``).

    dict(root, save (the --save-dir), ckpt (its checkpoint_last.pt), mid (the checkpoint of update 8),
    log (train.log's text)). For tests that need any trained LSLo checkpoint: read, do not write, in
    ``save`` (copy the files to change them); runs whose options matter train their own.
    """
    root = tmp_path_factory.mktemp("lslo_run")
    save = train_lslo(tiny_data, root / "ckpt",
                      ["--finetune-from-model", str(tiny_base_checkpoint), "--max-update", "16",
                       "--save-interval-updates", "8", "--keep-interval-updates", "5"],
                      root / "train.log")
    mid = save / "checkpoint_1_8.pt"
    if not mid.exists():
        mid = next(save.glob("checkpoint_*_8.pt"))
    return dict(root=root, save=save, ckpt=save / "checkpoint_last.pt", mid=mid,
                log=(root / "train.log").read_text())


@pytest.fixture(params=["gather", "dense", "grouped"])
def kernel(request, monkeypatch):
    """The routing kernel forced on every LSLoLinear (``gather``, ``dense`` or ``grouped``). Not autouse: a
    module whose every test should run with every kernel says ``pytestmark = pytest.mark.usefixtures("kernel")``."""
    from lslo_fairseq.modules.lslo_linear import LSLoLinear

    monkeypatch.setattr(LSLoLinear, "kernel_choice", request.param)
    return request.param
