#!/usr/bin/env bash
# Table 4, Only fc 2;2;64+WL+GPS(0.9).
. "$(dirname "$0")/../lib.sh"
lslo_row table4 "Only fc 2;2;64+WL+GPS(0.9)" --lslo-modules fc --lslo-ranks H:2,M:2,V:64 "${WL[@]}" $(gps 0.9)
