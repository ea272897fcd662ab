"""lslo-export hf / peft: the frozen base as a Hugging Face M2M100 model decodes exactly as
fairseq-generate (greedy and beam 5), with language codes M2M100Tokenizer knows and with codes it does
not (the exported tokenizer holds every language token at its fairseq id), and the per-direction PEFT
adapters as the plugin's LSLo model (same tokens, scores within 1e-3), one direction at a time or mixed
in one batch; the LoRA factors are the folded export's updates; bad input is refused before any work."""
import json
import math
from pathlib import Path

import pytest
import torch

from helpers import LSLO_ARGS, TRAIN_ARGS, USER_DIR, lslo_task_args, run_fairseq
from lslo_fairseq.export import imports

try:
    imports.peft()
    imports.transformers()
except imports.MissingLibraryError as e:  # only where transformers/peft cannot be installed
    pytest.skip(f"the hf extra is not installed: {e}", allow_module_level=True)

from lslo_fairseq.cli.export import main as export_main  # noqa: E402
from lslo_fairseq.export.hf_generation import FairseqRules, translate  # noqa: E402

DIRECTIONS = [("fr", "oc"), ("oc", "en")]
MAX_LEN_B = 20
# weight learning with the authors' sliced fc adapters at a non-zero offset (pruning cannot be combined
# with weight learning; pruning masks are covered by test_lora_factors_are_the_merged_updates)
HARD = ["--lslo-weight-learning", "--lslo-adapter-shape", "paper", "--lslo-fc-offset", "32", "--lslo-init", "paper",
        "--max-update", "12", "--lr", "0.01"]


def export(*argv):
    assert export_main([str(a) for a in argv]) == 0


def export_error(capsys, *argv) -> str:
    assert export_main([str(a) for a in argv]) == 2
    return capsys.readouterr().err


def read_hypotheses(path):
    """{sentence id: {score (base e), tokens, positional (base e)}} of fairseq-generate's H-/P- lines
    (it prints base-2 scores)."""
    hyps = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        tag, _, rest = line.partition("\t")
        if tag.startswith("H-"):
            score, _, tokens = rest.partition("\t")
            hyps.setdefault(int(tag[2:]), {}).update(score=float(score) * math.log(2), tokens=tokens)
        elif tag.startswith("P-"):
            hyps.setdefault(int(tag[2:]), {})["positional"] = [float(x) * math.log(2) for x in rest.split()]
    return hyps


def fairseq_generate(data, checkpoint, s, t, beam, out_dir):
    args = [*lslo_task_args(data), "--user-dir", USER_DIR, "--path", checkpoint, "--source-lang", s,
            "--target-lang", t, "--gen-subset", "test", "--beam", str(beam), "--max-len-b", str(MAX_LEN_B),
            "--required-batch-size-multiple", "1", "--cpu", "--results-path", out_dir]
    run_fairseq("fairseq-generate", args, Path(str(out_dir) + ".log"))
    return read_hypotheses(Path(out_dir) / "generate-test.txt")


def source_rows(data, lang):
    return Path(data["test_raw"][lang]).read_text(encoding="utf-8").splitlines()


def assert_same(fs, hf, tgt):
    """Same tokens (fairseq strips the target language token from H lines), scores within 1e-3."""
    assert sorted(fs) == list(range(len(hf))) and len(hf) == 30
    tok = f"__{tgt}__"
    for i, h in enumerate(hf):
        pieces = " ".join(p for p in h["pieces"].split() if p != tok)
        assert pieces == fs[i]["tokens"], f"row {i}"
        assert len(h["positional"]) == len(fs[i]["positional"]), f"row {i}"
        assert abs(h["score"] - fs[i]["score"]) < 1e-3, f"row {i}: {h['score']} vs {fs[i]['score']}"
        if h["hf_score"] is not None:  # HF's own beam score is the same number
            assert abs(h["hf_score"] - h["score"]) < 1e-4


def load_hf(path):
    tf = imports.transformers()
    return tf.M2M100ForConditionalGeneration.from_pretrained(path).eval(), tf.AutoTokenizer.from_pretrained(path)


# ---- no training ----------------------------------------------------------------------------------

def test_fairseq_rules_force_the_first_token_per_sentence_keep_scores_and_end_at_max_len():
    rules = FairseqRules([5, 7], pad=1, eos=2, max_len=3)
    scores = torch.log_softmax(torch.randn(4, 9), -1)  # 2 sentences x 2 beams
    first = rules(torch.zeros(4, 1, dtype=torch.long), scores)
    assert first[:2, 5].tolist() == scores[:2, 5].tolist() and first[2:, 7].tolist() == scores[2:, 7].tolist()
    assert torch.isinf(first).sum() == 4 * 8
    mid = rules(torch.zeros(4, 2, dtype=torch.long), scores)
    assert torch.isinf(mid[:, 1]).all() and torch.equal(mid[:, 2:], scores[:, 2:])
    last = rules(torch.zeros(4, 4, dtype=torch.long), scores)
    assert torch.equal(last[:, 2], scores[:, 2]) and torch.isinf(last).sum() == 4 * 8


def test_dead_rows_have_one_constant_logit_after_the_layer_norm():
    from lslo_fairseq.export.hf import DEAD_LOGIT, dead_row

    norm = torch.nn.LayerNorm(64)
    with torch.no_grad():
        norm.weight.uniform_(0.2, 1.5)
        norm.bias.normal_(0, 0.3)
    row = dead_row(norm.weight, norm.bias)
    h = norm(torch.randn(1000, 64) * 30 + 5)
    logits = h @ row
    assert torch.allclose(logits, torch.full_like(logits, -DEAD_LOGIT), rtol=1e-3)


@pytest.mark.parametrize("variant", ["indexed", "paper_pruned_alpha", "weight_learning_paper"])
def test_lora_factors_are_the_merged_updates(variant):
    """B @ A of every layer is what lslo-export fold folds into it (masks, slices, alpha, weights)."""
    from torch.nn.utils import prune

    from lslo_fairseq.checkpoints.fold import folded_weights
    from lslo_fairseq.export.lora import direction_factors, direction_lora
    from model_utils import build_tiny_model, randomize_adapters

    paper = ["--lslo-adapter-shape", "paper", "--lslo-fc-offset", "32"]
    if variant == "indexed":
        model, _ = build_tiny_model()
    elif variant == "paper_pruned_alpha":
        model, _ = build_tiny_model(extra=[*paper, "--lslo-alpha", "8"])
    else:
        model, _ = build_tiny_model(extra=[*paper, "--lslo-weight-learning"], enc_index="paper", dec_index="paper")
    randomize_adapters(model)
    g = torch.Generator().manual_seed(3)
    for layer in model.lslo_layers.values():
        if variant == "paper_pruned_alpha":
            for name in layer.param_names():
                prune.custom_from_mask(layer, name, torch.rand(layer.raw(name).shape, generator=g) > 0.4)
        if layer.index_weights is not None:
            with torch.no_grad():
                layer.index_weights.logits.copy_(torch.randn(2, generator=g))
    for s, t in (("oc", "ko"), ("fr", "en")):
        merged = folded_weights(model, s, t)
        pairs = direction_factors(model, s, t)
        for path, (b, a) in direction_lora(model, s, t).items():
            layer = model.lslo_layers[path]
            assert b.shape == (layer.out_features, a.shape[0]) and a.shape[1] == layer.in_features
            assert a.shape[0] == sum(p[1].shape[0] for p in pairs[path])  # ranks add when stacked
            torch.testing.assert_close(b @ a, merged[path] - layer.base_layer.weight.double(), rtol=0, atol=1e-12)
        if variant == "weight_learning_paper":
            assert all(len(p) == 2 for p in pairs.values())
            fc1 = next(p for p in pairs if p.endswith("fc1"))
            b, a = pairs[fc1][0]
            assert b[:32].abs().max() == 0 and b[32:96].abs().max() > 0 and b[96:].abs().max() == 0


@pytest.mark.parametrize("vocabulary", ["every_piece", "tiny_dict"])
def test_hf_export_keeps_fairseq_ids_and_reads_pieces_outside_dict_as_unk(vocabulary, tiny_data, tmp_path,
                                                                          monkeypatch):
    """A legacy (args) checkpoint with languages M2M100Tokenizer does not know: fairseq's ids as they are;
    a dict.txt holding every SentencePiece piece keeps the embeddings tied, the tiny dict.txt (pieces
    outside it) unties them, its extra ids reading as <unk> and taking no probability."""
    import shutil

    from released_model import untrained_checkpoint

    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copyfile(tiny_data["spm_model"], folder / "sentencepiece.bpe.model")
    lines = Path(tiny_data["dict"]).read_text(encoding="utf-8").splitlines()
    if vocabulary == "every_piece":
        from sentencepiece import SentencePieceProcessor

        sp = SentencePieceProcessor(model_file=tiny_data["spm_model"])
        known = {line.split()[0] for line in lines}
        lines += [f"{p} 1" for p in map(sp.id_to_piece, range(3, sp.get_piece_size())) if p not in known]
    (folder / "dict.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    langs = ["kea", "en", "kam", "ast"]  # token order as recorded (not sorted)
    ckpt = untrained_checkpoint(folder / "model.pt", folder / "dict.txt", langs, ["en-kam", "kam-kea", "ast-en"])
    export("hf", "--checkpoint", ckpt, "--out", tmp_path / "hf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    info = json.loads((tmp_path / "hf" / "lslo_export.json").read_text())
    model, tok = load_hf(tmp_path / "hf")
    n = len(lines) + 4
    assert info["language_token_ids"] == {lang: n + i for i, lang in enumerate(langs)}
    assert [tok.convert_tokens_to_ids(f"__{lang}__") for lang in langs] == list(range(n, n + 4))
    assert info["max_logprob_difference_to_fairseq"] < 1e-5
    shared, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    extra = info["pieces_outside_dict"]
    if vocabulary == "every_piece":
        assert not extra and info["tied_embeddings"] and model.config.tie_word_embeddings
        assert shared.data_ptr() == head.data_ptr() and model.config.vocab_size == n + 4
        return
    assert extra and not info["tied_embeddings"] and model.config.vocab_size == n + 4 + len(extra) == len(tok)
    # a sentence with a piece outside dict.txt: its extra id encodes exactly as fairseq's <unk>
    ids = tok("__kam__ " + extra[0].lstrip("\u2581"))["input_ids"]
    assert max(ids) >= n + 4
    unk = torch.tensor([[tok.unk_token_id if i >= n + 4 else i for i in ids]])
    with torch.no_grad():
        enc = [model.get_encoder()(input_ids=x).last_hidden_state for x in (torch.tensor([ids]), unk)]
        logits = model(input_ids=torch.tensor([ids]), decoder_input_ids=torch.tensor([[2, n + 1, 9, 17]])).logits
    assert torch.equal(enc[0], enc[1])
    from lslo_fairseq.export.hf import DEAD_LOGIT  # the extra ids' logit, whatever the hidden state

    torch.testing.assert_close(logits[..., n + 4:], torch.full_like(logits[..., n + 4:], -DEAD_LOGIT), atol=0.5, rtol=0)


MODULAR_RANKS = "en:2,fr:3,ko:3,oc:5"  # en is the pivot (rank 0); fr-ko can merge by ab, fr-oc cannot


def modular_tiny(extra=()):
    from model_utils import build_tiny_model, randomize_adapters

    model, _ = build_tiny_model(ranks=MODULAR_RANKS, enc_index="paper", dec_index="paper",
                                extra=["--lslo-modular", *extra])
    randomize_adapters(model)
    with torch.no_grad():  # A as well, so that the in and out banks differ everywhere
        for layer in model.lslo_layers.values():
            for name in layer.param_names():
                if "_A" in name:
                    layer.raw(name).normal_()
    return model


def modular_update_by_hand(layer, src, tgt, w_in, w_out, merge):
    """What a modular layer adds to W for language rows src -> tgt, written out from the follow-up's
    eq. 3 (outputs: w_in B_in A_in + w_out B_out A_out) and eq. 4 (ab: (sqrt w_in B_in + sqrt w_out B_out)
    (sqrt w_in A_in + sqrt w_out A_out)), each A scaled by its language's alpha / r, at the adapter's spans."""
    terms = []
    for lang, bank, w in ((src, "in", w_in), (tgt, "out", w_out)):
        if w > 0 and layer.ranks[lang] > 0:
            lo, hi = layer.lang_columns(lang)
            a = layer.effective(layer.param_name("A", bank))[lo:hi].double() * layer.scale(lang)
            terms.append((w, layer.effective(layer.param_name("B", bank))[:, lo:hi].double(), a))
    if merge == "outputs":
        update = sum(w * b @ a for w, b, a in terms)
    else:
        update = sum(w ** 0.5 * b for w, b, _ in terms) @ sum(w ** 0.5 * a for w, _, a in terms)
    out = torch.zeros(layer.base_layer.weight.shape, dtype=torch.float64)
    out[layer.out_span[0]:layer.out_span[1], layer.in_span[0]:layer.in_span[1]] = update
    return out


@pytest.mark.parametrize("merge", ["outputs", "ab"])
@pytest.mark.parametrize("shape", ["full", "paper_alpha"])
def test_modular_lora_factors_are_the_merged_updates(merge, shape, tmp_path):
    """Modular checkpoints: per direction, B @ A of every layer is the follow-up's eq. 3 / eq. 4 with the router's
    merge table (per-direction weights from a --merge-search JSON, the pivot's directions (1,0)/(0,1));
    outputs stacks the two adapters (ranks add), ab is one LoRA of the common rank."""
    from lslo_fairseq.checkpoints.fold import folded_weights
    from lslo_fairseq.export.lora import direction_factors, direction_lora
    from lslo_fairseq.merging import apply_merge

    model = modular_tiny(["--lslo-adapter-shape", "paper", "--lslo-fc-offset", "32", "--lslo-alpha", "4"]
                         if shape == "paper_alpha" else [])
    spec = tmp_path / "weights.json"
    spec.write_text(json.dumps({"weights": [0.3, 0.7], "directions": {"ko-fr": [0.8, 0.1]}}))
    langs = model.lslo_config.languages
    rank = dict(zip(langs, model.lslo_config.ranks))
    directions = [("fr", "ko"), ("ko", "fr"), ("fr", "en"), ("en", "oc")] + ([("oc", "fr")] if merge == "outputs" else [])
    for s, t in directions:
        apply_merge(model, merge, str(spec), s, t)
        w_in, w_out = model.lslo_router.pair_weights[langs.index(s), langs.index(t)].tolist()
        assert (w_in, w_out) == pytest.approx({("ko", "fr"): (0.8, 0.1), ("fr", "en"): (1, 0), ("en", "oc"): (0, 1)}
                                              .get((s, t), (0.3, 0.7)))
        merged = folded_weights(model, s, t)
        pairs = direction_factors(model, s, t)
        loras = direction_lora(model, s, t)
        assert list(loras) == list(model.lslo_layers)
        for path, (b, a) in loras.items():
            layer = model.lslo_layers[path]
            want = modular_update_by_hand(layer, langs.index(s), langs.index(t), w_in, w_out, merge)
            assert b.shape == (layer.out_features, a.shape[0]) and a.shape[1] == layer.in_features
            torch.testing.assert_close(b @ a, want, rtol=0, atol=1e-12)
            torch.testing.assert_close(b @ a, merged[path] - layer.base_layer.weight.double(), rtol=0, atol=1e-12)
            used = [lang for lang, w in ((s, w_in), (t, w_out)) if w > 0 and rank[lang] > 0]
            if merge == "outputs":
                assert len(pairs[path]) == len(used) and a.shape[0] == sum(rank[lang] for lang in used)
            else:
                assert len(pairs[path]) == 1 and a.shape[0] == rank[used[0]]
    if merge == "ab":  # unequal ranks (fr 3, oc 5) are refused, naming the option
        from lslo_fairseq.config import LSLoConfigError

        model.lslo_router.configure_merge("en", model.lslo_config.ranks, "ab", (0.5, 0.5))
        with pytest.raises(LSLoConfigError, match="--lslo-merge ab needs equal ranks"):
            direction_factors(model, "fr", "oc")


def test_modular_peft_adapters_record_the_merge(tmp_path, monkeypatch):
    """adapter_files of a modular model: outputs stacks (rank 3 + 3 for fr-ko), ab keeps rank 3; the
    factors are what PEFT loads (lora_alpha = r: scale 1)."""
    from lslo_fairseq.export.peft import adapter_files
    from lslo_fairseq.merging import apply_merge

    model = modular_tiny()
    for merge, r in (("outputs", 6), ("ab", 3)):
        apply_merge(model, merge, "0.4,0.6", "fr", "ko")
        config, tensors = adapter_files(model, "fr", "ko", None)
        assert config.r == r and not config.rank_pattern and config.lora_alpha == r
        assert len(tensors) == 2 * len(model.lslo_layers)
    apply_merge(model, "outputs", "0.4,0.6", "oc", "en")  # into the pivot: LoRA_in(oc) alone, rank 5
    config, _ = adapter_files(model, "oc", "en", None)
    assert config.r == 5


# ---- through fairseq ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hard_run(tiny_data, tiny_base_checkpoint, tmp_path_factory):
    """An LSLo run with weight learning and paper-shaped fc adapters (offset 32)."""
    root = tmp_path_factory.mktemp("hf_hard")
    assert LSLO_ARGS[-4::2] == ["--lslo-encoder-index", "--lslo-decoder-index"]  # dropped: every layer learns
    run_fairseq("fairseq-train", [*lslo_task_args(tiny_data), *LSLO_ARGS[:-4],
                                  *TRAIN_ARGS, *HARD, "--finetune-from-model", tiny_base_checkpoint,
                                  "--save-dir", root / "ckpt"], root / "train.log")
    return root / "ckpt" / "checkpoint_last.pt"


# fr, ko, oc renamed to codes none of which is among M2M100Tokenizer's 100 language codes
OUTSIDE_M2M100 = {"fr": "kam", "ko": "ku", "oc": "kea"}


def relabeled(data, checkpoint, root, names):
    """tiny_data and a checkpoint trained on it with the languages renamed by ``names``: the same
    weights and language-token ids (``--langs`` keeps its order: en,kam,ku,kea, not sorted)."""
    import re

    def rename(text):
        return re.sub(r"(?<![a-z])(en|fr|ko|oc)(?![a-z])", lambda m: names.get(m.group(1), m.group(1)), text)

    folder = Path(root) / "data"
    folder.mkdir(parents=True)
    for f in Path(data["data_dir"]).iterdir():
        if f.is_file():
            (folder / rename(f.name)).symlink_to(f)
    info = dict(data, data_dir=str(folder), langs=[rename(x) for x in data["langs"]],
                lang_pairs=[rename(x) for x in data["lang_pairs"]],
                test_raw={rename(k): v for k, v in data["test_raw"].items()})
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    for section in ("model", "task"):
        ns = state["cfg"][section]
        for key in ("langs", "lang_pairs"):
            value = getattr(ns, key, None)
            if value is not None:
                setattr(ns, key, rename(value) if isinstance(value, str) else [rename(x) for x in value])
        ns.data = str(folder)
    path = Path(root) / "checkpoint.pt"
    torch.save(state, path)
    return info, path


@pytest.mark.slow
@pytest.mark.parametrize("codes", ["m2m100", "outside_m2m100"])
def test_hf_base_decodes_like_fairseq_generate(codes, tiny_data, tiny_base_checkpoint, tmp_path, monkeypatch):
    """Greedy and beam 5 equal fairseq-generate; with language codes M2M100Tokenizer does not know (kam,
    ku, kea), AutoTokenizer + plain generate(forced_bos_token_id=...) give fairseq's greedy hypotheses."""
    names = OUTSIDE_M2M100 if codes == "outside_m2m100" else {}
    data, checkpoint = (relabeled(tiny_data, tiny_base_checkpoint, tmp_path / "relabeled", names) if names
                        else (tiny_data, tiny_base_checkpoint))
    export("hf", "--checkpoint", checkpoint, "--out", tmp_path / "hf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    info = json.loads((tmp_path / "hf" / "lslo_export.json").read_text())
    assert info["max_logprob_difference_to_fairseq"] < 1e-4
    model, tok = load_hf(tmp_path / "hf")
    # fairseq's ids: dict.txt with its specials, then one token per --langs language in that order
    n_dict = len(Path(data["dict"]).read_text(encoding="utf-8").splitlines()) + 4
    want = {lang: n_dict + i for i, lang in enumerate(data["langs"])}
    got = {lang: tok.convert_tokens_to_ids(f"__{lang}__") for lang in data["langs"]}
    assert got == want == info["language_token_ids"]
    assert model.config.vocab_size == len(tok) == n_dict + len(data["langs"]) + len(info["pieces_outside_dict"])
    for s, t in [(names.get(s, s), names.get(t, t)) for s, t in DIRECTIONS]:
        rows = source_rows(data, s)
        for beam in (1, 5):
            fs = fairseq_generate(data, checkpoint, s, t, beam, tmp_path / f"{s}{t}{beam}")
            assert_same(fs, translate(model, tok, rows, [f"{s}-{t}"] * len(rows), beam=beam, max_len_b=MAX_LEN_B), t)
            if names and beam == 1:  # the plain HF API: text with its language token, forced target token
                batch = tok([f"__{s}__ {row}" for row in rows], return_tensors="pt", padding=True)
                out = model.generate(**batch, forced_bos_token_id=tok.convert_tokens_to_ids(f"__{t}__"), num_beams=1,
                                     do_sample=False, max_new_tokens=MAX_LEN_B + 1)
                assert out[:, 1].tolist() == [want[t]] * len(rows)
                for i in range(len(rows)):  # fairseq's tokens (H lines drop __tgt__), all of them unless it
                    row = out[i, 2:].tolist()  # forced EOS at --max-len-b, where HF goes on
                    ended = tok.eos_token_id in row
                    hyp = [p for p in tok.convert_ids_to_tokens(row[:row.index(tok.eos_token_id)] if ended else row)
                           if p != f"__{t}__"]
                    pieces = fs[i]["tokens"].split()
                    assert hyp[:len(pieces)] == pieces, i
                    assert (hyp == pieces and ended) == (len(fs[i]["positional"]) <= MAX_LEN_B), i


@pytest.mark.slow
@pytest.mark.parametrize("run", ["indexed", "hard"])
def test_peft_adapters_decode_like_lslo_in_mixed_batches(run, lslo_run, hard_run, tiny_data, tmp_path, monkeypatch):
    peft = imports.peft()
    checkpoint = lslo_run["ckpt"] if run == "indexed" else hard_run
    export("hf", "--checkpoint", checkpoint, "--out", tmp_path / "hf")
    names = ",".join(f"{s}-{t}" for s, t in DIRECTIONS)
    export("peft", "--checkpoint", checkpoint, "--directions", names, "--out", tmp_path / "peft",
           "--base-model", tmp_path / "hf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base, tok = load_hf(tmp_path / "hf")
    config = json.loads((tmp_path / "peft" / "fr-oc" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["lora_dropout"] == 0
    if run == "hard":  # weight learning stacks two languages: the ranks add (fr 2 + oc 4)
        assert config["r"] == 6 and not config["rank_pattern"]
    else:  # source-indexed layers have fr's rank 2, target-indexed ones oc's 4
        assert config["r"] == 4 and set(config["rank_pattern"].values()) == {2} == set(config["alpha_pattern"].values())
    model = peft.PeftModel.from_pretrained(base, tmp_path / "peft" / "fr-oc", adapter_name="fr-oc")
    model.load_adapter(tmp_path / "peft" / "oc-en", adapter_name="oc-en")
    model.eval()
    single = {}
    for s, t in DIRECTIONS:
        rows = source_rows(tiny_data, s)
        fs = fairseq_generate(tiny_data, checkpoint, s, t, 5, tmp_path / f"{s}{t}")
        single[s, t] = translate(model, tok, rows, [f"{s}-{t}"] * len(rows), beam=5, max_len_b=MAX_LEN_B, adapters=True)
        assert_same(fs, single[s, t], t)
    # one batch, directions interleaved, equals one direction at a time
    order = [(d, i) for i in range(30) for d in DIRECTIONS][:40]
    mixed = translate(model, tok, [source_rows(tiny_data, d[0])[i] for d, i in order], [f"{d[0]}-{d[1]}" for d, _ in order],
                      beam=5, max_len_b=MAX_LEN_B, adapters=True)
    for (d, i), h in zip(order, mixed):
        assert h["tokens"] == single[d][i]["tokens"] and abs(h["score"] - single[d][i]["score"]) < 1e-4
    # without its adapter the base gives other scores: the adapters matter
    with model.disable_adapter():  # PEFT wrapped the base's layers in place
        bare = translate(model, tok, source_rows(tiny_data, "fr"), ["fr-oc"] * 30, beam=5, max_len_b=MAX_LEN_B)
    assert sum(abs(a["score"] - b["score"]) > 1e-3 for a, b in zip(bare, single["fr", "oc"])) > 15


@pytest.mark.slow
def test_bad_input_is_refused_before_any_work(tiny_base_checkpoint, lslo_run, tmp_path, capsys):
    state = torch.load(tiny_base_checkpoint, map_location="cpu", weights_only=False)
    out = tmp_path / "out"
    for option, flag in (("encoder_normalize_before", "--encoder-normalize-before"),
                         ("share_all_embeddings", "--share-all-embeddings"),
                         ("decoder_learned_pos", "--decoder-learned-pos")):
        changed = dict(state, cfg=dict(state["cfg"], model=type(state["cfg"]["model"])(**vars(state["cfg"]["model"]))))
        setattr(changed["cfg"]["model"], option, not getattr(state["cfg"]["model"], option))
        path = tmp_path / f"{option}.pt"
        torch.save(changed, path)
        err = export_error(capsys, "hf", "--checkpoint", path, "--out", out)
        assert flag in err and "cannot be exported to M2M100" in err, err
    err = export_error(capsys, "hf", "--checkpoint", tiny_base_checkpoint, "--spm", tmp_path / "none.model", "--out", out)
    assert "--spm" in err and "none.model does not exist" in err
    from lslo_fairseq.data.multiparallel import train_sentencepiece

    rows = Path(json.loads((Path(state["cfg"]["task"].data) / "prepared.json").read_text())["test_raw"]["en"])
    unigram, _ = train_sentencepiece(rows.read_text().splitlines(), tmp_path / "uni", 100, model_type="unigram")
    err = export_error(capsys, "hf", "--checkpoint", tiny_base_checkpoint, "--spm", unigram, "--out", out)
    assert "--spm" in err and "uni.model is a unigram model" in err, err
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    dict_txt = json.loads((Path(state["cfg"]["task"].data) / "prepared.json").read_text())["dict"]
    (lonely / "dict.txt").write_text(Path(dict_txt).read_text())
    err = export_error(capsys, "hf", "--checkpoint", tiny_base_checkpoint, "--dict", lonely / "dict.txt", "--out", out)
    assert "--spm: no SentencePiece model beside" in err
    err = export_error(capsys, "hf", "--checkpoint", tiny_base_checkpoint, "--dict", tmp_path / "x.txt", "--out", out)
    assert "--dict" in err and "x.txt does not exist" in err
    for directions, says in (("de-oc", "'de' has no adapters"), ("froc", "is not a direction"), ("fr-fr", "is not a direction")):
        err = export_error(capsys, "peft", "--checkpoint", lslo_run["ckpt"], "--directions", directions, "--out", out)
        assert "--directions" in err and says in err, err
    err = export_error(capsys, "peft", "--checkpoint", tiny_base_checkpoint, "--directions", "fr-oc", "--out", out)
    assert "has no adapters" in err or "not an LSLo checkpoint" in err
    assert not out.exists()
