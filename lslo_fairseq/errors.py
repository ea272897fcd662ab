"""One base for every error a user can cause: bad options, files or data.

Each part of the plugin raises its own subclass (:class:`~lslo_fairseq.config.LSLoConfigError`,
``CheckpointError``, ``ScoringError``, ...), and every message names the flag or file at fault. The
console scripts catch exactly :class:`LSLoError` (:func:`lslo_fairseq.cli.runner.run`): anything
else is a bug and keeps its traceback. ``LSLoError`` is a ``ValueError``, so code that caught
``ValueError`` before keeps working.
"""


class LSLoError(ValueError):
    """Bad input (an option, a file, data); the message names what is wrong and what was expected."""


class CheckpointError(LSLoError):
    """A file that is not what the command expects (missing, truncated, foreign, wrong kind)."""
