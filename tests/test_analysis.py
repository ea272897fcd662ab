"""Eq. 6 importance scores, pool sums, aggregation, correlations (tables 9-10), figures and lslo-plot."""
import csv
import json
import math

import numpy as np
import pytest
from scipy import stats

from lslo_fairseq.analysis import importance as imp
from lslo_fairseq.analysis import plots
from lslo_fairseq.cli.plot import main
from lslo_fairseq.groups import BITEXT_WITH_EN, PRESETS
from lslo_fairseq.names import DECODER_MODULES, ENCODER_MODULES
from lslo_fairseq.runfiles import RunFileError, pruning_counts
from lslo_fairseq.evaluation.tables import write_results

P = 0.7
LANG12 = PRESETS["lang12"]
LANG12_ORDER = ["en", "fr", "de", "it", "zh", "nl", "ja", "ko", "oc", "or", "sd", "wo"]
# Per-group shift of the wanted sparsity: high-resource languages are pruned more (positive score).
DEMAND = {"H": 0.08, "M": 0.03, "L": -0.03, "V": -0.1}


# --------------------------------------------------------------------------------------------------
# Synthetic pruning counts shaped like M2M-124 615M with rank-8 LSLo on every module
# --------------------------------------------------------------------------------------------------
def _hit_ratio(pool, ratio):
    """Integer pruned counts near each record's wanted sparsity whose pool total is exactly
    round(ratio * total), as global L1 pruning leaves it (shift, then largest remainder)."""
    total = sum(r["n_params"] for r in pool)
    target = int(round(ratio * total))
    want = np.array([r["_want"] * r["n_params"] for r in pool])
    sizes = np.array([r["n_params"] for r in pool], dtype=float)
    want = np.clip(want + (target - want.sum()) * sizes / total, 0, sizes)
    base = np.floor(want).astype(int)
    order = np.argsort(-(want - base))
    for i in order[: target - base.sum()]:
        base[i] += 1
    for r, k in zip(pool, base):
        r["n_pruned"] = int(k)
        del r["_want"]


def make_counts(kind="ise", layers=12, langs=LANG12, ratio=P, seed=0, d=1024, ffn=4096, rank=8):
    """``pruning_counts.json`` dict: ISE pools are one per side and layer (all languages and
    modules), LSP pools one per language (all layers and modules); fc modules keep more in LSP."""
    rng = np.random.default_rng(seed)
    records = []
    for side, modules in (("encoder", ENCODER_MODULES), ("decoder", DECODER_MODULES)):
        for layer in range(layers):
            for module in modules:
                for lang, group in langs.items():
                    shift = DEMAND[group] if kind == "ise" else (-0.1 if module.startswith("fc") else 0.03)
                    records.append({
                        "side": side, "layer": layer, "module": module, "language": lang, "group": group,
                        "matrix": "B",
                        "pool": f"{side}.{layer}" if kind == "ise" else f"lang.{lang}",
                        "n_params": (ffn if module == "fc1" else d) * rank, "n_pruned": 0,
                        "_want": float(np.clip(ratio + shift + rng.normal(0, 0.02), 0, 1)),
                    })
    pools = {}
    for r in records:
        pools.setdefault(r["pool"], []).append(r)
    for pool in pools.values():
        _hit_ratio(pool, ratio)
    return {"kind": kind, "ratio": ratio, "records": records}


@pytest.fixture(scope="module")
def ise():
    return make_counts("ise")


@pytest.fixture(scope="module")
def lsp():
    return make_counts("lsp", layers=6, seed=1)  # 6 layers: figure 6 is the slowest to draw


def _rec(lang="fr", n=2048, k=1500, side="encoder", layer=0, module="q", pool="encoder.0", matrix="B"):
    return {"side": side, "layer": layer, "module": module, "language": lang,
            "group": LANG12.get(lang), "matrix": matrix, "pool": pool, "n_params": n, "n_pruned": k}


# --------------------------------------------------------------------------------------------------
# Eq. 6 and pools
# --------------------------------------------------------------------------------------------------
def test_eq6_scores():
    out = imp.scores([_rec(k=1500), _rec("oc", k=1000), _rec("de", n=100, k=70)], P)
    assert [r["score"] for r in out] == pytest.approx([1500 - 0.7 * 2048, 1000 - 1433.6, 0.0])
    assert out[0]["score"] == pytest.approx(66.4)
    assert out[0]["language"] == "fr" and "score" not in _rec()  # copies, inputs untouched


def test_every_pool_sums_to_excess_and_hits_ratio(ise):
    records = pruning_counts.validate_records(ise["records"])
    assert len(records) == 12 * 12 * (len(ENCODER_MODULES) + len(DECODER_MODULES))
    sums = imp.check_pool_sparsity(records, P)
    assert sorted(sums) == sorted(f"{s}.{l}" for s in ("encoder", "decoder") for l in range(12))
    for name, p in sums.items():
        members = [r for r in records if r["pool"] == name]
        assert p["n_matrices"] == len(members)
        assert p["score_sum"] == pytest.approx(p["n_pruned"] - P * p["n_params"], abs=1e-6)
        assert p["score_sum"] == pytest.approx(sum(r["n_pruned"] - P * r["n_params"] for r in members))
        assert abs(p["score_sum"]) <= 0.5 + 1e-9  # round(P * total) pruned
        assert p["sparsity"] == pytest.approx(P, abs=1 / p["n_params"])
    # the synthetic pools are not flat: high-resource languages are pruned beyond P
    scored = imp.scores(records, P)
    assert np.mean([r["score"] for r in scored if r["group"] == "H"]) > 0
    assert np.mean([r["score"] for r in scored if r["group"] == "V"]) < 0


def test_check_pool_sparsity_tolerance():
    pool = [_rec(n=10, k=8), _rec("de", n=10, k=6)]  # 14 of 20 = exactly 0.7
    assert imp.check_pool_sparsity(pool, P)["encoder.0"]["sparsity"] == pytest.approx(0.7)
    pool[1]["n_pruned"] = 7  # one element over: still accepted
    assert imp.check_pool_sparsity({"records": pool}, P)["encoder.0"]["excess"] == pytest.approx(1.0)
    pool[1]["n_pruned"] = 8  # two over
    other = [_rec(n=10, k=7, pool="decoder.3", side="decoder", layer=3)]
    with pytest.raises(imp.AnalysisError, match=r"encoder\.0: 16 of 20 pruned") as e:
        imp.check_pool_sparsity(pool + other, P)
    assert "decoder.3" not in str(e.value)


# --------------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------------
def test_aggregate_over_layers_and_languages(ise):
    scored = imp.scores(ise["records"], P)
    fig2 = imp.aggregate(scored)  # by language, module, side over layer
    assert len(fig2) == 12 * 13 and all(r["n"] == 12 for r in fig2)
    cell = next(r for r in fig2 if (r["language"], r["module"], r["side"]) == ("oc", "c-v", "decoder"))
    manual = [r["score"] for r in scored if (r["language"], r["module"], r["side"]) == ("oc", "c-v", "decoder")]
    assert len(manual) == 12 and cell["score"] == pytest.approx(np.mean(manual))
    assert cell["std"] == pytest.approx(np.std(manual))
    assert fig2[0]["side"] == "encoder" and fig2[-1]["side"] == "decoder"  # side-major order

    fig4 = imp.aggregate(ise["records"], by=("layer", "module", "side"), over="language", ratio=P)
    assert len(fig4) == 12 * 13 and all(r["n"] == 12 for r in fig4)
    cell = next(r for r in fig4 if (r["layer"], r["module"], r["side"]) == (11, "fc1", "encoder"))
    manual = [r["score"] for r in scored if (r["layer"], r["module"], r["side"]) == (11, "fc1", "encoder")]
    assert cell["score"] == pytest.approx(np.mean(manual))
    # ISE pools are per layer and side: averaged over languages and modules of a layer they sum to ~0
    layer_sum = sum(r["score"] * r["n"] for r in fig4 if r["layer"] == 4 and r["side"] == "decoder")
    assert abs(layer_sum) <= 0.5 + 1e-6

    langs, mods, grid = imp.pivot(fig2, "language", "module", where={"side": "encoder"},
                                  col_order=list(ENCODER_MODULES) + ["c-q"])
    assert langs == LANG12_ORDER and grid.shape == (12, 6) and np.isnan(grid[:, -1]).all()


def test_aggregate_rejects_ambiguous_keys_and_uses_b_only(ise):
    with pytest.raises(imp.AnalysisError, match="side"):
        imp.aggregate(ise["records"], by=("language", "module"), over="layer", ratio=P)
    with pytest.raises(imp.AnalysisError, match="ratio"):
        imp.aggregate(ise["records"])  # no scores and no ratio
    with_a = imp.scores(ise["records"], P) + [dict(_rec(), matrix="A", score=1e9)]
    b_only = imp.aggregate(with_a)
    assert max(r["score"] for r in b_only) < 1e6


# --------------------------------------------------------------------------------------------------
# Correlations (appendix C, tables 9-10)
# --------------------------------------------------------------------------------------------------
def _corr_records(score_of):
    """Two layers, one encoder and one decoder module; a language's score from ``score_of(size)``."""
    langs = ["en", "fr", "de", "it", "zh", "nl", "oc", "xx"]
    out = []
    for lang in langs:
        size = BITEXT_WITH_EN.get(lang) or 1e6
        for side, module in (("encoder", "fc1"), ("decoder", "c-v")):
            for layer in range(2):
                s = score_of(size) + (5 if layer else -5)  # the layer mean is score_of(size)
                out.append({**_rec(lang, side=side, module=module, layer=layer, pool=f"{side}.{layer}"),
                            "score": s})
    return out


def test_correlations_match_scipy_and_exclude_english():
    res = imp.correlations(_corr_records(lambda size: 100 * math.log10(size)))
    assert res["languages"] == ["fr", "de", "it", "zh", "nl", "oc"]
    excluded = {e["language"]: e["reason"] for e in res["excluded"]}
    assert set(excluded) == {"en", "xx"}
    assert "English" in excluded["en"] and "not in the bitext-size table" in excluded["xx"]
    sizes = np.array([BITEXT_WITH_EN[l] for l in res["languages"]])
    y = 100 * np.log10(sizes)
    for side, module in (("encoder", "fc1"), ("decoder", "c-v")):
        row, avg = res["sides"][side]
        assert row["module"] == module and row["n"] == 6 and avg["module"] == "AVG"
        r_raw, p_raw = stats.pearsonr(sizes, y)
        assert row["pearson_raw"]["r"] == pytest.approx(r_raw) and row["pearson_raw"]["p"] == pytest.approx(p_raw)
        assert 0 < row["pearson_raw"]["r"] < 1
        assert row["pearson_log10"]["r"] == pytest.approx(1.0)  # linear in log size
        assert avg["pearson_raw"] == pytest.approx(row["pearson_raw"])
    # decreasing with size -> negative r
    neg = imp.correlations(_corr_records(lambda size: -size / 1e6))
    assert neg["sides"]["encoder"][0]["pearson_raw"]["r"] == pytest.approx(-1.0)


def test_correlations_avg_is_mean_of_modules(ise):
    res = imp.correlations(ise)  # a whole counts document: its own ratio
    assert res == imp.correlations(ise["records"], ratio=P)
    assert [r["module"] for r in res["sides"]["encoder"]] == list(ENCODER_MODULES) + ["AVG"]
    assert [r["module"] for r in res["sides"]["decoder"]] == list(DECODER_MODULES) + ["AVG"]
    assert [e["language"] for e in res["excluded"]] == ["en"]
    for side, rows in res["sides"].items():
        for kind in ("pearson_raw", "pearson_log10"):
            assert rows[-1][kind]["r"] == pytest.approx(np.mean([r[kind]["r"] for r in rows[:-1]]))
            assert rows[-1][kind]["p"] == pytest.approx(np.mean([r[kind]["p"] for r in rows[:-1]]))
        assert all(r["n"] == 11 for r in rows)
        assert all(r["pearson_log10"]["r"] > 0.5 for r in rows)  # the synthetic demand follows resource
    text = imp.format_correlations(res)
    assert "AVG" in text and "en (no bitext size" in text


def test_correlations_need_three_sized_languages():
    recs = [r for r in _corr_records(lambda s: s) if r["language"] in ("en", "fr", "de")]
    with pytest.raises(imp.AnalysisError, match=r"at least 3 languages.*got 2 \(fr, de\).*en:"):
        imp.correlations(recs)


# --------------------------------------------------------------------------------------------------
# Validation and writers
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, message", [
    (lambda r: r.pop("pool"), r"records\[1\]: missing key\(s\) \['pool'\]"),
    (lambda r: r.update(module="c-q"), "'c-q' is not a encoder module"),
    (lambda r: r.update(side="middle"), "side 'middle'"),
    (lambda r: r.update(n_pruned=3000), r"n_pruned must be an integer in \[0, n_params=2048\]"),
    (lambda r: r.update(layer=-1), "layer must be an integer >= 0"),
    (lambda r: r.update(matrix="C"), "matrix 'C' is not one of"),
    (lambda r: r.update(language="fr"), r"also .*records\[0\]"),
])
def test_record_validation(change, message):
    recs = [_rec("fr"), _rec("de")]
    change(recs[1])
    with pytest.raises(RunFileError, match=message):
        pruning_counts.validate_records(recs)


def test_load_counts_errors(tmp_path):
    with pytest.raises(RunFileError, match="nope.json: no such file"):
        pruning_counts.load(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(RunFileError, match="bad.json: not a readable JSON"):
        pruning_counts.load(str(bad))
    bad.write_text(json.dumps({"kind": "ise", "records": [_rec()]}))
    with pytest.raises(RunFileError, match="bad.json: missing key 'ratio'"):
        pruning_counts.load(str(bad))
    bad.write_text(json.dumps({"kind": "prune", "ratio": 0.7, "records": [_rec()]}))
    with pytest.raises(RunFileError, match="kind 'prune'"):
        pruning_counts.load(str(bad))


def test_writers(tmp_path, ise):
    paths = imp.write_scores(str(tmp_path / "s" / "ise"), ise["records"], P, kind="ise")
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(ise["records"])
    first = ise["records"][0]
    assert float(rows[0]["score"]) == pytest.approx(first["n_pruned"] - P * first["n_params"], abs=1e-3)
    with open(paths["by_language_csv"]) as f:
        by_lang = list(csv.DictReader(f))
    assert len(by_lang) == 12 * 13 and by_lang[0]["group"] == "H" and by_lang[0]["n"] == "12"
    with open(paths["by_layer_csv"]) as f:
        assert len(list(csv.DictReader(f))) == 12 * 13
    doc = json.load(open(paths["json"]))
    assert doc["ratio"] == P and len(doc["pools"]) == 24 and len(doc["records"]) == len(rows)

    res = imp.correlations(_corr_records(lambda s: 0.0))  # constant scores: r undefined
    assert math.isnan(res["sides"]["encoder"][0]["pearson_raw"]["r"])
    cpaths = imp.write_correlations(str(tmp_path / "corr"), res)
    cdoc = json.load(open(cpaths["json"]))  # NaN written as null: valid JSON
    assert cdoc["sides"]["encoder"][0]["pearson_raw"]["r"] is None
    with open(cpaths["csv"]) as f:
        crow = list(csv.DictReader(f))
    assert [r["module"] for r in crow] == ["fc1", "AVG", "c-v", "AVG"] and crow[0]["pearson_raw_r"] == ""


# --------------------------------------------------------------------------------------------------
# Figures through lslo-plot
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def captured(monkeypatch):
    """Every figure the plot functions save, as :class:`plots.Saved`."""
    saved = []
    original = plots._save

    def keep(fig, prefix):
        saved.append(original(fig, prefix))
        return saved[-1]

    monkeypatch.setattr(plots, "_save", keep)
    return saved


def _check_files(saved):
    for s in saved:
        with open(s.png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        with open(s.pdf, "rb") as f:
            assert f.read(5) == b"%PDF-"
        assert s.png.endswith(".png") and s.pdf.endswith(".pdf")


def _check_heatmap(fig, row_label):
    """Title, labelled axes, a TwoSlopeNorm at 0 and the eq. 6 colour bar; return the panels."""
    from matplotlib.colors import TwoSlopeNorm

    assert fig._suptitle is not None and "eq. 6" in fig._suptitle.get_text()
    panels = [ax for ax in fig.axes if ax.images]
    assert panels and all(ax.get_title() for ax in panels)
    assert any(ax.get_ylabel() == row_label for ax in panels)
    assert any(ax.get_xlabel() == "Encoder module" for ax in panels)
    assert any(ax.get_xlabel() == "Decoder module" for ax in panels)
    for ax in panels:
        norm = ax.images[0].norm
        assert isinstance(norm, TwoSlopeNorm) and norm.vcenter == 0
    cbars = [ax for ax in fig.axes if ax.get_ylabel().startswith(imp.SCORE_LABEL)]
    assert len(cbars) == 1
    return panels


def test_plot_ise(tmp_path, ise, captured, capsys):
    counts = tmp_path / "pruning_counts.json"
    counts.write_text(json.dumps(ise))
    prefix = str(tmp_path / "out" / "ise")
    assert main(["ise", str(counts), "--out", prefix, "--lang-groups", "lang12"]) == 0
    out = capsys.readouterr().out
    assert "Encoder: Pearson" in out and "Decoder: Pearson" in out and "AVG" in out
    _check_files(captured)
    assert [s.png for s in captured] == [prefix + "_fig2.png", prefix + "_fig5.png"]
    for suffix in ("_scores.csv", "_scores.json", "_scores.by_language.csv", "_scores.by_layer.csv",
                   "_correlations.csv", "_correlations.json"):
        assert (tmp_path / "out" / f"ise{suffix}").stat().st_size > 0

    fig2 = _check_heatmap(captured[0].figure, "Language")
    enc, dec = fig2
    assert [t.get_text() for t in enc.get_yticklabels()] == LANG12_ORDER
    assert [t.get_text() for t in enc.get_xticklabels()] == list(ENCODER_MODULES)
    assert [t.get_text() for t in dec.get_xticklabels()] == list(DECODER_MODULES)
    agg = imp.aggregate(ise["records"], ratio=P)
    expected = [next(r["score"] for r in agg if (r["language"], r["module"], r["side"]) == ("sd", m, "decoder"))
                for m in DECODER_MODULES]
    assert np.asarray(dec.images[0].get_array())[LANG12_ORDER.index("sd")] == pytest.approx(expected)
    texts = {t.get_text() for t in captured[0].figure.texts} | {t.get_text() for ax in fig2 for t in ax.texts}
    assert {"High (H)", "Medium (M)", "Very low (V)"} <= texts  # group labels

    fig5 = _check_heatmap(captured[1].figure, "Language")
    assert len(fig5) == 24
    assert {ax.get_title() for ax in fig5} >= {"Layer 1 \u00b7 Encoder", "Layer 12 \u00b7 Encoder", "Decoder"}
    assert captured[1].figure.legends  # resource-type legend


def test_plot_lsp(tmp_path, lsp, captured):
    counts = tmp_path / "lsp.json"
    counts.write_text(json.dumps(lsp))
    prefix = str(tmp_path / "lsp")
    assert main(["lsp", str(counts), "--out", prefix]) == 0
    _check_files(captured)
    assert [s.png for s in captured] == [prefix + "_fig4.png", prefix + "_fig6.png"]
    enc, dec = _check_heatmap(captured[0].figure, "Layer")
    assert [t.get_text() for t in enc.get_yticklabels()] == [str(i) for i in range(1, 7)]
    grid = np.asarray(enc.images[0].get_array())
    assert grid.shape == (6, 5)
    fc = grid[:, 3:].mean()
    attn = grid[:, :3].mean()
    assert fc < 0 < attn  # fc1/fc2 need more parameters, as generated (and as figure 4 shows)
    fig6 = _check_heatmap(captured[1].figure, "Layer")
    assert len(fig6) == 24 and fig6[0].get_title() == "en (H) \u00b7 Encoder"
    assert (tmp_path / "lsp_scores.by_layer.csv").stat().st_size > 0
    assert not (tmp_path / "lsp_correlations.csv").exists()


def _wl(n_enc=12, n_dec=12, history=True):
    enc_src = np.concatenate([np.linspace(0.68, 0.53, n_enc - 3), [0.45, 0.4, 0.38]])  # as figure 1
    dec_src = np.linspace(0.35, 0.3, n_dec)
    doc = {
        "encoder": [[float(a), float(1 - a)] for a in enc_src],
        "decoder": [[float(a), float(1 - a)] for a in dec_src],
        "encoder_index": ["src" if a > 0.5 else "tgt" for a in enc_src],
        "decoder_index": ["tgt"] * n_dec,
    }
    if history:
        doc["history"] = [{"update": u, "epoch": e, "encoder": [[0.5, 0.5]] * n_enc,
                           "decoder": [[0.5, 0.5]] * n_dec} for e, u in ((0, 0), (1, 100))]
    return doc


def test_plot_weights(tmp_path, captured, capsys):
    wl = tmp_path / "weight_learning.json"
    wl.write_text(json.dumps(_wl()))
    prefix = str(tmp_path / "wl")
    assert main(["weights", str(wl), "--out", prefix]) == 0
    assert "encoder_index: " + ",".join(["src"] * 9 + ["tgt"] * 3) in capsys.readouterr().out
    _check_files(captured)
    assert [s.png for s in captured] == [prefix + "_fig1.png", prefix + "_fig1_history.png"]
    ax = captured[0].figure.axes[0]
    assert ax.get_xlabel() == "Layer" and "Weight" in ax.get_ylabel() and "Weight learning" in ax.get_title()
    lines = {l.get_label(): l for l in ax.get_lines()}
    for name in ("enc_src", "enc_tgt", "dec_src", "dec_tgt"):
        assert f"{name} weights" in lines
    assert list(lines["enc_src weights"].get_xdata()) == list(range(1, 13))  # 1-based layers
    stars = [c for c in ax.collections if c.get_label() == "chosen index (larger weight)"]
    assert len(stars) == 1
    chosen = np.asarray(stars[0].get_offsets())
    assert chosen[0].tolist() == pytest.approx([1, 0.68]) and chosen[11].tolist() == pytest.approx([12, 0.62])
    hist = captured[1].figure
    assert hist._suptitle.get_text() and all(a.get_xlabel() == "Update" for a in hist.axes if a.get_lines())


def test_weights_as_the_task_writes_them(tmp_path, captured):
    """translation_lslo writes history snapshots with an epoch and no update; a side without
    weight learning has an empty list."""
    doc = _wl(history=False)
    doc["decoder"], doc["decoder_index"] = [], []
    doc["history"] = [{"epoch": e, "encoder": doc["encoder"], "decoder": []} for e in (1, 2, 3)]
    wl = tmp_path / "weight_learning.json"
    wl.write_text(json.dumps(doc))
    assert main(["weights", str(wl), "--out", str(tmp_path / "wl")]) == 0
    labels = {l.get_label() for l in captured[0].figure.axes[0].get_lines()}
    assert "enc_src weights" in labels and "dec_src weights" not in labels
    hist_axes = [a for a in captured[1].figure.axes if a.get_lines()]
    assert len(hist_axes) == 1 and hist_axes[0].get_xlabel() == "Epoch"
    assert list(hist_axes[0].get_lines()[0].get_xdata()) == [1, 2, 3]


def _write_epoch_results(tmp_path, run, values_by_epoch, columns=("H2H", "H2V", "V2H", "V2V", "AVG")):
    paths = []
    for epoch, base in values_by_epoch:
        values = [base + i for i in range(len(columns))]
        csv_path, json_path = write_results(str(tmp_path / f"{run}-ep{epoch}"), [(run, values)], list(columns),
                                            {run: {("en", "fr"): base}}, {"epoch": epoch})
        paths.append(json_path)
    return paths


def test_plot_curves(tmp_path, captured):
    lslo = _write_epoch_results(tmp_path, "lslo", [(1, 30.0), (2, 31.0), (3, 29.5)])
    ft = _write_epoch_results(tmp_path, "ft", [(1, 25.0), (2, 24.0), (3, 23.0)])
    pre = _write_epoch_results(tmp_path, "pretrain", [(0, 28.0)])
    table = tmp_path / "curves.csv"
    table.write_text("run,epoch,H2H,V2V,AVG\nfrom-csv,1,20,3,10\nfrom-csv,2,21,4,11\n")
    prefix = str(tmp_path / "curves")
    assert main(["curves", "--run", "LSLo=" + ",".join(lslo), "--run", "Ft-all=" + ",".join(ft),
                 "--run", "Pretrain=" + pre[0], "--csv", str(table),
                 "--columns", "H2H,V2V", "--out", prefix]) == 0
    _check_files(captured)
    assert captured[0].png == prefix + "_fig3.png"
    fig = captured[0].figure
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["(a) H2H performance per epoch", "(b) V2V performance per epoch"]
    assert all(ax.get_xlabel() == "Epoch" and ax.get_ylabel() == "spBLEU" for ax in panels)
    lines = {l.get_label(): l for l in panels[1].get_lines()}
    assert list(lines["LSLo"].get_xdata()) == [1, 2, 3]  # meta.epoch of each file
    assert list(lines["LSLo"].get_ydata()) == [33.0, 34.0, 32.5]  # V2V = base + 3
    assert list(lines["from-csv"].get_ydata()) == [3.0, 4.0]
    assert "Pretrain (single result)" in lines  # a reference line
    assert fig.legends and fig._suptitle.get_text()

    captured.clear()
    assert main(["curves", "--run", "LSLo=" + ",".join(lslo), "--columns", "AVG", "--epochs", "2,4,6",
                 "--out", str(tmp_path / "ep")]) == 0
    assert list(captured[0].figure.axes[0].get_lines()[0].get_xdata()) == [2, 4, 6]


def _fails(argv, capsys, *needles):
    """Bad input: exit status 2 and one 'lslo-plot COMMAND: error: ...' line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lslo-plot {argv[0]}: error: "), err
    for needle in needles:
        assert needle in err, err
    return err


def test_cli_errors_before_plotting(tmp_path, ise, capsys, captured):
    missing = str(tmp_path / "missing.json")
    _fails(["ise", missing, "--out", str(tmp_path / "x")], capsys, "missing.json: no such file")
    broken = tmp_path / "broken.json"
    doc = make_counts("ise", layers=1)
    del doc["records"][3]["n_pruned"]
    broken.write_text(json.dumps(doc))
    _fails(["ise", str(broken), "--out", str(tmp_path / "x")], capsys, "broken.json", "records[3]", "n_pruned")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(ise))
    _fails(["lsp", str(good), "--out", str(tmp_path / "x")], capsys, "kind is 'ise'", "lslo-plot ise")
    _fails(["ise", str(good), "--lang-groups", "lang99", "--out", str(tmp_path / "x")], capsys, "--lang-groups")
    _fails(["ise", str(good), "--matrix", "B_src", "--out", str(tmp_path / "x")], capsys,
           "good.json: no records of matrix 'B_src' (--matrix); it has ['B']")
    _fails(["weights", str(good), "--out", str(tmp_path / "x")], capsys, "good.json", "missing key 'encoder'")
    bad_wl = tmp_path / "wl.json"
    bad = _wl(history=False)
    bad["encoder_index"][0] = "tgt"
    bad_wl.write_text(json.dumps(bad))
    _fails(["weights", str(bad_wl), "--out", str(tmp_path / "x")], capsys, "wl.json", "encoder_index[0]")

    res = _write_epoch_results(tmp_path, "r", [(1, 30.0), (2, 31.0)])
    _fails(["curves", "--run", "R=" + ",".join(res), "--columns", "H2H,X2Y", "--out", str(tmp_path / "x")],
           capsys, "--columns", "unknown column 'X2Y'", "H2H, H2V, V2H, V2V, AVG")
    _fails(["curves", "--run", "R=" + ",".join(res), "--columns", "H2H", "--epochs", "1,2,3",
            "--out", str(tmp_path / "x")], capsys, "--epochs", "3 epochs", "2 files")
    _fails(["curves", "--run", "R=" + res[0] + "," + missing, "--columns", "H2H", "--out", str(tmp_path / "x")],
           capsys, "--run R", "missing.json: no such file")
    _fails(["curves", "--run", "R", "--columns", "H2H", "--out", str(tmp_path / "x")], capsys, "NAME=")
    _fails(["curves", "--columns", "H2H", "--out", str(tmp_path / "x")], capsys, "nothing to plot")
    assert captured == []  # nothing was drawn
    assert not list(tmp_path.glob("x*"))


def test_too_few_sized_languages_skip_correlations(tmp_path, captured, capsys):
    doc = make_counts("ise", layers=2, langs={"en": "H", "fr": "H", "oc": "V"}, ratio=0.5)
    doc.update(target_ratio=0.7, position=3)  # as pruning/controller.py writes it mid-schedule
    counts = tmp_path / "c.json"
    counts.write_text(json.dumps(doc))
    assert main(["ise", str(counts), "--out", str(tmp_path / "small")]) == 0
    err = capsys.readouterr().err
    assert "correlations (tables 9-10) skipped" in err and "at least 3 languages" in err
    assert "written at ratio 0.5" in err and "target 0.7" in err and "miss the pruning ratio" not in err
    assert len(captured) == 2 and not (tmp_path / "small_correlations.csv").exists()


def test_records_of_the_pruning_code(tmp_path, captured, capsys):
    """Records written by lslo_fairseq.pruning (a tiny model, ISE at P) pass the schema and the
    pool check, and lslo-plot draws them (groups from the lang30 preset: the model has none)."""
    from model_utils import build_tiny_model, randomize_adapters

    from lslo_fairseq.pruning.pools import apply_ratio, build_pools, records

    model, _ = build_tiny_model(extra=["--lslo-prune", "ise"])
    randomize_adapters(model)
    pools = build_pools(model.lslo_layers, model.lslo_config)
    apply_ratio(pools, P)
    recs = pruning_counts.validate_records(records(pools, model.lslo_config))
    sums = imp.check_pool_sparsity(recs, P)
    assert len(sums) == 4 and all(abs(p["score_sum"]) <= 0.5 for p in sums.values())
    counts = tmp_path / "pruning_counts.json"
    counts.write_text(json.dumps({"kind": "ise", "ratio": P, "records": recs}))
    assert main(["ise", str(counts), "--out", str(tmp_path / "tiny")]) == 0
    assert "lang30 preset" in capsys.readouterr().err
    enc = [ax for ax in captured[0].figure.axes if ax.images][0]
    assert [t.get_text() for t in enc.get_yticklabels()] == ["en", "fr", "ko", "oc"]  # H, H, M, V
    assert (tmp_path / "tiny_correlations.json").is_file()  # fr, ko, oc have sizes
