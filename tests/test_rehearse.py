"""examples/flores101/rehearse.sh, the full-size rehearsal before a table: its release-shaped model
(the full size counted on the meta device only), its refusals before any work, and one end-to-end run
in the tiny shape whose table is checked column by column."""
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lslo_fairseq.stand_in import release_shape
from lslo_fairseq.stand_in.rehearsal import CSV_KEYS, update_speed, within_printed

REHEARSE = Path(__file__).resolve().parents[1] / "examples" / "flores101" / "rehearse.sh"
LSLO_ROW, FT_ROW = "table1/12_lslo_2-2-8_wl_gps0.9", "table1/02_ft_all"


def env_for(**extra):
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
    for key in ("MODEL_DIR", "FLORES", "ROWS", "TRAIN_EXTRA", "GEN_EXTRA", "NPROC", "UPDATE_FREQ", "MAX_TOKENS"):
        env.pop(key, None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def test_release_shape_at_full_size_has_the_releases_parameter_count(tmp_path):
    """256,000 dictionary entries + 101 language tokens, 12+12 layers of d 1024: 614,966,272."""
    release_shape.write_dictionary([], release_shape.RELEASE_DICT_SIZE, tmp_path / "dict.txt")
    langs = release_shape.release_langs()
    cfg = release_shape.build_config(release_shape.train_args(tmp_path, langs, release_shape.SHAPES["full"]["shape"], 1))
    with torch.device("meta"):
        _, model = release_shape.build_model(cfg)
    assert len(langs) == 101
    assert tuple(model.encoder.embed_tokens.weight.shape) == (256_101, 1024)
    assert sum(p.numel() for p in model.parameters()) == 614_966_272


def test_speed_and_paper_rounding():
    log = [dict(num_updates=1, wps=0.0, wpb=600.0), dict(num_updates=2, wps=300.0, wpb=600.0),
           dict(num_updates=3, wps=100.0, wpb=400.0)]
    speed = update_speed(log)  # update 1 (no rate) left out
    assert speed["measured_updates"] == 2
    assert speed["s_per_update"] == pytest.approx((2 + 4) / 2)
    assert speed["s_per_target_token"] == pytest.approx(6 / 1000)
    assert within_printed(15_335_424, "15.3M") and not within_printed(15_335_424, "15.35M")
    assert within_printed(614_966_272, "615M") and within_printed(1, "-") is None


@pytest.mark.parametrize("settings, message", [
    (dict(SHAPE="huge"), "SHAPE must be 'full'"),
    (dict(ROWS="table1/99_none"), "ROWS: no row script"),
    (dict(UPDATES="0"), "UPDATES must be a whole number"),
    (dict(MAX_TOKENS="lots"), "MAX_TOKENS must be a whole number"),
    (dict(MODEL_DIR="/nonexistent/m"), "MODEL_DIR=/nonexistent/m has no model.pt"),
    (dict(FLORES="/nonexistent/f.tar.gz"), "FLORES=/nonexistent/f.tar.gz does not exist"),
])
def test_rehearse_refuses_bad_settings_before_any_work(tmp_path, settings, message):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(REHEARSE)], env=env_for(OUT=out, **settings), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert not out.exists()


def test_rehearse_leaves_a_foreign_out_directory_alone(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    proc = subprocess.run(["bash", str(REHEARSE)], env=env_for(OUT=tmp_path, SHAPE="tiny"), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "is not a rehearsal directory" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


@pytest.mark.slow  # fairseq-train, lslo-score and lslo-export on the tiny shape (about a minute)
def test_rehearse_tiny_end_to_end(tmp_path):
    out = tmp_path / "rehearse"
    proc = subprocess.run(["bash", str(REHEARSE)], env=env_for(SHAPE="tiny", OUT=out, N_DEV=40),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads((out / "rehearsal.json").read_text())
    build = json.loads((out / "model" / "build.json").read_text())
    assert build["shape"] == "tiny" and build["languages"] == 101
    assert build["embedding_rows"] == build["dict_entries"] + build["languages"]
    epochs = result["settings"]["epochs"]
    (basis,) = result["projection"]
    assert basis["groups"] == "lang12" and basis["directions"] == 132 and basis["target_tokens"] > 0
    assert not basis["exact"] and set(basis["estimated_langs"]) == {"sd", "wo"}

    rows = {r["row"]: r for r in result["rows"]}
    assert list(rows) == [LSLO_ROW, FT_ROW]
    for r in rows.values():
        assert not r.get("failed")
        assert r["updates"] == 2 and r["measured_updates"] == 1 and r["processes"] == 1
        assert r["s_per_update"] > 0 and r["s_per_target_token"] > 0 and r["target_tokens_per_update"] > 0
        assert r["train_wall_s"] > r["s_per_update"]
        assert r["train_peak_rss_bytes"] > 50e6 and r["eval_peak_rss_bytes"] > 50e6
        ckpt = Path(r["save_dir"]) / "checkpoint_last.pt"
        assert r["checkpoint_last_bytes"] == ckpt.stat().st_size > 0
        assert r["projected_s"] == pytest.approx(r["s_per_target_token"] * basis["target_tokens"] * epochs)
        assert r["eval_directions"] == 6 and r["eval_sentences"] == 4 * 6 and r["eval_s"] > 0
        assert r["amp"].startswith("inert on CPU")
    lslo, ft = rows[LSLO_ROW], rows[FT_ROW]
    assert (lslo["name"], lslo["paper_params"]) == ("2;2;8+WL+GPS(0.9)", "15.3M")
    assert (ft["name"], ft["paper_params"]) == ("Ft-all", "615M")
    # trainable: what lslo-params counts in the trained checkpoint; Ft-all trains the whole built model
    params = subprocess.run([str(Path(sys.executable).parent / "lslo-params"), "--checkpoint",
                             str(Path(lslo["save_dir"]) / "checkpoint_last.pt")],
                            capture_output=True, text=True, env=env_for(), timeout=120)
    counted = re.search(r"LSLo trainable parameters \(--lslo-adapter-shape paper\): ([\d,]+)", params.stdout)
    assert counted, params.stdout + params.stderr
    assert lslo["trainable_params"] == lslo["lslo_trainable_params"] == int(counted.group(1).replace(",", ""))
    assert ft["trainable_params"] == ft["total_params"] == build["parameters"]

    steps = {s["step"]: s for s in result["steps"]}
    assert set(steps) == {"build the model", "prepare.sh", "lslo-export fold en-ko", "lslo-export adapters"}
    for s in steps.values():
        assert s["returncode"] == 0 and s["s"] > 0 and s["peak_rss_bytes"] > 0
    for name in ("build the model", "lslo-export fold en-ko", "lslo-export adapters"):
        assert steps[name]["out_bytes"] > 0

    # the printed table (also rehearsal.txt) has every column; the CSV every key, one line per row
    headers = ["s/update", "tgt tok/update", "peak RSS train", "peak RSS eval", "checkpoint_last.pt", "trainable",
               "paper #Params", f"{epochs} epochs (projected)"]
    table = proc.stdout[proc.stdout.index("row "):]
    assert all(h in table for h in headers)
    assert (out / "rehearsal.txt").read_text() in proc.stdout
    with open(out / "rehearsal.csv", encoding="utf-8") as f:
        lines = list(csv.DictReader(f))
    assert list(lines[0]) == CSV_KEYS and [l["row"] for l in lines] == [LSLO_ROW, FT_ROW]
    assert float(lines[0]["s_per_update"]) == pytest.approx(lslo["s_per_update"])
