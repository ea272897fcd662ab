#!/usr/bin/env bash
# Rehearse recipe rows at full size before committing GPU days to a table: a few updates of each row
# with its exact recipe commands, its evaluation on a few sentences and the exports of the LSLo row,
# each measured (time, peak memory, sizes), then a table projecting each row's full run on this
# machine. README.md next to this file, "Rehearse at full size before a table", explains the columns.
# Settings (environment variables, defaults in brackets):
#   MODEL_DIR   the released flores101_mm100_615M [unset: build a random-weight model of its exact
#               shape and layout into OUT/model (python -m lslo_fairseq.stand_in.release_shape)]
#   FLORES      flores101_dataset directory or .tar.gz [unset: a FLORES-format sample of the shipped
#               multi-parallel table; the projection then estimates the data's size]
#   SHAPE       full | tiny [full]; tiny builds a 2+2-layer d-64 model and trains that shape (tests)
#   ROWS        row scripts, relative to this directory [table1/12_lslo_2-2-8_wl_gps0.9 table1/02_ft_all]
#   UPDATES [2]  MAX_TOKENS [256]  updates per row (TRAIN_EXTRA=--max-update) and tokens per batch
#   LANGS [en,ko,oc]  N_DEV [200]  N_TEST [4]  the sample's languages (one per group H, M, V of
#               lang12), its training and test sentences per language
#   OUT         the rehearsal's directory [runs/rehearse-$SHAPE]; it is emptied on each run (the built
#               model is kept and reused for the same SHAPE)
#   NPROC, DIST_BACKEND, UPDATE_FREQ, TRAIN_EXTRA, GEN_EXTRA, SPM_EVAL, CHECKPOINTS: as for lib.sh
#               (TRAIN_EXTRA/GEN_EXTRA come after the rehearsal's own; SPM_EVAL [the model's own])
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "rehearse.sh: $*" >&2; exit 2; }

SHAPE=${SHAPE:-full}
ROWS=${ROWS:-table1/12_lslo_2-2-8_wl_gps0.9 table1/02_ft_all}
UPDATES=${UPDATES:-2}
MAX_TOKENS=${MAX_TOKENS:-256}
LANGS=${LANGS:-en,ko,oc}
N_DEV=${N_DEV:-200}
N_TEST=${N_TEST:-4}
NPROC=${NPROC:-1}
OUT=${OUT:-runs/rehearse-$SHAPE}

# ---- every check before any work ----
case "$SHAPE" in full|tiny) ;; *) die "SHAPE must be 'full' (the release's) or 'tiny' (2+2 layers, d 64), got '$SHAPE'" ;; esac
for v in UPDATES MAX_TOKENS N_DEV N_TEST NPROC; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a whole number >= 1, got '${!v}'"
done
read -r -a rows <<< "$ROWS"
(( ${#rows[@]} > 0 )) || die "ROWS is empty (expected row scripts such as table1/02_ft_all)"
for row in "${rows[@]}"; do
  [[ -f "$here/${row%.sh}.sh" ]] || die "ROWS: no row script $here/${row%.sh}.sh"
done
if [[ -n "${MODEL_DIR:-}" ]]; then
  for f in model.pt dict.txt sentencepiece.bpe.model; do
    [[ -f "$MODEL_DIR/$f" ]] || die "MODEL_DIR=$MODEL_DIR has no $f (expected the released flores101_mm100_615M directory)"
  done
fi
[[ -z "${FLORES:-}" || -e "$FLORES" ]] || die "FLORES=$FLORES does not exist (a flores101_dataset directory or .tar.gz)"
[[ -n "${MODEL_DIR:-}" ]] && MODEL_DIR=$(cd "$MODEL_DIR" && pwd)
[[ -n "${FLORES:-}" ]] && FLORES=$(cd "$(dirname "$FLORES")" && pwd)/$(basename "$FLORES")
PY=$(command -v python3) || die "python3 not found"
PKG=$("$PY" -c 'import importlib.util as u, os; print(os.path.dirname(u.find_spec("lslo_fairseq").origin))' 2>/dev/null) \
  || die "the lslo_fairseq package is not importable by python3 (activate its environment)"
MEASURE=$PKG/stand_in/measure.py  # run by path: stdlib only, no fairseq import per measured command
real_train=$(command -v fairseq-train) || die "fairseq-train not on PATH (activate the environment with fairseq)"
real_score=$(command -v lslo-score) || die "lslo-score not on PATH (pip install -e . in this repository)"
command -v lslo-export > /dev/null || die "lslo-export not on PATH (pip install -e . in this repository)"
if [[ -e "$OUT" && ! -f "$OUT/.rehearsal" && -n "$(ls -A "$OUT")" ]]; then
  die "OUT=$OUT exists and is not a rehearsal directory (no $OUT/.rehearsal); choose another OUT"
fi
gpu=0
"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null && gpu=1
if (( gpu )); then DIST_BACKEND=${DIST_BACKEND:-nccl}; else DIST_BACKEND=${DIST_BACKEND:-gloo}; fi
# The recipe's own batch, epochs and this NPROC's UPDATE_FREQ, as lib.sh computes them.
recipe() {  # recipe VAR...: lib.sh's values of VAR... with the environment given before it
  env "$@" DRY_RUN=1 MODEL_DIR=unused DATA=unused bash -c '. "$1"; echo "$MAX_TOKENS $UPDATE_FREQ $EPOCHS"' _ "$here/lib.sh"
}
read -r recipe_tokens recipe_freq _ < <(recipe -u MAX_TOKENS -u UPDATE_FREQ -u NPROC)
read -r _ update_freq epochs < <(recipe NPROC="$NPROC")
[[ -n "${update_freq:-}" && -n "${recipe_freq:-}" ]] || die "lib.sh refused these settings (its message is above)"

# ---- the rehearsal's directory ----
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
touch "$OUT/.rehearsal"
rm -rf "$OUT/runs" "$OUT/measure" "$OUT/flores" "$OUT/data" "$OUT/exports" "$OUT/logs" "$OUT/shims"
mkdir -p "$OUT/measure" "$OUT/logs" "$OUT/shims" "$OUT/exports"
measure() { local label=$1; shift; "$PY" "$MEASURE" --dir "$OUT/measure" --label "$label" -- "$@"; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc 2>/dev/null || echo 1)}

# ---- 1. a FLORES-format sample of LANGS (first: it checks LANGS, N_DEV, N_TEST and FLORES), the model ----
"$PY" -m lslo_fairseq.stand_in.flores_sample --out "$OUT/flores" --langs "$LANGS" --n-dev "$N_DEV" --n-devtest "$N_TEST" \
  ${FLORES:+--flores "$FLORES"} > /dev/null || die "LANGS=$LANGS, N_DEV=$N_DEV, N_TEST=$N_TEST: no data sample (the reason is above)"
built=""
if [[ -z "${MODEL_DIR:-}" ]]; then
  MODEL_DIR=$OUT/model
  if [[ -f "$MODEL_DIR/model.pt" && -f "$MODEL_DIR/build.json" ]] \
     && "$PY" -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))["shape"] != sys.argv[2])' "$MODEL_DIR/build.json" "$SHAPE"; then
    echo "[rehearse] reusing the $SHAPE-shape model in $MODEL_DIR"
  else
    echo "[rehearse] building a random-weight $SHAPE-shape model of the release's layout in $MODEL_DIR"
    rm -rf "$MODEL_DIR"
    REHEARSE_STEP=setup measure build "$PY" -m lslo_fairseq.stand_in.release_shape --out "$MODEL_DIR" --shape "$SHAPE" \
      > "$OUT/logs/build.log" 2>&1 || { tail -n 20 "$OUT/logs/build.log" >&2; die "building the model failed (log: $OUT/logs/build.log)"; }
  fi
  built=" (built: random weights)"
fi

# ---- 2. the data: prepare.sh on the sample ----
DATA=$OUT/data
REHEARSE_STEP=setup MODEL_DIR=$MODEL_DIR FLORES=$OUT/flores/flores101_dataset LANGS=$LANGS LANG_GROUPS=lang30 DATA=$DATA \
  measure prepare bash "$here/prepare.sh" > "$OUT/logs/prepare.log" 2>&1 \
  || { tail -n 20 "$OUT/logs/prepare.log" >&2; die "prepare.sh failed (log: $OUT/logs/prepare.log)"; }
directions=$(tr ',' '\n' < "$DATA/lang_pairs.txt" | grep -c .)
evaluated="$N_TEST devtest sentences x $directions directions ($LANGS) with beam 5, from $([[ -n "${FLORES:-}" ]] && echo "FLORES" || echo "the shipped table")"
echo "[rehearse] data: $N_DEV training and $N_TEST test sentences x $directions directions ($LANGS) in $DATA"

# ---- 3. the rows, each command under the measuring wrapper (shims first on PATH) ----
for pair in "fairseq-train:train:$real_train" "lslo-score:eval:$real_score"; do
  IFS=: read -r name label real <<< "$pair"
  printf '#!/usr/bin/env bash\nexec %q %q --dir %q --label %q -- %q "$@"\n' \
    "$PY" "$MEASURE" "$OUT/measure" "$label" "$real" > "$OUT/shims/$name"
  chmod +x "$OUT/shims/$name"
done
extra=(--max-update "$UPDATES" --log-interval 1)
gen=()
(( gpu )) || { extra+=(--cpu); gen+=(--cpu); }
# a model built here trains in the shape it was built with (build.json; none: the release's)
[[ -f "$MODEL_DIR/build.json" ]] && extra+=($("$PY" -c 'import json, sys; print(" ".join(json.load(open(sys.argv[1]))["model_args"]))' "$MODEL_DIR/build.json"))
failed=0
for row in "${rows[@]}"; do
  row=${row%.sh}
  echo "[rehearse] $row: $UPDATES updates at MAX_TOKENS=$MAX_TOKENS, then its evaluation (log: $OUT/logs/${row//\//_}.log)"
  REHEARSE_STEP=$row PATH="$OUT/shims:$PATH" MODEL_DIR=$MODEL_DIR DATA=$DATA RUNS=$OUT/runs MAX_TOKENS=$MAX_TOKENS \
    NPROC=$NPROC DIST_BACKEND=$DIST_BACKEND SPM_EVAL=${SPM_EVAL:-$MODEL_DIR/sentencepiece.bpe.model} \
    TRAIN_EXTRA="${extra[*]} ${TRAIN_EXTRA:-}" GEN_EXTRA="${gen[*]} ${GEN_EXTRA:-}" \
    bash "$here/$row.sh" > "$OUT/logs/${row//\//_}.log" 2>&1 \
    || { failed=1; echo "[rehearse] $row FAILED:" >&2; tail -n 15 "$OUT/logs/${row//\//_}.log" >&2; }
done

# ---- 4. the exports of the LSLo row: one merged direction and the adapters ----
if lslo_dir=$("$PY" "$MEASURE" lslo-run --dir "$OUT/measure" 2>/dev/null); then
  IFS=- read -r src tgt <<< "$(tr ',' '\n' < "$DATA/lang_pairs.txt" | head -n 1)"
  echo "[rehearse] lslo-export fold ($src-$tgt) and adapters of $lslo_dir/checkpoint_last.pt"
  REHEARSE_STEP=exports measure fold lslo-export fold --checkpoint "$lslo_dir/checkpoint_last.pt" --source-lang "$src" --target-lang "$tgt" \
    --out "$OUT/exports/folded.$src-$tgt.pt" > "$OUT/logs/export-fold.log" 2>&1 || { failed=1; tail -n 5 "$OUT/logs/export-fold.log" >&2; }
  REHEARSE_STEP=exports measure adapters lslo-export adapters --checkpoint "$lslo_dir/checkpoint_last.pt" \
    --out "$OUT/exports/adapters.pt" > "$OUT/logs/export-adapters.log" 2>&1 || { failed=1; tail -n 5 "$OUT/logs/export-adapters.log" >&2; }
else
  echo "[rehearse] no LSLo row trained: no exports"
fi

# ---- 5. the table ----
gpu_flag=(); (( gpu )) && gpu_flag=(--gpu)
echo "[rehearse] model: $MODEL_DIR$built"
"$PY" -m lslo_fairseq.stand_in.rehearsal --dir "$OUT/measure" --model-dir "$MODEL_DIR" ${FLORES:+--flores "$FLORES"} \
  --epochs "$epochs" --max-tokens "$MAX_TOKENS" --update-freq "$update_freq" --nproc "$NPROC" \
  --recipe-max-tokens "$recipe_tokens" --recipe-update-freq "$recipe_freq" "${gpu_flag[@]}" \
  --evaluated "$evaluated" --out "$OUT/rehearsal"
echo "[rehearse] written: $OUT/rehearsal.{txt,json,csv}"
exit "$failed"
