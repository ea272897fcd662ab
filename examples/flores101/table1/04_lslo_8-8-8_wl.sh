#!/usr/bin/env bash
# Table 1, LSLo 8;8;8+WL.
. "$(dirname "$0")/../lib.sh"
lslo_row table1 "8;8;8+WL" --lslo-ranks H:8,M:8,V:8 "${WL[@]}"
