"""The authors' adapter shape and initialisation (``--lslo-adapter-shape paper``, ``--lslo-init
paper``), the alpha scale, layerdrop, and the layout that names them on load.

The reference below is the authors' formula written out per sentence: fc1's adapter reads the whole
input and adds to output columns [s, s+d); fc2's reads input columns [s, s+d) and adds to the whole
output (d = d_model)."""
import math

import pytest
import torch

from lslo_fairseq.config import LSLoConfigError
from lslo_fairseq.layout.record import LAYOUT_KEY, decode_layout, encode_layout
from lslo_fairseq.modules.lslo_linear import IndexWeights, LSLoLinear, adapter_spans
from lslo_fairseq.routing import LanguageRouter
from model_utils import ROWS_FOR_TRAINING, build_tiny_model, mixed_batch, randomize_adapters

PAPER = ["--lslo-adapter-shape", "paper"]
D_MODEL, FFN, OFFSET = 6, 16, 3  # fc1: 6 -> 16, fc2: 16 -> 6; the 6-wide window is [3, 9)
RANKS = (2, 2, 3, 5)


pytestmark = pytest.mark.usefixtures("kernel")  # every test with every routing kernel (conftest.py)


def paper_layer(fc, index="src", alpha=None, offset=OFFSET, seed=0):
    torch.manual_seed(seed)
    base = torch.nn.Linear(D_MODEL, FFN) if fc == "fc1" else torch.nn.Linear(FFN, D_MODEL)
    router = LanguageRouter(["a", "b", "c", "d"], [10, 11, 12, 13], 20)
    weights = IndexWeights() if index == "learned" else None
    spans = adapter_spans(base.in_features, base.out_features, "paper", offset)
    layer = LSLoLinear(base, RANKS, router, index, weights, *spans, init="paper", alpha=alpha)
    with torch.no_grad():
        for name in layer.param_names():
            if "_B" in name:
                getattr(layer, name).normal_()
        if weights is not None:
            weights.logits.copy_(torch.tensor([0.3, -0.4]))
    return layer, router


def authors_delta(layer, x_b, lang, bank):
    """B_l A_l x[in] of one sentence (T, k_in), scaled, as the authors' ``Lora.forward`` computes
    ``x @ A @ B`` with A = our A_l^T and B = our B_l^T."""
    lo, hi = layer.lang_columns(lang)
    a = getattr(layer, layer.param_name("A", bank))[lo:hi]
    b = getattr(layer, layer.param_name("B", bank))[:, lo:hi]
    scale = 1.0 if layer.alpha is None else layer.alpha / layer.ranks[lang]
    return scale * (x_b[:, layer.in_span[0]:layer.in_span[1]] @ a.t() @ b.t())


def reference(layer, x, src, tgt):
    out = layer.base_layer(x).clone()
    for b in range(x.size(1)):
        if layer.index == "learned":
            w = torch.softmax(layer.index_weights.logits, 0)
            delta = w[0] * authors_delta(layer, x[:, b], src[b], "src") + w[1] * authors_delta(layer, x[:, b], tgt[b], "tgt")
        else:
            delta = authors_delta(layer, x[:, b], (src if layer.index == "src" else tgt)[b], layer.index)
        out[:, b, layer.out_span[0]:layer.out_span[1]] += delta
    return out


@pytest.mark.parametrize("fc", ["fc1", "fc2"])
@pytest.mark.parametrize("index", ["src", "tgt", "learned"])
@pytest.mark.parametrize("alpha", [None, 4.0])
def test_mixed_batch_equals_the_authors_formula_sliced(fc, index, alpha):
    layer, router = paper_layer(fc, index, alpha)
    src, tgt = torch.tensor([3, 0, 2, 0, 1]), torch.tensor([1, 3, 3, 2, 0])
    router.set(src, tgt)
    x = torch.randn(7, 5, layer.base_layer.in_features)
    torch.testing.assert_close(layer(x), reference(layer, x, src.tolist(), tgt.tolist()), rtol=1e-5, atol=1e-5)


def test_spans_are_the_authors_windows():
    assert adapter_spans(1024, 4096, "paper", 0) == ((0, 1024), (0, 1024))  # fc1: output columns [0, 1024)
    assert adapter_spans(4096, 1024, "paper", 0) == ((0, 1024), (0, 1024))  # fc2: input columns [0, 1024)
    assert adapter_spans(1024, 4096, "paper", 3072) == ((0, 1024), (3072, 4096))
    assert adapter_spans(4096, 1024, "paper", 3072) == ((3072, 4096), (0, 1024))
    assert adapter_spans(1024, 1024, "paper", 512) == ((0, 1024), (0, 1024))  # q/k/v: d x d either way
    assert adapter_spans(1024, 4096, "full", 0) == ((0, 1024), (0, 4096))
    with pytest.raises(ValueError, match="outside"):
        adapter_spans(1024, 4096, "paper", 3073)


def test_fc1_adapter_changes_only_its_output_columns():
    layer, router = paper_layer("fc1")
    router.set(torch.tensor([0, 3]), None)
    x = torch.randn(4, 2, D_MODEL)
    changed = (layer(x) - layer.base_layer(x)).abs().amax(dim=(0, 1)) > 0
    assert changed.tolist() == [OFFSET <= c < OFFSET + D_MODEL for c in range(FFN)]


def test_fc2_adapter_reads_only_its_input_columns():
    layer, router = paper_layer("fc2")
    router.set(torch.tensor([0, 3]), None)
    x = torch.randn(4, 2, FFN, requires_grad=True)
    delta = layer(x) - layer.base_layer(x)
    assert delta.abs().max() > 0 and delta.shape[-1] == D_MODEL  # the whole output moves
    grad, = torch.autograd.grad(delta.pow(2).sum(), x)
    read = grad.abs().amax(dim=(0, 1)) > 0
    assert read.tolist() == [OFFSET <= c < OFFSET + D_MODEL for c in range(FFN)]
    y = x.detach().clone()
    y[..., :OFFSET] += 5.0  # outside the window: the adapter does not see it
    torch.testing.assert_close(layer(y) - layer.base_layer(y), delta.detach())


@pytest.mark.parametrize("index", ["src", "learned"])
def test_delta_weight_is_what_the_forward_adds(index):
    """The dense fold of export (B_l A_l in its slice of W, scaled) reproduces the routed forward."""
    for fc in ("fc1", "fc2"):
        layer, router = paper_layer(fc, index, alpha=3.0)
        router.set(torch.tensor([2]), torch.tensor([1]))
        x = torch.randn(5, 1, layer.base_layer.in_features)
        w = layer.base_layer.weight.double()
        if index == "learned":
            mix = layer.index_weights().double()
            w = w + mix[0] * layer.delta_weight(2, "src") + mix[1] * layer.delta_weight(1, "tgt")
        else:
            w = w + layer.delta_weight(2)
        folded = torch.nn.functional.linear(x.double(), w, layer.base_layer.bias.double())
        torch.testing.assert_close(layer(x).double(), folded, rtol=1e-5, atol=1e-5)


def test_paper_init_bound_is_one_over_sqrt_rank_per_language_block():
    model, _ = build_tiny_model(ranks="en:2,fr:2,ko:3,oc:5", extra=[*PAPER, "--lslo-init", "paper"])
    lora, _ = build_tiny_model(ranks="en:2,fr:2,ko:3,oc:5", extra=PAPER)
    for layer, plain in zip(model.lslo_layers.values(), lora.lslo_layers.values()):
        assert layer.lora_B.abs().max() == 0
        for lang, r in enumerate(layer.ranks):
            lo, hi = layer.lang_columns(lang)
            block, bound = layer.lora_A[lo:hi].abs(), 1 / math.sqrt(r)
            assert block.max() <= bound and block.max() > 0.85 * bound, (lang, r, block.max())
        k = plain.adapter_in  # LoRA/PEFT: Kaiming-uniform with fan-in k, bound 1/sqrt(k)
        assert plain.lora_A.abs().max() <= 1 / math.sqrt(k) < 0.2


def test_alpha_scales_each_language_by_alpha_over_rank():
    plain, router = paper_layer("fc1", alpha=None)
    scaled, router2 = paper_layer("fc1", alpha=8.0)
    x = torch.randn(3, 4, D_MODEL)
    langs = torch.tensor([0, 2, 3, 1])
    router.set(langs, None)
    router2.set(langs, None)
    d_plain, d_scaled = plain(x) - plain.base_layer(x), scaled(x) - scaled.base_layer(x)
    for b, lang in enumerate(langs.tolist()):
        torch.testing.assert_close(d_scaled[:, b], 8.0 / RANKS[lang] * d_plain[:, b], rtol=1e-5, atol=1e-5)


def test_paper_shape_model_counts_and_shapes():
    full, _ = build_tiny_model()
    paper, _ = build_tiny_model(extra=PAPER)
    for path, layer in paper.lslo_layers.items():
        assert (layer.adapter_in, layer.adapter_out) == (64, 64), path  # tiny: d_model 64, ffn 128
        assert layer.lora_A.shape[1] == 64 and layer.lora_B.shape[0] == 64
    n_full = sum(p.numel() for p in full.parameters() if p.requires_grad)
    n_paper = sum(p.numel() for p in paper.parameters() if p.requires_grad)
    # fc1/fc2 adapters: r (64 + 128) in full shape, r (64 + 64) in paper shape; sum_r = 12, 2+2 layers
    assert n_full - n_paper == 12 * 64 * (2 + 2) * 2


@pytest.mark.parametrize("extra", [[], PAPER + ["--lslo-fc-offset", "64"]])
def test_paper_shape_mixed_batch_equals_each_sentence_alone(extra):
    model, task = build_tiny_model(extra=extra)
    randomize_adapters(model)
    src, lens, prev, target = mixed_batch(task, ROWS_FOR_TRAINING)
    out, _ = model(src, lens, prev)
    pad = task.source_dictionary.pad()
    for b, row in enumerate(ROWS_FOR_TRAINING):
        s1, l1, p1, t1 = mixed_batch(task, [row])
        alone, _ = model(s1, l1, p1)
        n = int((t1 != pad).sum())
        torch.testing.assert_close(out[b, :n], alone[0], rtol=1e-4, atol=1e-4)


def test_a_checkpoint_of_another_shape_is_named_on_load():
    paper, _ = build_tiny_model(extra=[*PAPER, "--lslo-fc-offset", "32"])
    full, _ = build_tiny_model()
    with pytest.raises(LSLoConfigError, match=r"adapter_shape: paper in the checkpoint, full in this model "
                                              r"\(--lslo-adapter-shape\); fc_offset: 32 .*--lslo-fc-offset"):
        full.upgrade_state_dict_named(dict(paper.state_dict()), "")
    scaled, _ = build_tiny_model(extra=["--lslo-alpha", "16"])
    with pytest.raises(LSLoConfigError, match=r"alpha: 16.0 in the checkpoint, None in this model \(--lslo-alpha\)"):
        full.upgrade_state_dict_named(dict(scaled.state_dict()), "")


def test_a_layout_written_before_the_shape_options_loads_as_full_shape():
    full, _ = build_tiny_model()
    state = dict(full.state_dict())
    old = decode_layout(state[LAYOUT_KEY])
    for key in ("adapter_shape", "fc_offset", "alpha"):
        del old[key]
    state[LAYOUT_KEY] = encode_layout(old)
    full.upgrade_state_dict_named(state, "")  # no error: absent fields mean what they meant then
    paper, _ = build_tiny_model(extra=PAPER)
    with pytest.raises(LSLoConfigError, match="adapter_shape: full in the checkpoint, paper"):
        paper.upgrade_state_dict_named(state, "")


# -- layerdrop ------------------------------------------------------------------------------------

LAYERDROP = ["--encoder-layerdrop", "0.5", "--decoder-layerdrop", "0.5"]


@pytest.mark.parametrize("wl", [False, True])
def test_layerdrop_every_layer_adapted_some_skipped_in_training_none_in_eval(wl):
    index = ["--lslo-weight-learning"] if wl else []
    extra = [*PAPER, *LAYERDROP, *index]
    model, task = build_tiny_model(extra=extra, enc_index="paper" if wl else "src,tgt",
                                   dec_index="paper" if wl else "tgt,src")
    # fairseq's LayerDropModuleList drops layers when iterated in training mode (the default of a new
    # module): every layer must still have been given its adapters
    assert len(model.lslo_layers) == 2 * 5 + 2 * 8
    randomize_adapters(model)
    src, lens, prev, _ = mixed_batch(task, ROWS_FOR_TRAINING)
    model.eval()  # beam search and validation: no layer is dropped, the output is deterministic
    first, _ = model(src, lens, prev)
    torch.testing.assert_close(model(src, lens, prev)[0], first, rtol=0, atol=0)
    model.train()
    skipped = set()
    for seed in range(12):
        torch.manual_seed(seed)
        model.zero_grad()
        out, _ = model(src, lens, prev)
        out.float().pow(2).mean().backward()
        for path, layer in model.lslo_layers.items():
            if layer.raw(layer.param_names()[-1]).grad is None:
                skipped.add(path.split(".")[0] + "." + path.split(".")[2])
    # with p = 0.5 over 4 layers and 12 draws, layers were skipped, and a skipped layer's adapters and
    # weight-learning logits get no gradient (so --ddp-backend legacy_ddp, which zero-fills them, is needed)
    assert skipped


def test_a_batch_with_every_layer_dropped_has_zero_gradients_not_an_error():
    """With the base frozen, a batch whose layers were all dropped depends on no trainable tensor:
    backward must give zero gradients (as fairseq needs a graph), not fail."""
    model, task = build_tiny_model(extra=["--encoder-layerdrop", "1.0", "--decoder-layerdrop", "1.0"])
    model.train()
    src, lens, prev, _ = mixed_batch(task, ROWS_FOR_TRAINING)
    out, _ = model(src, lens, prev)
    out.float().pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.count_nonzero(g) == 0 for g in grads)


def test_options_are_checked_before_training():
    with pytest.raises(LSLoConfigError, match=r"--lslo-fc-offset: 65 \+ d_model 64 exceeds the encoder FFN "
                                              r"width 128 \(--encoder-ffn-embed-dim\); give 0 <= START <= 64"):
        build_tiny_model(extra=[*PAPER, "--lslo-fc-offset", "65"])
    with pytest.raises(LSLoConfigError, match="--lslo-fc-offset applies to --lslo-adapter-shape paper only"):
        build_tiny_model(extra=["--lslo-fc-offset", "8"])
    with pytest.raises(LSLoConfigError, match="--lslo-alpha: must be a finite number > 0, got -1.0"):
        build_tiny_model(extra=["--lslo-alpha", "-1"])
    with pytest.raises(LSLoConfigError, match="--lslo-fc-offset: must be >= 0, got -2"):
        build_tiny_model(extra=[*PAPER, "--lslo-fc-offset", "-2"])


# -- lslo-params: the paper's #Params is the trainable count of the paper-shape model ---------------


@pytest.mark.parametrize("modules,ranks,shape,expect", [
    ("all", "H:2,M:2,V:8", "paper", 15_335_424),  # table 1 "2;2;8+WL": 15.3M
    ("fc", "H:2,M:2,V:16", "paper", 7_864_320),  # table 4 "Only fc 2;2;16": printed 7.7M
    ("all", "H:2,M:2,V:8", "full", 22_413_312),  # fc1/fc2 adapters at 1024x4096
])
def test_lslo_params_counts_the_built_models_trainable_parameters(modules, ranks, shape, expect, capsys, kernel):
    if kernel == "dense":
        pytest.skip("no forward: one kernel is enough")
    from lslo_fairseq.cli.params import build_meta_model, count, main

    assert main(["--lslo-lang-groups", "lang12", "--lslo-ranks", ranks, "--lslo-modules", modules,
                 "--lslo-adapter-shape", shape]) == 0
    out = capsys.readouterr().out
    assert f"LSLo trainable parameters (--lslo-adapter-shape {shape}): {expect:,}" in out
    if shape == "full":
        assert "in the authors' shape (--lslo-adapter-shape paper, every adapter 1024x1024): 15,335,424" in out
    from lslo_fairseq.groups import PRESETS

    model = build_meta_model("lslo_m2m100_615m", ranks, "lang12", modules, list(PRESETS["lang12"]), None, [], shape)
    assert count(model)["adapters"] == expect == sum(p.numel() for p in model.parameters() if p.requires_grad)
