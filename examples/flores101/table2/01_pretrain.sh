#!/usr/bin/env bash
# Table 2, Pretrain on lang30.
SUBSET=lang30
. "$(dirname "$0")/../lib.sh"
pretrain_row table2
