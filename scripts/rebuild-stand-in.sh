#!/usr/bin/env bash
# Rebuild lslo-demo's stand-in pretrained model from ../shared/data (same data, seed and settings),
# at the lowest CPU priority, resumable: rerun the same command after an interruption.
# Options (see --help): --work DIR (default runs/stand-in), --out DIR, --max-update N, --quick.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
exec nice -n 19 "$PY" -m lslo_fairseq.stand_in.build "$@"
