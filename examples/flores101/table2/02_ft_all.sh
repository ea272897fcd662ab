#!/usr/bin/env bash
# Table 2, Ft-all on lang30, lr 1e-4.
SUBSET=lang30
. "$(dirname "$0")/../lib.sh"
ft_all_row table2
