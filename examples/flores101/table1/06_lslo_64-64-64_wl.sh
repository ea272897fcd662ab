#!/usr/bin/env bash
# Table 1, LSLo 64;64;64+WL.
. "$(dirname "$0")/../lib.sh"
lslo_row table1 "64;64;64+WL" --lslo-ranks H:64,M:64,V:64 "${WL[@]}"
