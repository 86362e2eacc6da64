"""The figure of ``jaxreg demo``: test accuracy per epoch, first-layer weights, gap per configuration."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxreg.demo._train import CONFIGS, Result

HISTOGRAMS = ("none", "l1", "l1-prox", "l2")  # whose first-layer weights get a histogram


def _color(name: str):
    from matplotlib import colormaps

    return colormaps["tab10"](list(CONFIGS).index(name) % 10)


def save_figure(results: Sequence[Result], path: Path, title: str) -> None:
    """Writes the three-part PNG figure of ``results`` to ``path`` (Agg backend, no pyplot state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 8.5), dpi=90, layout="constrained")
    fig.suptitle(title, fontsize=11)
    grid = fig.add_gridspec(2, 4, height_ratios=(1.25, 1))

    curves = fig.add_subplot(grid[0, :2])
    for r in results:
        style = (
            {"color": "black", "lw": 2.2} if r.config == "none" else {"color": _color(r.config), "lw": 1.3}
        )
        curves.plot(np.arange(1, len(r.test_curve) + 1), r.test_curve, label=r.config, **style)
    curves.set_xlabel("epoch")
    curves.set_ylabel("test accuracy (clean labels)")
    curves.set_title("test accuracy per epoch")
    curves.set_ylim(max(0.0, min(min(r.test_curve[len(r.test_curve) // 10 :]) for r in results) - 0.05), 1.0)
    curves.grid(alpha=0.3)
    curves.legend(fontsize=8, ncol=2, loc="lower right")

    bars = fig.add_subplot(grid[0, 2:])
    names = [r.config for r in results][::-1]
    gaps = [r.gap for r in results][::-1]
    bars.barh(names, gaps, color=[_color(n) if n != "none" else "black" for n in names])
    for y, (g, r) in enumerate(zip(gaps, results[::-1], strict=True)):
        bars.annotate(
            f"{g:+.3f}  (test {r.test_accuracy:.3f})",
            (g, y),
            xytext=(4 if g >= 0 else -4, 0),
            textcoords="offset points",
            ha="left" if g >= 0 else "right",
            va="center",
            fontsize=8,
        )
    bars.axvline(0.0, color="gray", lw=0.8)
    lo, hi = min([*gaps, 0.0]), max([*gaps, 0.0])
    bars.set_xlim(lo - 0.6 * (hi - lo) - 0.02, hi + 0.6 * (hi - lo) + 0.02)
    bars.set_xlabel("gap = train accuracy (noisy labels) - test accuracy")
    bars.set_title("generalization gap per configuration")
    bars.grid(axis="x", alpha=0.3)

    shown = [r for name in HISTOGRAMS for r in results if r.config == name]
    if shown:
        limit = max(float(np.abs(r.first_layer).max()) for r in shown) or 1.0
        edges = np.linspace(-limit, limit, 81)
        for i, r in enumerate(shown):
            ax = fig.add_subplot(grid[1, i])
            w = r.first_layer.ravel()
            ax.hist(w, bins=list(edges), color="black" if r.config == "none" else _color(r.config))
            ax.set_yscale("log")
            ax.set_title(f"{r.config}: {np.mean(w == 0):.0%} exactly 0", fontsize=10)
            ax.set_xlabel("first-layer weight")
            if i == 0:
                ax.set_ylabel("count (log)")
    fig.savefig(path)
