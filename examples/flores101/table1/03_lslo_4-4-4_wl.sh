#!/usr/bin/env bash
# Table 1, LSLo 4;4;4+WL: rank 4 for every language.
. "$(dirname "$0")/../lib.sh"
lslo_row table1 "4;4;4+WL" --lslo-ranks H:4,M:4,V:4 "${WL[@]}"
