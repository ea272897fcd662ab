"""Decoding speed: sentences/s of beam search (fairseq's ``SequenceGenerator``, beam 5) for the base
model and for LSLo on the same base weights, M2M-124 615M shapes with random weights.

The batch mixes source languages (``__src__`` first) and decodes into one target language, as
``fairseq-generate`` does per direction: ``bos_token`` is ``__tgt__`` and, for LSLo,
``net_input['lslo_tgt_langtok']`` is what the task's ``inference_step`` hands to the encoder. With
random weights EOS could come at any step, so ``min_len = max_len`` makes every hypothesis run
exactly ``--max-len`` steps in both models: equal work, compared step for step. Variants run
round-robin over ``--repeats`` rounds; figures are medians.

    python benchmarks/decode.py                       # 2+2 layers, vocab 256,000 (the release's), 16 sentences
    python benchmarks/decode.py --layers 12 --repeats 3
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import timing  # noqa: E402


def main(argv=None) -> int:
    from benchmarks import m2m

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    m2m.add_shape_args(p, "sentences per batch (default 16)", "source tokens per sentence (default 24)")
    p.add_argument("--max-len", type=int, default=24, help="target tokens generated (default 24)")
    p.add_argument("--beam", type=int, default=5, help="beam size (default 5)")
    p.add_argument("--kernels", action="store_true", help="also time LSLo with each kernel forced")
    timing.add_common_args(p, repeats=5, warmup=1)
    a = p.parse_args(argv)
    device = timing.setup(a)
    if a.quick:
        a.layers, a.vocab, a.batch, a.length, a.max_len = 1, 200, 4, 6, 4
    from fairseq.sequence_generator import SequenceGenerator

    from lslo_fairseq.modules.lslo_linear import LSLoLinear

    shape = (64, 128, 4) if a.quick else None
    plain, task = m2m.build("plain", a.groups, a.ranks, a.layers, a.vocab, shape=shape)
    lslo, _ = m2m.build("lslo", a.groups, a.ranks, a.layers, a.vocab, seed=1, shape=shape)
    adapters = {k: v for k, v in lslo.state_dict().items() if ".lora_" in k}
    lslo.load_state_dict(plain.state_dict(), strict=True)  # the same base weights ...
    lslo.load_state_dict({**lslo.state_dict(), **adapters})  # ... with random (non-zero) adapters
    models = {"base": plain.to(device).eval(), "lslo": lslo.to(device).eval()}
    src, lens, _, _, _ = m2m.mixed_batch(task, a.batch, a.length)
    tgt_lang = task.langs[-1]
    tok = task.lang_token(tgt_lang)
    src, lens = src.to(device), lens.to(device)
    d = task.target_dictionary

    def decode(name, kernel=None):
        model = models[name]
        gen = SequenceGenerator([model], d, beam_size=a.beam, max_len_a=0, max_len_b=a.max_len,
                                min_len=a.max_len)
        net_input = dict(src_tokens=src, src_lengths=lens)
        if name == "lslo":
            net_input["lslo_tgt_langtok"] = torch.full((a.batch,), tok, device=device)
        sample = {"net_input": net_input}

        def run():
            saved = LSLoLinear.kernel_choice
            LSLoLinear.kernel_choice = kernel or saved
            try:
                with torch.no_grad(), timing.autocast(device, a.amp):
                    out = gen.generate([model], sample, bos_token=tok)
            finally:
                LSLoLinear.kernel_choice = saved
            steps = {len(h[0]["tokens"]) for h in out}
            if steps != {a.max_len + 1}:  # max_len tokens and the final EOS
                raise RuntimeError(f"{name}: hypotheses of lengths {steps}, expected {a.max_len + 1}")
            return out
        return run

    fns = {"base": decode("base"), "lslo": decode("lslo")}
    if a.kernels:
        fns["lslo-gather"], fns["lslo-dense"] = decode("lslo", "gather"), decode("lslo", "dense")
    auto = next(iter(lslo.lslo_layers.values())).kernel()
    times = timing.interleaved(fns, a.repeats, a.warmup, device)
    print(f"# decoding: SequenceGenerator beam {a.beam}, {a.batch} sentences ({a.length} source tokens, "
          f"mixed source languages, -> {tgt_lang}), {a.max_len} target tokens each; lslo_m2m100_615m shape "
          f"with {a.layers}+{a.layers} layers, vocab {a.vocab}, {a.groups} {a.ranks} (auto kernel: {auto}); "
          f"median of {a.repeats} interleaved rounds")
    print("# " + timing.machine_line(a))
    rows, results = [], {}
    for name in fns:
        s = timing.median(times[name])
        results[name] = dict(seconds=s, sentences_per_s=a.batch / s, time_over_base=timing.ratio(times, name, "base"))
        rows.append([name, s, a.batch / s, results[name]["time_over_base"]])
    print(timing.table(["model", "seconds/batch", "sentences/s", "time / base"], rows))
    print("# " + timing.loadavg() + " (after)")
    timing.write_json(a.json, dict(machine=timing.machine_line(a), args=vars(a), results=results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
