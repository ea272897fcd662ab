#!/usr/bin/env bash
# Table 2, LSLo 8;8;8;8+WL ({H;M;L;V} ranks).
SUBSET=lang30
. "$(dirname "$0")/../lib.sh"
lslo_row table2 "8;8;8;8+WL" --lslo-ranks H:8,M:8,L:8,V:8 "${WL[@]}"
