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
#   EPOCHS [15]  MAX_TOKENS [4000]  WARMUP [2500]  SEED [1]
#   UPDATE_FREQ [4 / NPROC: the paper's 4 GPUs' batch; required when NPROC does not divide 4]
#   KEEP_EPOCH_CHECKPOINTS=1  keep checkpointN.pt of every epoch (figure 3) [only checkpoint_last.pt]
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
WARMUP=${WARMUP:-2500}
SEED=${SEED:-1}
# The paper trained on 4 GPUs (section 5) with --max-tokens per GPU: fewer processes accumulate
# gradients to keep that effective batch of 4 x MAX_TOKENS.
if [[ -z "${UPDATE_FREQ:-}" ]]; then
  if (( NPROC < 1 || 4 % NPROC != 0 )); then
    echo "lib.sh: NPROC=$NPROC does not divide the paper's 4 GPUs: set UPDATE_FREQ yourself (effective batch = NPROC x UPDATE_FREQ x MAX_TOKENS; the paper's is 4 x 4000)" >&2
    exit 2
  fi
  UPDATE_FREQ=$(( 4 / NPROC ))
fi
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
# Without E and k the plugin's defaults apply, the paper's E=2, k=8 (lslo_fairseq/config.py).
gps() { echo --lslo-prune gps --lslo-prune-ratio "$1" --lslo-prune-targets H,M \
  ${2:+--lslo-prune-start "$2"} ${3:+--lslo-prune-duration "$3"}; }

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
    env | grep -E '^(SUBSET|DATA|RUNS|MODEL_DIR|LANG_GROUPS|NPROC|DIST_BACKEND|WL_JSON|SPM_EVAL|EPOCHS|MAX_TOKENS|WARMUP|SEED|UPDATE_FREQ|TRAIN_EXTRA|GEN_EXTRA|CUDA_VISIBLE_DEVICES|OMP_NUM_THREADS)=' | sort
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

# fairseq_train DIR ARGS...: fairseq-train from the released checkpoint. Sources of each setting:
#  - paper, section 5: 15 epochs, Adam, lr (per row), FLORES-101 dev as training data, 4 GPUs
#    (UPDATE_FREQ), mixed precision (--amp);
#  - the authors' code (Spike0924/LSLo, models/transformer_lora.py, architecture m2m100_lora_base):
#    encoder/decoder layerdrop 0.05, label smoothing 0.2, temperature sampling 5,
#    --required-batch-size-multiple 1. (fairseq applies that function's label smoothing, temperature and
#    batch multiple only when they are not already set, and their defaults always are: they reach a run
#    only from its command line, which is not released. We pass all of them.)
#  - ours, in neither: --max-tokens 4000, --adam-betas (0.9,0.98), inverse_sqrt with 2500 warm-up
#    updates, --seed 1 (MAX_TOKENS, WARMUP, SEED).
# lslo-demo trains with these settings at a small scale (lslo_fairseq/cli/demo.py, train_args).
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
  local epochs=(--no-epoch-checkpoints)
  [[ "${KEEP_EPOCH_CHECKPOINTS:-0}" == 1 ]] && epochs=()
  run "$dir" train.log train.log "${launcher[@]}" "$DATA" --user-dir "$USER_DIR" \
    --finetune-from-model "$MODEL_DIR/model.pt" \
    --lang-pairs "$(lang_pairs)" --lang-dict "$DATA/lang_dict.txt" --fixed-dictionary "$DATA/dict.txt" \
    --encoder-langtok src --decoder-langtok \
    --sampling-method temperature --sampling-temperature 5 --required-batch-size-multiple 1 \
    --encoder-layerdrop 0.05 --decoder-layerdrop 0.05 \
    --criterion label_smoothed_cross_entropy --label-smoothing 0.2 \
    --optimizer adam --adam-betas '(0.9, 0.98)' --lr-scheduler inverse_sqrt --warmup-updates "$WARMUP" \
    --max-tokens "$MAX_TOKENS" --update-freq "$UPDATE_FREQ" --max-epoch "$EPOCHS" --amp \
    --ddp-backend legacy_ddp "${dist[@]}" \
    --save-dir "$dir" "${epochs[@]}" --seed "$SEED" --log-format simple --log-interval 50 \
    "$@" "${TRAIN_EXTRA_ARGS[@]}"
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
  fairseq_train "$dir" --task translation_multi_simple_epoch_lslo --arch lslo_m2m100_615m --lr 3e-3 \
    --lslo-adapter-shape paper --lslo-init paper --lslo-lang-groups "$LANG_GROUPS" "$@"
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

# ft_all_row TABLE: full fine-tuning (lr 1e-4), the Ft-all baseline.
ft_all_row() {
  local dir="$RUNS/Ft-all"
  fairseq_train "$dir" --task translation_multi_simple_epoch --arch transformer_m2m100_615m --lr 1e-4
  evaluate "$1" Ft-all "$dir" "$dir/checkpoint_last.pt" translation_multi_simple_epoch
}

# pretrain_row TABLE: the released model as it is (no training).
pretrain_row() {
  evaluate "$1" Pretrain "$RUNS/Pretrain" "$MODEL_DIR/model.pt" translation_multi_simple_epoch
}
