#!/usr/bin/env bash
# Table 3, 2;2;8+SRC+GPS(0.9): every encoder layer source-indexed (decoder target-indexed); the WL row is table1/12.
. "$(dirname "$0")/../lib.sh"
lslo_row table3 "2;2;8+SRC+GPS(0.9)" --lslo-ranks H:2,M:2,V:8 --lslo-encoder-index src --lslo-decoder-index tgt $(gps 0.9)
