"""lslo-score --merge-search: the search logic with a fake scorer (grid argmax, global best average,
Bayesian optimisation, the JSON that --lslo-merge-weights reads), bad input refused before any
generation, and one slow run through fairseq on a tiny modular model."""
import csv
import json

import pytest
import torch

from lslo_fairseq.evaluation import ScoringError
from lslo_fairseq.evaluation import merge_search as ms
from lslo_fairseq.merging import read_merge_weights

# each direction's score peaks at its own w_in; fr-ko is flat-topped to test ties (first wins)
PEAKS = {("fr", "ko"): 0.3, ("ko", "fr"): 0.8, ("oc", "fr"): 0.6}


def fake_score(w, d):
    if d == ("fr", "ko"):
        return 10.0 if 0.2 <= w <= 0.4 else 10.0 - abs(w - 0.3) * 5
    return 20.0 - 30.0 * (w - PEAKS[d]) ** 2


class FakeScorer:
    def __init__(self):
        self.calls = []

    def __call__(self, w_in, directions):
        self.calls.append((w_in, tuple(directions)))
        return {d: fake_score(w_in, d) for d in directions}


def test_grid_picks_each_directions_argmax_and_the_json_round_trips(tmp_path):
    scorer = FakeScorer()
    dirs = list(PEAKS)
    result = ms.search(dirs, scorer, "grid", "direction", ms.DEFAULT_GRID)
    assert [w for w, _ in scorer.calls] == list(ms.DEFAULT_GRID)  # one translation of all directions per point
    assert all(d == tuple(dirs) for _, d in scorer.calls)
    assert result.chosen == {("fr", "ko"): 0.2, ("ko", "fr"): 0.8, ("oc", "fr"): 0.6}  # the tie: the first point
    assert len(result.trials) == 11 * 3
    avg = {w: sum(fake_score(w, d) for d in dirs) / 3 for w in ms.DEFAULT_GRID}
    assert result.weights == max(avg, key=avg.get)
    json_path, csv_path, plots = ms.write_outputs(result, str(tmp_path / "mw"), {"checkpoint": "x.pt"})
    weights, per, _ = read_merge_weights(json_path)
    assert weights == pytest.approx((result.weights, 1 - result.weights))
    assert per == {("fr", "ko"): pytest.approx((0.2, 0.8)), ("ko", "fr"): pytest.approx((0.8, 0.2)),
                   ("oc", "fr"): pytest.approx((0.6, 0.4))}
    rows = list(csv.DictReader(open(csv_path, encoding="utf-8")))
    assert len(rows) == 33 and rows[0].keys() == {"trial", "w_in", "w_out", "direction", "spbleu"}
    assert all(abs(float(r["w_in"]) + float(r["w_out"]) - 1) < 1e-9 for r in rows)
    assert all(p.endswith((".png", ".pdf")) and (tmp_path / p).exists() for p in plots)
    record = json.loads(open(json_path).read())["search"]
    assert record["checkpoint"] == "x.pt" and record["chosen"]["ko-fr"]["score"] == pytest.approx(20.0)


def test_global_scope_picks_the_best_average_for_every_direction(tmp_path):
    dirs = [("ko", "fr"), ("oc", "fr")]  # peaks 0.8 and 0.6: the best average is 0.7
    result = ms.search(dirs, FakeScorer(), "grid", "global", [0, 0.5, 0.6, 0.7, 0.8, 1])
    assert result.weights == 0.7 and result.chosen == {d: 0.7 for d in dirs}
    weights, per, _ = read_merge_weights(ms.write_outputs(result, str(tmp_path / "g"))[0])
    assert weights == pytest.approx((0.7, 0.3)) and per == {}


def test_bayes_finds_the_peaks_within_its_trials():
    pytest.importorskip("bayes_opt")
    dirs = [("ko", "fr"), ("oc", "fr")]
    scorer = FakeScorer()
    result = ms.search(dirs, scorer, "bayes", "direction", trials=8, seed=1)
    assert len(scorer.calls) == 16 and all(len(d) == 1 for _, d in scorer.calls)  # 8 distinct points each
    assert scorer.calls[0][0] == 0.5  # the default first
    for d in dirs:
        assert abs(result.chosen[d] - PEAKS[d]) <= 0.1, (d, result.trials)
    again = ms.search(dirs, FakeScorer(), "bayes", "direction", trials=8, seed=1)
    assert again.chosen == result.chosen  # seeded
    glob = ms.search(dirs, FakeScorer(), "bayes", "global", trials=8, seed=1)
    assert abs(glob.weights - 0.7) <= 0.1 and set(glob.chosen.values()) == {glob.weights}


@pytest.mark.parametrize("spec,says", [("0,1.5", "outside [0, 1]"), ("-0.1,0.5", "outside [0, 1]"),
                                       ("0,x", "not a number"), ("", "at least one")])
def test_bad_grids_are_refused_naming_the_flag(spec, says):
    with pytest.raises(ScoringError, match=r"--merge-grid: .*" + says.replace("[", r"\[").replace("]", r"\]")):
        ms.parse_grid(spec)


def test_pivot_directions_unknown_languages_and_ab_with_unequal_ranks_are_refused():
    ckpt = ms.ModularCheckpoint("x.pt", ["en", "fr", "ko", "oc"], [0, 2, 2, 4], "en")
    with pytest.raises(ScoringError, match="--pairs: fr-en has the pivot en"):
        ms.check_directions([("fr", "ko"), ("fr", "en")], ckpt)
    with pytest.raises(ScoringError, match="--pairs: fr-de: de is not one of"):
        ms.check_directions([("fr", "de")], ckpt)
    ms.check_directions([("fr", "oc")], ckpt, "outputs")
    ms.check_directions([("fr", "ko")], ckpt, "ab")
    with pytest.raises(ScoringError, match="--lslo-merge ab needs equal ranks.*fr has rank 2 and oc rank 4"):
        ms.check_directions([("fr", "oc")], ckpt, "ab", [0, 0.5, 1])
    ms.check_directions([("fr", "oc")], ckpt, "ab", [0, 1])  # one adapter at a time: any ranks


# ---- through lslo-score ---------------------------------------------------------------------------

def _score_error(argv, capsys):
    from lslo_fairseq.cli import score

    assert score.main([str(a) for a in argv]) == 2
    return capsys.readouterr().err


def test_cli_refuses_bad_grids_and_search_options_before_any_work(tmp_path, capsys):
    base = ["--merge-search", "--data-dir", tmp_path, "--checkpoint", tmp_path / "none.pt", "--pairs", "fr-ko",
            "--results-dir", tmp_path / "r", "--spm", tmp_path / "none.model"]
    assert "--merge-grid: 1.5 is outside [0, 1]" in _score_error([*base, "--merge-grid", "0,1.5"], capsys)
    assert "--gen-subset test" in _score_error([*base, "--gen-subset", "test"], capsys)
    assert "--merge-trials must be >= 1" in _score_error([*base, "--merge-search", "bayes", "--merge-trials", "0"],
                                                         capsys)
    err = _score_error([*base, "--", "--lslo-merge-weights", "0.5,0.5"], capsys)
    assert "--lslo-merge-weights (after '--')" in err
    assert not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def modular_checkpoint(tiny_data, tiny_base_checkpoint, tmp_path_factory):
    """A tiny modular model: en<->fr, en<->ko for 12 updates (as test_modular_cli's old run)."""
    from helpers import run_fairseq
    from test_modular_cli import OLD_PAIRS, train_args

    root = tmp_path_factory.mktemp("merge_search")
    run_fairseq("fairseq-train", train_args(tiny_data, root / "ckpt", OLD_PAIRS, [
        "--lslo-langs", "en,fr,ko", "--finetune-from-model", str(tiny_base_checkpoint), "--max-update", "12"]),
        root / "train.log")
    return root / "ckpt" / "checkpoint_last.pt"


@pytest.mark.slow
def test_cli_grid_search_on_valid_writes_the_weights_generation_reads(modular_checkpoint, tiny_data,
                                                                       tiny_base_checkpoint, tmp_path, capsys):
    from helpers import task_args
    from lslo_fairseq.cli import score
    from test_modular_cli import generate

    extra = [*task_args(tiny_data)[3:], "--max-len-b", "10"]
    common = ["--data-dir", tiny_data["data_dir"], "--pairs", "fr-ko,ko-fr", "--spm", tiny_data["spm_model"],
              "--merge-grid", "0,0.5,1"]
    # refused before any generation: a non-modular checkpoint, a pivot direction
    err = _score_error(["--merge-search", *common, "--checkpoint", tiny_base_checkpoint, "--results-dir", tmp_path / "x",
                        "--", *extra], capsys)
    assert "--merge-search: --checkpoint" in err and "not an LSLo checkpoint" in err
    err = _score_error(["--merge-search", *common, "--checkpoint", modular_checkpoint, "--pairs", "fr-ko,fr-en",
                        "--results-dir", tmp_path / "x", "--", *extra], capsys)
    assert "--pairs: fr-en has the pivot en" in err
    assert not (tmp_path / "x").exists()
    # a 3-point grid of fr-ko and ko-fr on valid
    out = tmp_path / "search"
    assert score.main(["--merge-search", *common, "--checkpoint", str(modular_checkpoint), "--results-dir", str(out),
                       "--", *extra]) == 0
    printed = capsys.readouterr().out
    assert "w_out = 1 - w_in" in printed and "fr-ko" in printed
    for w in ("0", "0.5", "1"):
        assert (out / f"w_in={w}" / "fr-ko" / "generate-valid.txt").exists()
        assert not (out / f"w_in={w}" / "fr-ko" / "generate-test.txt").exists()
    weights, per, _ = read_merge_weights(str(out / "merge_weights.json"))
    assert set(per) == {("fr", "ko"), ("ko", "fr")} and all(w[0] in (0, 0.5, 1) and sum(w) == 1 for w in per.values())
    doc = json.loads((out / "merge_weights.json").read_text())
    assert doc["search"]["gen_subset"] == "valid" and doc["search"]["grid"] == [0, 0.5, 1]
    rows = list(csv.DictReader(open(out / "merge_weights.csv", encoding="utf-8")))
    assert len(rows) == 6 and {r["direction"] for r in rows} == {"fr-ko", "ko-fr"}
    # each row's score is the spBLEU of that point's valid translations; the chosen one is the best
    for (s, t), (w_in, _) in per.items():
        mine = [float(r["spbleu"]) for r in rows if r["direction"] == f"{s}-{t}"]
        chosen = [float(r["spbleu"]) for r in rows if r["direction"] == f"{s}-{t}" and float(r["w_in"]) == w_in]
        assert chosen[0] == max(mine)
    assert (out / "merge_weights.png").stat().st_size > 5_000
    # fairseq-generate reads the file: fr-ko with it equals fr-ko with its weights given inline
    w = per["fr", "ko"]
    a = generate(tiny_data, str(modular_checkpoint), "fr", "ko", tmp_path / "file",
                 ["--lslo-merge-weights", str(out / "merge_weights.json")])
    b = generate(tiny_data, str(modular_checkpoint), "fr", "ko", tmp_path / "inline",
                 ["--lslo-merge-weights", f"{w[0]:g},{w[1]:g}"])
    assert a == b


@pytest.mark.slow
def test_search_points_decode_as_fairseq_generate_with_their_weights(modular_checkpoint, tiny_data, tmp_path,
                                                                      monkeypatch):
    """The search loads the checkpoint once for all its points; each point's output file is the one
    fairseq-generate writes with that --lslo-merge-weights (log lines aside)."""
    import re

    from fairseq import checkpoint_utils

    from helpers import USER_DIR, run_fairseq, task_args
    from lslo_fairseq.evaluation.generation import generation_args

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the fairseq-generate processes (float sums in the same order)
    loads = []
    load = checkpoint_utils.load_checkpoint_to_cpu
    monkeypatch.setattr(checkpoint_utils, "load_checkpoint_to_cpu", lambda *a, **k: loads.append(a[0]) or load(*a, **k))
    extra = [*task_args(tiny_data)[3:], "--max-len-b", "10"]
    task = "translation_multi_simple_epoch_lslo"
    try:
        scorer = ms.generation_scorer(tiny_data["data_dir"], str(modular_checkpoint), str(tmp_path / "s"), USER_DIR,
                                      extra, tiny_data["spm_model"], beam=5, gen_subset="valid", task=task,
                                      progress=lambda *_: None)
        for w in (0.0, 1.0):
            scorer(w, [("fr", "ko"), ("ko", "fr")])
    finally:
        torch.set_num_threads(threads)
    assert loads == [str(modular_checkpoint)]
    log_line = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \| ")
    texts = {}
    for w, weights in (("0", "0,1"), ("1", "1,0")):
        new = (tmp_path / "s" / f"w_in={w}" / "fr-ko" / "generate-valid.txt").read_text(encoding="utf-8")
        out = tmp_path / "cli" / w
        out.parent.mkdir(parents=True, exist_ok=True)
        run_fairseq("fairseq-generate", generation_args(
            tiny_data["data_dir"], str(modular_checkpoint), "fr", "ko", [("fr", "ko"), ("ko", "fr")], str(out),
            USER_DIR, [*extra, "--lslo-merge-weights", weights], beam=5, gen_subset="valid", task=task),
            out.with_suffix(".log"))
        cli = (out / "generate-valid.txt").read_text(encoding="utf-8")
        assert new == "".join(l for l in cli.splitlines(keepends=True) if not log_line.match(l)), w
        texts[w] = new
    assert texts["0"] != texts["1"]  # the points' weights reached the model


@pytest.mark.slow
def test_learned_per_layer_weights_start_at_half_move_and_generation_reads_them(modular_checkpoint, tiny_data,
                                                                                 tmp_path, capsys):
    """--learn-merge-weights: per direction and layer (w_in, w_out) = softmax(w0, w1) from w0 = w1 = 1
    (0.5/0.5), learned on valid with the adapters frozen; the loss goes down, the weights move, the file is
    what --lslo-merge-weights and lslo-plot merge-weights read; zero epochs of learning are 0.5/0.5."""
    from helpers import task_args
    from lslo_fairseq.cli import plot, score
    from lslo_fairseq.evaluation import merge_learning as ml
    from lslo_fairseq.evaluation.generation import Translator
    from test_modular_cli import generate

    extra = [*task_args(tiny_data)[3:], "--max-len-b", "10"]
    common = ["--data-dir", tiny_data["data_dir"], "--pairs", "fr-ko,ko-fr", "--checkpoint", str(modular_checkpoint)]
    err = _score_error(["--learn-merge-weights", *common, "--pairs", "fr-en", "--results-dir", tmp_path / "x",
                        "--", *extra], capsys)
    assert "--pairs: fr-en has the pivot en" in err and "--learn-merge-weights tunes directions without the pivot" in err
    err = _score_error(["--learn-merge-weights", *common, "--merge-epochs", "0", "--results-dir", tmp_path / "x",
                        "--", *extra], capsys)
    assert "--merge-epochs must be >= 1" in err and not (tmp_path / "x").exists()

    # the learner itself: before any step the weights are 0.5/0.5; adapters and base do not move
    translator = Translator(tiny_data["data_dir"], str(modular_checkpoint), [("fr", "ko"), ("ko", "fr")],
                            None, extra, beam=1, gen_subset="valid")
    model = translator.models[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    start = ml.learn(translator, [("fr", "ko")], epochs=1, lr=1e-12)
    assert all(abs(w - 0.5) < 1e-6 for side in start.weights["fr-ko"].values() for pair in side for w in pair)
    ml.learn(translator, [("fr", "ko")], epochs=2, lr=0.1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    out = tmp_path / "learn"
    assert score.main(["--learn-merge-weights", *common, "--merge-epochs", "4", "--merge-lr", "0.2",
                       "--results-dir", str(out), "--", *extra]) == 0
    printed = capsys.readouterr().out
    assert "fr-ko: w_out per layer: encoder" in printed
    doc = json.loads((out / "merge_weights.json").read_text())
    assert doc["learning"]["frozen"] == "base and adapters" and doc["learning"]["gen_subset"] == "valid"
    losses = doc["learning"]["loss_per_epoch"]
    assert len(losses) == 4 and losses[-1] < losses[0]
    weights, per, layered = read_merge_weights(str(out / "merge_weights.json"))
    assert weights is None and set(layered) == {("fr", "ko"), ("ko", "fr")}
    for w in layered.values():
        assert len(w["encoder"]) == 2 and len(w["decoder"]) == 2
        assert all(abs(sum(p) - 1) < 1e-5 for side in w.values() for p in side)
    assert any(abs(p[0] - 0.5) > 0.01 for w in layered.values() for side in w.values() for p in side)
    # generation reads them; a direction the file does not have is refused, naming it
    learned = generate(tiny_data, str(modular_checkpoint), "fr", "ko", tmp_path / "g",
                       ["--lslo-merge-weights", str(out / "merge_weights.json")])
    half = generate(tiny_data, str(modular_checkpoint), "fr", "ko", tmp_path / "h", ["--lslo-merge-weights", "0.5,0.5"])
    assert learned and len(learned) == len(half)
    assert plot.main(["merge-weights", str(out / "merge_weights.json"), "--out", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig_merge_weights.png").stat().st_size > 5_000
