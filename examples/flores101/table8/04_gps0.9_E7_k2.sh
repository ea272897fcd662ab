#!/usr/bin/env bash
# Table 8, 2;2;8+WL+GPS(0.9) pruned from epoch 7 over 2 epochs (T=15); E=2,k=8 is table1/12.
. "$(dirname "$0")/../lib.sh"
lslo_row table8 "E=7,k=2" --lslo-ranks H:2,M:2,V:8 "${WL[@]}" $(gps 0.9 7 2)
