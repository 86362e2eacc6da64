"""The figure of ``jaxreg demo``: accuracies and gap, then one panel pair per regularizer against ``none``.

Left, one row per configuration: train accuracy (on the noisy labels it was trained on, open
circle) and test accuracy (clean digits, filled circle); the segment between them is the gap.
Right, small multiples, one column per regularizer: its test accuracy per epoch over the
whole run (the y-range holds every epoch), and the histogram of its final first-layer weights,
each drawn over the same plot of ``none`` in grey (the reference), on axes shared by all panels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxreg.demo._train import CONFIGS, Result

REFERENCE = "none"  # drawn in grey in every panel
# One colour per family (Okabe-Ito, safe for colour-blind readers): a panel shows one
# configuration and the grey reference, so no two colours ever need telling apart.
_FAMILY_COLORS = {
    "none": "black",
    "l2": "#0072B2",  # weight decay: blue
    "adamw": "#0072B2",
    "l1": "#D55E00",  # L1 and its proximal relatives: vermillion
    "l1-prox": "#D55E00",
    "group-lasso": "#D55E00",
    "dropout": "#009E73",  # the dropouts: green
    "dropout+l2": "#009E73",
    "gaussian-dropout": "#009E73",
}
_REFERENCE_COLOR = "0.55"
COLUMNS = 4  # small multiples per row


def color(name: str) -> Any:
    """The colour of configuration ``name``: by family, tab10 for one not listed."""
    if name in _FAMILY_COLORS:
        return _FAMILY_COLORS[name]
    from matplotlib import colormaps

    return colormaps["tab10"](list(CONFIGS).index(name) % 10 if name in CONFIGS else 0)


def curve_limits(results: Sequence[Result]) -> tuple[float, float]:
    """A y-range holding every epoch's test accuracy of every configuration, first epochs included."""
    values = np.concatenate([np.asarray(r.test_curve, dtype=float) for r in results])
    low = math.floor(float(values.min()) * 20 - 1e-9) / 20  # down to a multiple of 0.05
    return max(0.0, low - 0.02), 1.0


def _summary(ax, results: Sequence[Result]) -> None:
    rows = list(range(len(results)))[::-1]  # first configuration on top
    for y, r in zip(rows, results, strict=True):
        c = color(r.config)
        ax.plot([r.test_accuracy, r.train_accuracy], [y, y], color=c, lw=2.5, solid_capstyle="butt")
        ax.plot(r.train_accuracy, y, "o", mfc="white", mec=c, mew=1.8, ms=8)
        ax.plot(r.test_accuracy, y, "o", color=c, ms=8)
        ax.annotate(
            f"gap {r.gap:+.3f}",
            (max(r.train_accuracy, r.test_accuracy), y),
            xytext=(9, 0),
            textcoords="offset points",
            va="center",
            fontsize=8.5,
        )
    reference = [r for r in results if r.config == REFERENCE]
    if reference:
        ax.axvline(reference[0].test_accuracy, color=_REFERENCE_COLOR, lw=1, ls="--", zorder=0)
    ax.set_yticks(rows, [r.config for r in results])
    low = min(min(r.train_accuracy, r.test_accuracy) for r in results)
    ax.set_xlim(max(0.0, low - 0.04), 1.09)  # room for the labels right of 1.0
    ax.set_xticks([x for x in ax.get_xticks() if x <= 1.0 + 1e-9])
    ax.set_ylim(-0.7, len(results) - 0.3)
    ax.set_xlabel("accuracy")
    ax.set_title(
        "test (filled) and train (open) accuracy\ngap = train - test; dashed: test accuracy of none",
        fontsize=10,
    )
    ax.grid(axis="x", alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _curve(ax, r: Result, reference: Result | None, limits: tuple[float, float]) -> None:
    epochs = np.arange(1, len(r.test_curve) + 1)
    if reference is not None and reference is not r:
        ax.plot(
            np.arange(1, len(reference.test_curve) + 1),
            reference.test_curve,
            color=_REFERENCE_COLOR,
            lw=1.2,
            label=reference.config,
        )
    ax.plot(epochs, r.test_curve, color=color(r.config), lw=1.4, label=r.config)
    ax.set_ylim(*limits)
    ax.set_xlim(0, len(r.test_curve) + 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8.5, frameon=False)
    ax.set_title(f"{r.config}: test accuracy {r.test_accuracy:.3f}", fontsize=9.5)


def _histogram(ax, r: Result, reference: Result | None, edges: np.ndarray) -> None:
    if reference is not None and reference is not r:
        ax.hist(
            reference.first_layer.ravel(),
            bins=list(edges),
            histtype="step",
            color=_REFERENCE_COLOR,
            lw=1.2,
            zorder=3,  # the outline stays visible over the bars
        )
    w = r.first_layer.ravel()
    ax.hist(w, bins=list(edges), color=color(r.config), alpha=0.85)
    ax.set_yscale("log")
    ax.set_xlim(edges[0], edges[-1])
    zeros = float(np.mean(w == 0))
    ax.set_title(
        f"first layer: {zeros:.0%} exactly 0" if zeros else "first layer: no weight exactly 0",
        fontsize=9.5,
        fontweight="bold" if zeros else "normal",
    )


def build_figure(results: Sequence[Result], title: str):
    """The figure of ``results`` (a matplotlib ``Figure``, Agg, no pyplot state)."""
    from matplotlib.figure import Figure

    if not results:
        raise ValueError("save_figure: results is empty, there is nothing to plot")
    by_name = {r.config: r for r in results}
    reference = by_name.get(REFERENCE)
    panels = [r for r in results if r.config != REFERENCE] or list(results)
    columns = min(COLUMNS, len(panels))
    blocks = math.ceil(len(panels) / columns)

    fig = Figure(figsize=(4.2 + 3.05 * columns, 0.8 + 4.6 * blocks), dpi=90, layout="constrained")
    fig.suptitle(f"{title}\ngrey in every panel: {REFERENCE}, the unregularized reference", fontsize=11)
    grid = fig.add_gridspec(
        2 * blocks, columns + 1, width_ratios=(1.45, *([1] * columns)), height_ratios=(1.5, 1) * blocks
    )
    _summary(fig.add_subplot(grid[:, 0]), results)

    limits = curve_limits(results)
    limit = max(float(np.abs(r.first_layer).max()) for r in results) or 1.0
    edges = np.linspace(-limit, limit, 61)
    curve_axes, hist_axes = [], []
    for i, r in enumerate(panels):
        block, column = divmod(i, columns)
        share_c = {"sharey": curve_axes[0]} if curve_axes else {}
        share_h = {"sharex": hist_axes[0], "sharey": hist_axes[0]} if hist_axes else {}
        ax_c = fig.add_subplot(grid[2 * block, column + 1], **share_c)
        ax_h = fig.add_subplot(grid[2 * block + 1, column + 1], **share_h)
        _curve(ax_c, r, reference, limits)
        _histogram(ax_h, r, reference, edges)
        ax_c.set_xlabel("epoch", fontsize=9)
        ax_h.set_xlabel("first-layer weight", fontsize=9)
        if column == 0:
            ax_c.set_ylabel("test accuracy (clean labels)", fontsize=9)
            ax_h.set_ylabel("count (log)", fontsize=9)
        curve_axes.append(ax_c)
        hist_axes.append(ax_h)
    return fig


def save_figure(results: Sequence[Result], path: Path, title: str) -> None:
    """Writes the PNG figure of ``results`` to ``path``."""
    build_figure(results, title).savefig(path, pil_kwargs={"optimize": True})
