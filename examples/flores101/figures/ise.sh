#!/usr/bin/env bash
# Figures 2 and 5, tables 9-10: intrinsic subspace estimation (section 4.2), rank 8, per-layer pools of all languages pruned to 0.7 (appendix B: E=2, k=8; the plugin's defaults for --lslo-prune ise).
. "$(dirname "$0")/../lib.sh"
dir="$RUNS/ise"
lslo_train "$dir" --lslo-ranks H:8,M:8,V:8 "${WL[@]}" --lslo-prune ise
plot "$dir" ise "$dir/pruning_counts.json" --lang-groups "$LANG_GROUPS"
