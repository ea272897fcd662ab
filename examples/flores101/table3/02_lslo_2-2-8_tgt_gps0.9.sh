#!/usr/bin/env bash
# Table 3, 2;2;8+TGT+GPS(0.9): every encoder layer target-indexed.
. "$(dirname "$0")/../lib.sh"
lslo_row table3 "2;2;8+TGT+GPS(0.9)" --lslo-ranks H:2,M:2,V:8 --lslo-encoder-index tgt --lslo-decoder-index tgt $(gps 0.9)
