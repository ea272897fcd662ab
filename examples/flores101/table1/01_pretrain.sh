#!/usr/bin/env bash
# Table 1, Pretrain: the released M2M-124 615M, no training.
. "$(dirname "$0")/../lib.sh"
pretrain_row table1
