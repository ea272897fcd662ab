"""Checkpoints written by other fairseq versions (the M2M-124 release predates torch's weights_only
default): numpy scalars load; any other refused object is named, with what to do."""
import datetime

import numpy as np
import pytest
import torch

from lslo_fairseq.errors import CheckpointError
from lslo_fairseq.layout.loading import load


def test_numpy_scalars_of_older_fairseq_load(tmp_path):
    torch.save({"model": {}, "extra_state": {"best_loss": np.float64(1.5), "n": np.int64(3)}}, tmp_path / "a.pt")
    state = load(str(tmp_path / "a.pt"), "--path")
    assert state["extra_state"]["best_loss"] == 1.5 and state["extra_state"]["n"] == 3


def test_other_objects_are_named_with_the_fix(tmp_path):
    torch.save({"model": {}, "when": datetime.date(2020, 1, 1)}, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match=r"--path: .*b.pt holds Python objects .*datetime.date"
                                              r".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1"):
        load(str(tmp_path / "b.pt"), "--path")
