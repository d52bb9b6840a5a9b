"""The book's figure style and the plots chapters share.

One palette for the whole book (Okabe & Ito's colour-blind-safe set), one colour per method so that
"RigL" is the same colour in every chapter, readable font sizes, and a mean-with-spread plot used by
every "metric versus setting over seeds" figure.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.lines import Line2D

from dstlib import stats

# Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")

METHOD_COLORS = {
    "dense": "#000000",
    "static": "#999999",
    "set": PALETTE[0],
    "rigl": PALETTE[1],
    "mest": PALETTE[2],
    "granet": PALETTE[3],
    "gmp": PALETTE[4],
    "snip": PALETTE[5],
    "lth": PALETTE[3],
    "omp": PALETTE[2],
    "omp_erk": PALETTE[6],
    "erk_random": "#999999",
    "uniform_random": PALETTE[1],
}

METHOD_LABELS = {"dense": "Dense", "static": "Static sparse", "set": "SET", "rigl": "RigL", "mest": "MEST",
                 "granet": "GraNet", "gmp": "GMP", "snip": "SNIP", "lth": "LTH", "omp": "OMP", "omp_erk": "OMP (ERK)",
                 "erk_random": "Random (ERK)", "uniform_random": "Random (uniform)"}


def use_book_style() -> None:
    """Set the matplotlib defaults of the book (call once per notebook)."""
    mpl.rcParams.update({
        "figure.figsize": (6.4, 4.0),
        "figure.dpi": 110,
        "savefig.dpi": 150,
        "font.size": 11,
        "axes.titlesize": 12,
        "axes.labelsize": 11,
        "legend.fontsize": 10,
        "lines.linewidth": 2.0,
        "lines.markersize": 6,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.prop_cycle": mpl.cycler(color=PALETTE),
        "image.cmap": "cividis",
    })


def method_color(method: str) -> str:
    """The book-wide colour of ``method`` (a palette colour for methods without a fixed one)."""
    return METHOD_COLORS.get(method, PALETTE[zlib.crc32(method.encode()) % len(PALETTE)])


def method_label(method: str) -> str:
    """The printed name of ``method`` (``"rigl"`` -> ``"RigL"``)."""
    return METHOD_LABELS.get(method, method)


def mean_with_spread(ax: plt.Axes, frame: pd.DataFrame, x: str, y: str, *, hue: str = "method",
                     order: Sequence[str] | None = None, spread: str = "std", marker: str = "o") -> plt.Axes:
    """Plot the mean of ``y`` over seeds against ``x``, one line per ``hue`` value, with a shaded band
    of +/- one standard deviation (``spread="std"``) or min-max (``spread="range"``)."""
    groups = order if order is not None else list(dict.fromkeys(frame[hue]))
    for key in groups:
        part = frame[frame[hue] == key]
        if part.empty:
            continue
        stats = part.groupby(x)[y].agg(["mean", "std", "min", "max"]).sort_index()
        low, high = ((stats["mean"] - stats["std"].fillna(0), stats["mean"] + stats["std"].fillna(0))
                     if spread == "std" else (stats["min"], stats["max"]))
        color = method_color(key) if hue == "method" else None
        label = method_label(key) if hue == "method" else str(key)
        line, = ax.plot(stats.index, stats["mean"], marker=marker, color=color, label=label)
        ax.fill_between(stats.index, low, high, color=line.get_color(), alpha=0.18, linewidth=0)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    return ax


def seeds_by_method(ax: plt.Axes, frame: pd.DataFrame, y: str, *, order: Sequence[str] | None = None) -> plt.Axes:
    """One column per method: every seed's ``y`` as a dot (slightly spread sideways) and the mean with a
    bar of +/- one standard deviation; for a single setting, where a line over settings says nothing."""
    methods = order if order is not None else list(dict.fromkeys(frame["method"]))
    for position, method in enumerate(methods):
        values = frame.loc[frame["method"] == method, y].to_numpy()
        if len(values) == 0:
            continue
        offsets = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(1)
        color = method_color(method)
        ax.scatter(position + offsets, values, s=14, color=color, alpha=0.5, linewidths=0)
        spread = values.std(ddof=1) if len(values) > 1 else 0.0
        ax.errorbar(position + 0.3, values.mean(), yerr=spread, fmt="o", color=color, capsize=3)
    ax.set_xticks(range(len(methods)), [method_label(m) for m in methods])
    ax.set_ylabel(y)
    return ax


def show_mask(ax: plt.Axes, mask: torch.Tensor, title: str = "") -> plt.Axes:
    """Draw a 2-D view of a mask (conv masks ``(out, in, kh, kw)`` are shown as ``out x (in*kh*kw)``);
    active connections are bright."""
    matrix = mask.detach().reshape(mask.shape[0], -1).float().cpu().numpy()
    ax.imshow(matrix, aspect="auto", interpolation="nearest", cmap="cividis", vmin=0, vmax=1)
    ax.set_title(title)
    ax.set_xlabel("input connections")
    ax.set_ylabel("output unit")
    ax.grid(False)
    return ax


def summary_table(frame: pd.DataFrame, by: Sequence[str], metrics: Sequence[str], digits: int = 3) -> pd.DataFrame:
    """Mean +/- std over seeds of ``metrics`` grouped by ``by``, as printable strings."""
    stats = frame.groupby(list(by))[list(metrics)].agg(["mean", "std"])
    out = pd.DataFrame(index=stats.index)
    for metric in metrics:
        mean, std = stats[(metric, "mean")], stats[(metric, "std")].fillna(0.0)
        out[metric] = [f"{m:.{digits}f} ± {s:.{digits}f}" for m, s in zip(mean, std, strict=True)]
    return out


def seeds_mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of per-seed results."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


# One colour per verdict outcome, from the colour-blind-safe palette; the outcome is also written out.
OUTCOME_COLORS = {stats.REPRODUCED: PALETTE[2], stats.CONTRADICTED: PALETTE[1], stats.NOT_REPRODUCED: PALETTE[0],
                  stats.INCONCLUSIVE: PALETTE[7]}


def forest(verdicts: Sequence[stats.Verdict], ax: plt.Axes | None = None) -> plt.Figure:
    """Forest plot of a chapter's verdicts (from :func:`dstlib.stats.judge`), one row per claim, top down.

    Each row: the estimate (dot), its interval at the effect's level (thick line), the family-corrected
    interval (thin line), the paper's effect (open diamond), coloured by outcome with the outcome written
    at the right; a vertical line marks no difference. Undefined intervals (NaN) draw the dot only.
    """
    if len(verdicts) == 0:
        raise ValueError(f"verdicts={verdicts!r}: allowed a non-empty sequence of Verdict (from stats.judge)")
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 1.2 + 0.45 * len(verdicts)), layout="constrained")
    rows = np.arange(len(verdicts))[::-1]
    for row, verdict in zip(rows, verdicts, strict=True):
        color = OUTCOME_COLORS[verdict.outcome]
        effect = verdict.effect
        if np.isfinite(verdict.corrected_low):
            ax.hlines(row, verdict.corrected_low, verdict.corrected_high, color=color, linewidth=1.2)
        if np.isfinite(effect.low):
            ax.hlines(row, effect.low, effect.high, color=color, linewidth=4.5, alpha=0.8)
        ax.plot(effect.estimate, row, "o", color=color, markersize=7, zorder=3)
        ax.plot(verdict.paper_effect, row, "D", markerfacecolor="none", markeredgecolor="black", markersize=7,
                zorder=4)
        ax.annotate(verdict.outcome, xy=(1.01, row), xycoords=("axes fraction", "data"), va="center",
                    color=color, fontsize=10, annotation_clip=False)
    ax.axvline(0, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(rows, [verdict.name for verdict in verdicts])
    ax.set_ylim(-0.7, len(verdicts) - 0.3)
    ax.grid(False, axis="y")
    units = sorted({verdict.units for verdict in verdicts if verdict.units})
    ax.set_xlabel("difference a - b" + (f" ({', '.join(units)})" if units else ""))
    handles = [Line2D([], [], color="grey", linewidth=4.5, label=f"{verdicts[0].effect.level:.0%} interval"),
               Line2D([], [], color="grey", linewidth=1.2, label="family-corrected interval"),
               Line2D([], [], marker="D", linestyle="none", markerfacecolor="none", markeredgecolor="black",
                      label="paper's effect")]
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False, fontsize=9)
    return ax.figure
