#!/usr/bin/env bash
# Table 1, LSLo 2;2;8+WL+GPS(0.1): H and M B matrices pruned to 0.1 from epoch 2 over 8 epochs (eq. 4).
. "$(dirname "$0")/../lib.sh"
lslo_row table1 "2;2;8+WL+GPS(0.1)" --lslo-ranks H:2,M:2,V:8 "${WL[@]}" $(gps 0.1)
