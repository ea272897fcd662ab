#!/usr/bin/env bash
# Table 2, LSLo 2;2;8;8+WL+GPS(0.9): H and M pruned.
SUBSET=lang30
. "$(dirname "$0")/../lib.sh"
lslo_row table2 "2;2;8;8+WL+GPS(0.9)" --lslo-ranks H:2,M:2,L:8,V:8 "${WL[@]}" $(gps 0.9)
