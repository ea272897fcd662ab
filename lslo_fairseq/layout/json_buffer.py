"""A JSON record kept in a state dict: UTF-8 JSON (sorted keys) in a uint8 tensor, so that it is
saved, loaded and moved with the weights. Two records use it: the adapter layout
(:data:`.record.LAYOUT_KEY`) and the frozen-base reference (:data:`.frozen_base.BASE_KEY`).
"""
from __future__ import annotations

import json
from typing import Any

import torch


def encode(record: Any) -> torch.Tensor:
    """``record`` (JSON-able) as a uint8 tensor of its UTF-8 JSON, keys sorted."""
    return torch.tensor(list(json.dumps(record, sort_keys=True).encode("utf-8")), dtype=torch.uint8)


def decode(tensor: torch.Tensor) -> Any:
    """The record :func:`encode` made ``tensor`` from."""
    return json.loads(bytes(tensor.to(torch.uint8).tolist()).decode("utf-8"))
