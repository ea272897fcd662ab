#!/usr/bin/env bash
# Table 4, Only fc 2;2;16+WL+GPS(0.9): LSLo on fc1,fc2 only.
. "$(dirname "$0")/../lib.sh"
lslo_row table4 "Only fc 2;2;16+WL+GPS(0.9)" --lslo-modules fc --lslo-ranks H:2,M:2,V:16 "${WL[@]}" $(gps 0.9)
