#!/usr/bin/env bash
# Run every row of one table (table1 ... table8, or figures), in order, then print the table of all
# its rows with the paper's numbers: bash run_table.sh table1
set -euo pipefail
table=${1:?usage: run_table.sh table1|table2|table3|table4|table8|figures}
here=$(cd "$(dirname "$0")" && pwd)
[[ -d "$here/$table" ]] || { echo "run_table.sh: no $here/$table" >&2; exit 2; }
for script in "$here/$table"/*.sh; do
  bash "$script"
done
[[ "$table" == figures || "${DRY_RUN:-0}" == 1 ]] && exit 0
exec bash "$here/summarize.sh" "$table"
