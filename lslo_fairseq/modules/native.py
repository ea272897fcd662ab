"""The C++ part of the ``grouped`` routing kernel (``csrc/grouped_routing.cpp``): the per-sentence
products run over the sentences on ATen's intra-op threads instead of in one Python loop on one core.

Built on first use with ``torch.utils.cpp_extension`` (needs a C++ compiler; ninja comes with the
package; 10 s once on 2 cores), cached under ``TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions``)
in a folder per Python and torch version, rebuilt when the source changes, and loaded as
``torch.ops.lslo_grouped_routing``. Where it cannot be built the kernel keeps its Python loop (the
same products on the same views, so the same results up to rounding, on one core) and says so once, with the
reason. ``LSLO_NATIVE=0`` chooses the Python loop without trying.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
import warnings
from typing import Iterator, Optional

import torch

logger = logging.getLogger(__name__)

NAME = "lslo_grouped_routing"  # the TORCH_LIBRARY namespace of csrc/grouped_routing.cpp
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc", "grouped_routing.cpp")
ENV = "LSLO_NATIVE"

_state = {"ops": None, "tried": False, "off": 0}


def enabled() -> bool:
    """False when ``LSLO_NATIVE`` is 0/false/no/off, or inside :func:`python_loop`."""
    return not _state["off"] and os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def python_loop() -> Iterator[None]:
    """Run the ``grouped`` kernel's Python loop inside this block (the reference the C++ loop is
    tested against, and a benchmark variant)."""
    _state["off"] += 1
    try:
        yield
    finally:
        _state["off"] -= 1


def grouped_ops() -> Optional[object]:
    """``torch.ops.lslo_grouped_routing`` (``forward``, ``backward``), built and loaded once per
    process; None when disabled or when it could not be built (warned once, with the reason)."""
    if not enabled():
        return None
    if not _state["tried"]:
        _state["tried"] = True
        try:
            _state["ops"] = _load()
        except Exception as err:  # no compiler, a failed build: the Python loop still works
            reason = (str(err).strip().splitlines() or [""])[-1]
            warnings.warn(f"lslo: the C++ grouped routing kernel could not be built ({type(err).__name__}: "
                          f"{reason}); the grouped kernel runs its Python loop on one core. A C++ compiler "
                          f"(g++ or clang++) builds it; set {ENV}=0 to use the loop without trying.",
                          RuntimeWarning, stacklevel=3)
    return _state["ops"]


def build_directory() -> str:
    """The extension's build folder under ``TORCH_EXTENSIONS_DIR`` (else torch's default root): one
    per Python and torch version (its local tag names the CUDA or CPU build), since an extension
    built against other headers would not load."""
    from torch.utils import cpp_extension

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()
    version = re.sub(r"[^0-9A-Za-z_.]", "_", torch.__version__)
    return os.path.join(root, f"{NAME}-py{sys.version_info.major}{sys.version_info.minor}-torch{version}")


def _load():
    namespace = getattr(torch.ops, NAME)
    if not hasattr(namespace, "forward"):  # not yet loaded into this process
        from torch.utils import cpp_extension  # imports setuptools: only when building

        if shutil.which("ninja") is None:  # the pip package's binary, when its bin folder is not on PATH
            import ninja

            os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
        folder = build_directory()
        os.makedirs(folder, exist_ok=True)
        logger.info("lslo: building the C++ grouped routing kernel in %s (once per torch version)", folder)
        # -fopenmp: at::parallel_for is inline and runs in parallel only when compiled with OpenMP;
        # the extension then uses the libgomp that torch has already loaded
        cpp_extension.load(NAME, [SOURCE], extra_cflags=["-O2", "-fopenmp"], extra_ldflags=["-fopenmp"],
                           build_directory=folder, is_python_module=False, verbose=False)
    return namespace
