#!/usr/bin/env bash
# Step 1: FLORES-101 for SUBSET (lang12 | lang30) or LANGS (with LANG_GROUPS): dev -> train,
# devtest -> test, encoded with $MODEL_DIR/sentencepiece.bpe.model and binarized with its dict.txt
# for every direction, after checking that the dictionary and languages match model.pt.
# FLORES: flores101_dataset directory or .tar.gz [unset: download it, when a network is up].
# MODEL_LANGS: the model's languages in token order, one per line (--model-langs), when model.pt
# does not prove that order itself (lslo-prepare-flores says so and prints how to write the file).
# DRY_RUN=1: write DATA/command.sh and print it, prepare nothing.
set -euo pipefail
: "${MODEL_DIR:?set MODEL_DIR to the flores101_mm100_615M directory}"
SUBSET=${SUBSET:-lang12}
DATA=${DATA:-data-bin/flores101_$SUBSET}
args=(--model-dir "$MODEL_DIR" --out "$DATA")
if [[ -n "${LANGS:-}" ]]; then
  args+=(--langs "$LANGS" --lang-groups "${LANG_GROUPS:?LANGS needs LANG_GROUPS, e.g. en:H,fr:H,oc:V}")
else
  args+=(--subset "$SUBSET")
fi
[[ -n "${FLORES:-}" ]] && args+=(--flores "$FLORES")
[[ -n "${MODEL_LANGS:-}" ]] && args+=(--model-langs "$MODEL_LANGS")
mkdir -p "$DATA"
{ printf '%q ' lslo-prepare-flores "${args[@]}"; echo; } > "$DATA/command.sh"
[[ "${DRY_RUN:-0}" == 1 ]] && { echo "[dry run] $DATA: $(cat "$DATA/command.sh")"; exit 0; }
lslo-prepare-flores "${args[@]}" > "$DATA/prepare.log"
echo "prepared $DATA ($(grep -c . "$DATA/test.raw.$(head -c 100 "$DATA/lang_pairs.txt" | cut -d- -f1)") test sentences per direction)"
