#!/usr/bin/env bash
# Table 4, Only attn 2;2;8+WL+GPS(0.9): LSLo on q,k,v,c-q,c-k,c-v only (the All rows are table1/12-13).
. "$(dirname "$0")/../lib.sh"
lslo_row table4 "Only attn 2;2;8+WL+GPS(0.9)" --lslo-modules attn --lslo-ranks H:2,M:2,V:8 "${WL[@]}" $(gps 0.9)
