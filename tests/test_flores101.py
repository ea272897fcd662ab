"""FLORES-101 preparation and the paper's recipes (examples/flores101) on a tiny FLORES-format
fixture and a tiny checkpoint of the released format.

Every recipe script runs in dry-run mode and each command it records is checked as fairseq and the
plugin would check it (argument parsing, task set-up, the real 615M model built on the meta device,
the paper's parameter budget of its row, the paper row it compares with). Representative recipes
also run for real in tiny mode, end to end: preparation, Pretrain, Ft-all, weight learning ->
2;2;8+WL+GPS(0.9) indexed by the learned JSON, ISE figures, a lang30-style row on 2 processes, and
the table summary.
"""
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flores_fixture import make_flores_dataset, make_model_dir, make_tarball
from lslo_fairseq.groups import PRESETS
from lslo_fairseq.shapes import TINY_SHAPE, shape_args
from lslo_fairseq.data import flores101
from lslo_fairseq.cli.prepare_flores import main as prepare_flores_main
from lslo_fairseq.checkpoints.reading import CheckpointError
from lslo_fairseq.data.flores101 import FloresError, prepare_flores101
from lslo_fairseq.data.multiparallel import lang_pairs
from lslo_fairseq.evaluation.paper import tables

RECIPES = Path(__file__).resolve().parents[1] / "examples" / "flores101"
LANGS = ("en", "fr", "ko", "oc")
GROUPS12 = "en:H,fr:H,ko:M,oc:V"   # lang12's groups, H M V
GROUPS30 = "en:H,fr:M,ko:L,oc:V"   # lang30's four groups H M L V on the same languages
N_DEV, N_DEVTEST = 16, 8
TINY_SHAPE_ARGS = shape_args(**TINY_SHAPE)  # the tiny model's sizes, without the arch's own flags


@pytest.fixture(scope="module")
def model_dir(tiny_data, tiny_base_checkpoint, tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("flores_model") / "flores101_mm100_615M", tiny_data,
                          tiny_base_checkpoint)


@pytest.fixture(scope="module")
def flores_dir(tmp_path_factory):
    return make_flores_dataset(tmp_path_factory.mktemp("flores"), LANGS, N_DEV, N_DEVTEST, skip=500)


def env_for(tmp, **extra):
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def sh(*cmd, env, timeout=900):
    """``bash CMD...`` with ``env``; fail with the output tails if it fails; return stdout."""
    proc = subprocess.run(["bash", *map(str, cmd)], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


# ---- preparation -------------------------------------------------------------------------------


@pytest.mark.slow  # model_dir holds the fairseq-trained tiny_base_checkpoint
def test_prepare_cli_dev_train_devtest_test(model_dir, flores_dir, tmp_path):
    out = tmp_path / "data"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "lslo-prepare-flores"), "--flores", str(flores_dir),
         "--model-dir", str(model_dir), "--out", str(out), "--langs", ",".join(LANGS),
         "--lang-groups", GROUPS12],
        capture_output=True, text=True, env=env_for(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((out / "prepared.json").read_text())
    assert info["rows"] == {"train": N_DEV, "valid": N_DEV, "test": N_DEVTEST}
    for lang, stem in (("fr", "fra"), ("oc", "oci")):
        assert (out / f"train.raw.{lang}").read_text() == (flores_dir / "dev" / f"{stem}.dev").read_text()
        assert (out / f"test.raw.{lang}").read_text() == (flores_dir / "devtest" / f"{stem}.devtest").read_text()
    pairs = lang_pairs(LANGS)
    assert (out / "lang_pairs.txt").read_text().strip() == ",".join(pairs)
    for split in ("train", "valid", "test"):
        for pair in pairs:
            for lang in pair.split("-"):
                assert (out / f"{split}.{pair}.{lang}.bin").is_file()
    # the checkpoint's own language list (saved --langs), in its order, for --lang-dict
    ckpt_langs = torch.load(model_dir / "model.pt", map_location="cpu")["cfg"]["task"].langs
    assert (out / "lang_dict.txt").read_text().split() == list(ckpt_langs)
    assert info["embedding_rows"] == info["dict_size"] + len(ckpt_langs)
    # a tarball of the same dataset gives the same binaries
    tar_out = tmp_path / "data_tar"
    prepare_flores101(make_tarball(flores_dir, tmp_path / "flores101_dataset.tar.gz"), model_dir, tar_out,
                      list(LANGS), dict.fromkeys(LANGS, "H"))
    for f in sorted((out / "mono").iterdir()):
        assert (tar_out / "mono" / f.name).read_bytes() == f.read_bytes(), f.name


@pytest.mark.slow  # model_dir holds the fairseq-trained tiny_base_checkpoint
def test_prepare_errors_name_the_problem_before_any_work(model_dir, flores_dir, tmp_path, monkeypatch):
    groups = dict.fromkeys(LANGS, "H")
    # dictionary that does not match the checkpoint (the usual M2M failure), caught before any text is read
    bad = tmp_path / "bad_model"
    shutil.copytree(model_dir, bad)
    lines = (bad / "dict.txt").read_text().splitlines()
    (bad / "dict.txt").write_text("\n".join(lines[:-8]) + "\n")
    monkeypatch.setattr(flores101, "FLORES101_URL", "http://127.0.0.1:9/flores101_dataset.tar.gz")
    with pytest.raises(FloresError, match=r"dictionary mismatch: .*model.pt has \d+ embedding rows.*#3233"):
        prepare_flores101(None, bad, tmp_path / "o1", list(LANGS), groups)
    assert not (tmp_path / "o1").exists()
    # a language the model does not have
    with pytest.raises(FloresError, match="de are not languages of"):
        prepare_flores101(flores_dir, model_dir, tmp_path / "o2", ["en", "de"], groups)
    # a FLORES directory without one of the languages
    partial = tmp_path / "partial" / "flores101_dataset"
    shutil.copytree(flores_dir, partial)
    (partial / "devtest" / "kor.devtest").unlink()
    with pytest.raises(FloresError, match="no dev/devtest file for kor"):
        prepare_flores101(partial, model_dir, tmp_path / "o3", list(LANGS), groups)
    with pytest.raises(FloresError, match="is not a FLORES-101 dataset"):
        prepare_flores101(tmp_path, model_dir, tmp_path / "o4", list(LANGS), groups)
    # no dataset given and no network: says how to proceed
    with pytest.raises(FloresError, match="could not download FLORES-101 .* --flores PATH"):
        prepare_flores101(None, model_dir, tmp_path / "o5", list(LANGS), groups)
    # a truncated checkpoint
    trunc = tmp_path / "trunc_model"
    shutil.copytree(model_dir, trunc)
    data = (trunc / "model.pt").read_bytes()
    (trunc / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="--model-dir: .*model.pt cannot be read as a torch checkpoint"):
        prepare_flores101(flores_dir, trunc, tmp_path / "o6", list(LANGS), groups)
    assert prepare_flores_main(["--model-dir", str(model_dir), "--out", str(tmp_path / "o7"), "--langs", "en,fr"]) == 2


# ---- every recipe, dry run: each recorded command checked as fairseq and the plugin check it -----


def _fake_data(root: Path, langs, dict_path) -> Path:
    """What the recipes read from a prepared data directory (lang_pairs.txt, lang_dict.txt, dict.txt)."""
    root.mkdir(parents=True)
    (root / "lang_pairs.txt").write_text(",".join(lang_pairs(langs)) + "\n")
    (root / "lang_dict.txt").write_text("\n".join(langs) + "\n")
    shutil.copyfile(dict_path, root / "dict.txt")
    return root


def _commands(runs: Path):
    for cmd_file in sorted(runs.glob("*/command.sh")):
        for line in cmd_file.read_text().splitlines():
            yield cmd_file.parent.name, shlex.split(line)


def _paper_params(table, row):
    """The printed #Params and half a unit of its last printed digit (its rounding), in parameters."""
    text = tables()[table]["rows"][row]["params"].rstrip("M")
    decimals = len(text.partition(".")[2])
    return float(text) * 1e6, 0.5 * 10 ** -decimals * 1e6


# Rows whose printed #Params is off its configuration's count by more than the printed rounding, and
# why. Every count is sum over adapted matrices of r_l x 2 x 1024 (paper shape); all the others
# agree within the printed rounding.
PAPER_INCONSISTENT = {
    "table1:4;4;4+WL": "15,335,424 (the 2;2;8 count, printed 15.3M there) printed 15.35M",
    "table1:16;16;16+WL": "61,341,696 printed 61.4M = 4 x 15.35M, the mis-rounded 4;4;4 figure scaled",
    "table1:64;64;64+WL": "245,366,784 printed 245.6M = 16 x 15.35M, likewise",
    "table4:Only fc 2;2;16+WL+GPS(0.9)": "48 fc matrices x (8x2 + 4x16) x 2048 = 7,864,320 printed 7.7M (2.1% off)",
    "table4:Only fc 2;2;32+WL+GPS(0.9)": "14,155,776 printed 14.1M (truncated, not rounded)",
}


def _check_train_command(argv, lang_count):
    """Parse a recorded fairseq-train command as fairseq-train does, set up its task (the plugin's
    validation) and build its model on the meta device; return the model."""
    from fairseq import options, tasks

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, input_args=argv[1:])
    task = tasks.setup_task(args)
    assert len(task.langs) == lang_count
    with torch.device("meta"):
        return task.build_model(args)


@pytest.mark.slow
def test_every_recipe_dry_run_is_valid_with_the_papers_budgets(tiny_data, model_dir, tmp_path):
    from lslo_fairseq.cli.params import count
    from lslo_fairseq.cli.score import build_parser as score_parser
    from lslo_fairseq.cli.plot import build_parser as plot_parser
    from lslo_fairseq.evaluation.paper import paper_rows

    seen = {}
    checked_budgets = []
    for subset in ("lang12", "lang30"):
        langs = list(PRESETS[subset])
        data = _fake_data(tmp_path / f"data_{subset}", langs, tiny_data["dict"])
        runs = tmp_path / f"runs_{subset}"
        env = env_for(tmp_path, MODEL_DIR=model_dir, DATA=data, RUNS=runs, DRY_RUN=1)
        scripts = sorted(RECIPES.glob("table2/*.sh")) if subset == "lang30" else [
            s for s in sorted(RECIPES.glob("*/*.sh")) if s.parent.name != "table2"]
        for script in scripts:
            out = sh(script, env=env)
            assert "[dry run]" in out, script
        for run_name, argv in _commands(runs):
            run_dir = (subset, run_name)
            tool = argv[0]
            if tool == "fairseq-train":
                model = _check_train_command(argv, len(langs))
                value = {flag: argv[argv.index(flag) + 1] for flag in (
                    "--max-epoch", "--label-smoothing", "--sampling-temperature", "--max-tokens", "--update-freq",
                    "--encoder-layerdrop", "--decoder-layerdrop", "--required-batch-size-multiple", "--lr")}
                assert "--amp" in argv and value == {  # the authors' command (test_recipe_command.py: all of it)
                    "--max-epoch": "15", "--label-smoothing": "0.2", "--sampling-temperature": "5.0",
                    "--max-tokens": "4000", "--update-freq": "4",  # one process: the authors' one GPU
                    "--encoder-layerdrop": "0", "--decoder-layerdrop": "0",
                    "--required-batch-size-multiple": "1", "--lr": value["--lr"]}
                lr = value["--lr"]
                if "lslo" in argv[argv.index("--task") + 1]:
                    assert lr == "3e-03"
                    cfg = model.lslo_config
                    assert (cfg.adapter_shape, cfg.init, cfg.fc_offset, cfg.alpha) == ("paper", "paper", 0, None)
                    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
                    logits = sum(p.numel() for n, p in model.named_parameters() if n.endswith("index_weights.logits"))
                    assert count(model)["adapters"] == trainable - logits  # logits: figure 1's run only
                    seen.setdefault(run_dir, {})["params"] = trainable - logits
                else:
                    assert lr == "1e-4" and not hasattr(model, "lslo_config")
            elif tool == "lslo-score":
                a = score_parser().parse_args(argv[1:argv.index("--")])
                (label, _, _), = paper_rows(a.paper, [a.name]).values()
                seen.setdefault(run_dir, {})["paper"] = a.paper
            elif tool == "lslo-plot":
                plot_parser().parse_args(argv[1:])
                seen.setdefault(run_dir, {})["plot"] = argv[1]
            else:
                raise AssertionError(f"unexpected command {tool} in {run_dir}")
    # every row of tables 1-4 and 8 has a recipe (rows shared with table 1 are run by table 1's)
    shared = {"table3": {"Pretrain", "Ft-all", "2;2;8+WL+GPS(0.9)"},
              "table4": {"Pretrain", "Ft-all", "2;2;8+WL+GPS(0.9)", "2;2;16+WL+GPS(0.9)"},
              "table8": {"Pretrain", "Ft-all", "E=2,k=8"}}
    evaluated = {v["paper"] for v in seen.values() if "paper" in v}
    for table, t in tables().items():
        for row in t["rows"]:
            if row not in shared.get(table, ()):
                assert f"{table}:{row}" in evaluated, f"no recipe for {table} row {row}"
    # each LSLo row trains exactly the paper's #Params, within the rounding of the printed figure
    for v in seen.values():
        if "params" in v and "paper" in v:
            table, row = v["paper"].split(":", 1)
            (theirs, rounding), ours = _paper_params(table, row), v["params"]
            checked_budgets.append((v["paper"], ours, theirs))
            within = abs(ours - theirs) <= rounding
            assert within != (v["paper"] in PAPER_INCONSISTENT), (v["paper"], ours, theirs, rounding)
            assert abs(ours - theirs) / theirs < 0.022, (v["paper"], ours, theirs)
    assert len(checked_budgets) == 12 + 3 + 2 + 5 + 4  # LSLo rows of tables 1, 2, 3, 4, 8
    assert {v.get("plot") for v in seen.values()} >= {"weights", "ise", "lsp"}
    print("\n".join(f"{p}: ours {o:,}, paper {t / 1e6:g}M" for p, o, t in checked_budgets))


def test_recipes_keep_the_papers_four_gpu_batch(tmp_path):
    """UPDATE_FREQ defaults to 4 / NPROC; an NPROC that does not divide 4 needs it set."""
    script = RECIPES / "table1" / "07_lslo_2-2-8_wl.sh"
    base = dict(MODEL_DIR=tmp_path / "model", DATA=tmp_path / "data", DRY_RUN=1)
    for nproc, freq in ((1, "4"), (2, "2"), (4, "1")):
        runs = tmp_path / f"runs{nproc}"
        sh(script, env=env_for(tmp_path, RUNS=runs, NPROC=nproc, **base))
        (argv,) = [a for _, a in _commands(runs) if "--lslo-ranks" in a]
        assert argv[argv.index("--update-freq") + 1] == freq, nproc
    proc = subprocess.run(["bash", str(script)], env=env_for(tmp_path, RUNS=tmp_path / "r3", NPROC=3, **base),
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "NPROC=3 does not divide the authors' 4 accumulated batches: set UPDATE_FREQ" in proc.stderr
    assert not (tmp_path / "r3").exists()  # nothing written
    sh(script, env=env_for(tmp_path, RUNS=tmp_path / "r3", NPROC=3, UPDATE_FREQ=1, **base))


# ---- representative recipes for real, tiny mode -------------------------------------------------


@pytest.mark.slow
def test_recipes_tiny_mode_end_to_end(model_dir, flores_dir, tmp_path):
    spm = model_dir / "sentencepiece.bpe.model"
    tiny = dict(MODEL_DIR=model_dir, FLORES=flores_dir, SPM_EVAL=spm, LANGS=",".join(LANGS), KEEP_LAST_EPOCHS=2,
                TRAIN_EXTRA=" ".join(["--cpu", "--num-workers", "0", *TINY_SHAPE_ARGS]), GEN_EXTRA="--cpu")
    env12 = env_for(tmp_path, DATA=tmp_path / "data12", RUNS=tmp_path / "runs12", LANG_GROUPS=GROUPS12, **tiny)
    sh(RECIPES / "prepare.sh", env=env12)
    sh(RECIPES / "table1" / "01_pretrain.sh", env=env12)
    sh(RECIPES / "table1" / "02_ft_all.sh", env=env12)
    sh(RECIPES / "figures" / "weight_learning.sh", env=env12)
    runs12 = tmp_path / "runs12"
    wl_json = runs12 / "weight-learning" / "weight_learning.json"
    wl = json.loads(wl_json.read_text())
    assert (runs12 / "weight-learning" / "figures" / "weights_fig1.png").is_file()
    out = sh(RECIPES / "table1" / "12_lslo_2-2-8_wl_gps0.9.sh", env={**env12, "WL_JSON": str(wl_json)})
    assert "paper table1 2;2;8+WL+GPS(0.9)" in out
    gps = runs12 / "2-2-8+WL+GPS0.9"
    log = (gps / "train.log").read_text()
    assert f"encoder index {wl['encoder_index']}" in log and f"decoder index {wl['decoder_index']}" in log
    assert "epoch 015" in log
    counts = json.loads((gps / "pruning_counts.json").read_text())
    sparsity = counts["sparsity"]
    assert abs(sparsity["H"] - 0.9) < 0.01 and abs(sparsity["M"] - 0.9) < 0.01 and sparsity["V"] == 0
    res = json.loads((gps / "spbleu.json").read_text())
    paper = tables()["table1"]["rows"]["2;2;8+WL+GPS(0.9)"]["spbleu"]
    by_row = {r["row"]: r for r in res["comparison"]}
    assert by_row["paper table1 2;2;8+WL+GPS(0.9)"]["AVG"] == paper[-1]
    assert by_row["2;2;8+WL+GPS(0.9) - paper"]["AVG"] == pytest.approx(res["table"][0]["AVG"] - paper[-1])
    assert res["meta"]["spm_model"]["path"] == str(spm)
    for row_dir in ("Pretrain", "Ft-all", "2-2-8+WL+GPS0.9", "weight-learning"):
        assert (runs12 / row_dir / "command.sh").read_text().strip()
        assert "torch" in (runs12 / row_dir / "env.txt").read_text()
    n_dir = len(lang_pairs(LANGS))
    for row_dir in ("Pretrain", "Ft-all", "2-2-8+WL+GPS0.9"):
        res = json.loads((runs12 / row_dir / "spbleu.json").read_text())
        assert len(next(iter(res["per_direction"].values()))) == n_dir
    # figure 3 over the kept epoch checkpoints (two per run here, KEEP_LAST_EPOCHS=2)
    sh(RECIPES / "figures" / "epochs.sh", env={**env12, "FIG3_COLUMNS": "H2H,AVG"})  # one V language: no V2V
    for row_dir in ("Ft-all", "2-2-8+WL+GPS0.9"):
        kept = sorted(p.name for p in (runs12 / row_dir).glob("checkpoint[0-9]*.pt"))
        assert kept == ["checkpoint14.pt", "checkpoint15.pt"], (row_dir, kept)
        assert not (runs12 / row_dir / "checkpoint_best.pt").exists()  # no validation, no best copy
        assert (runs12 / row_dir / "epochs" / "14" / "spbleu.json").is_file()
    assert (runs12 / "figure3" / "spbleu_per_epoch_fig3.png").is_file()
    sh(RECIPES / "figures" / "ise.sh", env=env12)
    for fig in ("ise_fig2", "ise_fig5"):
        for ext in ("png", "pdf"):
            assert (runs12 / "ise" / "figures" / f"{fig}.{ext}").is_file(), (fig, ext)
    # the table of all evaluated table-1 rows, in the paper's order, with the paper's rows
    out = sh(RECIPES / "summarize.sh", "table1", env=env12)
    summary = json.loads((runs12 / "table1.json").read_text())
    assert [r["run"] for r in summary["table"]] == ["Pretrain", "Ft-all", "2;2;8+WL+GPS(0.9)"]
    assert [r["row"] for r in summary["comparison"]][::2] == [
        "paper table1 Pretrain", "paper table1 Ft-all", "paper table1 2;2;8+WL+GPS(0.9)"]


@pytest.mark.slow
def test_recipe_lang30_row_on_two_processes(model_dir, flores_dir, tmp_path):
    tiny = dict(MODEL_DIR=model_dir, FLORES=flores_dir, SPM_EVAL=model_dir / "sentencepiece.bpe.model",
                LANGS=",".join(LANGS), TRAIN_EXTRA=" ".join(["--cpu", "--num-workers", "0", *TINY_SHAPE_ARGS]),
                GEN_EXTRA="--cpu", NPROC=2, DIST_BACKEND="gloo")
    env = env_for(tmp_path, DATA=tmp_path / "data30", RUNS=tmp_path / "runs30", LANG_GROUPS=GROUPS30, **tiny)
    sh(RECIPES / "prepare.sh", env=env)
    out = sh(RECIPES / "table2" / "05_lslo_2-2-8-8_wl_gps0.9.sh", env=env)
    assert "paper table2 2;2;8;8+WL+GPS(0.9)" in out
    run = tmp_path / "runs30" / "2-2-8-8+WL+GPS0.9"
    log = (run / "train.log").read_text()
    assert "distributed init (rank 1)" in log and "epoch 015" in log
    assert "torchrun" in (run / "command.sh").read_text()
    res = json.loads((run / "spbleu.json").read_text())
    assert "L2V" in res["columns"] and "H2H" not in res["columns"]  # one H language: no H2H direction


# ---- the paper's numbers and the FLORES-101 spBLEU model ---------------------------------------


def test_paper_rows_and_differences():
    from lslo_fairseq.evaluation.paper import PaperRowError, difference, paper_rows

    (label, cols, vals), = paper_rows("table1:2;2;8+WL+GPS(0.9)", ["ours"]).values()
    assert label == "paper table1 2;2;8+WL+GPS(0.9)" and cols[-1] == "AVG" and vals[-1] == 16.73
    assert paper_rows("table2", ["Ft-all", "mine"]).keys() == {"Ft-all"}
    assert paper_rows("table2", ["Ft-all"])["Ft-all"][2][-1] == 11.61
    # every transcribed row has one value per column
    for t in tables().values():
        assert all(len(r["spbleu"]) == len(t["columns"]) for r in t["rows"].values())
    aligned, diff = difference([30.0, None, 15.0], ["H2H", "H2M", "AVG"], cols, vals)
    assert aligned == [33.13, 22.33, 16.73] and diff[1] is None
    assert diff[0] == pytest.approx(-3.13) and diff[2] == pytest.approx(-1.73)
    with pytest.raises(PaperRowError, match="table1 has no row 'nope'; its rows: Pretrain"):
        paper_rows("table1:nope", ["x"])
    with pytest.raises(PaperRowError, match="no table 'table9'"):
        paper_rows("table9", ["x"])
    with pytest.raises(PaperRowError, match="no run is named like one of its rows"):
        paper_rows("table3", ["x"])


def test_spm_flores101_offline_says_what_to_do(tmp_path, monkeypatch):
    from lslo_fairseq import evaluation
    from lslo_fairseq.evaluation import spbleu

    monkeypatch.setenv("SACREBLEU", str(tmp_path / "sb"))
    monkeypatch.setattr(spbleu, "FLORES101_SPM_URL",  "http://127.0.0.1:9/sacrebleu_tokenizer_spm.model")
    with pytest.raises(evaluation.ScoringError, match=r"--spm flores101: .* cannot be downloaded .* pass --spm PATH"):
        spbleu.resolve_spm("flores101")
    models = tmp_path / "sb" / "models"
    assert not models.exists() or not any(models.iterdir())  # no partial file left behind
    models.mkdir(parents=True, exist_ok=True)
    cached = models / "sacrebleu_tokenizer_spm.model"
    cached.write_bytes(b"x")
    assert spbleu.resolve_spm("flores101") == str(cached)  # sacrebleu's cached copy is used
    with pytest.raises(evaluation.ScoringError, match="--spm: SentencePiece model /nonexistent does not exist"):
        spbleu.resolve_spm("/nonexistent")
