#!/usr/bin/env bash
# Table 4, Only attn 2;2;16+WL+GPS(0.9).
. "$(dirname "$0")/../lib.sh"
lslo_row table4 "Only attn 2;2;16+WL+GPS(0.9)" --lslo-modules attn --lslo-ranks H:2,M:2,V:16 "${WL[@]}" $(gps 0.9)
