#!/usr/bin/env bash
# Table 1, Ft-all: full fine-tuning, lr 1e-4.
. "$(dirname "$0")/../lib.sh"
ft_all_row table1
