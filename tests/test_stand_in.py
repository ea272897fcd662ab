"""The demo's shipped stand-in: its checksum check, the pretraining text's exclusion of the demo's
rows, and (slow) the rebuild script end to end in its quick mode, including resuming."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lslo_fairseq.stand_in import package
from lslo_fairseq.stand_in.build import HELP_TSV, LANGS, SHARED_DATA, UI_TSV
from lslo_fairseq.stand_in.corpus import build_corpus, demo_cells, exclude, normalize, read_rows

from helpers import fairseq_env

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = package.STAND_IN_DIR
needs_shared = pytest.mark.skipif(not (SHARED_DATA / UI_TSV).is_file(), reason="../shared/data not beside the clone")
needs_stand_in = pytest.mark.skipif(not (SHIPPED / package.SUMS).is_file(), reason="no stand-in shipped yet")


def copy_of(folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "stand_in"
    shutil.copytree(folder, out)
    return out


@needs_stand_in
def test_shipped_stand_in_matches_its_checksums():
    paths = package.verify()
    assert set(paths) == set(package.FILES)
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    assert manifest["bytes"] <= 20_000_000
    assert manifest["curve"] and manifest["curve"][-1]["updates"] == manifest["recipe"]["max_update"]


@needs_stand_in
@pytest.mark.parametrize("name", package.FILES)
def test_a_corrupted_file_fails_naming_it_and_the_rebuild_command(tmp_path, name):
    folder = copy_of(SHIPPED, tmp_path)
    path = folder / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(package.StandInError) as e:
        package.verify(folder)
    assert str(path) in str(e.value) and package.REBUILD in str(e.value) and "SHA-256" in str(e.value)


@needs_stand_in
def test_demo_refuses_a_corrupted_stand_in_before_any_work(tmp_path):
    folder = copy_of(SHIPPED, tmp_path)
    with open(folder / package.CHECKPOINT, "r+b") as f:
        f.seek(1000)
        f.write(b"\0" * 16)
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "lslo_fairseq.cli.demo", "--quick", "--stand-in", str(folder),
                           "--out", str(out)], capture_output=True, text=True, env=fairseq_env(), timeout=300)
    assert proc.returncode == 2
    assert f"{folder / package.CHECKPOINT} is corrupted or changed" in proc.stderr
    assert package.REBUILD in proc.stderr
    assert not out.exists()


def test_missing_files_and_sums_are_named(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    with pytest.raises(package.StandInError, match="SHA256SUMS not found.*rebuild-stand-in"):
        package.verify(folder)
    (folder / package.SUMS).write_text("".join(f"{'0' * 64}  {n}\n" for n in package.FILES))
    with pytest.raises(package.StandInError, match=r"checkpoint\.pt is missing"):
        package.verify(folder)


def test_exclusion_drops_rows_sharing_any_cell_with_the_demo():
    demo = [{"en": "Open the file", "fr": "Ouvrir le fichier"}]
    rows = [{"en": "open  the FILE", "de": "x"},          # same English after normalize
            {"en": "Close it", "fr": "Ouvrir le fichier"},  # same French
            {"en": "Close it", "fr": "Fermer"}]             # nothing shared
    kept, dropped = exclude(rows, demo_cells(demo))
    assert kept == [rows[2]] and dropped == 2
    assert normalize(" A  b\tC ") == "a b c"


@needs_shared
def test_pretraining_text_shares_no_cell_with_the_demo_table():
    """Over the real tables: every pretraining pair's two sides are absent from the demo's rows in
    their language, and oc/or are far rarer than the high-resource languages."""
    demo = read_rows(package.DEMO_TSV, LANGS)
    assert len(demo) == 1964
    corpus = build_corpus([("help", SHARED_DATA / HELP_TSV, 1), ("ui", SHARED_DATA / UI_TSV, 3)], demo, LANGS, 40, 1)
    held = demo_cells(demo)
    for (src, tgt), pairs in corpus.pairs.items():
        for s, t in pairs:
            assert normalize(s) not in held[src] and normalize(t) not in held[tgt]
    counts = corpus.target_counts()
    assert len(corpus.pairs) == 90
    assert counts["oc"] * 10 < counts["fr"] and counts["or"] * 40 < counts["fr"]
    assert corpus.dropped["ui: shares a cell with the demo's table"] >= 1964


@pytest.mark.slow
@needs_shared
def test_quick_rebuild_packs_a_verifiable_fp16_stand_in_and_resumes(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    cmd = ["bash", str(ROOT / "scripts" / "rebuild-stand-in.sh"), "--quick", "--work", str(work), "--out", str(out)]
    env = dict(fairseq_env(), PYTHON=sys.executable)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    paths = package.verify(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [p["updates"] for p in manifest["curve"]] == [6, 12]
    assert all("AVG" in p for p in manifest["curve"])
    state = torch.load(paths[package.CHECKPOINT], weights_only=False)
    assert state["last_optimizer_state"] is None
    assert {v.dtype for v in state["model"].values() if v.is_floating_point()} == {torch.float16}
    # a rerun resumes: nothing is retrained, the package is the same
    before = (out / package.SUMS).read_text()
    log_lines = (work / "train.log").read_text().count("\n")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "train.log").read_text().count("\n") == log_lines
    assert (out / package.SUMS).read_text() == before
