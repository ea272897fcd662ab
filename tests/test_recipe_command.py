"""The recipes train with the authors' published command, flag by flag, except for the documented
differences (examples/flores101/README.md, "The authors' command and ours, flag by flag"), which this
test reads from that page: an edit to lib.sh, a row script or the table that breaks the equality fails.

Source of AUTHORS_COMMAND: github.com/Spike0924/LSLo, README.md at commit
c4a6522880f6b9492abef483db38c22e6ca49367, section "Training" (the 2;2;8+WL+GPS(0.9) row of table 1),
transcribed without the leading ``CUDA_VISIBLE_DEVICES=0`` (one GPU: NPROC=1).
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parents[1] / "examples" / "flores101"

AUTHORS_COMMAND = r"""
fairseq-train $flores101_lang12_bin \
    --update-freq 4 \
    --seed 2 --ddp-backend=no_c10d --amp \
    --user-dir /cl/work5/zhe-ca/myFairseq/fairseq/models/langspec_transformer_lora_src/langspec_transformer_lora \
    --finetune-from-model $m2m100_615m_pretrain_path \
    --arch langspec_m2m100_lora_base \
    --task translation_multi_simple_epoch_lora \
    --sampling-method "temperature" --sampling-temperature 5.0 \
    --encoder-langtok src --decoder-langtok \
    --langs $m2m100_615m_lang12_langs \
    --lang-pairs $m2m100_615m_lang12_all_langs_pairs \
    --criterion label_smoothed_cross_entropy \
    --label-smoothing 0.2 \
    --optimizer adam --adam-eps 1e-08 --adam-betas '(0.9, 0.98)' \
    --lr-scheduler inverse_sqrt --lr 3e-03 \
    --warmup-updates 1 \
    --max-tokens 4000 \
    --max-epoch 15 \
    --required-batch-size-multiple 1 \
    --keep-last-epochs 15 \
    --log-interval 2 \
    --log-format simple \
    --save-dir /cl/work5/zhe-ca/TransformerLoRA/checkpoints/pruning_langspec_lora/pruning_ex6_3090_test \
    --decoder-layerdrop 0 \
    --decoder-layers 12 \
    --decoder-normalize-before \
    --dropout 0.1 \
    --encoder-layerdrop 0 \
    --encoder-layers 12 \
    --encoder-normalize-before \
    --label-smoothing 0.2 \
    --share-all-embeddings \
    --share-decoder-input-output-embed \
    --add-lora True \
    --freeze-original-parameters True \
    --encoder-lora-layer "0_1_2_3_4_5_6_7_8_9_10_11" \
    --encoder-lora-position "q_k_v_fc1_fc2" \
    --decoder-lora-layer "0_1_2_3_4_5_6_7_8_9_10_11" \
    --decoder-lora-position "q_k_v_crossq_crossk_crossv_fc1_fc2" \
    --dim 1024 \
    --high-rank 2 \
    --med-rank 2 \
    --low-rank 8 \
    --encoder-activation-direction "src_src_src_src_src_src_src_src_src_tgt_tgt_tgt" \
    --decoder-activation-direction "tgt_tgt_tgt_tgt_tgt_tgt_tgt_tgt_tgt_tgt_tgt_tgt" \
    --language-num 12 \
    --pruning True \
    --pruning-t1 2 \
    --pruning-t2 10 \
    --target-pruning-ratio 0.9
"""
REFERENCE_ROW = "2;2;8+WL+GPS(0.9)"
# flags that other LSLo rows set differently beside those of the "this row" entries (table 4)
OTHER_ROW_FLAGS = {"--lslo-modules"}


def flags(argv):
    """[(flag, value or None)] of a command line; the positional data directory is flag ''. A token
    starting with '-' that is not a number begins a flag; '--x=y' is ('--x', 'y')."""
    out = []
    for tok in argv:
        if tok.startswith("--"):
            name, eq, value = tok.partition("=")
            out.append([name, value if eq else None])
        elif out and out[-1][1] is None and out[-1][0]:
            out[-1][1] = tok
        else:
            out.append(["", tok])
    return [tuple(f) for f in out]


def differences():
    """The README's table: [(authors' flags, our flags, scope, why)]."""
    text = (RECIPES / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- authors-command-differences: begin -->\n(.*?)<!-- authors-command-differences: end -->",
                      text, re.S).group(1)
    rows = []
    for line in block.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 4, line
        theirs, ours, scope, why = cells
        assert scope in ("all rows", "this row") and why, line
        rows.append((flags(shlex.split(theirs.strip("`"))), flags(shlex.split(ours.strip("`"))), scope, why))
    return rows


def matches(expected, actual) -> bool:
    """A value of the table that starts with '$' stands for any value (a path or list)."""
    return expected[0] == actual[0] and (
        expected[1] == actual[1] or (expected[1] is not None and expected[1].startswith("$") and actual[1] is not None))


def assert_same(expected, ours, where):
    """Equal as multisets of (flag, value), '$' values matching anything; the message lists the differences."""
    left = list(ours)
    missing = []
    for e in expected:
        hit = next((a for a in left if matches(e, a)), None)
        if hit is None:
            missing.append(e)
        else:
            left.remove(hit)
    assert not missing and not left, (
        f"{where}: the authors' command (with the README's differences) has {missing} that ours lacks, "
        f"ours has {left} that it does not")


def expected_command(rows, scopes):
    """The authors' command with the table's rows of these scopes applied (their flags replaced by ours)."""
    command = flags(shlex.split(AUTHORS_COMMAND.replace("\\\n", " "))[1:])
    for theirs, ours, scope, _ in rows:
        if scope not in scopes:
            continue
        for f in theirs:
            assert f in command, f"README table: {f} is not in the authors' command"
            command.remove(f)
        command += ours
    return command


def row_flag_names(rows):
    """Flag names of the 'this row' entries (both sides): what other rows may set differently."""
    return {f[0] for theirs, ours, scope, _ in rows if scope == "this row" for f in theirs + ours} | OTHER_ROW_FLAGS


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """Every table script of lang12 and lang30, DRY_RUN=1: {(subset, run dir): fairseq-train argv}."""
    tmp = tmp_path_factory.mktemp("recipe_command")
    out = {}
    for subset, scripts in (("lang12", [s for s in sorted(RECIPES.glob("table*/*.sh")) if s.parent.name != "table2"]),
                            ("lang30", sorted(RECIPES.glob("table2/*.sh")))):
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                   MODEL_DIR=str(tmp / "model"), DATA=str(tmp / f"data_{subset}"), RUNS=str(tmp / f"runs_{subset}"),
                   DRY_RUN="1")
        for script in scripts:
            proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, (script, proc.stderr[-2000:])
        for cmd_file in sorted((tmp / f"runs_{subset}").glob("*/command.sh")):
            for line in cmd_file.read_text().splitlines():
                argv = shlex.split(line)
                if argv[0] == "fairseq-train":
                    out[(subset, cmd_file.parent.name)] = argv
    return out


def test_the_table_only_names_flags_of_the_authors_command():
    rows = differences()
    authors = flags(shlex.split(AUTHORS_COMMAND.replace("\\\n", " "))[1:])
    assert len(authors) == 57
    for theirs, _, _, _ in rows:
        for f in theirs:
            assert f in authors, f
    assert any(scope == "this row" for _, _, scope, _ in rows)


def test_the_reference_row_is_the_authors_command(dry_run):
    rows = differences()
    argv = dry_run[("lang12", "2-2-8+WL+GPS0.9")]
    assert_same(expected_command(rows, ("all rows", "this row")), flags(argv[1:]), REFERENCE_ROW)


def test_every_lslo_row_shares_the_authors_settings(dry_run):
    rows = differences()
    skip = row_flag_names(rows)
    shared = [f for f in expected_command(rows, ("all rows",)) if f[0] not in skip]
    lslo = [k for k, argv in dry_run.items() if "--lslo-ranks" in argv]
    assert len(lslo) == 12 + 3 + 2 + 5 + 4  # LSLo rows of tables 1, 2, 3, 4, 8
    for key in lslo:
        ours = [f for f in flags(dry_run[key][1:]) if f[0] not in skip]
        assert_same(shared, ours, key)


def test_ft_all_is_the_authors_command_without_adapters_at_lr_1e4(dry_run):
    """The authors publish no Ft-all command: ours is their LSLo command without any adapter flag, on the
    stock transformer and task, with the paper's lr 1e-4 (section 5)."""
    rows = differences()
    skip = row_flag_names(rows)
    expected = [f for f in expected_command(rows, ("all rows",))
                if f[0] not in skip and not f[0].startswith("--lslo-") and f[0] not in ("--arch", "--task", "--lr")]
    expected += [("--arch", "transformer_m2m100_615m"), ("--task", "translation_multi_simple_epoch"), ("--lr", "1e-4")]
    for subset in ("lang12", "lang30"):
        assert_same(expected, flags(dry_run[(subset, "Ft-all")][1:]), (subset, "Ft-all"))


def test_gps_schedule_reading_is_one_variable_away(tmp_path):
    script = RECIPES / "table1" / "12_lslo_2-2-8_wl_gps0.9.sh"
    got = {}
    for reading in ("authors", "paper", "nonsense"):
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                   MODEL_DIR=str(tmp_path / "m"), DATA=str(tmp_path / "d"), RUNS=str(tmp_path / reading),
                   DRY_RUN="1", GPS_SCHEDULE=reading)
        proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
        if reading == "nonsense":
            assert proc.returncode == 2 and "GPS_SCHEDULE must be 'authors'" in proc.stderr
            continue
        argv = shlex.split((tmp_path / reading / "2-2-8+WL+GPS0.9" / "command.sh").read_text().splitlines()[0])
        got[reading] = (argv[argv.index("--lslo-prune-start") + 1], argv[argv.index("--lslo-prune-duration") + 1])
    assert got == {"authors": ("2", "10"), "paper": ("2", "8")}
