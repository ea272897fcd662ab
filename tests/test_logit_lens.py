"""The logit lens (analysis/logit_lens.py, lslo-lens, lslo-plot logit-lens): the token-language rule on
a hand-made corpus, the lens on a tiny model whose answer is known, shares, the CLI on the tiny
checkpoints and its refusals."""
import json

import numpy as np
import pytest
import torch

from helpers import USER_DIR, task_args
from lslo_fairseq.analysis import logit_lens as lens
from lslo_fairseq.analysis import plots
from lslo_fairseq.cli import lens as lens_cli
from lslo_fairseq.cli.plot import main as plot_main
from model_utils import LANGS, build_tiny_model, mixed_batch, randomize_adapters, word_dictionary

ROWS = [("en", "fr", [1, 2, 3], [4, 5, 6, 7]), ("oc", "ko", [6, 7, 8, 9, 10, 11], [12, 13, 14, 15]),
        ("fr", "en", [16], [17, 18, 19]), ("ko", "oc", [20, 21], [22, 23])]


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# --------------------------------------------------------------------------------------------------
# The token-language rule
# --------------------------------------------------------------------------------------------------
def test_token_rule_on_a_hand_made_corpus(tmp_path):
    d = word_dictionary(8)  # specials, w0..w7
    en = _write(tmp_path, "en", "w0 w0 w0 w0 w1 w2\nw3 w3 zz\n")  # 8 in-dictionary pieces, zz not in it
    fr = _write(tmp_path, "fr", "w1 w1 w1 w1 w2 w2\nw3 w3\n")
    counts, oov = {}, {}
    for lang, path in (("en", en), ("fr", fr)):
        counts[lang], oov[lang] = lens.read_token_counts(path, d)
    assert oov == {"en": 1, "fr": 0}
    assert counts["en"][d.index("w0")] == 4
    excluded = lens.excluded_tokens(d, [])
    table = lens.token_languages(counts, excluded, ratio=2.0)
    label = {f"w{i}": int(table.labels[d.index(f"w{i}")]) for i in range(8)}
    # w0: en only; w1: fr 4/8 vs en 1/8 (4x); w2: fr 2/8 vs en 1/8 (exactly 2x: owned);
    # w3: 2/8 each (shared); w4..w7: in no text (unseen)
    assert label["w0"] == 0 and label["w1"] == 1 and label["w2"] == 1
    assert label["w3"] == lens.SHARED
    assert all(label[f"w{i}"] == lens.UNSEEN for i in range(4, 8))
    assert (table.labels[: d.nspecial] == lens.EXCLUDED).all()
    # a stricter ratio leaves w2 shared; a min count of 5 leaves w0 (4 times) shared
    assert lens.token_languages(counts, excluded, ratio=2.5).labels[d.index("w2")] == lens.SHARED
    assert lens.token_languages(counts, excluded, min_count=5).labels[d.index("w0")] == lens.SHARED
    assert lens.table_summary(table) == {"en": 1, "fr": 2, "shared": 1, "unseen": 4, "excluded": d.nspecial}


def test_direction_categories_precedence():
    table = lens.TokenTable(["en", "fr", "oc", "ko"], np.array([lens.EXCLUDED, 0, 1, 2, 3, lens.SHARED, lens.UNSEEN]),
                            2.0, 1)
    name = lambda cats: [lens.CATEGORIES[c] if c >= 0 else None for c in cats]  # noqa: E731
    assert name(lens.direction_categories(table, "fr", "oc")) == [
        None, "bridge", "source", "target", "other", "shared", "unseen"]
    # English on one side: its tokens are source (or target), the bridge column stays empty
    assert name(lens.direction_categories(table, "en", "oc"))[1:4] == ["source", "other", "target"]
    with pytest.raises(lens.LensError, match="no training text for de"):
        lens.direction_categories(table, "fr", "de")


def test_token_rule_refusals(tmp_path):
    d = word_dictionary(4)
    ok = {"en": np.ones(len(d), dtype=np.int64)}
    excluded = lens.excluded_tokens(d, [])
    with pytest.raises(lens.LensError, match="--ratio"):
        lens.token_languages(ok, excluded, ratio=0.5)
    with pytest.raises(lens.LensError, match="--min-count"):
        lens.token_languages(ok, excluded, min_count=0)
    with pytest.raises(lens.LensError, match="no dictionary token in the training text of fr"):
        lens.token_languages({**ok, "fr": np.zeros(len(d), dtype=np.int64)}, excluded)
    with pytest.raises(lens.LensError, match="training text not found"):
        lens.read_token_counts(str(tmp_path / "missing.spm"), d)


# --------------------------------------------------------------------------------------------------
# The lens on a tiny model
# --------------------------------------------------------------------------------------------------
def _model_and_batch():
    model, task = build_tiny_model()
    randomize_adapters(model)
    src, lengths, prev, target = mixed_batch(task, ROWS)
    net_input = {"src_tokens": src, "src_lengths": lengths, "prev_output_tokens": prev}
    d = task.source_dictionary
    ignore = torch.from_numpy(lens.excluded_tokens(d, [task.lang_token(x) for x in LANGS]))
    return model, task, net_input, target, ignore


def test_lens_of_the_last_layer_is_the_model_output():
    model, _, net_input, _, _ = _model_and_batch()
    with torch.no_grad():
        logits, _ = model(**net_input)
        states = lens.decoder_states(model, net_input)
        assert len(states) == len(model.decoder.layers) + 1
        last = lens.lens_logits(model.decoder, states[-1].transpose(0, 1))
    assert model.decoder.layer_norm is not None  # pre-norm: the lens applies the final norm
    torch.testing.assert_close(last, logits, rtol=1e-5, atol=1e-5)


def test_a_layer_equal_to_the_last_gets_the_last_layers_tokens(monkeypatch):
    """The last decoder layer made the identity: the lens of the layer before it must give exactly the
    model's final top-k tokens, and the two rows of counts must be equal."""
    model, _, net_input, target, ignore = _model_and_batch()
    monkeypatch.setattr(model.decoder.layers[-1], "forward", lambda x, *a, **k: (x, None, None))
    keep = ~ignore[target]
    with torch.no_grad():
        final, _ = model(**net_input)
        states = lens.decoder_states(model, net_input)
        before = lens.lens_logits(model.decoder, states[-2].transpose(0, 1))
    mask = lambda x: x.masked_fill(ignore, float("-inf"))[keep]  # noqa: E731
    assert torch.equal(mask(before).topk(3).indices, mask(final).topk(3).indices)
    categories = torch.arange(len(ignore)) % len(lens.CATEGORIES)
    with torch.no_grad():
        counts, positions = lens.layer_counts(model, net_input, target, categories, ignore, k=3)
    assert positions == int(keep.sum()) == sum(len(r[3]) for r in ROWS)
    assert torch.equal(counts[-1], counts[-2])
    # and the counts are those of the final logits' top-3 by hand
    expected = torch.bincount(categories[mask(final).topk(3).indices].flatten(), minlength=len(lens.CATEGORIES))
    assert torch.equal(counts[-1], expected)


def test_shares_sum_to_one_and_specials_never_counted():
    model, _, net_input, target, ignore = _model_and_batch()
    categories = torch.where(ignore, -1, torch.arange(len(ignore)) % len(lens.CATEGORIES))
    counts, positions = lens.lens_counts(model, [{"net_input": net_input, "target": target}], categories, ignore, k=4)
    assert counts.shape == (len(model.decoder.layers) + 1, len(lens.CATEGORIES))
    assert (counts.sum(dim=1) == positions * 4).all()  # no top-k token fell on an excluded (-1) id
    for row in lens.shares(counts.numpy()):
        assert sum(row) == pytest.approx(1.0)
    entry = lens.direction_entry(counts.numpy(), positions, 4)
    assert entry["layers"] == ["emb", "1", "2"]
    text = lens.format_shares("fr-oc", entry, "en")
    assert "bridge (en)" in text and len(text.splitlines()) == 2 + len(entry["layers"])


def test_lens_refuses_a_foreign_dictionary_and_a_too_large_k():
    model, _, net_input, target, ignore = _model_and_batch()
    batch = [{"net_input": net_input, "target": target}]
    with pytest.raises(lens.LensError, match="not trained with this dictionary"):
        lens.lens_counts(model, batch, torch.zeros(len(ignore) + 3, dtype=torch.long), torch.zeros(len(ignore) + 3, dtype=torch.bool))
    categories = torch.where(ignore, -1, 0)
    with pytest.raises(lens.LensError, match="--top-k 1000"):
        lens.lens_counts(model, batch, categories, ignore, k=1000)


# --------------------------------------------------------------------------------------------------
# The document and the plot
# --------------------------------------------------------------------------------------------------
def _document():
    table = lens.TokenTable(["en", "fr", "oc"], np.array([lens.EXCLUDED, 0, 1, 2]), 2.0, 1)
    rng = np.random.default_rng(0)
    entries = {d: lens.direction_entry(rng.integers(0, 9, size=(4, len(lens.CATEGORIES))) + 1, 12, 5)
               for d in ("fr-oc", "oc-fr")}
    return lens.lens_document(entries, table, "en", {"checkpoint": "x.pt"})


def test_plot_draws_one_panel_per_direction(tmp_path):
    doc = _document()
    path = tmp_path / "lens.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert plot_main(["logit-lens", str(path), "--out", str(tmp_path / "figs" / "x")]) == 0
    assert (tmp_path / "figs" / "x_lens.png").stat().st_size > 0 and (tmp_path / "figs" / "x_lens.pdf").exists()
    saved = plots.plot_logit_lens(doc, str(tmp_path / "y"))
    titles = [ax.get_title() for ax in saved.figure.axes if ax.get_title()]
    assert [t.split()[0] for t in titles] == ["fr-oc", "oc-fr"]


def test_pooled_entry_sums_the_directions_counts():
    doc = _document()
    pooled = lens.pooled_entry(doc)
    counts = sum(np.asarray(e["counts"]) for e in doc["directions"].values())
    assert pooled["counts"] == counts.tolist() and pooled["positions"] == 24 and pooled["top_k"] == 5
    assert np.allclose(pooled["shares"], counts / counts.sum(axis=1, keepdims=True))
    doc["directions"]["oc-fr"] = lens.direction_entry(np.ones((3, len(lens.CATEGORIES)), dtype=int), 1, 5)
    with pytest.raises(lens.LensError, match="different numbers of decoder layers"):
        lens.pooled_entry(doc)


def test_plot_of_several_models_adds_a_pooled_panel_per_model(tmp_path, capsys):
    paths = []
    for name in ("base", "lslo"):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(_document()), encoding="utf-8")
    out = tmp_path / "f"
    assert plot_main(["logit-lens", f"Pretrain={paths[0]}", f"LSLo 2;2;8={paths[1]}", "--out", str(out)]) == 0
    assert (tmp_path / "f_Pretrain_lens.png").exists() and (tmp_path / "f_LSLo_2_2_8_lens.png").exists()
    saved = plots.plot_logit_lens_models({"Pretrain": _document(), "LSLo": _document()}, str(tmp_path / "m"))
    assert [t.split("\n")[0] for t in (ax.get_title() for ax in saved.figure.axes) if t] == ["Pretrain", "LSLo"]
    assert (tmp_path / "f_lens_models.png").stat().st_size > 0
    assert plot_main(["logit-lens", str(paths[0]), f"base={paths[1]}", "--out", str(out)]) == 2
    assert "two files named 'base'" in capsys.readouterr().err


def test_plot_refuses_other_files(tmp_path, capsys):
    bad = tmp_path / "counts.json"
    bad.write_text(json.dumps({"kind": "ise"}), encoding="utf-8")
    assert plot_main(["logit-lens", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "not a logit-lens file" in capsys.readouterr().err
    doc = _document()
    doc["directions"]["fr-oc"]["shares"][0] = [1.0]
    bad.write_text(json.dumps(doc), encoding="utf-8")
    assert plot_main(["logit-lens", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "direction fr-oc" in capsys.readouterr().err
    assert not (tmp_path / "x_lens.png").exists()


# --------------------------------------------------------------------------------------------------
# lslo-lens
# --------------------------------------------------------------------------------------------------
def _fairseq_args(data):
    """The task's options after '--': the data folder is --data-dir and the task lslo-lens's --task."""
    args = task_args(data)[1:]
    i = args.index("--task")
    return args[:i] + args[i + 2:]


def test_cli_refuses_bad_input_before_loading(tiny_data, tmp_path, capsys, monkeypatch):
    """Refused with exit status 2, naming the flag, before any model is loaded."""
    monkeypatch.setattr(lens_cli, "Translator", lambda *a, **k: pytest.fail("loaded a model"))
    data = tiny_data["data_dir"]
    fake = tmp_path / "ckpt.pt"
    torch.save({"model": {"decoder.embed_tokens.weight": torch.zeros(7, 4)}}, fake)
    base = ["--data-dir", data, "--checkpoint", str(fake), "--out", str(tmp_path / "o.json")]
    extra = ["--", *_fairseq_args(tiny_data)]

    def refused(args, message):
        assert lens_cli.main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("lslo-lens: error: ") and message in err, err

    refused([*base, "--pairs", "fr-xx", *extra], "--pairs/--bridge: xx is not among the token-table languages")
    refused([*base, "--pairs", "fr-oc", "--text-langs", "en,fr,oc", "--train-text", str(tmp_path / "t.{lang}"), *extra],
            "--train-text: no training text for en")
    refused([*base, "--pairs", "fr-oc", "--gen-subset", "dev", *extra], "--pairs: fr-oc is not in --data-dir")
    refused([*base, "--pairs", "fr-oc", "--top-k", "0", *extra], "--top-k: at least 1")
    refused([*base, "--pairs", "fr-oc", "--ratio", "0.5", *extra], "--ratio: at least 1")
    refused([*base, "--pairs", "fr-oc", "--", "--fixed-dictionary", str(tmp_path / "none.txt")],
            "does not exist: the lens reads tokens through the checkpoint's dictionary")
    refused([*base, "--pairs", "fr-oc", *extra], "its output layer has 7 rows")
    refused([*base[:3], str(tmp_path / "missing.pt"), *base[4:], "--pairs", "fr-oc", *extra], "--checkpoint: ")


@pytest.mark.slow
@pytest.mark.parametrize("which", ["base", "lslo"])
def test_cli_on_tiny_checkpoints_writes_json_and_the_plot_draws(which, tiny_data, tiny_base_checkpoint, lslo_run,
                                                               tmp_path, capsys):
    ckpt, task = ((tiny_base_checkpoint, "translation_multi_simple_epoch") if which == "base"
                  else (lslo_run["ckpt"], "translation_multi_simple_epoch_lslo"))
    out = tmp_path / "lens.json"
    args = ["--data-dir", tiny_data["data_dir"], "--checkpoint", str(ckpt), "--pairs", "fr-oc,en-ko",
            "--task", task, "--top-k", "3", "--out", str(out), "--", *_fairseq_args(tiny_data)]
    if which == "lslo":
        args[args.index("--task"):args.index("--task")] = ["--user-dir", USER_DIR]
    assert lens_cli.main(args) == 0
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["kind"] == "logit_lens" and doc["table_languages"] == list(tiny_data["langs"])
    assert "at least 2 times the next highest" in doc["rule"] and doc["rule"] in printed
    for direction in ("fr-oc", "en-ko"):
        entry = doc["directions"][direction]
        assert direction in printed
        assert entry["layers"] == ["emb", "1", "2"] and entry["top_k"] == 3
        assert entry["positions"] > 0
        for counts, shares in zip(entry["counts"], entry["shares"]):
            assert sum(counts) == 3 * entry["positions"] and sum(shares) == pytest.approx(1.0)
    assert all(v == 0 for v in np.asarray(doc["directions"]["en-ko"]["counts"])[:, lens.CATEGORIES.index("bridge")])
    assert plot_main(["logit-lens", str(out), "--out", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig_lens.png").stat().st_size > 0
