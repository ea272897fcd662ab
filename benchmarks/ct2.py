"""Decoding speed on CPU: fairseq's beam search (``SequenceGenerator``, what fairseq-generate runs)
against CTranslate2 float32 and int8 of the same model (``lslo-export ct2``), beam 5, the same
source rows, batch size and threads.

- ``demo``: the shipped stand-in (3+3 layers, d 256, FFN 1024, 8k vocabulary, real weights) on the
  LibreOffice rows (en -> fr); both decode to their own EOS (up to ``--max-len`` tokens) and the
  mean output length of each is printed.
- ``615m``: M2M-124 615M's shape (d 1024, FFN 4096, 16 heads, a dictionary of ``--vocab`` entries,
  default 256,000 as the release's, then its language tokens) with ``--layers`` (default 2) encoder and
  decoder layers and random weights; every hypothesis is held to exactly
  ``--max-len`` tokens (fairseq ``min_len``, CTranslate2 ``min_decoding_length``): equal work.

    python benchmarks/ct2.py --shape demo --threads 1
    python benchmarks/ct2.py --shape 615m --layers 2 --rows 32 --threads 1
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.m2m import M2M_VOCAB  # noqa: E402

STAND_IN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lslo_fairseq", "resources",
                        "stand_in")


def demo_source():
    from lslo_fairseq.export.source import read_source

    return read_source(os.path.join(STAND_IN, "checkpoint.pt"), os.path.join(STAND_IN, "dict.txt"),
                       os.path.join(STAND_IN, "sentencepiece.bpe.model"))


def m2m_source(tmp: str, layers: int, vocab: int):
    """A fairseq checkpoint of M2M-124 615M's shape (random weights), its dictionary (``vocab``
    entries with fairseq's 4 specials, then the language tokens), a stand-in spm."""
    import argparse as ap

    from fairseq.models.transformer import TransformerModel

    from lslo_fairseq.checkpoints.reading import StandInTask
    from lslo_fairseq.export.hf import model_args
    from lslo_fairseq.export.source import read_source

    base = torch.load(os.path.join(STAND_IN, "checkpoint.pt"), weights_only=True, mmap=True)
    args = copy.deepcopy(vars(base["cfg"]["model"]))
    for side in ("encoder", "decoder"):
        args.update({f"{side}_layers": layers, f"{side}_embed_dim": 1024, f"{side}_ffn_embed_dim": 4096,
                     f"{side}_attention_heads": 16})
    args.update(decoder_input_dim=1024, decoder_output_dim=1024)
    langs = args["langs"]
    with open(os.path.join(tmp, "dict.txt"), "w") as f:
        f.writelines(f"w{i} 1\n" for i in range(vocab - 4))  # Dictionary.load adds the 4 specials
    task = StandInTask([], vocab_size=None)
    from lslo_fairseq.export.source import build_dictionary

    task.source_dictionary = task.target_dictionary = build_dictionary(os.path.join(tmp, "dict.txt"), langs,
                                                                       vars(base["cfg"]["task"]))
    torch.manual_seed(0)
    model = TransformerModel.build_model(model_args(args), task)
    cfg = {k: (copy.deepcopy(vars(v)) if isinstance(v, ap.Namespace) else copy.deepcopy(v)) for k, v in base["cfg"].items()}
    cfg["model"] = ap.Namespace(**args)
    cfg["task"] = ap.Namespace(**dict(vars(base["cfg"]["task"]), fixed_dictionary=os.path.join(tmp, "dict.txt")))
    path = os.path.join(tmp, "m2m.pt")
    torch.save({"args": None, "cfg": cfg, "model": model.state_dict()}, path)
    return read_source(path, os.path.join(tmp, "dict.txt"), os.path.join(STAND_IN, "sentencepiece.bpe.model"))


def rows_demo(src, n):
    import sentencepiece as spm

    from lslo_fairseq.data.multiparallel import LIBREOFFICE_TSV

    sp = spm.SentencePieceProcessor(model_file=src.spm_path)
    lines = open(LIBREOFFICE_TSV, encoding="utf-8").read().splitlines()
    head = lines[0].split("\t")
    col = head.index("en")
    return [sp.encode(line.split("\t")[col], out_type=str) for line in lines[1:n + 1]]


def rows_random(src, n, length, vocab):
    g = torch.Generator().manual_seed(1)
    d = src.dictionary
    return [[d[i] for i in torch.randint(d.nspecial, vocab, (length,), generator=g).tolist()] for _ in range(n)]


def fairseq_decode(src, rows, s, t, beam, max_len, batch, fixed):
    from fairseq.sequence_generator import SequenceGenerator

    from lslo_fairseq.export.hf import fairseq_base_model

    model = fairseq_base_model(src)
    d = src.dictionary
    gen = SequenceGenerator([model], d, beam_size=beam, max_len_a=0, max_len_b=max_len,
                            min_len=max_len if fixed else 1)
    lens = []
    start = time.perf_counter()
    for i in range(0, len(rows), batch):
        chunk = [[src.lang_index(s)] + [d.index(p) for p in r] + [d.eos()] for r in rows[i:i + batch]]
        width = max(map(len, chunk))
        tokens = torch.tensor([[d.pad()] * (width - len(c)) + c for c in chunk])
        sample = {"net_input": {"src_tokens": tokens, "src_lengths": torch.tensor([len(c) for c in chunk])}}
        prefix = torch.full((len(chunk), 1), src.lang_index(t))
        with torch.no_grad():
            hyps = gen.generate([model], sample, prefix_tokens=prefix)
        lens += [len(h[0]["tokens"]) for h in hyps]
    return time.perf_counter() - start, statistics.mean(lens)


def ct2_decode(model_dir, rows, s, t, beam, max_len, batch, threads, compute_type, fixed):
    import ctranslate2

    tr = ctranslate2.Translator(model_dir, device="cpu", compute_type=compute_type, inter_threads=1,
                                intra_threads=threads)
    source = [[f"__{s}__"] + r for r in rows]
    start = time.perf_counter()
    out = tr.translate_batch(source, target_prefix=[[f"__{t}__"]] * len(rows), beam_size=beam,
                             max_decoding_length=max_len + 1, min_decoding_length=max_len + 1 if fixed else 1,
                             max_batch_size=batch)
    elapsed = time.perf_counter() - start
    return elapsed, statistics.mean(len(o.hypotheses[0]) + 1 for o in out)  # + EOS, as fairseq counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=["demo", "615m"], default="demo")
    p.add_argument("--layers", type=int, default=2, help="615m: encoder and decoder layers (default 2)")
    p.add_argument("--vocab", type=int, default=M2M_VOCAB,
                   help=f"615m: dictionary entries before the language tokens, fairseq's 4 specials included "
                        f"(default {M2M_VOCAB:,}: the released M2M-124 615M's)")
    p.add_argument("--rows", type=int, default=200)
    p.add_argument("--length", type=int, default=16, help="615m: source tokens per sentence")
    p.add_argument("--max-len", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    import lslo_fairseq  # noqa: F401  (registers fairseq pickles, the plugin)
    from lslo_fairseq.export.ct2 import export_ct2

    s, t = "en", "fr"
    with tempfile.TemporaryDirectory() as tmp:
        if a.shape == "demo":
            src, fixed = demo_source(), False
            rows = rows_demo(src, a.rows)
        else:
            if a.vocab < 5:
                p.error(f"--vocab must be at least 5 (the 4 specials and a word), got {a.vocab}")
            src, fixed = m2m_source(tmp, a.layers, a.vocab), True
            rows = rows_random(src, a.rows, a.length, a.vocab)
        dirs = {}
        for q in ("float32", "int8"):
            dirs[q] = os.path.join(tmp, q)
            export_ct2(src, s, t, dirs[q], None if q == "float32" else "int8")
        times = {"fairseq": [], "ct2 float32": [], "ct2 int8": []}
        lengths = {}
        for _ in range(a.repeats):  # round-robin
            el, lengths["fairseq"] = fairseq_decode(src, rows, s, t, a.beam, a.max_len, a.batch, fixed)
            times["fairseq"].append(el)
            for q in ("float32", "int8"):
                el, lengths[f"ct2 {q}"] = ct2_decode(dirs[q], rows, s, t, a.beam, a.max_len, a.batch, a.threads, q, fixed)
                times[f"ct2 {q}"].append(el)
    load = os.getloadavg()[0]
    shape = "demo stand-in 3+3, d 256" if a.shape == "demo" else f"615M shape {a.layers}+{a.layers}, d 1024, vocab {a.vocab:,}"
    print(f"{shape}; {len(rows)} rows, beam {a.beam}, batch {a.batch}, threads {a.threads}, "
          f"repeats {a.repeats} (median), load {load:.2f}")
    print("| decoder | s | sentences/s | mean output tokens | speed-up vs fairseq |")
    print("|---|---|---|---|---|")
    base = statistics.median(times["fairseq"])
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"| {name} | {m:.2f} | {len(rows) / m:.1f} | {lengths[name]:.1f} | {base / m:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
