"""lslo-score --generate (evaluation.generation) loads the checkpoint and sets up the task once per
run, and still writes, for every direction, the generate-test.txt that fairseq-generate run for that
direction alone writes (its log lines aside): the same S-, T-, H-, D-, P- lines and score line."""
import re
from pathlib import Path

import pytest

from helpers import USER_DIR, run_fairseq
from lslo_fairseq.evaluation import generation

pytestmark = pytest.mark.slow  # decodes with the session's fairseq-trained checkpoints

# sources and targets both change from one direction to the next
DIRECTIONS = [("en", "fr"), ("ko", "oc"), ("oc", "en")]
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \| ")  # fairseq's logging format (timestamps)


def extra_args(data):
    return ["--langs", ",".join(data["langs"]), "--encoder-langtok", "src", "--decoder-langtok",
            "--fixed-dictionary", data["dict"], "--cpu", "--max-len-b", "20", "--batch-size", "7"]


def model(kind, lslo_run, tiny_base_checkpoint):
    """(checkpoint, task, user dir): an adapter-only LSLo checkpoint, or the plain base transformer."""
    if kind == "lslo":
        return lslo_run["ckpt"], "translation_multi_simple_epoch_lslo", USER_DIR
    return tiny_base_checkpoint, "translation_multi_simple_epoch", None


def cli_output(data, checkpoint, task, user_dir, src, tgt, out: Path) -> str:
    """generate-test.txt of ``fairseq-generate`` for one direction (a process of its own, as
    lslo-score ran it per direction before), without its log lines. Always with the plugin: it lets
    torch's weights_only loading read fairseq checkpoints (in-process it is imported already)."""
    args = generation.generation_args(data["data_dir"], str(checkpoint), src, tgt, DIRECTIONS, str(out),
                                      user_dir or USER_DIR, extra_args(data), beam=5, gen_subset="test", task=task)
    out.parent.mkdir(parents=True, exist_ok=True)
    run_fairseq("fairseq-generate", args, out.with_suffix(".log"))
    text = (out / "generate-test.txt").read_text(encoding="utf-8")
    return "".join(line for line in text.splitlines(keepends=True) if not LOG_LINE.match(line))


@pytest.fixture
def one_thread():
    """One torch thread, as the fairseq-generate processes have (helpers.fairseq_env): another
    thread count sums floats in another order, and the last digits of a score can differ."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("kind", ["lslo", "plain"])
def test_one_load_writes_what_fairseq_generate_writes_per_direction(kind, tiny_data, lslo_run,
                                                                   tiny_base_checkpoint, tmp_path, one_thread):
    checkpoint, task, user_dir = model(kind, lslo_run, tiny_base_checkpoint)
    files = generation.generate_all_directions(tiny_data["data_dir"], str(checkpoint), DIRECTIONS,
                                               str(tmp_path / "new"), user_dir, extra_args(tiny_data),
                                               beam=5, gen_subset="test", task=task)
    assert list(files) == DIRECTIONS
    for src, tgt in DIRECTIONS:
        new = Path(files[(src, tgt)]).read_text(encoding="utf-8")
        assert sum(line.startswith("H-") for line in new.splitlines()) == 30
        assert "Generate test with beam=5: BLEU" in new
        old = cli_output(tiny_data, checkpoint, task, user_dir, src, tgt, tmp_path / "cli" / f"{src}-{tgt}")
        assert new == old, f"{src}-{tgt}"


def test_a_direction_leaves_nothing_to_the_next(tiny_data, lslo_run, tmp_path):
    """The same direction decoded first and after others gives the same file; decoding another
    direction in between uses that direction's target language token, not the previous one's."""
    checkpoint, task, user_dir = model("lslo", lslo_run, None)
    translator = generation.Translator(tiny_data["data_dir"], str(checkpoint), DIRECTIONS, user_dir,
                                       extra_args(tiny_data), beam=5, gen_subset="test", task=task)
    dictionary = translator.task.target_dictionary
    size, counts = len(dictionary), list(dictionary.count)
    first = Path(translator.translate("en", "fr", str(tmp_path / "a"))).read_text(encoding="utf-8")
    other = Path(translator.translate("ko", "oc", str(tmp_path / "b"))).read_text(encoding="utf-8")
    again = Path(translator.translate("en", "fr", str(tmp_path / "c"))).read_text(encoding="utf-8")
    assert first == again and other != first
    # the words that scoring re-encodes (fairseq adds them to the dictionary) were taken out again
    assert len(dictionary) == size and dictionary.count == counts


def test_the_checkpoint_is_loaded_and_the_task_set_up_once_per_run(tiny_data, lslo_run, tmp_path, monkeypatch):
    from fairseq import checkpoint_utils, tasks

    calls = {"load": 0, "setup": 0}
    load, setup = checkpoint_utils.load_checkpoint_to_cpu, tasks.setup_task

    def counting_load(*args, **kwargs):
        calls["load"] += 1
        return load(*args, **kwargs)

    def counting_setup(*args, **kwargs):
        calls["setup"] += 1
        return setup(*args, **kwargs)

    monkeypatch.setattr(checkpoint_utils, "load_checkpoint_to_cpu", counting_load)
    monkeypatch.setattr(tasks, "setup_task", counting_setup)
    checkpoint, task, user_dir = model("lslo", lslo_run, None)
    files = generation.generate_all_directions(tiny_data["data_dir"], str(checkpoint), DIRECTIONS,
                                               str(tmp_path / "r"), user_dir, extra_args(tiny_data),
                                               beam=1, gen_subset="test", task=task, progress=lambda *_: None)
    assert len(files) == len(DIRECTIONS)
    assert calls == {"load": 1, "setup": 1}
