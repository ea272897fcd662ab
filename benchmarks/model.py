"""Whole-model training cost: updates/s, peak memory, trainable and optimizer-state bytes of
M2M-124 615M-shaped models (random weights) for three configurations:

- ``lslo``  ``--arch lslo_m2m100_615m`` (base frozen, adapters of every language, ``all`` modules);
- ``base``  the same transformer without adapters, frozen: forward + backward down to the
            embeddings (what any adapter method must at least pay), no parameter gradients, no
            optimizer step;
- ``full``  the same transformer, every weight trained (full fine-tuning).

One update: forward of a fixed mixed-language batch (``--batch`` sentences of ``--length``
tokens), label-smoothed cross-entropy (0.2, as the paper), backward, ``torch.optim.Adam`` step.
Each (configuration, round) runs in its own process (``python benchmarks/model.py --worker ...``),
round-robin over configurations with a rotating start; a worker times ``--updates`` updates after
one untimed update. Peak memory is the worker's ``ru_maxrss`` minus its ``ru_maxrss`` just before
the model is built (torch and fairseq already imported), i.e. weights + gradients + optimizer state +
activations of that configuration. Figures are medians over rounds. ``--quick`` runs all configurations in one worker (a check that the
script works; its memory figures are not per configuration).

    python benchmarks/model.py                    # 2+2 layers (of 12+12), vocab 256,000 (the release's), lang12
    python benchmarks/model.py --layers 12 --rounds 1 --updates 2
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import timing  # noqa: E402

CONFIGS = ("lslo", "base", "full")


def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def worker(a, config: str) -> dict:
    from benchmarks import m2m

    device = torch.device(a.device)
    rss0 = timing.rss_bytes()
    if a.device == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model, task = m2m.build("lslo" if config == "lslo" else "plain", a.groups, a.ranks, a.layers, a.vocab,
                            shape=(64, 128, 4) if a.quick else None)
    model.to(device).train()
    if config == "base":
        model.requires_grad_(False)
        # gradients flow down to the embeddings' output, as they must to reach layer-0 adapters
        model.encoder.embed_tokens.register_forward_hook(lambda m, i, out: out.requires_grad_())
    elif config == "full":
        model.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4, betas=(0.9, 0.98)) if params else None
    src, lens, prev, target, _ = (t.to(device) for t in m2m.mixed_batch(task, a.batch, a.length))
    pad = task.source_dictionary.pad()

    def update():
        with timing.autocast(device, a.amp):
            logits, _ = model(src, lens, prev)
        loss = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), target, ignore_index=pad,
                                                 label_smoothing=0.2)
        loss.backward()
        if opt is not None:
            opt.step()
            opt.zero_grad(set_to_none=True)
        return loss

    update()  # untimed: allocator, optimizer state
    times = [timing.time_call(update, device) for _ in range(a.updates)]
    if a.device == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:  # ru_maxrss is updated lazily: the current RSS is a floor
        peak = max(timing.max_rss_bytes(), timing.rss_bytes()) - rss0
    state = [t for s in (opt.state.values() if opt else []) for t in s.values() if torch.is_tensor(t)]
    return dict(config=config, seconds=timing.median(times), updates_per_s=1.0 / timing.median(times),
                peak_bytes=peak, params=sum(p.numel() for p in model.parameters()),
                trainable=sum(p.numel() for p in params), trainable_bytes=nbytes(params),
                optimizer_state_bytes=nbytes(state))


def main(argv=None) -> int:
    from benchmarks import m2m

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    m2m.add_shape_args(p, "sentences per update (default 16)", "tokens per sentence (default 24)")
    p.add_argument("--updates", type=int, default=3, help="timed updates per worker (default 3)")
    p.add_argument("--configs", default=",".join(CONFIGS), help="subset of lslo,base,full")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # configurations this process measures
    timing.add_common_args(p, repeats=3, warmup=0)
    a = p.parse_args(argv)
    device = timing.setup(a)
    if a.quick:
        a.layers, a.vocab, a.batch, a.length, a.updates = 1, 200, 4, 6, 1
    if a.worker:
        timing.emit([worker(a, c) for c in a.worker.split(",")])
        return 0
    configs = [c.strip() for c in a.configs.split(",")]
    if set(configs) - set(CONFIGS) or not configs:
        raise SystemExit(f"--configs: a list of {','.join(CONFIGS)}, got {a.configs!r}")
    forward = ["--layers", a.layers, "--vocab", a.vocab, "--groups", a.groups, "--ranks", a.ranks,
               "--batch", a.batch, "--length", a.length, "--updates", a.updates, "--device", a.device,
               "--threads", a.threads] + (["--amp"] if a.amp else []) + (["--quick"] if a.quick else [])
    runs = {c: [] for c in configs}
    start = time.perf_counter()
    worker_argv = lambda cs: [os.path.abspath(__file__), "--worker", ",".join(cs), *map(str, forward)]  # noqa: E731
    if a.quick:  # one process for all configurations (a check that the script runs, no figures)
        for res in timing.run_worker(worker_argv(configs), a.threads):
            runs[res["config"]].append(res)
    for r in range(0 if a.quick else a.repeats):
        for c in configs[r % len(configs):] + configs[: r % len(configs)]:
            runs[c].extend(timing.run_worker(worker_argv([c]), a.threads))
    mib = 1 / 2 ** 20
    print(f"# whole model: lslo_m2m100_615m shape with {a.layers}+{a.layers} layers (of 12+12), "
          f"{'d=64, ffn=128 (--quick)' if a.quick else 'd=1024, ffn=4096'}, vocab {a.vocab}, {a.groups} {a.ranks}, random weights; update = fwd+bwd+Adam on "
          f"{a.batch}x{a.length} tokens; median of {a.repeats} rounds, one process per (config, round), "
          f"{a.updates} timed updates each; peak = ru_maxrss delta ({'cuda max_memory_allocated' if a.device == 'cuda' else 'CPU'})")
    print("# " + timing.machine_line(a))
    results, rows = {}, []
    for c in configs:
        med = lambda key: timing.median([x[key] for x in runs[c]])  # noqa: E731
        results[c] = dict(runs[c][0], seconds=med("seconds"), updates_per_s=med("updates_per_s"),
                          peak_bytes=med("peak_bytes"), rounds=runs[c])
    ref = results.get("lslo")
    for c in configs:
        r = results[c]
        rows.append([c, f"{r['params']:,}", f"{r['trainable']:,}", r["trainable_bytes"] * mib,
                     r["optimizer_state_bytes"] * mib, r["peak_bytes"] * mib, r["updates_per_s"],
                     r["seconds"] / ref["seconds"] if ref else float("nan"),
                     r["peak_bytes"] / ref["peak_bytes"] if ref else float("nan")])
    print(timing.table(["config", "params", "trainable", "trainable MiB", "optim state MiB", "peak MiB",
                        "updates/s", "time / lslo", "peak / lslo"], rows))
    print(f"# {timing.loadavg()} (after; {time.perf_counter() - start:.0f} s)")
    timing.write_json(a.json, dict(machine=timing.machine_line(a), args=vars(a), results=results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
