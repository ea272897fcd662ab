#!/usr/bin/env bash
# Figures 4 and 6: language-specific pruning (section 7.3), rank 8, per-language pools pruned to 0.7 (E=2, k=8; the plugin's defaults for --lslo-prune lsp).
. "$(dirname "$0")/../lib.sh"
dir="$RUNS/lsp"
lslo_train "$dir" --lslo-ranks H:8,M:8,V:8 "${WL[@]}" --lslo-prune lsp
plot "$dir" lsp "$dir/pruning_counts.json" --lang-groups "$LANG_GROUPS"
