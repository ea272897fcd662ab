"""lslo-fairseq: Language-Specific LoRA for fairseq (``--user-dir lslo_fairseq``).

Importing the package registers the ``lslo_transformer`` model (architectures ``lslo_m2m100_615m``
and ``lslo_transformer_tiny``) and the ``translation_multi_simple_epoch_lslo`` task.

Checkpoint loading policy: torch >= 2.6 loads with ``weights_only=True``; fairseq checkpoints hold
their training options as an ``argparse.Namespace``, the one class allowed
(:func:`~lslo_fairseq.layout.loading.allow_fairseq_pickles`). fairseq's own loaders
(``--restore-file``, ``--finetune-from-model``, ``fairseq-generate --path``) run after importing
this package through ``--user-dir``, so the call is made here, where the plugin registers itself.
"""
__version__ = "0.2.0"  # setup.py reads it; bump with CHANGELOG.md on a user-visible change

from .layout.loading import allow_fairseq_pickles

allow_fairseq_pickles()

import logging as _logging

# Importing fairseq runs logging.basicConfig in some of its modules (one at level DEBUG), which would
# print every library's debug output on our CLIs' consoles. Where nothing has configured logging yet,
# a placeholder handler makes those calls no-ops; fairseq's own CLIs configure logging first.
_root = _logging.getLogger()
_placeholder = None if _root.handlers else _logging.NullHandler()
if _placeholder is not None:
    _root.addHandler(_placeholder)
try:
    import fairseq  # noqa: F401
except ImportError:  # the CLIs that need no fairseq (lslo-score) still work
    fairseq = None
finally:
    if _placeholder is not None:
        _root.removeHandler(_placeholder)

if fairseq is not None:
    from . import models, tasks  # noqa: F401,E402  (registration side effects)
