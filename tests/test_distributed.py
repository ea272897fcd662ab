"""Data-parallel fairseq-train on CPU (2 gloo processes under torchrun) against one process with the
same total batch: 1 process with --update-freq 2 sees batches (0,1), (2,3), ... per update, and
fairseq's ShardedIterator gives rank r batches r, r+2, ..., so each update of the 2-process run
sums the gradients of the same two batches. Dropout is off: fairseq seeds every rank alike per
update, so two processes would draw the dropout masks of one micro-batch twice."""
import json
import re

import pytest
import torch

from helpers import GPS, grouped_train_args, losses, pruning_lines, run_fairseq, run_fairseq_distributed

UPDATES = 10
# --batch-size 1: every process's batch is one sentence (one source and one target language of the
# four), so each update leaves at least three languages without a sentence in each process.
SAME_TOTAL_BATCH = ["--batch-size", "1", "--max-update", str(UPDATES), "--dropout", "0",
                    "--attention-dropout", "0", "--activation-dropout", "0", "--ddp-backend", "legacy_ddp",
                    "--load-checkpoint-on-all-dp-ranks"]


@pytest.fixture(scope="module")
def dp_runs(tiny_data, tiny_base_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("dp")
    extra = [*GPS, "--finetune-from-model", str(tiny_base_checkpoint), *SAME_TOTAL_BATCH]
    run_fairseq("fairseq-train", [*grouped_train_args(tiny_data, root / "one", extra), "--update-freq", "2"],
                root / "one.log")
    # each rank its own --save-dir: whatever rank 1 writes would land in two/rank1
    run_fairseq_distributed("fairseq-train", grouped_train_args(tiny_data, root / "two" / "rank{RANK}", extra),
                            root / "two.log", nproc=2, timeout=240)
    return dict(root=root, one=(root / "one.log").read_text(), two=(root / "two.log").read_text())


@pytest.mark.slow
def test_two_processes_train_the_same_model_as_one(dp_runs):
    one, two = losses(dp_runs["one"]), losses(dp_runs["two"])
    assert sorted(two) == list(range(1, UPDATES + 1)) and two == one
    # 2 sentences per update in both runs: one per process (or per micro-batch) in every update
    for log in (dp_runs["one"], dp_runs["two"]):
        assert re.findall(r"train_inner \|.*? bsz=(\d+),", log) == ["2"] * UPDATES
    a = torch.load(dp_runs["root"] / "one" / "checkpoint_last.pt", map_location="cpu")
    b = torch.load(dp_runs["root"] / "two" / "rank0" / "checkpoint_last.pt", map_location="cpu")
    n_masked = 0
    for key, value in a["model"].items():
        if key.endswith("_mask"):
            assert torch.equal(b["model"][key], value), key
            n_masked += int((value == 0).sum())
        else:
            torch.testing.assert_close(b["model"][key], value, msg=key)
    assert n_masked > 0
    # Adam's moments: a rank pruning differently would have fed gradient into entries rank 0 masked
    sa, sb = a["last_optimizer_state"]["state"], b["last_optimizer_state"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for name, value in sa[i].items():
            torch.testing.assert_close(sb[i][name], value, msg=f"optimizer state {i}.{name}")


@pytest.mark.slow
def test_pruning_runs_on_every_rank_and_only_rank_0_writes(dp_runs):
    root = dp_runs["root"]
    schedule = pruning_lines(dp_runs["one"])
    assert sorted(schedule) == [1, 3, 4, 5, 6, 7, 8]  # GPS: start 2, duration 6, in updates
    assert pruning_lines(dp_runs["two"]) == schedule
    assert not (root / "two" / "rank1").exists()
    counts = [json.loads((d / "pruning_counts.json").read_text()) for d in (root / "one", root / "two" / "rank0")]
    assert counts[0] == counts[1]


@pytest.mark.slow
def test_multi_process_run_without_load_on_all_ranks_fails_clearly(tiny_data, tiny_base_checkpoint, tmp_path):
    extra = ["--finetune-from-model", str(tiny_base_checkpoint), *SAME_TOTAL_BATCH]
    extra.remove("--load-checkpoint-on-all-dp-ranks")
    with pytest.raises(RuntimeError) as err:
        run_fairseq_distributed("fairseq-train", grouped_train_args(tiny_data, tmp_path / "x", extra),
                                tmp_path / "x.log", nproc=2, timeout=180)
    log = (tmp_path / "x.log").read_text()
    assert "multi-process training needs --load-checkpoint-on-all-dp-ranks" in log, str(err.value)[-2000:]
    assert "Start iterating" not in log


@pytest.mark.parametrize("kernel", ["gather", "dense", "grouped"])
@pytest.mark.parametrize("extra", [[], ["--lslo-weight-learning", "--lslo-encoder-index", "paper",
                                        "--lslo-decoder-index", "paper"],
                                   ["--lslo-prune", "gps", "--lslo-prune-targets", "en,fr,ko"]])
def test_every_trainable_tensor_gets_a_gradient_from_a_one_sentence_batch(kernel, extra, monkeypatch):
    """What PyTorch's c10d DDP needs without find_unused_parameters: all languages' adapters are
    slices of one tensor per layer, so a batch without a language still reaches that tensor
    (with zero gradient in that language's slice)."""
    from model_utils import build_tiny_model, mixed_batch, randomize_adapters

    from lslo_fairseq.modules.lslo_linear import LSLoLinear

    monkeypatch.setattr(LSLoLinear, "kernel_choice", kernel)
    model, task = build_tiny_model(extra=extra)
    randomize_adapters(model)  # B != 0, so that A gets gradient too
    src, lengths, prev, _ = mixed_batch(task, [("oc", "ko", [1, 2, 3], [4, 5])])
    out, _ = model(src, lengths, prev)
    out.sum().backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and [n for n, p in trainable if p.grad is None] == []
    oc, en = model.lslo_config.languages.index("oc"), model.lslo_config.languages.index("en")
    layer = model.lslo_layers["encoder.layers.0.fc1"]
    a = layer.raw(layer.param_names()[0])
    (lo, hi), (elo, ehi) = layer.lang_columns(oc), layer.lang_columns(en)
    assert a.grad[lo:hi].abs().sum() > 0 and a.grad[elo:ehi].abs().sum() == 0  # en is absent
