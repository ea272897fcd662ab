"""``lslo-plot``: the paper's analysis figures and tables from the files a run writes.

::

    lslo-plot weights weight_learning.json --out figs/wl            # figure 1
    lslo-plot ise pruning_counts.json --out figs/ise --lang-groups lang12
                                    # figures 2 and 5, eq. 6 score tables, tables 9-10 (printed too)
    lslo-plot lsp pruning_counts.json --out figs/lsp                  # figures 4 and 6, score tables
    lslo-plot curves --run 2;2;8+WL=ep1.json,ep2.json,... --run Ft-all=... \\
        --columns H2H,V2V --out figs/curves                           # figure 3
    lslo-plot merge-weights merge_weights.json --out figs/modular     # the modular follow-up's figure 2
    lslo-plot logit-lens lens.json --out figs/lens                    # logit lens (written by lslo-lens)
    lslo-plot logit-lens Base=base.json LSLo=lslo.json --out figs/lens  # several models: also PREFIX_lens_models

Every figure is written as ``<PREFIX>_figN.png`` and ``.pdf``. Input files are read and checked
before anything is drawn; an error names the file or flag at fault (exit status 2).
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections import OrderedDict
from typing import List, Optional, Sequence

from ..analysis import importance as imp
from ..analysis import logit_lens as lens
from ..analysis import plots
from ..config import parse_lang_groups
from ..groups import PRESETS
from ..errors import LSLoError
from ..evaluation import tables as tables_mod
from ..runfiles import pruning_counts, weight_learning
from ..runner import run


def build_parser() -> argparse.ArgumentParser:
    """The ``lslo-plot`` parser: subcommands weights, ise, lsp, curves, logit-lens."""
    p = argparse.ArgumentParser(
        prog="lslo-plot",
        description="Figures and tables of the LSLo paper from a run's files: weight learning "
        "(figure 1), intrinsic subspace estimation (figures 2, 5; tables 9-10), spBLEU per epoch "
        "(figure 3) and language-specific pruning (figures 4, 6). Writes PNG and PDF.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    _one_file_command(sub, "weights", "figure 1: learned src/tgt weights per layer",
                      "Figure 1 from weight_learning.json: w_src and w_tgt of every encoder and decoder layer, "
                      "the chosen index starred. With a 'history' in the file, also PREFIX_fig1_history "
                      "(w_tgt over updates).", ("WL.json", "weight_learning.json written by the training code"),
                      "fig1")

    _one_file_command(sub, "merge-weights", "the modular follow-up's figure 2: learned merge weights per layer",
                      "One panel per direction: the normalised target weight w_out / (w_in + w_out) of every "
                      "encoder and decoder layer, from a merge-weights JSON with per-layer weights (lslo-score "
                      "--learn-merge-weights writes one).", ("MERGE_WEIGHTS.json", "merge weights with per-layer "
                                                             "entries"), "merge_weights")

    for name, fig, what in (("ise", "figures 2 and 5, score tables and tables 9-10",
                             "intrinsic subspace estimation (layer-wise cross-language pruning)"),
                            ("lsp", "figures 4 and 6 and score tables", "language-specific pruning")):
        s = sub.add_parser(name, help=f"{fig} from pruning counts of {what}",
                           description=f"Eq. 6 importance scores (#pruned - P*#B) of {what}: {fig}.")
        s.add_argument("counts", metavar="COUNTS.json", help="pruning_counts.json written by the training code")
        s.add_argument("--out", required=True, metavar="PREFIX",
                       help="output prefix: PREFIX_figN.png/.pdf, PREFIX_scores.{csv,json,by_language.csv,"
                       "by_layer.csv}" + (", PREFIX_correlations.{csv,json}" if name == "ise" else ""))
        s.add_argument("--lang-groups", metavar="SPEC",
                       help="language -> resource group for row order and labels: a preset (lang12, "
                       "lang30), 'en:H,fr:H,...' or a file (default: the records' own 'group'; "
                       "the lang30 preset for records without one).")
        s.add_argument("--matrix", choices=pruning_counts.MATRICES + ("all",), default="B",
                       help="which LoRA matrices to score (default B, as the paper: B starts at zero; "
                       "B_src/B_tgt: a bank of a weight-learning layer).")
        s.add_argument("--any-kind", action="store_true",
                       help=f"accept counts whose kind is not '{name}' (e.g. gps).")

    c = sub.add_parser("curves", help="figure 3: spBLEU per epoch",
                       description="Figure 3: spBLEU per epoch, one line per run, one panel per "
                       "column. A run's results are lslo-score JSON files (one per epoch) or rows "
                       "of a CSV 'run,epoch,H2H,...,AVG'. A run with one result is drawn as a "
                       "dashed reference line (e.g. the pre-trained model).")
    c.add_argument("--run", action="append", default=[], metavar="NAME=R1.json,R2.json,...",
                   help="a run and its per-epoch result files, in epoch order. Repeatable.")
    c.add_argument("--csv", action="append", default=[], metavar="FILE",
                   help="CSV with columns run,epoch,<group columns>; every run in it is plotted. Repeatable.")
    c.add_argument("--columns", required=True, metavar="COLS",
                   help="comma-separated columns, one panel each, e.g. H2H,V2V")
    c.add_argument("--epochs", metavar="LIST",
                   help="epochs of the --run files, comma-separated (same for every --run; default: "
                   "each file's meta.epoch if all have one, else 1, 2, ... in file order)")
    c.add_argument("--title", help="figure title")
    c.add_argument("--out", required=True, metavar="PREFIX", help="writes PREFIX_fig3.png/.pdf")
    ll = sub.add_parser("logit-lens", help="logit lens: token languages per decoder layer (lslo-lens JSON)",
                          description="One heatmap per direction: decoder layer x token-language category "
                          "(source, target, bridge, other, shared, unseen), colour = share of the layer's top-k "
                          "lens tokens, from the JSON that lslo-lens writes (PREFIX_lens; with several files, "
                          "PREFIX_<NAME>_lens each). With several files, also PREFIX_lens_models: one panel per "
                          "file, its directions pooled.")
    ll.add_argument("files", nargs="+", metavar="[NAME=]LENS.json",
                      help="JSON written by lslo-lens; NAME labels its panel (default: the file name)")
    ll.add_argument("--out", required=True, metavar="PREFIX", help="writes PREFIX_lens.png/.pdf (and more, above)")
    return p


def _one_file_command(sub, name: str, help: str, description: str, file: tuple, suffix: str) -> None:
    """A subcommand that draws one file (positional ``file`` = (metavar, help), read as ``args.file``)
    into ``PREFIX_<suffix>.png/.pdf``."""
    s = sub.add_parser(name, help=help, description=description)
    s.add_argument("file", metavar=file[0], help=file[1])
    s.add_argument("--out", required=True, metavar="PREFIX", help=f"writes PREFIX_{suffix}.png/.pdf")


def _split(spec: str) -> List[str]:
    return [x.strip() for x in spec.split(",") if x.strip()]


def _lang_groups(spec: Optional[str]):
    return parse_lang_groups(spec, flag="--lang-groups") if spec else None


def _load_counts(args, kind: str) -> dict:
    doc = pruning_counts.load(args.counts)
    if doc["kind"] != kind and not args.any_kind:
        hint = (f"use 'lslo-plot {doc['kind']}'" if doc["kind"] in ("ise", "lsp")
                else "pass --any-kind to plot it anyway")
        raise imp.AnalysisError(f"{args.counts}: kind is {doc['kind']!r}, not {kind!r}; {hint}")
    matrix = None if args.matrix == "all" else args.matrix
    if matrix is not None and not any(r["matrix"] == matrix for r in doc["records"]):
        raise imp.AnalysisError(f"{args.counts}: no records of matrix {matrix!r} (--matrix); it has "
                     f"{sorted({r['matrix'] for r in doc['records']})}")
    target = doc.get("target_ratio")
    if isinstance(target, (int, float)) and abs(target - doc["ratio"]) > 1e-9:
        print(f"lslo-plot: note: {args.counts} was written at ratio {doc['ratio']:g} "
              f"(position {doc.get('position')} of the schedule), before its target {target:g}; "
              "eq. 6 uses the ratio the pools were pruned to", file=sys.stderr)
    try:
        imp.check_pool_sparsity(doc["records"], doc["ratio"])
    except imp.AnalysisError as e:
        print(f"lslo-plot: warning: {args.counts}: {e}; eq. 6 scores of such pools do not sum to 0",
              file=sys.stderr)
    return doc


def _report(paths: Sequence[str]) -> None:
    for path in paths:
        print(f"wrote {path}")


def _cmd_weights(args) -> int:
    wl = weight_learning.load(args.file)
    saved = plots.plot_weight_learning(wl, args.out + "_fig1")
    _report(saved.paths)
    if wl.get("history"):
        _report(plots.plot_weight_history(wl, args.out + "_fig1_history").paths)
    for side in ("encoder", "decoder"):
        print(f"{side}_index: {','.join(wl[side + '_index'])}")
    return 0


def _cmd_merge_weights(args) -> int:
    from ..merging import read_merge_weights

    _, _, layered = read_merge_weights(args.file)
    per_direction = {"-".join(d): w for d, w in layered.items() if d is not None}
    if None in layered:
        per_direction["all directions"] = layered[None]
    if not per_direction:
        raise imp.AnalysisError(f"{args.file}: no per-layer merge weights ('layers' or 'direction_layers'); "
                                "lslo-score --learn-merge-weights writes them")
    _report(plots.plot_merge_weights(per_direction, args.out + "_merge_weights").paths)
    return 0


def _cmd_pruning(args, kind: str) -> int:
    groups = _lang_groups(args.lang_groups)
    doc = _load_counts(args, kind)
    records, ratio = doc["records"], doc["ratio"]
    if groups is None and any(r["group"] is None for r in records):
        # ungrouped records (a run without --lslo-lang-groups): the paper's groups where known
        groups = dict(PRESETS["lang30"])
        print("lslo-plot: note: records without a resource group are grouped by the lang30 preset "
              "(paper tables 5-6); pass --lang-groups to choose", file=sys.stderr)
    matrix = None if args.matrix == "all" else args.matrix
    kinds = sorted({r["matrix"] for r in records})
    if matrix is None and len(kinds) > 1:
        raise imp.AnalysisError(f"{args.counts}: --matrix all with records of matrices {kinds} would average "
                     "them together; choose one with --matrix")
    corr = None
    if kind == "ise":
        try:
            corr = imp.correlations(records, ratio=ratio, matrix=matrix)
        except imp.AnalysisError as e:
            print(f"lslo-plot: warning: {args.counts}: correlations (tables 9-10) skipped: {e}",
                  file=sys.stderr)
    written = list(imp.write_scores(args.out + "_scores", records, ratio, kind=doc["kind"],
                                    matrix=matrix).values())
    if kind == "ise":
        written += plots.plot_subspace_heatmap(records, ratio, args.out + "_fig2", groups, matrix).paths
        written += plots.plot_subspace_per_layer(records, ratio, args.out + "_fig5", groups, matrix).paths
        if corr is not None:
            written += list(imp.write_correlations(args.out + "_correlations", corr).values())
    else:
        written += plots.plot_lsp_heatmap(records, ratio, args.out + "_fig4", matrix).paths
        written += plots.plot_lsp_per_language(records, ratio, args.out + "_fig6", groups, matrix).paths
    _report(written)
    if corr is not None:
        print()
        print(imp.format_correlations(corr))
    return 0


def _cmd_curves(args) -> int:
    columns = _split(args.columns)
    if not columns:
        raise imp.AnalysisError("--columns: give at least one column, e.g. H2H,V2V")
    if not args.run and not args.csv:
        raise imp.AnalysisError("nothing to plot: give --run NAME=R1.json,R2.json,... and/or --csv FILE")
    epochs = None
    if args.epochs:
        try:
            epochs = [float(e) for e in _split(args.epochs)]
        except ValueError:
            raise imp.AnalysisError(f"--epochs: expected comma-separated numbers, got {args.epochs!r}")
    tables: "OrderedDict[str, list]" = OrderedDict()
    for spec in args.run:
        name, sep, files = spec.partition("=")
        name = name.strip()
        paths = _split(files)
        if not sep or not name or not paths:
            raise imp.AnalysisError(f"--run: expected NAME=R1.json,R2.json,..., got {spec!r}")
        if name in tables:
            raise imp.AnalysisError(f"--run: the name {name!r} is used twice")
        if epochs is not None and len(paths) > 1 and len(epochs) != len(paths):
            raise imp.AnalysisError(f"--epochs: {len(epochs)} epochs but --run {name} has {len(paths)} files")
        try:  # a run of one result is a reference line, whatever --epochs says
            tables[name] = tables_mod.epoch_table_from_results(paths, epochs if len(paths) > 1 else None, run=name)
        except LSLoError as e:  # the files' own errors, with the run they belong to
            raise imp.AnalysisError(f"--run {name}: {e}") from None
    for path in args.csv:
        try:
            runs = tables_mod.load_curve_csv(path)
        except LSLoError as e:
            raise imp.AnalysisError(f"--csv: {e}") from None
        for name, table in runs.items():
            if name in tables:
                raise imp.AnalysisError(f"--csv {path}: run {name!r} is also given elsewhere")
            tables[name] = table
    try:
        plots.check_columns(tables, columns)
    except imp.AnalysisError as e:
        raise imp.AnalysisError(f"--columns: {e}") from None
    _report(plots.plot_curves(tables, columns, args.out + "_fig3", title=args.title).paths)
    return 0


def _cmd_lens(args) -> int:
    import json
    import os

    docs = OrderedDict()
    for spec in args.files:
        name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        name = name or os.path.splitext(os.path.basename(path))[0]
        if name in docs:
            raise imp.AnalysisError(f"logit-lens: two files named {name!r}; label them NAME=FILE")
        try:
            with open(path, encoding="utf-8") as f:
                docs[name] = (path, json.load(f))
        except (OSError, ValueError) as e:
            raise imp.AnalysisError(f"{path}: not a readable JSON file ({e})") from None
    for name, (path, doc) in docs.items():
        lens.check_lens_document(doc, path)  # every file checked before anything is drawn
    if len(docs) == 1:
        path, doc = next(iter(docs.values()))
        _report(plots.plot_logit_lens(doc, args.out + "_lens", where=path).paths)
        return 0
    for name, (path, doc) in docs.items():
        _report(plots.plot_logit_lens(doc, f"{args.out}_{_safe(name)}_lens", where=path).paths)
    _report(plots.plot_logit_lens_models({name: doc for name, (_, doc) in docs.items()},
                                         args.out + "_lens_models").paths)
    return 0


def _safe(name: str) -> str:
    """A run name as part of a file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``lslo-plot``; return the exit status (bad input exits with status 2 before drawing)."""
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "weights":
        body = lambda: _cmd_weights(args)  # noqa: E731
    elif args.command == "merge-weights":
        body = lambda: _cmd_merge_weights(args)  # noqa: E731
    elif args.command in ("ise", "lsp"):
        body = lambda: _cmd_pruning(args, args.command)  # noqa: E731
    elif args.command == "logit-lens":
        body = lambda: _cmd_lens(args)  # noqa: E731
    else:
        body = lambda: _cmd_curves(args)  # noqa: E731
    return run(f"lslo-plot {args.command}", body)


if __name__ == "__main__":
    sys.exit(main())
