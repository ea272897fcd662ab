#!/usr/bin/env bash
# Table 1, LSLo 16;16;16+WL.
. "$(dirname "$0")/../lib.sh"
lslo_row table1 "16;16;16+WL" --lslo-ranks H:16,M:16,V:16 "${WL[@]}"
