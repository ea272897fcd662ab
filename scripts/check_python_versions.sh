#!/usr/bin/env bash
# Check that `lslo-fairseq[fairseq]` installs and runs on other Pythons than CI's 3.11.
#
#   bash scripts/check_python_versions.sh [VERSION ...]      (default: 3.12 3.13)
#
# For each VERSION: a fresh virtual environment under ${TMPDIR:-/tmp}, the README's install command
# for that version, `import fairseq, lslo_fairseq`, then a tiny LSLo `fairseq-train` (4 updates,
# --cpu, --user-dir lslo_fairseq) on 4 languages of the shipped table and `fairseq-generate` of its
# checkpoint. Prints one line per version, `PASS`/`FAIL`/`SKIP VERSION (...)` with the step that
# failed and the seconds each part took, and exits 1 if any version failed.
#
# The interpreter is `pythonVERSION` on PATH, else pyenv's `$PYENV_ROOT/versions/VERSION*`; a
# version with neither is SKIPped. LIGHT_ONLY=1 SKIPs a version whose pip would install a CUDA
# build of torch (several GB: pip finds no CPU build of torch for that Python in its indexes or
# find-links), which is what CI sets. KEEP=1 keeps the environments and logs.
#
# Measured on the 2-core machine (shared, under nice), each PASS, total with the install:
# 3.11 72 s (1.4 GB venv, CPU torch), 3.12 142 s and 3.13 251 s (5.2 GB each: pip's only torch for
# them is the CUDA build; 3.13 includes compiling fairseq-fixed; both with pip's cache off).
# LIGHT_ONLY=1 skips 3.12 and 3.13
# here in 13 s.
set -uo pipefail
cd "$(dirname "$0")/.."
VERSIONS=("$@")
[ ${#VERSIONS[@]} -gt 0 ] || VERSIONS=(3.12 3.13)
TORCH=torch==2.13.0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lslo-pycheck.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT

find_python() {  # $1 = 3.12 -> path of an interpreter of that version, or nothing
    local v=$1 p
    for p in "$(command -v "python$v" 2>/dev/null)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v"*/bin/python; do
        if [ -x "$p" ] && "$p" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$v'.split('.'))))" 2>/dev/null; then
            echo "$p"
            return
        fi
    done
}

# Install command per version: what the README's set-up section says.
install_cmd() {  # $1 = version, $2 = venv
    local pip="$2/bin/pip"
    case $1 in
        3.13) # fairseq-fixed is an sdist: build it against the installed torch (no second torch)
            echo "$pip install -q $TORCH cython numpy setuptools wheel && $pip install -q --no-build-isolation -e '.[fairseq,test]'" ;;
        *) echo "$pip install -q $TORCH -e '.[fairseq,test]'" ;;
    esac
}

cpu_torch_available() {  # $1 = python: does pip find a CPU (+cpu) build of $TORCH for it?
    local report=$WORK/torch-report.json
    "$1" -m pip install -q --dry-run --ignore-installed --no-deps --report "$report" "$TORCH" >/dev/null 2>&1 \
        && "$1" -c "import json,sys; u=json.load(open(sys.argv[1]))['install'][0]['download_info']['url']; sys.exit(not ('+cpu' in u or '%2Bcpu' in u))" "$report"
}

TINY_RUN=$(cat <<'EOF'
import os, subprocess, sys, time
from pathlib import Path
import fairseq, lslo_fairseq, torch
from lslo_fairseq.shapes import PRENORM_SHARED_ARGS, TINY_SHAPE, shape_args
from lslo_fairseq.data.multiparallel import LIBREOFFICE_TSV, prepare
work = Path(sys.argv[1])
work.mkdir(parents=True, exist_ok=True)
(work / "versions.txt").write_text(f"python {sys.version.split()[0]}, fairseq {fairseq.__version__}, "
                                   f"torch {torch.__version__}\n")
t0 = time.perf_counter()
d = prepare(LIBREOFFICE_TSV, ("en", "fr", "ko", "oc"), work / "data", n_valid=30, n_test=30,
            vocab_size=800, seed=1, max_train_rows=300)
bindir = Path(sys.executable).parent
env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
user_dir = os.path.dirname(os.path.abspath(lslo_fairseq.__file__))
task = [d["data_dir"], "--task", "translation_multi_simple_epoch_lslo", "--user-dir", user_dir,
        "--lang-pairs", ",".join(d["lang_pairs"]), "--langs", ",".join(d["langs"]),
        "--encoder-langtok", "src", "--decoder-langtok", "--fixed-dictionary", d["dict"], "--cpu"]
def run(step, args):
    log = work / f"{step}.log"
    with open(log, "w") as f:
        rc = subprocess.run([str(bindir / step), *args], stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    if rc:
        sys.exit(f"FAILED-STEP {step} (exit {rc}); log tail:\n" + log.read_text()[-3000:])
t1 = time.perf_counter()
run("fairseq-train", [*task, "--arch", "lslo_transformer", *PRENORM_SHARED_ARGS, *shape_args(**TINY_SHAPE),
     "--lslo-ranks", "en:2,fr:2,ko:2,oc:4", "--optimizer", "adam", "--lr", "0.003",
     "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.2", "--max-tokens", "2048",
     "--max-update", "4", "--seed", "3", "--num-workers", "0", "--no-epoch-checkpoints",
     "--required-batch-size-multiple", "1", "--save-dir", str(work / "ckpt")])
t2 = time.perf_counter()
out = work / "gen"
run("fairseq-generate", [*task, "--path", str(work / "ckpt" / "checkpoint_last.pt"), "--source-lang", "oc",
    "--target-lang", "ko", "--gen-subset", "test", "--beam", "2", "--max-len-b", "10",
    "--required-batch-size-multiple", "1", "--results-path", str(out)])
t3 = time.perf_counter()
hyps = sum(line.startswith("H-") for line in (out / "generate-test.txt").read_text().splitlines())
if hyps != d["rows"]["test"]:
    sys.exit(f"FAILED-STEP fairseq-generate: {hyps} hypotheses for {d['rows']['test']} test rows")
(work / "timing.txt").write_text(f"prepare {t1 - t0:.0f} s, fairseq-train {t2 - t1:.0f} s, "
                                 f"fairseq-generate {t3 - t2:.0f} s ({hyps} hypotheses)\n")
EOF
)

status=0
for v in "${VERSIONS[@]}"; do
    py=$(find_python "$v")
    if [ -z "$py" ]; then
        echo "SKIP $v (no python$v on PATH nor under pyenv)"
        continue
    fi
    if [ "${LIGHT_ONLY:-0}" = 1 ] && ! cpu_torch_available "$py"; then
        echo "SKIP $v (LIGHT_ONLY: pip has no CPU build of $TORCH for Python $v, only a CUDA one of several GB)"
        continue
    fi
    venv=$WORK/venv$v
    log=$WORK/$v.log
    start=$(date +%s)
    if ! { "$py" -m venv "$venv" && eval "$(install_cmd "$v" "$venv")"; } >"$log" 2>&1; then
        echo "FAIL $v (install, $(( $(date +%s) - start )) s): $(install_cmd "$v" "$venv")"
        grep -E "ERROR|error" "$log" | tail -5
        status=1
        continue
    fi
    installed=$(( $(date +%s) - start ))
    size=$(du -sh "$venv" | cut -f1)
    if ! "$venv/bin/python" -c "$TINY_RUN" "$WORK/run$v" >>"$log" 2>&1; then
        echo "FAIL $v (install ${installed} s, $size; then:)"
        sed -n '/^FAILED-STEP/,$p' "$log" | head -40
        [ -n "$(sed -n '/^FAILED-STEP/p' "$log")" ] || grep -v "^WARNING: Location" "$log" | tail -20
        status=1
        continue
    fi
    echo "PASS $v (install ${installed} s, $size; import, fairseq-train, fairseq-generate: $(cat "$WORK/run$v/timing.txt"); total $(( $(date +%s) - start )) s; $(cat "$WORK/run$v/versions.txt"))"
    [ "${KEEP:-0}" = 1 ] || rm -rf "$venv"  # several GB each: free the disk before the next version
done
exit $status
