"""lslo-export ct2: one merged direction as a CTranslate2 model; its beam-5 output equals
fairseq-generate's (the LSLo checkpoint through the plugin) on at least 95% of the test rows in
float32, and an int8 model converts and decodes; bad input is refused before any work."""
import math
from pathlib import Path

import pytest

from helpers import USER_DIR, lslo_task_args, run_fairseq
from lslo_fairseq.export import imports

try:
    imports.ctranslate2()
except imports.MissingLibraryError as e:  # only where ctranslate2 cannot be installed
    pytest.skip(f"the hf extra is not installed: {e}", allow_module_level=True)

from lslo_fairseq.cli.export import main as export_main  # noqa: E402
from lslo_fairseq.export.ct2 import translate  # noqa: E402

SRC, TGT = "fr", "oc"


def fairseq_hypotheses(data, checkpoint, out_dir):
    args = [*lslo_task_args(data), "--user-dir", USER_DIR, "--path", checkpoint, "--source-lang", SRC,
            "--target-lang", TGT, "--gen-subset", "test", "--beam", "5", "--max-len-b", "20",
            "--required-batch-size-multiple", "1", "--cpu", "--results-path", out_dir]
    run_fairseq("fairseq-generate", args, Path(str(out_dir) + ".log"))
    hyps = {}
    for line in (Path(out_dir) / "generate-test.txt").read_text(encoding="utf-8").splitlines():
        tag, _, rest = line.partition("\t")
        if tag.startswith("H-"):
            score, _, tokens = rest.partition("\t")
            hyps[int(tag[2:])] = dict(score=float(score) * math.log(2), tokens=tokens)
    return hyps


@pytest.mark.slow
def test_ct2_float32_decodes_like_fairseq_and_int8_converts(lslo_run, tiny_data, tmp_path, capsys):
    out = tmp_path / "ct2"
    assert export_main(["ct2", "--checkpoint", str(lslo_run["ckpt"]), "-s", SRC, "-t", TGT, "--out", str(out)]) == 0
    assert (out / "model.bin").is_file() and (out / "sentencepiece.bpe.model").is_file()
    rows = Path(tiny_data["test_raw"][SRC]).read_text(encoding="utf-8").splitlines()
    fs = fairseq_hypotheses(tiny_data, lslo_run["ckpt"], tmp_path / "fs")
    ct = translate(str(out), rows, SRC, TGT, beam=5, max_len_b=20)
    same = [i for i, h in enumerate(ct) if h["pieces"] == fs[i]["tokens"]]
    print(f"CTranslate2 float32 = fairseq-generate on {len(same)}/{len(ct)} rows")
    assert len(same) >= math.ceil(0.95 * len(ct)), [(i, fs[i]["tokens"], ct[i]["pieces"]) for i in range(len(ct))
                                                    if i not in same]
    q = tmp_path / "ct2_int8"
    assert export_main(["ct2", "--checkpoint", str(lslo_run["ckpt"]), "-s", SRC, "-t", TGT, "--out", str(q),
                        "--quantization", "int8"]) == 0
    assert (q / "model.bin").stat().st_size < (out / "model.bin").stat().st_size / 2
    assert len(translate(str(q), rows, SRC, TGT, beam=5, max_len_b=20, compute_type="int8")) == len(rows)
    capsys.readouterr()
    for argv, says in ((["-s", "de", "-t", TGT], "--source-lang: 'de'"), (["-s", SRC, "-t", SRC], "both 'fr'"),
                       (["-s", SRC, "-t", TGT, "--quantization", "int3"], "--quantization"),
                       (["-s", SRC, "-t", TGT, "--spm", str(tmp_path / "no.model")], "--spm")):
        assert export_main(["ct2", "--checkpoint", str(lslo_run["ckpt"]), *argv, "--out", str(tmp_path / "bad")]) == 2
        assert says in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
