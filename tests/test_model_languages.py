"""lslo-prepare-flores on released-format model directories: it reports what model.pt records (format,
weight dtype, language options, embedding rows against dict.txt + languages) and accepts a language-token
order only when proven: recorded langs / lang_dict, or recorded lang_pairs in fairseq's own inferred order
that fit the embedding and language_pairs.txt; otherwise it refuses before any work, naming the file and
the command that fixes it. fp16 weights are accepted and load as the model's dtype."""
import argparse
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from flores_fixture import make_flores_dataset
from released_model import untrained_checkpoint
from lslo_fairseq.cli.prepare_flores import main as prepare_main
from lslo_fairseq.data.flores101 import FloresError, check_model_dir
from lslo_fairseq.data.multiparallel import lang_pairs

RECORDED = ["oc", "en", "ko", "fr"]  # an order that is not the sorted one
PAIRS = lang_pairs(["oc", "ko", "fr", "en"])  # all 12 directions, not sorted either


def fairseq_inferred(pairs):
    """fairseq 0.12's own language list without --langs/--lang-dict."""
    from fairseq.data.multilingual.multilingual_data_manager import MultilingualDatasetManager

    return MultilingualDatasetManager.load_langs(argparse.Namespace(lang_dict=None, langs=None, lang_pairs=list(pairs)))


def model_dir(root: Path, data, langs, pairs_file=PAIRS, **checkpoint) -> Path:
    """A released-format directory (model.pt, dict.txt, sentencepiece.bpe.model, language_pairs.txt)."""
    folder = root / "flores101_mm100_615M"
    folder.mkdir(parents=True)
    shutil.copyfile(data["dict"], folder / "dict.txt")
    shutil.copyfile(data["spm_model"], folder / "sentencepiece.bpe.model")
    (folder / "language_pairs.txt").write_text(",".join(pairs_file) + "\n", encoding="utf-8")
    untrained_checkpoint(folder / "model.pt", folder / "dict.txt", langs, PAIRS, **checkpoint)
    return folder


@pytest.fixture(scope="module")
def flores(tmp_path_factory):
    return make_flores_dataset(tmp_path_factory.mktemp("flores"), ["en", "fr", "ko", "oc"], 4, 4)


def prepare(capsys, folder, out, flores, *extra):
    capsys.readouterr()
    status = prepare_main(["--model-dir", str(folder), "--out", str(out), "--flores", str(flores), "--langs", "en,fr",
                           "--lang-groups", "en:H,fr:H", *map(str, extra)])
    return status, capsys.readouterr().err


def test_recorded_langs_in_legacy_args_are_the_order_and_reported(tiny_data, flores, tmp_path, capsys):
    folder = model_dir(tmp_path, tiny_data, RECORDED, fmt="args", record=("langs", "lang_pairs"))
    facts = check_model_dir(folder, ["en", "fr"])
    assert facts["model_langs"] == RECORDED
    report = facts["model_report"]
    rows, size = report["embedding_rows"], report["dict_size"]
    assert report == {"format": "args as argparse.Namespace (fairseq < 0.10)", "weights_dtype": "float32",
                      "language_options": {"langs": "args.langs", "lang_dict": "not recorded",
                                           "lang_pairs": "args.lang_pairs"},
                      "embedding_rows": rows, "dict_size": size, "languages": 4, "token_order_from": "args.langs"}
    assert rows == size + 4 == len((folder / "dict.txt").read_text().splitlines()) + 4 + 4
    status, err = prepare(capsys, folder, tmp_path / "out", flores)
    assert status == 0, err
    assert (f"{folder / 'model.pt'}: args as argparse.Namespace (fairseq < 0.10), float32 weights; language options: "
            f"langs args.langs, lang_dict not recorded, lang_pairs args.lang_pairs; {rows} embedding rows = dict.txt "
            f"{size} + 4 language tokens; token order from args.langs") in err
    assert (tmp_path / "out" / "lang_dict.txt").read_text().split() == RECORDED


def test_cfg_with_lang_pairs_only_is_accepted_in_fairseqs_inferred_order(tiny_data, tmp_path):
    order = fairseq_inferred(PAIRS)
    assert order == ["en", "fr", "ko", "oc"] != RECORDED
    folder = model_dir(tmp_path / "a", tiny_data, order, fmt="cfg", record=("lang_pairs",))
    facts = check_model_dir(folder, ["en", "fr"])
    assert facts["model_langs"] == order
    report = facts["model_report"]
    assert report["format"] == "cfg (fairseq >= 0.10)"
    assert report["language_options"] == {"langs": "not recorded", "lang_dict": "not recorded",
                                          "lang_pairs": "cfg.task.lang_pairs"}
    assert report["token_order_from"] == "sorted languages of cfg.task.lang_pairs (fairseq's inference)"
    # language_pairs.txt with other languages: not proven
    other = model_dir(tmp_path / "b", tiny_data, order, pairs_file=PAIRS + ["en-de"], fmt="cfg", record=("lang_pairs",))
    with pytest.raises(FloresError, match=r"records no language list \(langs, lang_dict\), and the sorted languages "
                                          r"of its training cfg.task.lang_pairs cannot be its token order: .*"
                                          r"language_pairs.txt has other languages \(de differ\)"):
        check_model_dir(other, ["en", "fr"])
    # an embedding with a fifth language token: the recorded pairs' four languages do not fill it
    five = model_dir(tmp_path / "c", tiny_data, order + ["zu"], fmt="cfg", record=("lang_pairs",))
    with pytest.raises(FloresError, match=r"those 4 languages and dict.txt's \d+ entries give \d+ rows, not the "
                                          r"embedding's \d+. Write the model's languages"):
        check_model_dir(five, ["en", "fr"])


def test_nothing_recorded_is_refused_with_the_command_that_fixes_it(tiny_data, flores, tmp_path, capsys,
                                                                      monkeypatch):
    folder = model_dir(tmp_path, tiny_data, fairseq_inferred(PAIRS), fmt="cfg", record=())
    out = tmp_path / "out"
    status, err = prepare(capsys, folder, out, flores)
    assert status == 2 and not out.exists()
    assert (f"{folder / 'model.pt'} records no language list (langs, lang_dict) and no training lang_pairs, so the "
            "order of its language tokens is unknown. Write the model's languages in the order of its language tokens, "
            "one per line, to a file and rerun lslo-prepare-flores with --model-langs FILE") in err
    assert "found: cfg (fairseq >= 0.10), float32 weights" in err and "lang_pairs: not recorded" in err
    command = re.search(r"to accept that order run: (.*?) && lslo-prepare-flores --model-langs model_langs.txt", err)
    assert command, err
    monkeypatch.chdir(tmp_path)  # the one-liner writes model_langs.txt here
    subprocess.run(["bash", "-c", command.group(1)], check=True)
    assert (tmp_path / "model_langs.txt").read_text().split() == ["en", "fr", "ko", "oc"]
    status, err = prepare(capsys, folder, out, flores, "--model-langs", "model_langs.txt")
    assert status == 0, err
    assert "token order from --model-langs model_langs.txt" in err
    assert (out / "lang_dict.txt").read_text().split() == ["en", "fr", "ko", "oc"]
    # a recorded --lang-dict that is not here cannot be read: refused, naming it
    gone = model_dir(tmp_path / "gone", tiny_data, RECORDED, fmt="args", record=("lang_dict",),
                     lang_dict="/nowhere/lang_dict.txt")
    with pytest.raises(FloresError, match=r"model.pt records args.lang_dict /nowhere/lang_dict.txt, which does not "
                                          r"exist here \(it orders the language tokens\): copy that file there"):
        check_model_dir(gone, ["en", "fr"])
    (tmp_path / "lang_dict.txt").write_text("\n".join(RECORDED) + "\n")
    here = model_dir(tmp_path / "here", tiny_data, RECORDED, fmt="args", record=("lang_dict",),
                     lang_dict=str(tmp_path / "lang_dict.txt"))
    facts = check_model_dir(here, ["en", "fr"])
    assert facts["model_langs"] == RECORDED and facts["model_report"]["token_order_from"].startswith("args.lang_dict")


def test_fp16_weights_are_accepted_reported_and_load_as_the_models_dtype(tiny_data, tmp_path):
    from fairseq import checkpoint_utils
    from fairseq.data import Dictionary
    from fairseq.models.transformer import TransformerModel

    from lslo_fairseq.checkpoints.reading import StandInTask

    folder = model_dir(tmp_path, tiny_data, RECORDED, fmt="args", dtype=torch.float16)
    facts = check_model_dir(folder, ["en", "fr"])
    assert facts["model_report"]["weights_dtype"] == "float16" and facts["model_langs"] == RECORDED
    # as fairseq-train --finetune-from-model loads it: a float32 model with the float16 values
    state = checkpoint_utils.load_checkpoint_to_cpu(str(folder / "model.pt"))
    task = StandInTask(facts["model_langs"], dictionary=Dictionary.load(str(folder / "dict.txt")))
    model = TransformerModel.build_model(state["args"], task)
    model.load_state_dict(state["model"], strict=True)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    for name, value in model.state_dict().items():
        if state["model"][name].is_floating_point():
            saved = state["model"][name]
            assert saved.dtype == torch.float16 and torch.equal(value, saved.float()), name
