"""Mixed precision: the LSLo layer under low-precision inputs and ``torch.autocast`` on the CPU.

Contract: the output has the dtype the wrapped ``nn.Linear`` produces for the same input in the
same context, the adapters stay fp32 and receive fp32 gradients, and the result matches the fp32
computation of eq. 3 within the low-precision tolerance, for both routing kernels, fixed and
learned indexes, and pruned adapters.
"""
import pytest
import torch
from torch.nn.utils import prune

from lslo_fairseq.modules.lslo_linear import IndexWeights, LSLoLinear, adapter_spans
from lslo_fairseq.routing import LanguageRouter
from model_utils import ROWS_FOR_TRAINING, build_tiny_model, mixed_batch, randomize_adapters

LANGS = torch.tensor([3, 0, 2, 0, 1])
TOL = dict(rtol=0.05, atol=0.05)  # bf16/fp16 keep 8/11 mantissa bits


pytestmark = pytest.mark.usefixtures("kernel")  # every test with every routing kernel (conftest.py)


def make_layer(index="src", in_f=16, out_f=12, ranks=(2, 2, 3, 5), shape="full"):
    """``shape`` paper: the authors' fc2-like adapter, reading input columns [2, 14) of 16."""
    torch.manual_seed(0)
    router = LanguageRouter(["a", "b", "c", "d"], [10, 11, 12, 13], 20)
    weights = IndexWeights() if index == "learned" else None
    spans = adapter_spans(in_f, out_f, shape, 2 if shape == "paper" else 0)
    layer = LSLoLinear(torch.nn.Linear(in_f, out_f), ranks, router, index, weights, *spans)
    with torch.no_grad():
        for name in layer.param_names():
            if "_B" in name:
                layer.raw(name).normal_()
        if weights is not None:
            weights.logits.copy_(torch.tensor([0.3, -0.2]))
    layer.base_layer.requires_grad_(False)
    router.set(LANGS, LANGS.flip(0))
    return layer


def reference(layer, x):
    """Eq. 3 (eq. 5 when learned) in fp32, sentence by sentence, from the layer's own tensors, with
    the adapter's input and output column spans."""
    x = x.float()
    w = layer.base_layer.weight.float()
    bias = layer.base_layer.bias.float()
    out = torch.nn.functional.linear(x, w, bias)
    (i0, i1), (o0, o1) = layer.in_span, layer.out_span
    mix = layer.index_weights().detach() if layer.index == "learned" else torch.ones(1)
    for i, bank in enumerate(layer.banks):
        langs = LANGS if bank == "src" else LANGS.flip(0)
        a, b = layer.effective(layer.param_name("A", bank)), layer.effective(layer.param_name("B", bank))
        for s, lang in enumerate(langs.tolist()):
            lo, hi = layer.lang_columns(lang)
            delta = mix[i] * (x[:, s, i0:i1] @ a[lo:hi].float().t() @ b[:, lo:hi].float().t())
            out[:, s, o0:o1] = out[:, s, o0:o1] + delta
    return out


def adapter_grads(layer, out):
    layer.zero_grad()
    out.float().pow(2).sum().backward()
    return {n: layer.raw(n).grad.clone() for n in layer.param_names()}


def assert_matches_fp32_reference(layer, x, out):
    """``out`` equals the fp32 reference of eq. 3 (within TOL), and every adapter's fp32 gradient
    is non-zero and equals the reference's within 10%."""
    torch.testing.assert_close(out.float(), reference(layer, x), **TOL)
    grads = adapter_grads(layer, out)
    ref_grads = adapter_grads(layer, reference(layer, x))
    for name, g in grads.items():
        assert g.dtype == torch.float32 and g.abs().sum() > 0, name
        torch.testing.assert_close(g, ref_grads[name], rtol=0.1, atol=0.1 * float(ref_grads[name].abs().max()))


@pytest.mark.parametrize("shape", ["full", "paper"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("index", ["src", "learned"])
def test_low_precision_base_and_input_with_fp32_adapters(dtype, index, shape):
    layer = make_layer(index, shape=shape)
    layer.base_layer.to(dtype)  # a half-precision model whose adapters are kept in fp32
    x = torch.randn(4, 5, 16).to(dtype)
    out = layer(x)
    assert out.dtype == layer.base_layer(x).dtype == dtype
    assert all(layer.raw(n).dtype == torch.float32 for n in layer.param_names())
    assert_matches_fp32_reference(layer, x, out)


@pytest.mark.parametrize("shape", ["full", "paper"])
@pytest.mark.parametrize("index", ["src", "learned"])
@pytest.mark.parametrize("in_dtype", [torch.float32, torch.bfloat16])
def test_cpu_autocast_bf16(index, in_dtype, shape):
    layer = make_layer(index, shape=shape)
    x = torch.randn(4, 5, 16).to(in_dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
        expected_dtype = layer.base_layer(x).dtype
    assert expected_dtype == torch.bfloat16 and out.dtype == expected_dtype
    assert_matches_fp32_reference(layer, x, out)
    if index == "learned":
        assert layer.index_weights.logits.grad is not None and layer.index_weights.logits.grad.dtype == torch.float32


def test_fp32_without_autocast_is_unchanged_and_mismatch_fails_like_nn_linear():
    layer = make_layer()
    x = torch.randn(4, 5, 16)
    out = layer(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference(layer, x), rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError) as linear_error:
        layer.base_layer(x.bfloat16())
    with pytest.raises(type(linear_error.value)):
        layer(x.bfloat16())


def test_pruned_adapters_under_autocast_keep_pruned_entries_out():
    layer = make_layer()
    prune.l1_unstructured(layer, "lora_B", amount=0.5)
    mask = layer.lora_B_mask.clone()
    x = torch.randn(4, 5, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference(layer, x), **TOL)
    adapter_grads(layer, out)
    assert torch.count_nonzero(layer.lora_B_orig.grad[mask == 0]) == 0
    assert layer.lora_B_orig.grad.dtype == torch.float32


def test_tiny_model_trains_under_cpu_autocast():
    """Teacher-forced loss under autocast: bf16 logits, fp32 adapter gradients, close to fp32."""
    model, task = build_tiny_model()
    randomize_adapters(model, scale=0.3)
    src, lens, prev, target = mixed_batch(task, ROWS_FOR_TRAINING)
    ref, _ = model(src, lens, prev)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = model(src, lens, prev)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=0.1, atol=0.1)
    torch.nn.functional.cross_entropy(out.float().transpose(1, 2), target).backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None and p.grad.dtype == torch.float32 for p in trainable)
    assert all(p.dtype == torch.float32 for p in trainable)
