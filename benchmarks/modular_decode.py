"""Decoding cost of merging: beam search (fairseq's ``SequenceGenerator``, beam 5) of a modular model
(``--lslo-modular``) translating a direction without the pivot, each sentence merging its source's
input adapter and its target's output adapter (``--lslo-merge outputs`` and ``ab``, weights 0.5,0.5),
against a fixed-index LSLo model of the same shape and ranks (encoder source-indexed, decoder
target-indexed: one adapter per layer) decoding the same rows.

The shape is the demo stand-in's (3+3 layers, d 256, FFN 1024, 4 heads, vocabulary 8,000, the demo's
ten languages, H:2,M:2,V:8), with random weights: both models share the base weights, their adapters
are random (B non-zero). ``min_len = max_len`` holds every hypothesis to exactly ``--max-len`` steps,
so every variant does the same number of decoder steps. Variants run round-robin over ``--repeats``
rounds; the figures are medians, the ratios medians of per-round ratios (benchmarks/timing.py).

    python benchmarks/modular_decode.py --threads 1               # fr-ko (ranks 2 and 2), 16 rows
    python benchmarks/modular_decode.py --direction fr-oc --modes outputs   # ranks 2 and 8 (ab refused)
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import timing  # noqa: E402

DEMO_GROUPS = "en:H,fr:H,de:H,it:H,nl:M,zh:M,ja:M,ko:M,oc:V,or:V"
GOAL = 1.05  # merged decoding at most 5% slower than fixed-index decoding


def model_args(groups: str, ranks: str, layers: int, shape, vocab_langs, extra) -> argparse.Namespace:
    from lslo_fairseq.models.lslo_transformer import LSLoTransformerModel, lslo_transformer

    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
    LSLoTransformerModel.add_args(parser)
    dim, ffn, heads = shape
    flags = ["--lslo-ranks", ranks, "--lslo-lang-groups", groups, "--lslo-modules", "all",
             "--encoder-layers", str(layers), "--decoder-layers", str(layers), *extra]
    for side in ("encoder", "decoder"):
        flags += [f"--{side}-embed-dim", str(dim), f"--{side}-ffn-embed-dim", str(ffn),
                  f"--{side}-attention-heads", str(heads)]
    args = parser.parse_args(flags)
    args.arch, args.langs, args.lang_pairs, args.lang_tok_style = "lslo_transformer", vocab_langs, [], "multilingual"
    args.share_all_embeddings = True
    args.max_source_positions = args.max_target_positions = 1024
    args.dropout = args.attention_dropout = args.activation_dropout = 0.0
    lslo_transformer(args)
    return args


def build(kind: str, groups: str, ranks: str, layers: int, vocab: int, shape):
    """``fixed`` (encoder src-, decoder tgt-indexed) or ``modular`` (input/output banks, pivot en)."""
    from benchmarks.m2m import word_dictionary
    from lslo_fairseq.checkpoints.reading import StandInTask
    from lslo_fairseq.models.lslo_transformer import LSLoTransformerModel

    langs = [x.split(":")[0] for x in groups.split(",")]
    extra = ["--lslo-modular"] if kind == "modular" else ["--lslo-encoder-index", "src", "--lslo-decoder-index", "tgt"]
    args = model_args(groups, ranks, layers, shape, langs, extra)
    task = StandInTask(langs, dictionary=word_dictionary(vocab - len(langs)))
    torch.manual_seed(0)  # the same base weights in both
    model = LSLoTransformerModel.build_model(args, task)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in model.lslo_layers.values():
            for name in layer.param_names():
                if "_B" in name:
                    raw = layer.raw(name)
                    raw.copy_(torch.randn(raw.shape, generator=g) * 0.01)
    return model.eval(), task


def main(argv=None) -> int:
    from fairseq.sequence_generator import SequenceGenerator

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--direction", default="fr-ko", help="a direction without the pivot en (default fr-ko)")
    p.add_argument("--modes", default="outputs,ab", help="merge modes to time (default outputs,ab)")
    p.add_argument("--weights", default="0.5,0.5", help="merge weights W_IN,W_OUT (default 0.5,0.5)")
    p.add_argument("--groups", default=DEMO_GROUPS, help="languages and groups (default: the demo's ten)")
    p.add_argument("--ranks", default="H:2,M:2,V:8", help="ranks (default H:2,M:2,V:8, the demo's)")
    p.add_argument("--layers", type=int, default=3, help="encoder and decoder layers (default 3)")
    p.add_argument("--vocab", type=int, default=8000, help="dictionary size (default 8,000)")
    p.add_argument("--batch", type=int, default=16, help="sentences per batch (default 16)")
    p.add_argument("--length", type=int, default=16, help="source tokens per sentence (default 16)")
    p.add_argument("--max-len", type=int, default=24, help="target tokens generated (default 24)")
    p.add_argument("--beam", type=int, default=5, help="beam size (default 5)")
    p.add_argument("--pivot-too", action="store_true", help="also time the modular model into the pivot (one bank)")
    timing.add_common_args(p, repeats=7, warmup=1)
    a = p.parse_args(argv)
    src_lang, _, tgt_lang = a.direction.partition("-")
    modes = [m for m in a.modes.split(",") if m]
    if any(m not in ("outputs", "ab") for m in modes) or not modes:
        raise SystemExit(f"--modes: outputs and/or ab, got {a.modes!r}")
    if "en" in (src_lang, tgt_lang) or not tgt_lang:
        raise SystemExit(f"--direction: a direction without the pivot en, e.g. fr-ko; got {a.direction!r}")
    w_in, w_out = (float(x) for x in a.weights.split(","))
    device = timing.setup(a)
    logging.getLogger("lslo_fairseq").setLevel(logging.WARNING)  # the models' parameter counts
    shape = (256, 1024, 4)
    if a.quick:
        a.layers, a.vocab, a.batch, a.length, a.max_len, shape = 1, 200, 4, 6, 4, (64, 128, 4)
    fixed, task = build("fixed", a.groups, a.ranks, a.layers, a.vocab, shape)
    modular, _ = build("modular", a.groups, a.ranks, a.layers, a.vocab, shape)
    base = {k: v for k, v in fixed.state_dict().items() if ".lora_" not in k and k != "lslo_layout"}
    modular.load_state_dict({**modular.state_dict(), **base})  # the same base weights
    cfg = modular.lslo_config
    for lang in (src_lang, tgt_lang):
        if lang not in cfg.languages:
            raise SystemExit(f"--direction: {lang} is not one of {', '.join(cfg.languages)}")
    if "ab" in modes and cfg.rank_of(src_lang) != cfg.rank_of(tgt_lang):
        raise SystemExit(f"--modes ab: {src_lang} has rank {cfg.rank_of(src_lang)} and {tgt_lang} rank "
                         f"{cfg.rank_of(tgt_lang)}; ab needs equal ranks (use --modes outputs)")
    fixed.to(device)
    modular.to(device)
    d = task.target_dictionary
    g = torch.Generator().manual_seed(0)
    n_words = len(d) - d.nspecial - len(task.langs)
    words = torch.randint(d.nspecial, d.nspecial + min(1000, n_words), (a.batch, a.length - 2), generator=g)

    def rows(src):
        toks = torch.cat([torch.full((a.batch, 1), task.lang_token(src)), words, torch.full((a.batch, 1), d.eos())], 1)
        return toks.to(device), torch.full((a.batch,), a.length, device=device)

    def decode(model, src, tgt, mode=None):
        tok = task.lang_token(tgt)
        gen = SequenceGenerator([model], d, beam_size=a.beam, max_len_a=0, max_len_b=a.max_len, min_len=a.max_len)
        src_tokens, lens = rows(src)
        sample = {"net_input": dict(src_tokens=src_tokens, src_lengths=lens,
                                    lslo_tgt_langtok=torch.full((a.batch,), tok, device=device))}

        def run():
            if mode is not None:
                model.lslo_router.configure_merge(cfg.pivot, cfg.ranks, mode, (w_in, w_out))
            with torch.no_grad(), timing.autocast(device, a.amp):
                out = gen.generate([model], sample, bos_token=tok)
            steps = {len(h[0]["tokens"]) for h in out}
            if steps != {a.max_len + 1}:
                raise RuntimeError(f"hypotheses of lengths {steps}, expected {a.max_len + 1}")
            return out
        return run

    fns = {"fixed-index": decode(fixed, src_lang, tgt_lang)}
    for mode in modes:
        fns[f"modular-{mode}"] = decode(modular, src_lang, tgt_lang, mode)
    if a.pivot_too:
        fns["modular-into-pivot"] = decode(modular, src_lang, "en", "outputs")
    kernel = next(iter(fixed.lslo_layers.values())).kernel()
    times = timing.interleaved(fns, a.repeats, a.warmup, device)
    dim, ffn, heads = shape
    print(f"# modular decoding: SequenceGenerator beam {a.beam}, {a.batch} sentences {a.direction} ({a.length} source "
          f"tokens), {a.max_len} target tokens each; {a.layers}+{a.layers} layers, d {dim}, FFN {ffn}, {heads} heads, "
          f"vocab {a.vocab}, {a.ranks} (ranks {src_lang} {cfg.rank_of(src_lang)}, {tgt_lang} "
          f"{cfg.rank_of(tgt_lang)}), merge weights {w_in:g},{w_out:g}; fixed-index kernel {kernel}, modular: the one-direction "
          f"merged path; median of {a.repeats} interleaved rounds")
    print("# " + timing.machine_line(a))
    rows_out, results = [], {}
    for name in fns:
        s = timing.median(times[name])
        r = timing.ratio(times, name, "fixed-index")
        per_round = [x / y for x, y in zip(times[name], times["fixed-index"])]
        results[name] = dict(seconds=s, sentences_per_s=a.batch / s, time_over_fixed=r,
                             ratio_range=[min(per_round), max(per_round)], seconds_per_round=times[name],
                             meets_goal=None if name == "fixed-index" else r <= GOAL)
        rows_out.append([name, s, a.batch / s, r, f"{min(per_round):.2f}-{max(per_round):.2f}"])
    print(timing.table(["model", "seconds/batch", "sentences/s", "time / fixed-index", "per-round range"], rows_out))
    print(f"# goal: merged <= {GOAL:.2f}x fixed-index: " + ", ".join(
        f"{n} {results[n]['time_over_fixed']:.3f}x {'met' if results[n]['meets_goal'] else 'NOT met'}"
        for n in fns if n.startswith("modular-") and n != "modular-into-pivot"))
    print("# " + timing.loadavg() + " (after)")
    timing.write_json(a.json, dict(machine=timing.machine_line(a), args=vars(a), results=results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
