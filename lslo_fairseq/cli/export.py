"""``lslo-export``: convert LSLo checkpoints.

  lslo-export fold     --checkpoint CKPT --source-lang oc --target-lang ko --out oc-ko.pt
      fold the adapters (and pruning masks) for one direction into the base weights: a plain
      fairseq transformer that stock fairseq-generate loads without --user-dir; valid for that
      direction only (recorded in the file as 'lslo_export'). ("lslo-export merge" is the deprecated
      name of this subcommand: it still works and says so.)
  lslo-export adapters --checkpoint CKPT --out adapters.pt [--langs oc]
      keep only the LSLo tensors, masks, options and a fingerprint of the base (MBs, not GBs);
      with --langs, only those languages' adapters (a per-language adapter pool).
  lslo-export attach   --base model.pt --adapters adapters.pt [more.pt ...] --out full.pt
      put adapters back on the base they were trained on: a normal LSLo checkpoint (several
      per-language files are united first).
  lslo-export info     FILE
      what FILE is (LSLo checkpoint, folded export, adapters file, plain checkpoint).
  lslo-export hf | peft | ct2
      leave fairseq: Hugging Face M2M100 + PEFT adapters, CTranslate2 (see lslo_fairseq/export/subcommands.py).

Every output is written atomically (a temporary file, then a rename) and holds no optimizer state.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from ..config import LSLoConfigError
from ..files import torch_save_atomic
from ..merging import add_merge_options, apply_merge
from ..export import subcommands
from .. import runner

DEPRECATED_FOLD = "merge"  # the old name of `lslo-export fold` ("merge" now means the modular input/output merge)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lslo-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("fold", aliases=[DEPRECATED_FOLD], help="adapters folded into the base weights for one direction: a "
                       f"plain-transformer checkpoint ('{DEPRECATED_FOLD}': the deprecated name of this subcommand)")
    m.add_argument("--checkpoint", required=True, help="LSLo training checkpoint (checkpoint_last.pt ...)")
    m.add_argument("--source-lang", "-s", required=True)
    m.add_argument("--target-lang", "-t", required=True)
    m.add_argument("--out", required=True, help="output .pt")
    add_merge_options(m, "modular checkpoints: how input and output adapters merge (as at generation)",
                      "modular checkpoints: merge weights (default 0.5,0.5) or lslo-score --merge-search's JSON")
    a = sub.add_parser("adapters", help="adapters-only file of an LSLo checkpoint")
    a.add_argument("--checkpoint", required=True, help="LSLo training checkpoint")
    a.add_argument("--out", required=True, help="output .pt")
    a.add_argument("--langs", default=None, metavar="LANGS",
                   help="only these languages' adapters (comma list; a modular checkpoint: their input and output "
                        "adapters), for a per-language adapter pool that lslo-export attach combines")
    t = sub.add_parser("attach", help="adapters file + base checkpoint -> LSLo checkpoint")
    t.add_argument("--base", required=True, help="the base the adapters were trained on (e.g. model.pt)")
    t.add_argument("--adapters", required=True, nargs="+", metavar="FILE",
                   help="file(s) written by lslo-export adapters: one, or per-language files (--langs) of the same "
                        "base and configuration, united in the order given")
    t.add_argument("--out", required=True, help="output .pt")
    i = sub.add_parser("info", help="describe a checkpoint or adapters file")
    i.add_argument("file")
    subcommands.add_parsers(sub)  # hf, peft, ct2: leaving fairseq
    return p


def _check_out(args) -> None:
    ins = [getattr(args, k) for k in ("checkpoint", "base") if getattr(args, k, None)]
    ins += list(getattr(args, "adapters", None) or [])
    if any(os.path.abspath(x) == os.path.abspath(args.out) for x in ins):
        raise LSLoConfigError(f"--out {args.out} is also an input; write to another file")


def _mb(path: str) -> str:
    return f"{os.path.getsize(path) / 2**20:.2f} MB"


def run(args) -> None:
    from ..checkpoints import adapters, fold, reading  # deferred: needs torch and fairseq, which the package imports only when installed

    if args.command != "info":
        _check_out(args)
    start = time.perf_counter()
    if args.command in subcommands.COMMANDS:
        subcommands.run(args)
    elif args.command in ("fold", DEPRECATED_FOLD):
        if args.command == DEPRECATED_FOLD:
            print(f"lslo-export: '{DEPRECATED_FOLD}' is deprecated and will be removed: use 'lslo-export fold' (same "
                  "options)", file=sys.stderr)
        state, model = reading.load_lslo_checkpoint(args.checkpoint, "--checkpoint")
        apply_merge(model, args.lslo_merge, args.lslo_merge_weights, args.source_lang, args.target_lang)
        exported = fold.export_direction(model, state, args.source_lang, args.target_lang, args.checkpoint)
        fold.check_loads_as_stock_transformer(exported)
        torch_save_atomic(args.out, exported)
        print(f"wrote {args.out} ({_mb(args.out)}): plain fairseq transformer for "
              f"{args.source_lang}->{args.target_lang} only; decode it with stock fairseq-generate "
              f"--task translation_multi_simple_epoch (no --user-dir) and --source-lang {args.source_lang} "
              f"--target-lang {args.target_lang}")
    elif args.command == "adapters":
        data = adapters.extract(args.checkpoint, [l for l in (args.langs or "").split(",") if l])
        torch_save_atomic(args.out, data)
        lay = data["layout"]
        print(f"wrote {args.out} ({_mb(args.out)}; checkpoint {_mb(args.checkpoint)}): {len(data['tensors'])} "
              f"LSLo tensors, languages {','.join(lay['languages'])}, ranks {lay['ranks']}, base fingerprint "
              f"of {len(data['base_fingerprint']['tensors'])} tensors")
    elif args.command == "attach":
        state = adapters.attach(args.base, args.adapters)
        torch_save_atomic(args.out, state)
        print(f"wrote {args.out} ({_mb(args.out)}): LSLo checkpoint (base {args.base}, adapters "
              f"{' '.join(args.adapters)}); use it with --user-dir lslo_fairseq")
    else:
        print(describe(args.file))
        return
    print(f"({time.perf_counter() - start:.1f} s)")


def describe(path: str) -> str:
    from ..checkpoints import adapters, fold, reading  # deferred: torch and fairseq
    from ..layout.loading import load  # deferred: torch

    data = load(path, "FILE")
    if isinstance(data, dict) and data.get("format") == adapters.FORMAT:
        data = adapters.read_adapters(path, "FILE")
        lay = data["layout"]
        return (f"{path}: LSLo adapters file (version {data['version']}): languages {lay['languages']}, "
                f"ranks {lay['ranks']}, modules {lay['modules']}, encoder index {lay['encoder_index']}, "
                f"decoder index {lay['decoder_index']}, adapter shape {lay.get('adapter_shape', 'full')} "
                f"(fc offset {lay.get('fc_offset', 0)}), alpha {lay.get('alpha')}; from {data.get('from_checkpoint')}")
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise reading.CheckpointError(f"FILE: {path} is neither a fairseq checkpoint nor an LSLo adapters file")
    if fold.EXPORT_KEY in data:
        e = data[fold.EXPORT_KEY]
        return f"{path}: folded plain transformer (lslo-export fold) for {e['direction']} only (from {e['from_checkpoint']})"
    opts = reading.options(data)
    kind = "LSLo checkpoint" if reading.is_lslo(data) else "plain fairseq checkpoint"
    extra = f", LSLo languages {opts.get('lslo_langs')}, ranks {opts.get('lslo_ranks')}" if reading.is_lslo(data) else ""
    return f"{path}: {kind} (arch {opts.get('arch')}{extra}; optimizer state: {'last_optimizer_state' in data})"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import lslo_fairseq  # noqa: F401  (registers the model with fairseq)

    return runner.run("lslo-export", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
