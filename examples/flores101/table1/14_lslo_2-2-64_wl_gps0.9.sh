#!/usr/bin/env bash
# Table 1, LSLo 2;2;64+WL+GPS(0.9).
. "$(dirname "$0")/../lib.sh"
lslo_row table1 "2;2;64+WL+GPS(0.9)" --lslo-ranks H:2,M:2,V:64 "${WL[@]}" $(gps 0.9)
