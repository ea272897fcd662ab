#!/usr/bin/env bash
# The table of every evaluated row of one paper table (in the paper's order) with the paper's
# numbers and our differences: bash summarize.sh table1 -> $RUNS/table1.{csv,json}
set -euo pipefail
table=${1:?usage: summarize.sh table1|table2|table3|table4|table8}
here=$(cd "$(dirname "$0")" && pwd)
[[ "$table" == table2 ]] && SUBSET=lang30
. "$here/lib.sh"
runs=()
while IFS= read -r row; do  # the paper's rows of this table, in its order, that have outputs here
  dir="$RUNS/$(slug "$row")"
  [[ "$table" == table8 && "$row" == "E=2,k=8" ]] && dir="$RUNS/$(slug "2;2;8+WL+GPS(0.9)")"  # table 1's row
  [[ -d "$dir/generate" ]] && runs+=(--run "$row=$dir/generate")
done < <(python3 -c 'import sys; from lslo_fairseq.evaluation.paper import tables; print("\n".join(tables()[sys.argv[1]]["rows"]))' "$table")
(( ${#runs[@]} )) || { echo "summarize.sh: no evaluated row of $table under $RUNS" >&2; exit 1; }
lslo-score "${runs[@]}" --spm "$SPM_EVAL" --lang-groups "$LANG_GROUPS" --paper "$table" --out "$RUNS/$table"
