"""Routing cost of LSLo: forward + backward of one M2M-shaped layer set with a mixed-language batch.

The layer set is the eight projections LSLo adapts in one M2M-124 615M decoder layer (q, k, v,
c-q, c-k, c-v: d x d; fc1: d -> ffn; fc2: ffn -> d; ``--lslo-modules all``), applied to one input
``x`` (T x B x d, requiring grad as inside a model): outputs q..c-v and fc2(relu(fc1(x))), then one
backward with fixed output gradients. The base weights are frozen and shared by every variant:

- ``base``    the frozen nn.Linear layers alone;
- ``shared``  one LoRA of the largest rank for all languages (h = W x + B A x);
- ``lslo``    LSLoLinear as the model uses it (``auto`` kernel), and each kernel forced
              (``grouped``, ``gather``, ``dense``: lslo_fairseq/modules/kernels.py);
              ``grouped_py``: ``grouped`` with its Python loop in place of the C++ one
              (lslo_fairseq/modules/native.py; what runs where the C++ loop cannot be built);
- ``loop``    a naive per-language loop: for every language present, gather its sentences,
              apply its A, B, scatter the result back (``index_select`` / ``index_copy``).

Ratios are medians of per-round ratios; "above base" divides the medians' excess over ``base``
(the adapters' own cost: LSLo's over the shared LoRA's, loop's over LSLo's).

Memory (unless ``--no-memory``): each (variant, languages) of ``--memory-variants`` is built and run
(one warm-up step, one measured step) in a fresh process; the figure is the step's peak above what
the built configuration holds: ru_maxrss minus the resident set size before the step on CPU,
``torch.cuda.max_memory_allocated`` minus the allocated bytes before it on CUDA.

Languages: ``lang12`` (H:2,M:2,V:8) and ``lang30`` (H:2,M:2,L:8,V:8) are the paper's presets
(``lslo_fairseq.groups.PRESETS``); ``N`` > 30 languages repeat lang30's group pattern (language i
gets the group of lang30's language i mod 30) with lang30's ranks. Sentence b has language
perm[b mod N] (perm a fixed random permutation), so a batch holds min(B, N) distinct languages.

    python benchmarks/routing.py                      # 12, 30, 100, 300 languages, B=64, T=16
    python benchmarks/routing.py --langs 12,30,100,200 --batch 128 --length 8
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import Dict, List

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import timing  # noqa: E402
from lslo_fairseq.groups import PRESETS  # noqa: E402
from lslo_fairseq.modules import native  # noqa: E402
from lslo_fairseq.modules.lslo_linear import LSLoLinear  # noqa: E402
from lslo_fairseq.routing import LanguageRouter  # noqa: E402

RANKS = {"H": 2, "M": 2, "L": 8, "V": 8}
MODULES = ("q", "k", "v", "c-q", "c-k", "c-v", "fc1", "fc2")


def language_ranks(n: int) -> List[int]:
    """Ranks of ``n`` languages: the lang12/lang30 presets, else lang30's group pattern repeated."""
    if n == 12:
        return [RANKS[g] for g in PRESETS["lang12"].values()]
    groups = list(PRESETS["lang30"].values())
    return [RANKS[groups[i % 30]] for i in range(n)]


class SharedLoRA(nn.Module):
    """One LoRA for every sentence: h = W x + B A x (rank r)."""

    def __init__(self, base: nn.Linear, rank: int):
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.Parameter(torch.randn(rank, base.in_features) / base.in_features ** 0.5)
        self.lora_B = nn.Parameter(torch.randn(base.out_features, rank) * 0.01)

    def forward(self, x):
        out = self.base_layer(x)
        return out + nn.functional.linear(nn.functional.linear(x, self.lora_A.to(x.dtype)),
                                          self.lora_B.to(x.dtype)).to(out.dtype)


class LoopLSLo(LSLoLinear):
    """The naive implementation LSLo avoids: one gather, two matmuls and one scatter per language
    present in the batch."""

    def lora_delta(self, x, langs, bank=None):
        lora_a, lora_b = self.lora_A, self.lora_B
        delta = x.new_zeros(x.size(0), x.size(1), self.out_features)
        for lang in langs.unique().tolist():
            idx = (langs == lang).nonzero().squeeze(1)
            lo, hi = self.lang_columns(lang)
            z = nn.functional.linear(x.index_select(1, idx), lora_a[lo:hi].to(x.dtype))
            delta = delta.index_copy(1, idx, nn.functional.linear(z, lora_b[:, lo:hi].to(z.dtype)))
        return delta


class LayerSet(nn.Module):
    def __init__(self, proj: Dict[str, nn.Module]):
        super().__init__()
        self.proj = nn.ModuleDict({m.replace("-", "_"): p for m, p in proj.items()})

    def forward(self, x):
        p = self.proj
        outs = [p[m](x) for m in ("q", "k", "v", "c_q", "c_k", "c_v")]
        outs.append(p["fc2"](torch.relu(p["fc1"](x))))
        return outs


def build_bases(d: int, ffn: int, device) -> Dict[str, nn.Linear]:
    bases = {m: nn.Linear(d, d) for m in MODULES[:6]}
    bases["fc1"], bases["fc2"] = nn.Linear(d, ffn), nn.Linear(ffn, d)
    for b in bases.values():
        b.to(device).requires_grad_(False)
    return bases


def lslo_set(bases, ranks, router, cls=LSLoLinear, kernel=None) -> LayerSet:
    layers = {}
    for m, base in bases.items():
        layer = cls(base, ranks, router, "tgt").to(base.weight.device)
        with torch.no_grad():
            layer.lora_B.normal_(std=0.01)
        if kernel:
            layer.kernel_choice = kernel
        layers[m] = layer
    return LayerSet(layers)


def step_fn(model: LayerSet, router, langs, x, grads, device, amp, python_loop=False):
    def run():
        with native.python_loop() if python_loop else contextlib.nullcontext():
            step()

    def step():
        router.set(None, langs)
        with timing.autocast(device, amp):
            outs = model(x)
        torch.autograd.backward(outs, [g.to(o.dtype) for o, g in zip(outs, grads)])
        for p in model.parameters():
            p.grad = None
        x.grad = None
    return run


VARIANTS = ("base", "shared", "lslo", "grouped", "grouped_py", "gather", "dense", "loop")


def build_variant(v: str, n: int, bases, langs_of, device) -> tuple:
    """(model, router, langs) of variant ``v`` at ``n`` languages."""
    ranks = language_ranks(n)
    router = LanguageRouter([f"l{i}" for i in range(n)], list(range(n)), n)
    langs = langs_of(n)
    if v == "base":
        return LayerSet(dict(bases)), router, langs
    if v == "shared":
        return LayerSet({m: SharedLoRA(b, max(ranks)).to(device) for m, b in bases.items()}), router, langs
    if v == "loop":
        return lslo_set(bases, ranks, router, LoopLSLo), router, langs
    kernel = {"lslo": None, "grouped_py": "grouped"}.get(v, v)
    return lslo_set(bases, ranks, router, kernel=kernel), router, langs


def memory_worker(args, device, key: str) -> dict:
    """Peak bytes of one fwd+bwd step of ``key`` (variant@languages) above the built configuration."""
    v, n = key.split("@")
    torch.manual_seed(0)
    bases = build_bases(args.dim, args.ffn, device)
    x = torch.randn(args.length, args.batch, args.dim, device=device, requires_grad=True)
    grads = [torch.randn(args.length, args.batch, args.dim, device=device) for _ in range(7)]
    model, router, langs = build_variant(v, int(n), bases, batch_langs(args.batch, device), device)
    run = step_fn(model, router, langs, x, grads, device, args.amp, python_loop=v == "grouped_py")
    run()  # warm-up: lazily allocated state (autograd, BLAS buffers) is not the kernel's
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run()
        torch.cuda.synchronize(device)
        return dict(key=key, peak_bytes=torch.cuda.max_memory_allocated(device) - before)
    before = timing.rss_bytes()
    run()
    return dict(key=key, peak_bytes=max(0, timing.max_rss_bytes() - before))


def batch_langs(batch: int, device):
    """Sentence b has language perm[b mod N], perm a fixed random permutation of the N languages."""
    def langs_of(n: int):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(n))
        return perm[torch.arange(batch) % n].to(device)
    return langs_of


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--langs", default="12,30,100,300", help="language counts, comma separated (default 12,30,100,300)")
    p.add_argument("--batch", type=int, default=64, help="sentences per batch (default 64)")
    p.add_argument("--length", type=int, default=16, help="tokens per sentence (default 16)")
    p.add_argument("--dim", type=int, default=1024, help="model dimension (default 1024, M2M 615M)")
    p.add_argument("--ffn", type=int, default=4096, help="FFN dimension (default 4096)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {','.join(VARIANTS)}")
    p.add_argument("--memory-variants", default="base,shared,lslo,gather",
                   help="variants whose peak memory is measured, one process each (default base,shared,lslo,gather)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # variant@languages whose memory this process measures
    timing.add_common_args(p)
    args = p.parse_args(argv)
    device = timing.setup(args)
    if args.quick:
        args.langs, args.batch, args.length, args.dim, args.ffn = "12,30", 8, 4, 64, 128
        args.memory_variants = "base,lslo"  # a check that the workers run: 3 processes
    if args.worker:
        timing.emit(memory_worker(args, device, args.worker))
        return 0
    try:
        counts = [int(n) for n in args.langs.split(",")]
    except ValueError:
        raise SystemExit(f"--langs: expected integers like 12,30,100, got {args.langs!r}") from None
    if any(n < 2 for n in counts):
        raise SystemExit("--langs: every count must be >= 2")
    variants = [v.strip() for v in args.variants.split(",")]
    mem_variants = [] if args.no_memory else [v.strip() for v in args.memory_variants.split(",")]
    unknown = (set(variants) | set(mem_variants)) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"--variants/--memory-variants: unknown {sorted(unknown)}")

    # memory first: a worker forked from a process that holds the timed configurations would inherit
    # its resident size as its own ru_maxrss high-water mark
    memory = {}
    forward = ["--batch", args.batch, "--length", args.length, "--dim", args.dim, "--ffn", args.ffn,
               "--device", args.device, "--threads", args.threads] + (["--amp"] if args.amp else [])
    for key in (["base@%d" % counts[0]] if "base" in mem_variants else []) + [
            f"{v}@{n}" for n in counts for v in mem_variants if v != "base"]:
        res = timing.run_worker([os.path.abspath(__file__), "--worker", key, *map(str, forward)], args.threads)
        memory["base" if key.startswith("base@") else key] = res["peak_bytes"]

    torch.manual_seed(0)
    bases = build_bases(args.dim, args.ffn, device)
    x = torch.randn(args.length, args.batch, args.dim, device=device, requires_grad=True)
    grads = [torch.randn(args.length, args.batch, args.dim, device=device) for _ in range(7)]
    langs_of = batch_langs(args.batch, device)
    fns, info = {}, {}
    for n in counts:
        ranks = language_ranks(n)
        router = LanguageRouter([f"l{i}" for i in range(n)], list(range(n)), n)
        kernel_auto = lslo_set({"q": bases["q"]}, ranks, router).proj["q"].kernel(x)
        info[n] = dict(sum_r=sum(ranks), max_r=max(ranks), present=int(langs_of(n).unique().numel()),
                       auto=kernel_auto)
        for v in variants:
            if v == "base" and "base" in fns:
                continue
            model, router, langs = build_variant(v, n, bases, langs_of, device)
            fns["base" if v == "base" else f"{v}@{n}"] = step_fn(model, router, langs, x, grads, device, args.amp,
                                                                 python_loop=v == "grouped_py")
    started = time.perf_counter()
    times = timing.interleaved(fns, args.repeats, args.warmup, device)
    timed_s = time.perf_counter() - started

    print(f"# routing: fwd+bwd of one M2M layer set (q,k,v,c-q,c-k,c-v: {args.dim}x{args.dim}; "
          f"fc1/fc2: {args.dim}<->{args.ffn}), batch {args.batch} x {args.length} tokens; "
          f"median of {args.repeats} interleaved rounds ({timed_s:.0f} s)")
    print("# " + timing.machine_line(args))
    loop = "C++ (torch.ops.%s)" % native.NAME if native.grouped_ops() is not None else "Python (C++ loop not built)"
    print(f"# grouped kernel's loop: {loop}; grouped_py: its Python loop")
    ms = lambda key: 1000 * timing.median(times[key]) if key in times else float("nan")  # noqa: E731
    rat = lambda a, b: timing.ratio(times, a, b) if a in times and b in times else float("nan")  # noqa: E731
    mib = lambda key: memory[key] / 2 ** 20 if key in memory else float("nan")  # noqa: E731
    rows, results = [], {}
    first = counts[0]
    for n in counts:
        r = dict(info[n], base_ms=ms("base"), **{f"{v}_ms": ms(f"{v}@{n}") for v in variants if v != "base"},
                 lslo_over_shared=rat(f"lslo@{n}", f"shared@{n}"), loop_over_lslo=rat(f"loop@{n}", f"lslo@{n}"),
                 lslo_over_base=rat(f"lslo@{n}", "base"), shared_over_base=rat(f"shared@{n}", "base"),
                 grouped_over_shared=rat(f"grouped@{n}", f"shared@{n}"),
                 grouped_py_over_shared=rat(f"grouped_py@{n}", f"shared@{n}"),
                 gather_over_shared=rat(f"gather@{n}", f"shared@{n}"), dense_over_shared=rat(f"dense@{n}", f"shared@{n}"),
                 lslo_vs_first=rat(f"lslo@{n}", f"lslo@{first}"),
                 peak_mib={("base" if k == "base" else k.split("@")[0]): memory[k] / 2 ** 20 for k in memory
                           if k == "base" or k.endswith(f"@{n}")})
        # the adapters' own cost: time above the frozen base (medians)
        above = lambda v: r.get(f"{v}_ms", float("nan")) - r["base_ms"]  # noqa: E731
        for v in ("shared", "lslo", "grouped", "grouped_py", "gather", "dense", "loop"):
            r[f"{v}_above_base_ms"] = above(v)
        r["lslo_over_shared_above_base"] = above("lslo") / above("shared")
        r["grouped_over_shared_above_base"] = above("grouped") / above("shared")
        r["grouped_py_over_shared_above_base"] = above("grouped_py") / above("shared")
        r["gather_over_shared_above_base"] = above("gather") / above("shared")
        r["loop_over_lslo_adapter_cost"] = above("loop") / above("lslo")
        results[n] = r
        rows.append([n, f"{r['sum_r']}/{r['max_r']}", r["present"], r["auto"], r["base_ms"],
                     r.get("shared_ms", float("nan")), r.get("lslo_ms", float("nan")),
                     r.get("grouped_ms", float("nan")), r.get("grouped_py_ms", float("nan")),
                     r.get("gather_ms", float("nan")),
                     r.get("dense_ms", float("nan")), r.get("loop_ms", float("nan")),
                     r["shared_above_base_ms"], r["lslo_above_base_ms"], r["lslo_over_shared_above_base"],
                     r["grouped_over_shared_above_base"], r["grouped_py_over_shared_above_base"],
                     r["gather_over_shared_above_base"],
                     r["lslo_over_shared"], r["loop_over_lslo_adapter_cost"], r["lslo_vs_first"],
                     mib("base"), mib(f"shared@{n}"), mib(f"lslo@{n}"), mib(f"gather@{n}")])
    print(timing.table(["langs", "sum_r/max_r", "in batch", "auto", "base ms", "shared ms", "lslo ms", "grouped ms",
                        "grouped_py ms", "gather ms", "dense ms", "loop ms", "shared above base", "lslo above base",
                        "lslo/shared above base", "grouped/shared above base",
                        "grouped_py/shared above base", "gather/shared above base",
                        "lslo/shared", "loop/lslo above base", f"lslo vs {first}", "base peak MiB",
                        "shared peak MiB", "lslo peak MiB", "gather peak MiB"], rows))
    print("# " + timing.loadavg() + " (after)")
    timing.write_json(args.json, dict(machine=timing.machine_line(args), args=vars(args), grouped_loop=loop,
                                      results={str(k): v for k, v in results.items()}))
    return 0

if __name__ == "__main__":
    sys.exit(main())
