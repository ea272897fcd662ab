"""Modular fine-tuning (``--lslo-modular``): the follow-up's input/output adapters, the merges of its
eq. 3 (outputs) and eq. 4 (ab), gradient isolation, frozen languages and added languages."""
import pytest
import torch

from lslo_fairseq.config import LSLoConfigError
from lslo_fairseq.routing import RoutingError
from model_utils import build_tiny_model, mixed_batch, randomize_adapters

RANKS = "en:2,fr:3,ko:3,oc:5"  # en is the pivot: rank 0 under --lslo-modular


def modular_model(ranks=RANKS, extra=(), seed=0):
    model, task = build_tiny_model(ranks=ranks, enc_index="paper", dec_index="paper",
                                   extra=["--lslo-modular", *extra], seed=seed)
    randomize_adapters(model)
    with torch.no_grad():  # A as well, so that in and out banks differ everywhere
        for layer in model.lslo_layers.values():
            for name in layer.param_names():
                if "_A" in name:
                    layer.raw(name).normal_()
    return model, task


def block(layer, matrix, bank, lang_row):
    lo, hi = layer.lang_columns(lang_row)
    t = layer.effective(layer.param_name(matrix, bank)).double()
    return t[lo:hi] if matrix == "A" else t[:, lo:hi]


def layer_output(model, layer, x, src, tgt):
    router = model.lslo_router
    router.set(torch.tensor(src), torch.tensor(tgt))
    with torch.no_grad():
        return layer(x).double()


def test_pivot_has_no_adapters_and_layers_hold_in_and_out_banks():
    model, _ = modular_model()
    cfg = model.lslo_config
    assert cfg.pivot == "en" and cfg.rank_of("en") == 0 and cfg.rank_of("oc") == 5
    layer = next(iter(model.lslo_layers.values()))
    assert layer.param_names() == ["lora_A_in", "lora_B_in", "lora_A_out", "lora_B_out"]
    assert layer.lora_A_in.shape[0] == 3 + 3 + 5


@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.3, 0.9), (1.0, 0.0), (0.0, 1.0)])
def test_outputs_merge_is_eq3_by_hand(weights):
    """h = W x + w_in B_in A_in x + w_out B_out A_out x (follow-up eq. 3), per sentence."""
    model, _ = modular_model()
    model.lslo_router.configure_merge("en", model.lslo_config.ranks, "outputs", weights)
    fr, ko, oc = (model.lslo_config.languages.index(l) for l in ("fr", "ko", "oc"))
    layer = model.encoder.layers[0].self_attn.q_proj
    x = torch.randn(4, 2, layer.in_features)
    got = layer_output(model, layer, x, [fr, ko], [oc, fr])
    w_in, w_out = weights
    for b, (s, t) in enumerate([(fr, oc), (ko, fr)]):
        delta = w_in * block(layer, "B", "in", s) @ block(layer, "A", "in", s) \
            + w_out * block(layer, "B", "out", t) @ block(layer, "A", "out", t)
        want = x[:, b].double() @ (layer.weight.double() + delta).t() + layer.bias.double()
        torch.testing.assert_close(got[:, b], want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.2, 0.6)])
def test_ab_merge_is_eq4_by_hand(weights):
    """h = W x + (sqrt(w_in) B_in + sqrt(w_out) B_out)(sqrt(w_in) A_in + sqrt(w_out) A_out) x (eq. 4)."""
    model, _ = modular_model()
    model.lslo_router.configure_merge("en", model.lslo_config.ranks, "ab", weights)
    fr, ko = (model.lslo_config.languages.index(l) for l in ("fr", "ko"))
    layer = model.decoder.layers[1].fc1
    x = torch.randn(3, 2, layer.in_features)
    got = layer_output(model, layer, x, [fr, ko], [ko, fr])
    a, b = (w ** 0.5 for w in weights)
    for i, (s, t) in enumerate([(fr, ko), (ko, fr)]):
        delta = (a * block(layer, "B", "in", s) + b * block(layer, "B", "out", t)) @ \
            (a * block(layer, "A", "in", s) + b * block(layer, "A", "out", t))
        want = x[:, i].double() @ (layer.weight.double() + delta).t() + layer.bias.double()
        torch.testing.assert_close(got[:, i], want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["outputs", "ab"])
def test_one_zero_and_zero_one_are_the_single_adapters(mode):
    """1,0 is LoRA_in(src) alone, 0,1 LoRA_out(tgt) alone, in both merge modes; the pivot's
    directions always use the one adapter they trained."""
    model, _ = modular_model()
    langs = model.lslo_config.languages
    en, fr, ko = (langs.index(l) for l in ("en", "fr", "ko"))
    layer = model.decoder.layers[0].encoder_attn.v_proj
    x = torch.randn(5, 1, layer.in_features)
    base = x[:, 0].double() @ layer.weight.double().t() + layer.bias.double()
    only_in = base + x[:, 0].double() @ (block(layer, "B", "in", fr) @ block(layer, "A", "in", fr)).t()
    only_out = base + x[:, 0].double() @ (block(layer, "B", "out", ko) @ block(layer, "A", "out", ko)).t()
    for weights, want in (((1.0, 0.0), only_in), ((0.0, 1.0), only_out)):
        model.lslo_router.configure_merge("en", model.lslo_config.ranks, mode, weights)
        torch.testing.assert_close(layer_output(model, layer, x, [fr], [ko])[:, 0], want, rtol=1e-4, atol=1e-4)
    model.lslo_router.configure_merge("en", model.lslo_config.ranks, mode, (0.5, 0.5))
    torch.testing.assert_close(layer_output(model, layer, x, [fr], [en])[:, 0], only_in, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(layer_output(model, layer, x, [en], [ko])[:, 0], only_out, rtol=1e-4, atol=1e-4)


def test_ab_with_unequal_ranks_fails_naming_the_option():
    model, task = modular_model()
    model.lslo_router.configure_merge("en", model.lslo_config.ranks, "ab", (0.5, 0.5))
    src, lengths, prev, _ = mixed_batch(task, [("fr", "oc", [1, 2], [3])])
    with pytest.raises(RoutingError, match=r"--lslo-merge ab .*fr has rank 3 and oc rank 5"):
        model(src, lengths, prev)
    # into or out of the pivot only one adapter is used: any ranks
    src, lengths, prev, _ = mixed_batch(task, [("oc", "en", [1, 2], [3]), ("en", "fr", [4], [5])])
    model(src, lengths, prev)


def test_each_adapter_gets_gradient_only_from_its_own_sentences():
    """A joint English-centric batch: LoRA_in(X)'s gradient comes from the X->en sentences alone and
    LoRA_out(Y)'s from the en->Y ones (gradient isolation). This is all that is proved: a joint run still
    differs from separate runs per adapter (shared schedule and step count, the loss normalised over the
    whole batch, Adam moving an adapter whose language a batch lacks)."""
    model, task = modular_model()
    model.double().train()  # float64: the batch's padding changes float32 rounding only
    rows = [("fr", "en", [1, 2, 3], [4, 5]), ("en", "ko", [6, 7], [8, 9, 10]),
            ("oc", "en", [11], [12, 13]), ("en", "fr", [14, 15, 16, 17], [18])]

    def grads(batch_rows):
        model.zero_grad()
        src, lengths, prev, target = mixed_batch(task, batch_rows)
        logits = model(src, lengths, prev)[0]
        pad = task.source_dictionary.pad()
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, ignore_index=pad,
                                                 reduction="sum")
        loss.backward()
        return {(path, name): layer.raw(name).grad.clone()
                for path, layer in model.lslo_layers.items() for name in layer.param_names()}

    joint = grads(rows)
    langs = model.lslo_config.languages
    owners = {("in", "fr"): rows[0], ("out", "ko"): rows[1], ("in", "oc"): rows[2], ("out", "fr"): rows[3]}
    alone = {key: grads([row]) for key, row in owners.items()}
    some_layer = next(iter(model.lslo_layers.values()))
    for lang in ("fr", "ko", "oc"):
        for bank in ("in", "out"):
            lo, hi = some_layer.lang_columns(langs.index(lang))
            for (path, name), g in joint.items():
                if not name.endswith("_" + bank):
                    continue
                part = (lambda t: t[lo:hi]) if "_A" in name else (lambda t: t[:, lo:hi])
                if (bank, lang) in owners:
                    torch.testing.assert_close(part(g), part(alone[(bank, lang)][(path, name)]),
                                               rtol=1e-9, atol=1e-10)
                else:  # no sentence of the batch uses this adapter
                    assert torch.count_nonzero(part(g)) == 0, (path, name, lang)
    assert any(torch.count_nonzero(g) for g in joint.values())


def test_modular_refuses_weight_learning_and_explicit_indexes():
    with pytest.raises(LSLoConfigError, match="--lslo-modular .* drop --lslo-weight-learning"):
        build_tiny_model(ranks=RANKS, enc_index="paper", dec_index="paper",
                         extra=["--lslo-modular", "--lslo-weight-learning"])
    with pytest.raises(LSLoConfigError, match="drop --lslo-encoder-index"):
        build_tiny_model(ranks=RANKS, enc_index="src,tgt", dec_index="paper", extra=["--lslo-modular"])
    with pytest.raises(LSLoConfigError, match="--lslo-pivot de: not one of the LSLo languages"):
        build_tiny_model(ranks=RANKS, enc_index="paper", dec_index="paper",
                         extra=["--lslo-modular", "--lslo-pivot", "de"])


@pytest.mark.parametrize("spec,match", [("de", "are not LSLo languages"), ("en", "the pivot en has no adapters")])
def test_train_langs_bad_values_name_the_flag(spec, match):
    with pytest.raises(LSLoConfigError, match=f"--lslo-train-langs: .*{match}"):
        build_tiny_model(ranks=RANKS, enc_index="paper", dec_index="paper",
                         extra=["--lslo-modular", "--lslo-train-langs", spec])


def per_layer_file(tmp_path, model, profile=None, directions=None, default=None):
    """A merge-weights JSON with per-layer weights: a profile for every direction and/or per direction."""
    import json

    data = {}
    if default is not None:
        data["weights"] = list(default)
    if profile is not None:
        data["layers"] = profile
    if directions:
        data["direction_layers"] = directions
    path = tmp_path / "layers.json"
    path.write_text(json.dumps(data))
    return str(path)


def layer_profile(model, seed):
    """Distinct (w_in, w_out) in [0, 1] for every encoder and decoder layer."""
    g = torch.Generator().manual_seed(seed)
    return {side: [[round(float(v), 3) for v in torch.rand(2, generator=g) * 0.9 + 0.05]
                   for _ in range(len(getattr(model, side).layers))] for side in ("encoder", "decoder")}


@pytest.mark.parametrize("mode", ["outputs", "ab"])
def test_per_layer_weights_are_eq3_eq4_per_layer_by_hand(mode, tmp_path):
    """Per-layer merge weights (a profile for all directions, and one direction's own): every LSLo
    module of layer i mixes with layer i's (w_in, w_out), by eq. 3 (outputs) or eq. 4 (ab), in a
    mixed training batch, in a one-direction eval batch, and in the factors folding uses."""
    from lslo_fairseq.merging import apply_merge

    ranks = "en:2,fr:3,ko:3,oc:3" if mode == "ab" else RANKS
    model, _ = modular_model(ranks=ranks)
    langs = model.lslo_config.languages
    fr, ko, oc = (langs.index(l) for l in ("fr", "ko", "oc"))
    profile, own = layer_profile(model, 1), layer_profile(model, 2)
    apply_merge(model, mode, per_layer_file(tmp_path, model, profile, {"ko-fr": own}))
    seen = set()
    for path, layer in model.lslo_layers.items():
        side, i, _ = layer.site
        x = torch.randn(3, 2, layer.in_features)
        for train in (True, False):
            model.train(train)
            pairs = [(fr, oc), (ko, fr)] if train else [(ko, fr), (ko, fr)]
            got = layer_output(model, layer, x, [s for s, _ in pairs], [t for _, t in pairs])
            for b, (s, t) in enumerate(pairs):
                w_in, w_out = (own if (s, t) == (ko, fr) else profile)[side][i]
                if mode == "outputs":
                    delta = w_in * block(layer, "B", "in", s) @ block(layer, "A", "in", s) \
                        + w_out * block(layer, "B", "out", t) @ block(layer, "A", "out", t)
                else:
                    a, c = w_in ** 0.5, w_out ** 0.5
                    delta = (a * block(layer, "B", "in", s) + c * block(layer, "B", "out", t)) @ \
                        (a * block(layer, "A", "in", s) + c * block(layer, "A", "out", t))
                full = torch.zeros_like(layer.weight, dtype=torch.float64)
                full[layer.out_span[0]:layer.out_span[1], layer.in_span[0]:layer.in_span[1]] = delta
                want = x[:, b].double() @ (layer.weight.double() + full).t() + layer.bias.double()
                torch.testing.assert_close(got[:, b], want, rtol=1e-4, atol=1e-4)
                torch.testing.assert_close(layer.direction_weight(s, t), full, rtol=1e-6, atol=1e-7)  # fp32 weights
                seen.add((side, i))
    model.train(False)
    assert seen == {(side, i) for side in ("encoder", "decoder") for i in range(len(getattr(model, side).layers))}
    # the pivot's directions keep their one adapter in every layer
    en = langs.index("en")
    assert all(model.lslo_router.direction_weights(fr, en, l.site).tolist() == [1.0, 0.0]
               for l in model.lslo_layers.values())
    rec = model.lslo_router.direction_record(ko, fr)
    assert rec == {side: [pytest.approx(w) for w in own[side]] for side in ("encoder", "decoder")}


def test_per_layer_weights_bad_input_names_the_file(tmp_path):
    from lslo_fairseq.merging import apply_merge

    model, _ = modular_model()
    profile = layer_profile(model, 3)
    short = dict(profile, decoder=profile["decoder"][:-1])
    with pytest.raises(LSLoConfigError, match=r"layers.json: 'layers' has 1 decoder layer pairs, the model has 2"):
        apply_merge(model, "outputs", per_layer_file(tmp_path, model, short))
    out_of_range = dict(profile, encoder=[[1.5, 0.2]] + profile["encoder"][1:])
    with pytest.raises(LSLoConfigError, match=r"layers.json: 'layers' encoder layer 0: two weights W_IN,W_OUT in \[0, 1\]"):
        apply_merge(model, "outputs", per_layer_file(tmp_path, model, out_of_range))
    with pytest.raises(LSLoConfigError, match=r"layers.json: 'layers': per-layer weights are"):
        apply_merge(model, "outputs", per_layer_file(tmp_path, model, {"encoder": profile["encoder"]}))
    only_fr_ko = per_layer_file(tmp_path, model, directions={"fr-ko": profile})
    with pytest.raises(LSLoConfigError, match=r"no weights for ko-oc \(the file has fr-ko and no default"):
        apply_merge(model, "outputs", only_fr_ko, "ko", "oc")
    apply_merge(model, "outputs", only_fr_ko, "fr", "ko")  # the direction it has
    apply_merge(model, "outputs", only_fr_ko, "fr", "en")  # into the pivot: no merge weights needed


def test_pivot_adapters_train_one_adapter_per_pair_and_merge_at_generation():
    """--lslo-pivot-rank: the pivot gets LoRA_in/LoRA_out of that rank. In training X->en uses LoRA_in(X)
    alone, en->Y LoRA_out(Y) alone, and en->en copies alternate LoRA_in(en) (even sentences) and
    LoRA_out(en) (odd); at generation X->en and en->Y merge like any direction."""
    model, _ = modular_model(extra=["--lslo-pivot-rank", "2"])
    cfg, router = model.lslo_config, model.lslo_router
    assert cfg.rank_of("en") == 2 and router.pivot_adapters
    en, fr, ko = (cfg.languages.index(l) for l in ("en", "fr", "ko"))
    router.configure_merge("en", cfg.ranks, "outputs", (0.3, 0.7))
    router.set(torch.tensor([fr, en, en, en, en, fr]), torch.tensor([en, ko, en, en, en, ko]))
    trained = router.merge_weights(6, training=True).tolist()
    assert trained[:5] == [[1, 0], [0, 1], [1, 0], [0, 1], [1, 0]]
    generated = router.merge_weights(6).tolist()
    assert all(w == pytest.approx([0.3, 0.7]) for w in generated)  # en directions merge too
    # the layer: in training, a en->en sentence at an even position gets LoRA_in(en) alone
    layer = model.encoder.layers[0].self_attn.q_proj
    x = torch.randn(3, 2, layer.in_features)
    model.train()
    router.set(torch.tensor([en, en]), torch.tensor([en, en]))
    with torch.no_grad():
        got = layer(x).double()
    model.eval()
    base = x.double() @ layer.weight.double().t() + layer.bias.double()
    torch.testing.assert_close(got[:, 0], base[:, 0] + x[:, 0].double() @ (
        block(layer, "B", "in", en) @ block(layer, "A", "in", en)).t(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got[:, 1], base[:, 1] + x[:, 1].double() @ (
        block(layer, "B", "out", en) @ block(layer, "A", "out", en)).t(), rtol=1e-4, atol=1e-4)
    # without pivot adapters (the default) the pivot's directions keep one adapter at generation
    plain, _ = modular_model()
    plain.lslo_router.configure_merge("en", plain.lslo_config.ranks, "outputs", (0.3, 0.7))
    assert plain.lslo_router.direction_weights(fr, en).tolist() == [1.0, 0.0]


@pytest.mark.parametrize("spec", ["0.5", "-0.1,1", "0,0", "a,b", "nan,1", "1.2,0.3"])
def test_bad_merge_weights_name_the_flag(spec):
    from lslo_fairseq.merging import read_merge_weights

    with pytest.raises(LSLoConfigError, match="--lslo-merge-weights: two weights"):
        read_merge_weights(spec)


def test_train_langs_keep_every_other_tensor_bitwise():
    """One optimizer step with weight decay on a model whose adapters of all languages have
    gradients: only --lslo-train-langs' blocks move."""
    model, task = modular_model(extra=["--lslo-train-langs", "oc"])
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1, weight_decay=0.5)
    rows = [("fr", "en", [1, 2], [3]), ("en", "oc", [4], [5, 6]), ("oc", "en", [7], [8]), ("ko", "fr", [9], [1])]
    src, lengths, prev, target = mixed_batch(task, rows)
    frozen = model.lslo_frozen
    saved = frozen.save()
    model(src, lengths, prev)[0].sum().backward()
    opt.step()
    frozen.restore(saved)
    after = model.state_dict()
    oc = model.lslo_config.languages.index("oc")
    moved = 0
    for key, old in before.items():
        new = after[key]
        if key.split(".")[-1] in ("lora_A_in", "lora_A_out", "lora_B_in", "lora_B_out"):
            layer = model.get_submodule(key.rsplit(".", 1)[0])
            lo, hi = layer.lang_columns(oc)
            keep = torch.ones_like(old, dtype=torch.bool)
            if "_A" in key:
                keep[lo:hi] = False
            else:
                keep[:, lo:hi] = False
            assert torch.equal(new[keep], old[keep]), key
            moved += int(not torch.equal(new[~keep], old[~keep]))
        else:
            assert torch.equal(new, old), key
    assert moved > 0


def test_train_langs_on_plain_lslo_restrict_pruning_to_them():
    """--lslo-train-langs works without --lslo-modular too; pruning never touches a frozen language
    (GPS and LSP targets are cut to the trained languages; ISE, which pools all languages, is refused)."""
    model, _ = build_tiny_model(extra=["--lslo-train-langs", "oc", "--lslo-prune", "gps", "--lslo-prune-targets",
                                       "fr,oc", "--lslo-prune-unit", "update"])
    assert model.lslo_config.train_langs == ["oc"] and model.lslo_config.prune.targets == ["oc"]
    assert model.lslo_frozen is not None
    model, _ = build_tiny_model(extra=["--lslo-train-langs", "fr,ko", "--lslo-prune", "lsp"])
    assert model.lslo_config.prune.targets == ["fr", "ko"]
    with pytest.raises(LSLoConfigError, match="--lslo-prune ise .* --lslo-train-langs"):
        build_tiny_model(extra=["--lslo-train-langs", "oc", "--lslo-prune", "ise"])
