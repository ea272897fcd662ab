"""Time of one gradual-pruning step over every adapter of the M2M-124 615M shapes, with the real
``lslo_fairseq.pruning.pools`` code (``build_pools`` + ``apply_ratio``, what
``PruningController.step`` runs each epoch).

The 156 LSLo layers of ``--lslo-modules all`` on 12+12 layers (encoder q,k,v,fc1,fc2; decoder
q,k,v,c-q,c-k,c-v,fc1,fc2; d=1024, ffn=4096) are built with their frozen base weights on the
``meta`` device (pruning never reads them) and real adapters on ``--device``, B filled with random
values. Pools:
``gps`` over the H and M languages (the paper's GPS), ``ise`` and ``lsp`` over all languages. Each
timed step raises the ratio from the previous step's (a fresh copy of the masks) to the next one of
eq. 4's schedule (P = 0.9 for gps, 0.7 for ise/lsp; E = 2, k = 8): ``step e`` times epoch e's step.

    python benchmarks/pruning.py                       # lang30, ranks H:2,M:2,L:8,V:8
    python benchmarks/pruning.py --groups lang12 --ranks H:2,M:2,V:8
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import timing  # noqa: E402
from lslo_fairseq.names import DECODER_MODULES, ENCODER_MODULES  # noqa: E402
from lslo_fairseq.config import (LSLoConfig, PruneConfig,  # noqa: E402
                                 PRUNE_DEFAULT_RATIO, resolve_languages, _split_list)
from lslo_fairseq.modules.lslo_linear import LSLoLinear  # noqa: E402
from lslo_fairseq.pruning.pools import apply_ratio, build_pools, make_prunable  # noqa: E402
from lslo_fairseq.pruning.schedule import GradualPruningSchedule  # noqa: E402
from lslo_fairseq.routing import LanguageRouter  # noqa: E402


def build_layers(cfg: LSLoConfig, layers: int, dim: int, ffn: int, seed: int = 0):
    """path -> LSLoLinear for every adapted projection (base weights on ``meta``)."""
    torch.manual_seed(seed)
    router = LanguageRouter(cfg.languages, list(range(len(cfg.languages))), len(cfg.languages))
    shapes = {"fc1": (dim, ffn), "fc2": (ffn, dim)}
    out = {}
    for side, modules in (("encoder", ENCODER_MODULES), ("decoder", DECODER_MODULES)):
        for i in range(layers):
            for m in modules:
                if m not in cfg.modules:
                    continue
                in_f, out_f = shapes.get(m, (dim, dim))
                lslo = LSLoLinear(nn.Linear(in_f, out_f, device="meta"), cfg.ranks, router, "tgt")
                with torch.no_grad():
                    lslo.lora_B.normal_()
                lslo.site = (side, i, m)
                out[f"{side}.layers.{i}.{m}"] = lslo
    make_prunable(out, cfg)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--groups", default="lang30", help="language groups preset or map (default lang30)")
    p.add_argument("--ranks", default="H:2,M:2,L:8,V:8", help="ranks per group (default H:2,M:2,L:8,V:8)")
    p.add_argument("--kinds", default="gps,ise,lsp", help="pruning kinds to time (default gps,ise,lsp)")
    p.add_argument("--layers", type=int, default=12, help="encoder and decoder layers (default 12)")
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--ffn", type=int, default=4096)
    p.add_argument("--steps", default="3,6,10", help="schedule epochs whose step is timed (default 3,6,10)")
    timing.add_common_args(p, repeats=3, warmup=0)
    args = p.parse_args(argv)
    device = timing.setup(args)
    if args.quick:
        args.layers, args.dim, args.ffn, args.steps = 1, 32, 64, "3"
    langs, ranks, groups = resolve_languages(args.ranks, args.groups, None, [])
    kinds = _split_list(args.kinds)
    bad = [k for k in kinds if k not in PRUNE_DEFAULT_RATIO]
    if bad or not kinds:
        raise SystemExit(f"--kinds: a list of gps, ise, lsp, got {args.kinds!r}")
    try:
        steps = [int(s) for s in _split_list(args.steps)]
    except ValueError:
        raise SystemExit(f"--steps: epochs like 3,6,10, got {args.steps!r}") from None
    fns, prepare, info = {}, {}, {}
    for kind in kinds:
        targets = [l for l in langs if groups.get(l) in ("H", "M")] if kind == "gps" else list(langs)
        cfg = LSLoConfig(langs, ranks, ["q", "k", "v", "c-q", "c-k", "c-v", "fc1", "fc2"], [], [], groups,
                         PruneConfig(kind, PRUNE_DEFAULT_RATIO[kind], 2, 8, "epoch", targets))
        sched = GradualPruningSchedule(cfg.prune.ratio, 2, 8, 10)
        with torch.device(device):  # adapters and masks on --device (base weights stay on meta)
            layers = build_layers(cfg, args.layers, args.dim, args.ffn)
        pools = build_pools(layers, cfg)
        info[kind] = dict(matrices=len(layers), pools=len(pools), members=sum(len(p.members) for p in pools),
                          targets=len(targets))
        for e in steps:
            before, after = sched.ratio_at(e - 1), sched.ratio_at(e)
            with torch.no_grad():
                apply_ratio(pools, before)  # the state the step starts from
            snapshot = {path: {n: getattr(l, n + "_mask").clone() for n in l.param_names()
                               if hasattr(l, n + "_mask")} for path, l in layers.items()}

            def restore(layers=layers, snapshot=snapshot):  # every round starts from the same masks
                for path, masks in snapshot.items():
                    for n, m in masks.items():
                        getattr(layers[path], n + "_mask").copy_(m)
            fns[f"{kind}@{e}"] = lambda pools=pools, after=after: apply_ratio(pools, after)
            prepare[f"{kind}@{e}"] = restore
            info[f"{kind}@{e}"] = (before, after)
    times = timing.interleaved(fns, args.repeats, args.warmup, device, prepare)

    print(f"# pruning: one step of apply_ratio (lslo_fairseq/pruning/pools.py) over {args.layers}+{args.layers} "
          f"layers, d={args.dim}, ffn={args.ffn}, {len(langs)} languages ({args.groups}, {args.ranks}); "
          f"median of {args.repeats} rounds")
    print("# " + timing.machine_line(args))
    rows, results = [], {}
    for key in fns:
        kind, e = key.split("@")
        s = timing.median(times[key])
        before, after = info[key]
        results[key] = dict(info[kind], kind=kind, epoch=int(e), ratio_from=before, ratio_to=after, seconds=s)
        rows.append([kind, e, f"{before:.3f} -> {after:.3f}", info[kind]["matrices"], info[kind]["targets"],
                     info[kind]["pools"], info[kind]["members"], s])
    print(timing.table(["kind", "step", "ratio", "matrices", "langs pruned", "pools", "members", "seconds"], rows))
    print("# " + timing.loadavg() + " (after)")
    timing.write_json(args.json, dict(machine=timing.machine_line(args), args=vars(args), results=results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
