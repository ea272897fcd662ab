# Shared settings and functions of the FLORES-101 recipes; every row script sources this file.
# Settings are environment variables (defaults in brackets); see README.md next to this file.
#   MODEL_DIR   the released flores101_mm100_615M directory (model.pt, dict.txt, sentencepiece.bpe.model)
#   SUBSET      lang12 | lang30 [lang12; table 2 rows use lang30]
#   DATA        data from prepare.sh [data-bin/flores101_$SUBSET]
#   RUNS        where each row writes its directory [runs/flores101_$SUBSET]
#   LANG_GROUPS resource groups for the tables and ranks [$SUBSET's preset]
#   NPROC       training processes (GPUs) [1]; >1 launches torchrun, DIST_BACKEND [nccl]
#   WL_JSON     weight_learning.json of weight_learning.sh to index by [unset: the paper's learned
#               indexes, encoder layers 1-9 src and 10-12 tgt, decoder tgt]
#   SPM_EVAL    spBLEU SentencePiece model [flores101: the FLORES-101 one, see lslo-score --spm]
#   EPOCHS [15]  MAX_TOKENS [4000]  WARMUP [1]  SEED [2]  (the authors' published command)
#   UPDATE_FREQ [4 / NPROC: the authors' one GPU x --update-freq 4; required when NPROC does not divide 4]
#   KEEP_LAST_EPOCHS [15]  epoch checkpoints kept (checkpointN.pt, figure 3); 0 keeps only checkpoint_last.pt
#   GPS_SCHEDULE authors | paper [authors]: the 2;2;8 rows' pruning schedule, E=2 over 10 epochs as the
#               authors' command and code run it, or the paper's text, E=2, k=8 (README: "Pruning schedule")
#   CHECKPOINTS adapters | full [adapters]: LSLo checkpoints hold what training changes and a reference
#               to MODEL_DIR/model.pt (--lslo-checkpoint), or the whole model as fairseq writes it
#   VALIDATE [0]  1 runs fairseq's validation (valid = the training split) every epoch (weight learning does)
#   TRAIN_EXTRA / GEN_EXTRA   extra fairseq arguments, appended last (tiny mode: --cpu, model shape)
#   DRY_RUN=1   write each command and environment, run nothing
set -euo pipefail

FLORES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SUBSET=${SUBSET:-lang12}
DATA=${DATA:-data-bin/flores101_$SUBSET}
RUNS=${RUNS:-runs/flores101_$SUBSET}
LANG_GROUPS=${LANG_GROUPS:-$SUBSET}
NPROC=${NPROC:-1}
DIST_BACKEND=${DIST_BACKEND:-nccl}
SPM_EVAL=${SPM_EVAL:-flores101}
EPOCHS=${EPOCHS:-15}
MAX_TOKENS=${MAX_TOKENS:-4000}
WARMUP=${WARMUP:-1}
SEED=${SEED:-2}
KEEP_LAST_EPOCHS=${KEEP_LAST_EPOCHS:-15}
GPS_SCHEDULE=${GPS_SCHEDULE:-authors}
CHECKPOINTS=${CHECKPOINTS:-adapters}
VALIDATE=${VALIDATE:-0}
# The authors trained on one GPU with --update-freq 4 and --max-tokens 4000 (the paper, section 5,
# says 4 GPUs: the same effective batch). Several processes share those 4 steps of accumulation.
if [[ -z "${UPDATE_FREQ:-}" ]]; then
  if (( NPROC < 1 || 4 % NPROC != 0 )); then
    echo "lib.sh: NPROC=$NPROC does not divide the authors' 4 accumulated batches: set UPDATE_FREQ yourself (effective batch = NPROC x UPDATE_FREQ x MAX_TOKENS; the authors' is 4 x 4000)" >&2
    exit 2
  fi
  UPDATE_FREQ=$(( 4 / NPROC ))
fi
case "$GPS_SCHEDULE" in
  authors) GPS_DEFAULT=(2 10) ;;
  paper) GPS_DEFAULT=(2 8) ;;
  *) echo "lib.sh: GPS_SCHEDULE must be 'authors' (E=2 over 10 epochs) or 'paper' (E=2, k=8), got '$GPS_SCHEDULE'" >&2; exit 2 ;;
esac
case "$CHECKPOINTS" in
  adapters|full) ;;
  *) echo "lib.sh: CHECKPOINTS must be 'adapters' or 'full', got '$CHECKPOINTS'" >&2; exit 2 ;;
esac
[[ "$KEEP_LAST_EPOCHS" =~ ^[0-9]+$ ]] || { echo "lib.sh: KEEP_LAST_EPOCHS must be a number >= 0, got '$KEEP_LAST_EPOCHS'" >&2; exit 2; }
read -r -a TRAIN_EXTRA_ARGS <<< "${TRAIN_EXTRA:-}"
read -r -a GEN_EXTRA_ARGS <<< "${GEN_EXTRA:-}"
: "${MODEL_DIR:?set MODEL_DIR to the flores101_mm100_615M directory (model.pt, dict.txt, sentencepiece.bpe.model)}"
USER_DIR=$(python3 -c 'import importlib.util as u, os; print(os.path.dirname(u.find_spec("lslo_fairseq").origin))' 2>/dev/null \
  || { echo "lib.sh: the lslo_fairseq package is not importable by python3 (activate its environment)" >&2; exit 2; })

if [[ ! -f "$DATA/lang_pairs.txt" && "${DRY_RUN:-0}" != 1 ]]; then
  echo "lib.sh: $DATA/lang_pairs.txt not found: run prepare.sh for SUBSET=$SUBSET first (or set DATA)" >&2
  exit 2
fi

# Paper's index choice (section 6.1) or a weight-learning result.
if [[ -n "${WL_JSON:-}" ]]; then
  WL=(--lslo-encoder-index "$WL_JSON" --lslo-decoder-index "$WL_JSON")
else
  WL=(--lslo-encoder-index paper --lslo-decoder-index paper)
fi

# gps P [E k]: gradual pruning of each H and M B matrix to ratio P from epoch E over k epochs (eq. 4).
# Without E and k: GPS_SCHEDULE's, E=2 over 10 epochs (the authors' --pruning-t1 2 --pruning-t2 10 as
# their code runs it) or the paper's E=2, k=8.
gps() { echo --lslo-prune gps --lslo-prune-ratio "$1" --lslo-prune-targets H,M \
  --lslo-prune-start "${2:-${GPS_DEFAULT[0]}}" --lslo-prune-duration "${3:-${GPS_DEFAULT[1]}}"; }

# slug ROW: the row's directory name under RUNS, e.g. "2;2;8+WL+GPS(0.9)" -> 2-2-8+WL+GPS0.9.
slug() { echo "$1" | sed -e 's/;/-/g' -e 's/[()=]//g' -e 's/[ ,]/_/g'; }

# record DIR: the exact command (shell-quoted) and the environment, next to the row's outputs.
record() {
  local dir=$1; shift
  mkdir -p "$dir"
  { printf '%q ' "$@"; echo; } >> "$dir/command.sh"
  {
    echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(hostname)"
    echo "lslo-fairseq $(git -C "$FLORES_DIR" rev-parse HEAD 2>/dev/null || echo '(not a git checkout)')"
    python3 - <<'EOF' 2>/dev/null || true
import importlib.metadata as m, platform
print("python", platform.python_version(), platform.platform())
for p in ("torch", "ve-fairseq", "fairseq", "fairseq-fixed", "lslo-fairseq", "sacrebleu", "sentencepiece"):
    try: print(p, m.version(p))
    except m.PackageNotFoundError: pass
EOF
    if command -v nvidia-smi > /dev/null; then nvidia-smi -L; else echo "nvidia-smi: none"; fi
    env | grep -E '^(SUBSET|DATA|RUNS|MODEL_DIR|LANG_GROUPS|NPROC|DIST_BACKEND|WL_JSON|SPM_EVAL|EPOCHS|MAX_TOKENS|WARMUP|SEED|UPDATE_FREQ|KEEP_LAST_EPOCHS|GPS_SCHEDULE|CHECKPOINTS|VALIDATE|TRAIN_EXTRA|GEN_EXTRA|CUDA_VISIBLE_DEVICES|OMP_NUM_THREADS)=' | sort
  } >> "$dir/env.txt"
}

# run DIR OUT ERR CMD...: record, then run (unless DRY_RUN=1), stdout to DIR/OUT, stderr to DIR/ERR.
run() {
  local dir=$1 out=$2 err=$3; shift 3
  record "$dir" "$@"
  [[ "${DRY_RUN:-0}" == 1 ]] && { echo "[dry run] $dir: $*"; return 0; }
  echo "[$(date -u +%H:%M:%S)] $dir: $1 ... (log: $dir/$err)"
  if [[ "$out" == "$err" ]]; then "$@" > "$dir/$out" 2>&1; else "$@" > "$dir/$out" 2> "$dir/$err"; fi \
    || { echo "failed: see $dir/$err" >&2; tail -n 20 "$dir/$err" >&2; return 1; }
}

lang_pairs() { if [[ -f "$DATA/lang_pairs.txt" ]]; then cat "$DATA/lang_pairs.txt"; else echo "(from $DATA)"; fi; }

# fairseq_train DIR ARGS...: fairseq-train from the released checkpoint with the authors' published
# command (Spike0924/LSLo, README.md, "Training"), flag by flag; README.md next to this file lists each
# intended difference and its reason, and tests/test_recipe_command.py holds their command as data
# and compares it with every row's.
# lslo-demo trains with these settings at a small scale (lslo_fairseq/cli/demo_runs.py, train_options).
fairseq_train() {
  local dir=$1; shift
  local launcher=(fairseq-train)
  local dist=()
  if (( NPROC > 1 )); then
    # One process per GPU (per CPU core with DIST_BACKEND=gloo). legacy_ddp: tested equal to one
    # process (c10d fails on CPU in this fairseq build); every rank loads the checkpoint itself
    # (rank 0's broadcast holds an omegaconf object that torch's weights_only loading refuses).
    launcher=(torchrun --standalone --nproc_per_node "$NPROC" --no-python
              bash -c 'exec fairseq-train "$@" --distributed-rank "$RANK" --device-id "$LOCAL_RANK"' fairseq-train)
    dist=(--distributed-world-size "$NPROC" --distributed-init-method env:// --distributed-no-spawn
          --load-checkpoint-on-all-dp-ranks
          --distributed-backend "$DIST_BACKEND")
  fi
  local epochs=(--keep-last-epochs "$KEEP_LAST_EPOCHS")
  (( KEEP_LAST_EPOCHS == 0 )) && epochs=(--no-epoch-checkpoints)
  local valid=(--disable-validation)
  [[ "$VALIDATE" == 1 ]] && valid=()
  run "$dir" train.log train.log "${launcher[@]}" "$DATA" --user-dir "$USER_DIR" \
    --update-freq "$UPDATE_FREQ" --seed "$SEED" --ddp-backend legacy_ddp "${dist[@]}" --amp \
    --finetune-from-model "$MODEL_DIR/model.pt" \
    "$@" \
    --sampling-method temperature --sampling-temperature 5.0 \
    --encoder-langtok src --decoder-langtok \
    --lang-dict "$DATA/lang_dict.txt" --lang-pairs "$(lang_pairs)" --fixed-dictionary "$DATA/dict.txt" \
    --criterion label_smoothed_cross_entropy --label-smoothing 0.2 \
    --optimizer adam --adam-eps 1e-08 --adam-betas '(0.9, 0.98)' \
    --lr-scheduler inverse_sqrt --warmup-updates "$WARMUP" \
    --max-tokens "$MAX_TOKENS" --max-epoch "$EPOCHS" --required-batch-size-multiple 1 \
    "${epochs[@]}" --log-interval 2 --log-format simple --save-dir "$dir" "${valid[@]}" \
    --decoder-layerdrop 0 --decoder-layers 12 --decoder-normalize-before --dropout 0.1 \
    --encoder-layerdrop 0 --encoder-layers 12 --encoder-normalize-before \
    --share-all-embeddings --share-decoder-input-output-embed \
    "${TRAIN_EXTRA_ARGS[@]}"
}

# evaluate TABLE ROW DIR CHECKPOINT [TASK]: beam-5 translation of every devtest direction, spBLEU
# table in the paper's layout with the paper's row and the difference, in DIR/spbleu.{csv,json}.
evaluate() {
  local table=$1 row=$2 dir=$3 ckpt=$4 task=${5:-translation_multi_simple_epoch_lslo}
  run "$dir" spbleu.txt eval.log lslo-score --generate --data-dir "$DATA" --checkpoint "$ckpt" \
    --pairs "$(lang_pairs)" --results-dir "$dir/generate" --out "$dir/spbleu" --name "$row" \
    --spm "$SPM_EVAL" --lang-groups "$LANG_GROUPS" --paper "$table:$row" \
    --task "$task" --user-dir "$USER_DIR" --beam 5 \
    -- --lang-dict "$DATA/lang_dict.txt" --fixed-dictionary "$DATA/dict.txt" \
    --encoder-langtok src --decoder-langtok --max-tokens "$MAX_TOKENS" "${GEN_EXTRA_ARGS[@]}"
  [[ "${DRY_RUN:-0}" == 1 ]] || cat "$dir/spbleu.txt"
}

# lslo_train DIR LSLO-FLAGS...: fine-tune LSLo from the released model (lr 3e-3, base frozen), with
# the authors' adapters: every one d_model x d_model (fc1/fc2 sliced at column 0) and their A
# initialisation, U(-1/sqrt(r), 1/sqrt(r)).
lslo_train() {
  local dir=$1; shift
  fairseq_train "$dir" --arch lslo_m2m100_615m --task translation_multi_simple_epoch_lslo --lr 3e-03 \
    --lslo-adapter-shape paper --lslo-init paper --lslo-lang-groups "$LANG_GROUPS" \
    --lslo-checkpoint "$CHECKPOINTS" "$@"
}

# lslo_row TABLE ROW LSLO-FLAGS...: one table row: fine-tune LSLo, then evaluate it.
lslo_row() {
  local table=$1 row=$2; shift 2
  local dir="$RUNS/$(slug "$row")"
  lslo_train "$dir" "$@"
  evaluate "$table" "$row" "$dir" "$dir/checkpoint_last.pt"
}

# plot DIR KIND INPUT [ARGS...]: lslo-plot KIND INPUT --out DIR/figures/KIND (PNG and PDF).
plot() {
  local dir=$1 kind=$2 input=$3; shift 3
  run "$dir" plot-$kind.log plot-$kind.log lslo-plot "$kind" "$input" --out "$dir/figures/$kind" "$@"
}

# ft_all_row TABLE: full fine-tuning, the Ft-all baseline: the authors publish no command for it; ours is
# their LSLo command without adapters and with the paper's lr 1e-4 (section 5).
ft_all_row() {
  local dir="$RUNS/Ft-all"
  fairseq_train "$dir" --arch transformer_m2m100_615m --task translation_multi_simple_epoch --lr 1e-4
  evaluate "$1" Ft-all "$dir" "$dir/checkpoint_last.pt" translation_multi_simple_epoch
}

# pretrain_row TABLE: the released model as it is (no training).
pretrain_row() {
  evaluate "$1" Pretrain "$RUNS/Pretrain" "$MODEL_DIR/model.pt" translation_multi_simple_epoch
}
