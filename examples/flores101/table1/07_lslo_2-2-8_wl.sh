#!/usr/bin/env bash
# Table 1, LSLo 2;2;8+WL: rank 2 for high and medium, 8 for very-low-resource languages.
. "$(dirname "$0")/../lib.sh"
lslo_row table1 "2;2;8+WL" --lslo-ranks H:2,M:2,V:8 "${WL[@]}"
