"""LSLo layer and model: hard per-sentence routing, no padding leaks, every module takes effect."""
import pytest
import torch

from lslo_fairseq.models.lslo_transformer import MODULE_PATHS
from lslo_fairseq.modules.lslo_linear import LSLoLinear
from lslo_fairseq.routing import LanguageRouter, RoutingError
from model_utils import build_tiny_model, mixed_batch, randomize_adapters


pytestmark = pytest.mark.usefixtures("kernel")  # every test with every routing kernel (conftest.py)


def make_layer(ranks=(2, 2, 3, 5), index="src", in_f=6, out_f=4):
    torch.manual_seed(0)
    router = LanguageRouter(["a", "b", "c", "d"], [10, 11, 12, 13], 20)
    layer = LSLoLinear(torch.nn.Linear(in_f, out_f), ranks, router, index)
    with torch.no_grad():
        layer.lora_B.normal_()
    return layer, router


def test_layer_matches_equation_3_per_sentence():
    layer, router = make_layer()
    x = torch.randn(7, 4, 6)  # T x B x k
    langs = torch.tensor([3, 0, 2, 0])
    router.set(langs, None)
    out = layer(x)
    for b, lang in enumerate(langs.tolist()):
        lo, hi = layer.lang_columns(lang)
        expect = layer.base_layer(x[:, b]) + x[:, b] @ layer.lora_A[lo:hi].t() @ layer.lora_B[:, lo:hi].t()
        torch.testing.assert_close(out[:, b], expect, rtol=1e-5, atol=1e-5)


def test_rank_padding_reaches_neither_outputs_nor_gradients():
    layer, router = make_layer()
    # language 1 has rank 2 < max rank 5: its 3 padded slots point at language 0's rows
    router.set(torch.tensor([1, 1]), None)
    x = torch.randn(3, 2, 6)
    layer(x).pow(2).sum().backward()
    lo, hi = layer.lang_columns(1)
    grad_a, grad_b = layer.lora_A.grad, layer.lora_B.grad
    assert grad_a[lo:hi].abs().sum() > 0 and grad_b[:, lo:hi].abs().sum() > 0
    outside = torch.ones(grad_a.size(0), dtype=torch.bool)
    outside[lo:hi] = False
    assert torch.count_nonzero(grad_a[outside]) == 0
    assert torch.count_nonzero(grad_b[:, outside]) == 0
    assert layer.base_layer.weight.grad is not None  # the layer itself does not freeze; the model does


def test_beam_reduced_cross_attention_batch_uses_first_beam():
    layer, router = make_layer(index="tgt")
    router.set(None, torch.tensor([2, 2, 2, 0, 0, 0]))
    router.beam_size = 3
    x = torch.randn(5, 2, 6)  # bsz = 2 sentences, one beam each (fairseq's k/v reduction)
    out = layer(x)
    router.set(None, torch.tensor([2, 0]))
    router.beam_size = 1
    torch.testing.assert_close(out, layer(x))


def test_missing_language_is_a_clear_error():
    layer, router = make_layer(index="tgt")
    router.set(torch.tensor([0]), None)
    with pytest.raises(RoutingError, match="target language"):
        layer(torch.randn(2, 1, 6))


def _batch(task, rows):
    src, lens, prev, target = mixed_batch(task, rows)
    return src, lens, prev, [int((t != task.source_dictionary.pad()).sum()) for t in target]


ROWS = [("en", "fr", [1, 2, 3], [4, 5]), ("oc", "ko", [6, 7, 8, 9, 10, 11], [12, 13, 14, 15]),
        ("fr", "en", [16], [17, 18, 19]), ("ko", "oc", [20, 21], [22])]


@pytest.mark.parametrize("enc_index,dec_index", [("src", "tgt"), ("tgt", "src"), ("src,tgt", "tgt,src")])
def test_mixed_batch_equals_each_sentence_alone(enc_index, dec_index):
    model, task = build_tiny_model(enc_index=enc_index, dec_index=dec_index)
    randomize_adapters(model)
    src, lens, prev, plens = _batch(task, ROWS)
    out, _ = model(src, lens, prev)
    for b, row in enumerate(ROWS):
        s1, l1, p1, _ = _batch(task, [row])
        alone, _ = model(s1, l1, p1)
        torch.testing.assert_close(out[b, : plens[b]], alone[0], rtol=1e-4, atol=1e-4)


def test_routing_follows_the_language_not_the_position():
    """Swapping a sentence's language changes its output: routing is really per language."""
    model, task = build_tiny_model(enc_index="src", dec_index="tgt")
    randomize_adapters(model)
    s1, l1, p1, _ = _batch(task, [ROWS[0]])
    s2, l2, p2, _ = _batch(task, [("oc", "fr", *ROWS[0][2:])])
    assert not torch.allclose(model(s1, l1, p1)[0], model(s2, l2, p2)[0], atol=1e-4)


@pytest.mark.parametrize("module", list(MODULE_PATHS))
def test_each_module_changes_the_training_forward(module):
    model, task = build_tiny_model(modules=module)
    model.train()  # the training path (no incremental state) is where fairseq's fused attention lives
    src, lens, prev, _ = _batch(task, ROWS)
    base, _ = model(src, lens, prev)
    assert model.lslo_layers, module
    randomize_adapters(model)
    adapted, _ = model(src, lens, prev)
    assert (adapted - base).abs().max() > 1e-3, f"{module} adapter has no effect in training"


def test_only_adapters_are_trainable():
    model, _ = build_tiny_model()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    assert len(trainable) == 2 * len(model.lslo_layers) == 2 * (2 * 5 + 2 * 8)
