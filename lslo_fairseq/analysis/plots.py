"""The paper's figures, drawn with matplotlib's Agg renderer (no pyplot state, no display).

* :func:`plot_weight_learning` -- figure 1 (source/target weights per layer, section 6.1);
  :func:`plot_weight_history` -- the same weights over training, when the file has a history.
* :func:`plot_subspace_heatmap` -- figure 2 (eq. 6 score per language x module, mean over layers).
* :func:`plot_curves` -- figure 3 (spBLEU per epoch, one line per run, one panel per column).
* :func:`plot_lsp_heatmap` -- figure 4 (eq. 6 score per layer x module, mean over languages).
* :func:`plot_subspace_per_layer` -- figure 5 (figure 2 for every layer).
* :func:`plot_lsp_per_language` -- figure 6 (figure 4 for every language).
* :func:`plot_logit_lens` -- the logit lens (follow-up's bridge analysis): per direction, the share of
  each token-language category among every decoder layer's top-k tokens;
  :func:`plot_logit_lens_models` -- several models side by side, each one's directions pooled.

Every function writes ``<out_prefix>.png`` and ``<out_prefix>.pdf`` and returns a :class:`Saved`
(the paths and the :class:`~matplotlib.figure.Figure`, for inspection). Heatmaps use a diverging
map centred at 0 (``TwoSlopeNorm``): red = negative score = the language needs more parameters
there (the paper's "high demand"), blue = pruned beyond the target rate.
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..groups import GROUP_NAMES, order_groups
from ..names import INDEX_CHOICES
from ..runfiles import weight_learning
from .logit_lens import category_labels, check_lens_document, pooled_entry
from .importance import (
    SCORE_LABEL,
    SIDE_MODULES,
    SIDES,
    AnalysisError,
    aggregate,
    language_groups,
    pivot,
    scores,
)

GROUP_COLORS = {"H": "#1a9850", "M": "#2166ac", "L": "#e08214", "V": "#d73027"}
OTHER_COLOR = "#555555"
HEATMAP_CMAP = "RdBu"  # low (negative score, high demand) = red, high = blue
DPI = 150


@dataclass
class Saved:
    """What a plot function wrote (``paths``: PNG then PDF) and the figure it drew."""

    paths: List[str]
    figure: object

    @property
    def png(self) -> str:
        return self.paths[0]

    @property
    def pdf(self) -> str:
        return self.paths[1]


def _figure(figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _save(fig, out_prefix: str) -> Saved:
    folder = os.path.dirname(os.path.abspath(out_prefix))
    os.makedirs(folder, exist_ok=True)
    paths = [out_prefix + ".png", out_prefix + ".pdf"]
    fig.savefig(paths[0], dpi=DPI)
    # the constrained layout computed for the PNG is kept for the PDF (positions are figure
    # fractions), which halves the time of the large grids
    fig.set_layout_engine("none")
    fig.savefig(paths[1])
    return Saved(paths, fig)


def _norm(values: np.ndarray):
    """``TwoSlopeNorm`` centred at 0 spanning the finite values (at least +-1)."""
    from matplotlib.colors import TwoSlopeNorm

    finite = values[np.isfinite(values)]
    lo = float(finite.min()) if finite.size else -1.0
    hi = float(finite.max()) if finite.size else 1.0
    span = max(abs(lo), abs(hi), 1.0)
    lo = min(lo, -1e-3 * span)
    hi = max(hi, 1e-3 * span)
    return TwoSlopeNorm(vmin=lo, vcenter=0.0, vmax=hi)


def _cmap():
    import matplotlib

    return matplotlib.colormaps[HEATMAP_CMAP].with_extremes(bad="#d9d9d9")  # NaN: no such matrix


def _group_color(group) -> str:
    return GROUP_COLORS.get(group, OTHER_COLOR)


def _group_name(group) -> str:
    if group is None:
        return "no group"
    return f"{GROUP_NAMES[group]} ({group})" if group in GROUP_NAMES else str(group)


def _heatmap(ax, data, row_labels, col_labels, norm, cmap, show_rows=True, annotate=False,
             row_colors=None):
    """One heatmap panel: cells in row/column order, thin white grid, optional values."""
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, norm=norm, aspect="auto",
                   interpolation="nearest")
    ax.set_xticks(range(len(col_labels)), [str(c) for c in col_labels], fontsize=8)
    if show_rows:
        ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels], fontsize=8)
        if row_colors:
            for tick, color in zip(ax.get_yticklabels(), row_colors):
                tick.set_color(color)
                tick.set_fontweight("bold")
    else:
        ax.set_yticks(range(len(row_labels)))
        ax.tick_params(axis="y", labelleft=False, left=False)
    # thin white cell borders (one line collection each: cheaper to lay out than minor ticks)
    ax.vlines(np.arange(0.5, len(col_labels) - 1, 1), -0.5, len(row_labels) - 0.5, color="white",
              linewidth=0.6)
    ax.hlines(np.arange(0.5, len(row_labels) - 1, 1), -0.5, len(col_labels) - 0.5, color="white",
              linewidth=0.6)
    ax.set_xlim(-0.5, len(col_labels) - 0.5)
    ax.set_ylim(len(row_labels) - 0.5, -0.5)
    ax.tick_params(axis="x", length=0, pad=2)
    if annotate:
        big = np.nanmax(np.abs(data)) if np.isfinite(data).any() else 0.0
        fmt = "{:.0f}" if big >= 10 else "{:.1f}"
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                v = data[i, j]
                if np.isfinite(v):
                    dark = abs(float(norm(v)) - 0.5) > 0.3
                    ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=6,
                            color="white" if dark else "black")
    return im


def _group_separators(ax, groups: Sequence) -> None:
    for i in range(1, len(groups)):
        if groups[i] != groups[i - 1]:
            ax.axhline(i - 0.5, color="black", linewidth=1.4)


def _group_labels(ax, groups: Sequence) -> None:
    """Resource-group names to the right of ``ax``, centred on each run of rows."""
    from matplotlib.transforms import blended_transform_factory

    trans = blended_transform_factory(ax.transAxes, ax.transData)
    start = 0
    for i in range(1, len(groups) + 1):
        if i == len(groups) or groups[i] != groups[start]:
            ax.text(1.03, (start + i - 1) / 2, _group_name(groups[start]), transform=trans,
                    rotation=-90, ha="left", va="center", fontsize=8, fontweight="bold",
                    color=_group_color(groups[start]))
            start = i


def _group_legend(fig, groups: Sequence) -> None:
    from matplotlib.patches import Patch

    present = list(OrderedDict.fromkeys(groups))
    handles = [Patch(color=_group_color(g), label=_group_name(g)) for g in present]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8,
               title="Language resource type (row label colour)", title_fontsize=8, frameon=False)


# --------------------------------------------------------------------------------------------------
# Data preparation shared by the heatmaps
# --------------------------------------------------------------------------------------------------
def ordered_languages(records, lang_groups: Optional[Mapping[str, str]] = None) -> List[Tuple[str, Optional[str]]]:
    """``(language, group)`` of the records' languages, grouped by resource type in table order
    (``GROUP_ORDER``: H, M, L, V, then others, then ungrouped), within a group in ``lang_groups``
    order (else first seen). Groups come from ``lang_groups``, else from the records."""
    groups = language_groups(records, lang_groups)
    rank = {g: i for i, g in enumerate(order_groups({g for g in groups.values() if g is not None}))}
    given = {lang: i for i, lang in enumerate(lang_groups or {})}
    seen = {lang: i for i, lang in enumerate(groups)}
    langs = sorted(groups, key=lambda l: (rank.get(groups[l], len(rank)), given.get(l, len(given)), seen[l]))
    return [(l, groups[l]) for l in langs]


def _sides(records) -> List[str]:
    present = {r["side"] for r in records}
    return [s for s in SIDES if s in present]


def _modules(records, side: str) -> List[str]:
    present = {r["module"] for r in records if r["side"] == side}
    return [m for m in SIDE_MODULES[side] if m in present]


def _layers(records, side: Optional[str] = None) -> List[int]:
    return sorted({r["layer"] for r in records if side is None or r["side"] == side})


def _b_records(records, ratio: float, matrix: Optional[str]) -> List[dict]:
    rows = scores(records, ratio)
    if matrix is not None:
        rows = [r for r in rows if r["matrix"] == matrix]
    if not rows:
        raise AnalysisError(f"no records of matrix {matrix!r} to plot")
    return rows


def _panel_grid(blocks, *, suptitle, row_name, ncols, norm, annotate=False, row_colors=None,
                group_rows=None, group_labels=False, legend_groups=None, panel_w=0.42, row_h=0.24):
    """A grid of blocks, each an encoder and a decoder heatmap (same rows), one shared colour bar.

    ``blocks``: dicts with ``title``, ``rows`` (labels) and ``panels``: ``[(side, columns, data)]``.
    """
    cmap = _cmap()
    nblocks = len(blocks)
    ncols = max(1, min(ncols, nblocks))
    nrows = math.ceil(nblocks / ncols)
    widths = [len(cols) for _, cols, _ in blocks[0]["panels"]]
    npanels = len(widths)
    n_rows_cells = max(len(b["rows"]) for b in blocks)
    block_w = panel_w * sum(widths) + 1.0
    fig_w = ncols * block_w + 1.6 + (0.6 if group_labels else 0)
    fig_h = nrows * (row_h * n_rows_cells + 1.0) + 1.2 + (0.5 if legend_groups else 0)
    fig = _figure((max(fig_w, 6.0), max(fig_h, 3.5)))
    ratios = []
    for c in range(ncols):
        ratios += widths + ([0.9] if c < ncols - 1 else [])
    gs = fig.add_gridspec(nrows, len(ratios), width_ratios=ratios)
    axes, im = [], None
    for b, block in enumerate(blocks):
        r, c = divmod(b, ncols)
        base = c * (npanels + 1)
        for p, (side, cols, data) in enumerate(block["panels"]):
            ax = fig.add_subplot(gs[r, base + p])
            first = p == 0
            im = _heatmap(ax, data, block["rows"], cols, norm, cmap, show_rows=first,
                          annotate=annotate, row_colors=row_colors if first else None)
            ax.set_title(f"{block['title']}{side.capitalize()}" if first or not block["title"]
                         else side.capitalize(), fontsize=9)
            if group_rows is not None:
                _group_separators(ax, group_rows)
                if group_labels and p == npanels - 1:
                    _group_labels(ax, group_rows)
            if first and c == 0:
                ax.set_ylabel(row_name)
            if r == nrows - 1 or b + ncols >= nblocks:
                ax.set_xlabel(f"{side.capitalize()} module")
            axes.append(ax)
    cbar = fig.colorbar(im, ax=axes, shrink=min(1.0, 0.9 if nrows == 1 else 0.5), pad=0.02,
                        aspect=30 if nrows > 1 else 20)
    cbar.set_label(SCORE_LABEL + "\nred: needs more parameters   blue: pruned beyond P", fontsize=8)
    fig.suptitle(suptitle, fontsize=11)
    if legend_groups:
        _group_legend(fig, legend_groups)
    return fig


# --------------------------------------------------------------------------------------------------
# Figures 2 and 5: intrinsic subspace estimation (section 6.2, appendix C)
# --------------------------------------------------------------------------------------------------
def plot_subspace_heatmap(records, ratio: float, out_prefix: str,
                          lang_groups: Optional[Mapping[str, str]] = None, matrix: Optional[str] = "B",
                          annotate: bool = True) -> Saved:
    """Figure 2: eq. 6 score of each language (rows, grouped H/M/L/V) and module (columns),
    averaged over layers; encoder and decoder panels."""
    rows = _b_records(records, ratio, matrix)
    langs = ordered_languages(rows, lang_groups)
    names = [l for l, _ in langs]
    groups = [g for _, g in langs]
    agg = aggregate(rows, by=("side", "language", "module"), over="layer", matrix=matrix)
    panels, norm = _side_panels(agg, rows, "language", names)
    n_layers = len(_layers(rows))
    fig = _panel_grid(
        [{"title": "", "rows": names, "panels": panels}],
        suptitle=f"Intrinsic subspace estimation: eq. 6 score per language, mean over {n_layers} "
                 f"layers (P = {ratio:g})",
        row_name="Language", ncols=1, norm=norm, annotate=annotate,
        row_colors=[_group_color(g) for g in groups], group_rows=groups, group_labels=True,
        panel_w=0.55, row_h=0.34,
    )
    return _save(fig, out_prefix)


def plot_subspace_per_layer(records, ratio: float, out_prefix: str,
                            lang_groups: Optional[Mapping[str, str]] = None, matrix: Optional[str] = "B",
                            ncols: int = 3) -> Saved:
    """Figure 5: figure 2 for every layer (a grid of encoder/decoder heatmap pairs, 1-based layer
    titles), one colour scale for all layers."""
    rows = _b_records(records, ratio, matrix)
    langs = ordered_languages(rows, lang_groups)
    names = [l for l, _ in langs]
    groups = [g for _, g in langs]
    sides = _sides(rows)
    blocks = []
    for layer in _layers(rows):
        panels = []
        for side in sides:
            _, cols, data = pivot(rows, "language", "module", row_order=names, col_order=_modules(rows, side),
                                  where={"side": side, "layer": layer})
            panels.append((side, cols, data))
        blocks.append({"title": f"Layer {layer + 1} \u00b7 ", "rows": names, "panels": panels})
    norm = _norm(np.concatenate([p[2].ravel() for b in blocks for p in b["panels"]]))
    fig = _panel_grid(
        blocks, suptitle=f"Intrinsic subspace estimation per layer: eq. 6 score per language "
                         f"(P = {ratio:g}; layers 1-based)",
        row_name="Language", ncols=ncols, norm=norm, row_colors=[_group_color(g) for g in groups],
        group_rows=groups, legend_groups=groups,
    )
    return _save(fig, out_prefix)


# --------------------------------------------------------------------------------------------------
# Figures 4 and 6: language-specific pruning (section 7.3, appendix D)
# --------------------------------------------------------------------------------------------------
def plot_lsp_heatmap(records, ratio: float, out_prefix: str, matrix: Optional[str] = "B",
                     annotate: bool = True) -> Saved:
    """Figure 4: eq. 6 score of each layer (rows, 1-based) and module (columns), averaged over
    languages; encoder and decoder panels."""
    rows = _b_records(records, ratio, matrix)
    agg = aggregate(rows, by=("side", "layer", "module"), over="language", matrix=matrix)
    layers = _layers(rows)
    panels, norm = _side_panels(agg, rows, "layer", layers)
    n_langs = len({r["language"] for r in rows})
    fig = _panel_grid(
        [{"title": "", "rows": [l + 1 for l in layers], "panels": panels}],
        suptitle=f"Language-specific pruning: eq. 6 score per layer and module, mean over "
                 f"{n_langs} languages (P = {ratio:g})",
        row_name="Layer", ncols=1, norm=norm, annotate=annotate, panel_w=0.55, row_h=0.34,
    )
    return _save(fig, out_prefix)


def plot_lsp_per_language(records, ratio: float, out_prefix: str,
                          lang_groups: Optional[Mapping[str, str]] = None, matrix: Optional[str] = "B",
                          ncols: int = 4) -> Saved:
    """Figure 6: figure 4 for every language (one encoder/decoder pair per language, grouped by
    resource type), one colour scale for all."""
    rows = _b_records(records, ratio, matrix)
    layers = _layers(rows)
    sides = _sides(rows)
    blocks = []
    for lang, group in ordered_languages(rows, lang_groups):
        panels = []
        for side in sides:
            _, cols, data = pivot(rows, "layer", "module", row_order=layers, col_order=_modules(rows, side),
                                  where={"side": side, "language": lang})
            panels.append((side, cols, data))
        tag = f" ({group})" if group else ""
        blocks.append({"title": f"{lang}{tag} \u00b7 ", "rows": [l + 1 for l in layers], "panels": panels})
    norm = _norm(np.concatenate([p[2].ravel() for b in blocks for p in b["panels"]]))
    fig = _panel_grid(
        blocks, suptitle=f"Language-specific pruning per language: eq. 6 score per layer and module "
                         f"(P = {ratio:g})",
        row_name="Layer", ncols=ncols, norm=norm,
    )
    return _save(fig, out_prefix)


# --------------------------------------------------------------------------------------------------
# Figure 1: weight learning (section 4.1, eq. 5; section 6.1)
# --------------------------------------------------------------------------------------------------
def plot_weight_learning(wl_json: Union[str, Mapping], out_prefix: str) -> Saved:
    """Figure 1: learned source/target weights (eq. 5) of every encoder and decoder layer
    (1-based), four lines, with a star on the chosen (larger) weight of each layer."""
    wl = weight_learning.load(wl_json)
    fig = _figure((7.5, 4.6))
    ax = fig.add_subplot()
    styles = {
        ("encoder", 0): dict(color="#1f77b4", marker="o", linestyle="-", label="enc_src weights"),
        ("encoder", 1): dict(color="#ff7f0e", marker="s", linestyle="-", label="enc_tgt weights"),
        ("decoder", 0): dict(color="#2ca02c", marker="^", linestyle="--", label="dec_src weights"),
        ("decoder", 1): dict(color="#d62728", marker="v", linestyle="--", label="dec_tgt weights"),
    }
    n_max = 0
    for side in SIDES:
        if not wl[side]:
            continue
        pairs = np.array(wl[side])
        layers = np.arange(1, len(pairs) + 1)
        n_max = max(n_max, len(pairs))
        for k in (0, 1):
            ax.plot(layers, pairs[:, k], markersize=5, linewidth=1.6, **styles[side, k])
        chosen = np.array([pairs[i, INDEX_CHOICES.index(c)] for i, c in enumerate(wl[f"{side}_index"])])
        first = not any(c.get_label() == "chosen index (larger weight)" for c in ax.collections)
        ax.scatter(layers, chosen, s=170, marker="*", facecolor="none", edgecolor="black", linewidth=1.0,
                   zorder=5, label="chosen index (larger weight)" if first else None)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xticks(range(1, n_max + 1))
    ax.set_xlabel("Layer")
    ax.set_ylabel("Weight (softmax over src/tgt)")
    lo = min(min(p) for s in SIDES for p in wl[s])
    hi = max(max(p) for s in SIDES for p in wl[s])
    ax.set_ylim(max(0.0, min(lo, 0.45) - 0.05), min(1.0, max(hi, 0.55) + 0.05))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    enc = "".join("S" if c == "src" else "T" for c in wl["encoder_index"]) or "-"
    dec = "".join("S" if c == "src" else "T" for c in wl["decoder_index"]) or "-"
    ax.set_title(f"Weight learning: source vs target weights per layer\n"
                 f"chosen index (S=src, T=tgt)  encoder {enc}  decoder {dec}", fontsize=10)
    return _save(fig, out_prefix)


def plot_merge_weights(per_direction: Mapping[str, Mapping[str, Sequence[Sequence[float]]]], out_prefix: str) -> Saved:
    """The follow-up's figure 2: per direction (one panel each), the normalised target weight
    w_out / (w_in + w_out) of every layer, encoder layers then decoder layers (1-based), a dotted
    line at 0.5 (above it the target language's output adapter dominates)."""
    names = sorted(per_direction)
    if not names:
        raise ValueError("no direction with per-layer merge weights to plot")
    ncols = min(4, len(names))
    nrows = (len(names) + ncols - 1) // ncols
    fig = _figure((3.0 * ncols, 2.4 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    for k, name in enumerate(names):
        ax = axes[k // ncols][k % ncols]
        x, labels = 0, []
        for side, style in (("encoder", dict(color="#1f77b4", marker="o")), ("decoder", dict(color="#d62728", marker="s"))):
            pairs = np.array(per_direction[name][side], dtype=float).reshape(-1, 2)
            target = pairs[:, 1] / pairs.sum(axis=1)
            xs = np.arange(x + 1, x + len(pairs) + 1)
            ax.plot(xs, target, linewidth=1.4, markersize=4, label=side, **style)
            labels += [f"{side[0]}{i + 1}" for i in range(len(pairs))]
            x += len(pairs)
        ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xticks(range(1, x + 1))
        ax.set_xticklabels(labels, fontsize=6, rotation=90)
        ax.set_ylim(0.0, 1.0)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        if k % ncols == 0:
            ax.set_ylabel("target weight w_out")
    for k in range(len(names), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Learned merge weights per layer (LoRA_out(target) share)", fontsize=10)
    return _save(fig, out_prefix)


def plot_weight_history(wl_json: Union[str, Mapping], out_prefix: str) -> Saved:
    """The target weight ``w_tgt`` of every layer over training (the file's ``history``), encoder
    and decoder panels; the final choice is the side of 0.5 each line ends on."""
    wl = weight_learning.load(wl_json)
    history = wl.get("history")
    if not history:
        raise AnalysisError("weight learning: no 'history' to plot")
    import matplotlib

    if all(h["update"] is not None for h in history):
        x, xlabel = [h["update"] for h in history], "Update"
    elif all(h["epoch"] is not None for h in history):
        x, xlabel = [h["epoch"] for h in history], "Epoch"
    else:
        x, xlabel = list(range(1, len(history) + 1)), "Snapshot"
    sides = [s for s in SIDES if wl[s]]
    fig = _figure((5 * len(sides), 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(sides), sharey=True))
    for ax, side in zip(axes, sides):
        n = len(wl[side])
        cmap = matplotlib.colormaps["viridis"]
        for layer in range(n):
            ax.plot(x, [h[side][layer][1] for h in history], color=cmap(layer / max(1, n - 1)),
                    linewidth=1.2, marker="o" if len(x) < 30 else None, markersize=3)
        ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
        ax.set_title(f"{side.capitalize()}", fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        sm = matplotlib.cm.ScalarMappable(cmap=cmap, norm=matplotlib.colors.Normalize(1, max(2, n)))
        fig.colorbar(sm, ax=ax, label="Layer (1-based)")
    axes[0].set_ylabel("Target weight w_tgt (w_src = 1 \u2212 w_tgt)")
    fig.suptitle("Weight learning during training: target weight of every layer", fontsize=11)
    return _save(fig, out_prefix)


# --------------------------------------------------------------------------------------------------
# Figure 3: spBLEU per epoch (section 7.2)
# --------------------------------------------------------------------------------------------------
EpochTable = Sequence[Tuple[float, Mapping[str, Optional[float]]]]


def _side_panels(agg, rows, row_key: str, row_order):
    """One (side, modules, grid) panel per encoder/decoder side of ``row_key`` x module, and one
    diverging colour scale for all of them."""
    panels = []
    for side in _sides(rows):
        _, cols, data = pivot(agg, row_key, "module", row_order=row_order, col_order=_modules(rows, side),
                              where={"side": side})
        panels.append((side, cols, data))
    return panels, _norm(np.concatenate([p[2].ravel() for p in panels]))


def check_columns(epoch_tables: Mapping[str, EpochTable], columns: Sequence[str]) -> None:
    """Raise :class:`AnalysisError` naming the column and run/epoch where a value is missing."""
    if not columns:
        raise AnalysisError("no columns to plot")
    available = OrderedDict()
    for table in epoch_tables.values():
        for _, row in table:
            available.update((c, None) for c in row)
    for c in columns:
        if c not in available:
            raise AnalysisError(f"unknown column {c!r}; the results have {', '.join(available)}")
        for run, table in epoch_tables.items():
            for epoch, row in table:
                if row.get(c) is None:
                    raise AnalysisError(f"run {run!r} has no {c} value at epoch {epoch:g}")


def plot_curves(epoch_tables: Mapping[str, EpochTable], columns: Sequence[str], out_prefix: str,
                title: Optional[str] = None) -> Saved:
    """Figure 3: spBLEU per epoch, one line per run, one panel per column (e.g. H2H, V2V). A run
    with a single result (e.g. the pre-trained model) is drawn as a dashed horizontal reference."""
    if not epoch_tables:
        raise AnalysisError("no runs to plot")
    check_columns(epoch_tables, columns)
    n = len(columns)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig = _figure((4.6 * ncols + 1.8, 3.6 * nrows + 0.6))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    # the epoch axis spans the runs with several results; one-result runs are reference lines
    curves = [t for t in epoch_tables.values() if len(t) > 1] or list(epoch_tables.values())
    all_epochs = [e for t in curves for e, _ in t]
    lo, hi = min(all_epochs), max(all_epochs)
    import matplotlib

    colors = matplotlib.colormaps["tab10"]
    letters = "abcdefghijklmnopqrstuvwxyz"
    for k, (ax, column) in enumerate(zip(axes, columns)):
        for i, (run, table) in enumerate(epoch_tables.items()):
            pts = sorted(table, key=lambda t: t[0])
            color = colors(i % 10)
            if len(pts) == 1 and hi > lo:
                ax.axhline(pts[0][1][column], color=color, linestyle="--", linewidth=1.4,
                           label=f"{run} (single result)")
            else:
                ax.plot([e for e, _ in pts], [r[column] for _, r in pts], marker="o", markersize=3.5,
                        linewidth=1.5, color=color, label=run)
        ax.set_title(f"({letters[k % 26]}) {column} performance per epoch", fontsize=10)
        ax.set_xlabel("Epoch")
        ax.set_ylabel("spBLEU")
        ax.grid(alpha=0.3)
        if float(lo).is_integer() and float(hi).is_integer() and hi - lo <= 30:
            ax.set_xticks(range(int(lo), int(hi) + 1, 1 if hi - lo <= 15 else 2))
    for ax in axes[n:]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, title="Run", title_fontsize=8)
    fig.suptitle(title or "spBLEU per epoch by resource-group direction", fontsize=11)
    return _save(fig, out_prefix)


# --------------------------------------------------------------------------------------------------
# The logit lens (follow-up paper: why English is a good bridge)
# --------------------------------------------------------------------------------------------------
LENS_CMAP = "viridis"


def _lens_panels(fig, panels: Sequence[tuple], cols: Sequence[str], nrows: int, ncols: int) -> None:
    """Logit-lens heatmaps into ``fig``: one per ``(title, entry)`` of ``panels`` on an nrows x ncols
    grid (decoder layer x token-language category, colour = share, 0..1, annotated), row labels on
    the first column, one shared colour bar."""
    from matplotlib.colors import Normalize

    norm, cmap = Normalize(vmin=0.0, vmax=1.0), matplotlib_cmap(LENS_CMAP)
    axes, im = [], None
    for i, (title, entry) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        im = _heatmap(ax, np.asarray(entry["shares"], dtype=float), entry["layers"], cols, norm, cmap,
                      show_rows=i % ncols == 0, annotate=True)
        ax.tick_params(axis="x", labelrotation=45)
        ax.set_title(title, fontsize=9)
        if i % ncols == 0:
            ax.set_ylabel("Decoder layer")
        axes.append(ax)
    cbar = fig.colorbar(im, ax=axes, shrink=0.9 if nrows == 1 else 0.5, pad=0.02)
    cbar.set_label("share of the layer's top-k lens tokens", fontsize=8)


def plot_logit_lens(doc: Mapping, out_prefix: str, where: str = "logit-lens document", ncols: int = 3) -> Saved:
    """One heatmap per direction: decoder layer (rows, embeddings on top) x token-language category
    (columns), colour = share of the layer's top-k lens tokens (0..1, annotated)."""
    check_lens_document(doc, where)
    directions = list(doc["directions"].items())
    cols = category_labels(doc.get("bridge", "en"))
    ncols = max(1, min(ncols, len(directions)))
    nrows = math.ceil(len(directions) / ncols)
    n_layers = max(len(e["layers"]) for _, e in directions)
    fig = _figure((ncols * (0.55 * len(cols) + 1.2) + 1.2, nrows * (0.3 * n_layers + 1.6) + 0.8))
    _lens_panels(fig, [(f"{name} ({entry['positions']} positions, top-{entry['top_k']})", entry)
                       for name, entry in directions], cols, nrows, ncols)
    fig.suptitle(f"Logit lens: language of each decoder layer's top-k tokens (ratio {doc.get('ratio', '?')})",
                 fontsize=10)
    return _save(fig, out_prefix)


def plot_logit_lens_models(docs: Mapping[str, Mapping], out_prefix: str) -> Saved:
    """One heatmap per model (logit-lens documents of the same directions): decoder layer x
    token-language category, each model's directions pooled (:func:`..logit_lens.pooled_entry`)."""
    pooled = {name: pooled_entry(check_lens_document(doc, name)) for name, doc in docs.items()}
    first = next(iter(docs.values()))
    cols = category_labels(first.get("bridge", "en"))
    n_layers = max(len(e["layers"]) for e in pooled.values())
    fig = _figure((len(pooled) * (0.55 * len(cols) + 1.2) + 1.2, 0.3 * n_layers + 2.2))
    _lens_panels(fig, [(f"{name}\n({entry['positions']} positions)", entry) for name, entry in pooled.items()],
                 cols, 1, len(pooled))
    directions = ", ".join(first["directions"])
    fig.suptitle(f"Logit lens, all directions pooled ({len(first['directions'])}: {directions[:60]}"
                 f"{'...' if len(directions) > 60 else ''})", fontsize=10)
    return _save(fig, out_prefix)


def matplotlib_cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]
