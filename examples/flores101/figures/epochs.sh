#!/usr/bin/env bash
# Figure 3: spBLEU of H2H and V2V per epoch for table 1's rows below, from every checkpointN.pt their
# runs kept (KEEP_LAST_EPOCHS=15, the default, keeps all 15), with Pretrain as a dashed reference line.
# FIG3_COLUMNS [H2H,V2V] are the panels. Run the rows (and table1/01_pretrain.sh) first; a row without checkpoints is left out, and epochs
# already scored are not scored again.
. "$(dirname "$0")/../lib.sh"
ROWS=("8;8;8+WL" "2;2;8+WL" "2;2;8+WL+GPS(0.5)" "2;2;8+WL+GPS(0.9)" "Ft-all")
runs=()
common=""  # the epochs kept, the same for every row drawn (lslo-plot curves --epochs)
for row in "${ROWS[@]}"; do
  dir="$RUNS/$(slug "$row")"
  task=translation_multi_simple_epoch_lslo
  [[ "$row" == Ft-all ]] && task=translation_multi_simple_epoch
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    epochs=$(seq 1 "$EPOCHS")
  else
    epochs=$(find "$dir" -maxdepth 1 -name 'checkpoint[0-9]*.pt' 2>/dev/null | sed -E 's/.*checkpoint([0-9]+)\.pt$/\1/' | sort -n || true)
  fi
  [[ -n "$epochs" ]] || { echo "figures/epochs.sh: '$row' left out: no checkpointN.pt in $dir (run its recipe with KEEP_LAST_EPOCHS > 0)" >&2; continue; }
  epochs=$(echo $epochs | tr ' ' ,)
  [[ -z "$common" ]] && common=$epochs
  [[ "$epochs" == "$common" ]] || { echo "figures/epochs.sh: '$row' left out: it kept epochs $epochs, the rows before it $common" >&2; continue; }
  files=()
  for n in ${epochs//,/ }; do
    out="$dir/epochs/$n"
    [[ -f "$out/spbleu.json" ]] || evaluate table1 "$row" "$out" "$dir/checkpoint$n.pt" "$task" > /dev/null
    files+=("$out/spbleu.json")
  done
  runs+=(--run "$row=$(IFS=,; echo "${files[*]}")")
done
(( ${#runs[@]} )) || { echo "figures/epochs.sh: none of the rows ${ROWS[*]} has epoch checkpoints under $RUNS" >&2; exit 1; }
[[ -f "$RUNS/Pretrain/spbleu.json" || "${DRY_RUN:-0}" == 1 ]] && runs+=(--run "Pretrain=$RUNS/Pretrain/spbleu.json")
run "$RUNS/figure3" plot-curves.log plot-curves.log lslo-plot curves "${runs[@]}" --epochs "$common" --columns "${FIG3_COLUMNS:-H2H,V2V}" --out "$RUNS/figure3/spbleu_per_epoch"
