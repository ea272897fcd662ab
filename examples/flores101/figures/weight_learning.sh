#!/usr/bin/env bash
# Figure 1: weight learning (section 4.1, eq. 5), rank 8 for every language on every module, source- and target-indexed LSLo mixed per layer.
VALIDATE=1  # weight_learning.json is written at each validation
. "$(dirname "$0")/../lib.sh"
dir="$RUNS/weight-learning"
lslo_train "$dir" --lslo-ranks H:8,M:8,V:8 --lslo-weight-learning
plot "$dir" weights "$dir/weight_learning.json"
