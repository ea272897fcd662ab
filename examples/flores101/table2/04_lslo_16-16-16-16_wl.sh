#!/usr/bin/env bash
# Table 2, LSLo 16;16;16;16+WL.
SUBSET=lang30
. "$(dirname "$0")/../lib.sh"
lslo_row table2 "16;16;16;16+WL" --lslo-ranks H:16,M:16,L:16,V:16 "${WL[@]}"
