"""Draws the performance page's figures from a benchmark JSON file.

Usage, from the repository root (needs matplotlib, in the ``demo`` and ``test`` extras)::

    python -m benchmarks --json benchmarks/results/cpu.json
    python -m benchmarks.figure benchmarks/results/cpu.json --out docs/performance

writes two PNG files into ``--out``:

* ``dropout_vs_x2.png``: for each dropout-family op, its time relative to an elementwise
  ``x * 2`` of the same array (the memory-bandwidth floor) against the array size, forward and
  forward+backward, with Flax's equivalent where there is one; log-log axes.
* ``optimizer_overhead.png``: the time of one optimizer step with each regularizer relative to
  the optimizer alone (``optax.sgd`` or ``optax.adamw``), and the same ratio for optax's own
  equivalent or the penalty put in the loss, where the suite times one.

Every number drawn is a ratio the suite measured side by side in one process
(``ratio = baseline_ms / jaxreg_ms`` in the JSON), never typed by hand.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

DROPOUT_FIGURE = "dropout_vs_x2.png"
OPTIMIZER_FIGURE = "optimizer_overhead.png"
COLUMNS = 4
_MODES = {"fwd": ("forward", "#0072B2"), "fwd+bwd": ("forward+backward", "#D55E00")}


def _size_label(n: int) -> str:
    k = round(math.log2(n))
    return f"$2^{{{k}}}$" if 2**k == n else str(n)


def _title(doc: dict[str, Any]) -> str:
    v = doc.get("versions", {})
    return (
        f"{doc.get('backend', '?')}, {doc.get('device', '?')}; jax {v.get('jax', '?')}, "
        f"{doc.get('started_utc', '?')[:10]}, commit {doc.get('git_commit') or '?'}; medians of "
        f"{doc.get('repeats', '?')} repeats"
    )


def dropout_series(doc: dict[str, Any]) -> dict[str, dict[tuple[str, str, str], list[tuple[int, float]]]]:
    """op -> {(mode, dtype, who): [(size, time relative to x * 2), ...] by size}.

    ``who`` is ``"jaxreg"`` (jaxreg's time over ``x * 2``'s, timed side by side) or ``"flax"``
    (Flax's time over ``x * 2``'s: jaxreg's relative time times Flax's time over jaxreg's,
    both measured in the same case).
    """
    cases: dict[tuple[str, str, str, int], dict[str, dict[str, Any]]] = {}
    for r in doc["results"]:
        if r.get("group") == "dropout":
            key = (r["op"], r["mode"], r.get("dtype", "float32"), r["size"])
            cases.setdefault(key, {})[r["baseline_kind"]] = r
    out: dict[str, dict[tuple[str, str, str], list[tuple[int, float]]]] = {}
    for (op, mode, dtype, size), by in cases.items():
        x2 = by.get("elementwise")
        if x2 is None:
            continue
        relative = 1.0 / x2["ratio"]  # jaxreg_ms / x2_ms
        series = out.setdefault(op, {})
        series.setdefault((mode, dtype, "jaxreg"), []).append((size, relative))
        if "flax" in by:
            series.setdefault((mode, dtype, "flax"), []).append((size, relative * by["flax"]["ratio"]))
    for series in out.values():
        for points in series.values():
            points.sort()
    return out


def optimizer_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per regularized step, in the file's order: its time over the optimizer alone's.

    ``{"step", "optimizer", "relative", "others": [(baseline label, its time over the optimizer
    alone's), ...]}``; each ratio comes from rows of the same case, timed side by side.
    """
    by_step: dict[str, dict[str, Any]] = {}
    for r in doc["results"]:
        if r.get("group") != "optim":
            continue
        step = by_step.setdefault(r["name"], {"step": r["name"].removesuffix(" step"), "rows": []})
        step["optimizer"] = r.get("optimizer", r["name"].split(" ")[0])
        step["rows"].append(r)
    out = []
    for step in by_step.values():
        alone = next((r for r in step["rows"] if r.get("baseline_kind") == "none"), None)
        if alone is None:
            continue
        others = [
            (r["baseline"], r["baseline_ms"] / alone["baseline_ms"])
            for r in step["rows"]
            if r is not alone and r.get("baseline_kind") != "none"
        ]
        out.append(
            {
                "step": step["step"],
                "optimizer": step["optimizer"],
                "relative": 1.0 / alone["ratio"],  # jaxreg_ms / alone_ms
                "others": others,
            }
        )
    return out


def dropout_figure(doc: dict[str, Any]):
    """The small multiples of ``dropout_series``: one panel per op, shared log axes."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator

    series = dropout_series(doc)
    if not series:
        raise ValueError("the JSON file has no dropout-family case timed against x * 2")
    ops = list(series)
    columns = min(COLUMNS, len(ops))
    rows = math.ceil(len(ops) / columns)
    fig = Figure(figsize=(3.2 * columns, 0.9 + 2.7 * rows), dpi=90, layout="constrained")
    fig.suptitle(
        "Dropout family, training mode, rate 0.1: time relative to x * 2 of the same array (1 = the "
        f"memory-bandwidth floor)\n{_title(doc)}",
        fontsize=10.5,
    )
    axes = fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
    values = [v for s in series.values() for points in s.values() for _, v in points]
    sizes = sorted({n for s in series.values() for points in s.values() for n, _ in points})
    low, high = min([*values, 1.0]), max(values)
    ticks = [2.0**k for k in range(math.floor(math.log2(low)), math.ceil(math.log2(high)) + 1)]
    for ax in axes.flat[len(ops) :]:
        ax.set_visible(False)
    for ax, op in zip(axes.flat, ops, strict=False):
        ax.axhline(1.0, color="0.3", lw=1, ls=":")
        for (mode, dtype, who), points in sorted(series[op].items(), key=lambda kv: kv[0][2] != "jaxreg"):
            label, color = _MODES.get(mode, (mode, "0.4"))
            xs, ys = zip(*points, strict=True)
            style = {"marker": "o", "ms": 4, "lw": 1.6} if who == "jaxreg" else {"ls": "--", "lw": 1.1}
            dtype_label = "" if dtype == "float32" else f" {dtype}"
            name = f"jaxreg {label}" if who == "jaxreg" else f"Flax {label}"
            ax.plot(xs, ys, color=color, label=name + dtype_label, **style)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_yticklabels([f"{t:g}x" for t in ticks])
        ax.set_xticks(sizes, [_size_label(n) for n in sizes])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_ylim(ticks[0] / 1.15, ticks[-1] * 1.15)
        ax.set_title(op, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("elements (float32)", fontsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel("time / time of x * 2", fontsize=9)
    handles = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=4, fontsize=9)
    return fig


def optimizer_figure(doc: dict[str, Any]):
    """Horizontal bars of ``optimizer_rows``, one group per optimizer; 1 = the optimizer alone."""
    from matplotlib.figure import Figure

    rows = optimizer_rows(doc)
    if not rows:
        raise ValueError("the JSON file has no optimizer-step case timed against the optimizer alone")
    optim_sizes = [r["size"] for r in doc["results"] if r.get("group") == "optim"]
    n = max(set(optim_sizes), key=optim_sizes.count)  # the tree most cases run on
    size_of = {
        r["name"].removesuffix(" step"): r["size"] for r in doc["results"] if r.get("group") == "optim"
    }
    fig = Figure(figsize=(9.5, 1.3 + 0.32 * len(rows)), dpi=90, layout="constrained")
    ax = fig.add_subplot()
    ys = list(range(len(rows)))[::-1]
    colors = {"sgd": "#0072B2", "adamw": "#009E73"}
    ax.barh(ys, [r["relative"] for r in rows], color=[colors.get(r["optimizer"], "0.5") for r in rows])
    markers = {"optax": ("D", "optax's own equivalent"), "penalty-in-loss": ("x", "the penalty in the loss")}
    drawn = set()
    for y, r in zip(ys, rows, strict=True):
        ax.annotate(
            f"{r['relative']:.2f}x",
            (max([r["relative"], *(v for _, v in r["others"])]), y),
            xytext=(7, 0),
            textcoords="offset points",
            va="center",
            fontsize=8.5,
        )
        for label, value in r["others"]:
            kind = "optax" if "optax." in label else "penalty-in-loss"
            marker, legend = markers[kind]
            ax.plot(
                value,
                y,
                marker,
                color="black",
                ms=6,
                mfc="none" if marker == "D" else None,
                label=None if kind in drawn else legend,
            )
            drawn.add(kind)
    ax.axvline(1.0, color="0.3", lw=1, ls=":")
    labels = [
        r["step"] + (f" ({size_of[r['step']] / 1e6:.2g}M params)" if size_of.get(r["step"], n) != n else "")
        for r in rows
    ]
    ax.set_yticks(ys, labels, fontsize=9)
    ax.set_xscale("log")  # from about 1x to the SVD and top-k steps' tens or hundreds
    lowest = min(min([r["relative"], *(v for _, v in r["others"])]) for r in rows)
    ax.set_xlim(
        min(0.5, lowest / 1.5), max(max([r["relative"], *(v for _, v in r["others"])]) for r in rows) * 2
    )
    ax.set_xlabel("time of one step / time of the optimizer alone (1 = no overhead; log scale)")
    ax.set_title(
        f"One optimizer step on {n / 1e6:.1f}M float32 parameters, bars: jaxreg\n{_title(doc)}",
        fontsize=10.5,
    )
    ax.grid(axis="x", alpha=0.3)
    if drawn:
        ax.legend(loc="lower right", fontsize=9)
    return fig


def write(json_path: str | Path, out: str | Path) -> list[Path]:
    """Draws both figures of ``json_path`` into the folder ``out``; returns the files written."""
    doc = json.loads(Path(json_path).read_text())
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in ((DROPOUT_FIGURE, dropout_figure), (OPTIMIZER_FIGURE, optimizer_figure)):
        draw(doc).savefig(folder / name, pil_kwargs={"optimize": True})
        written.append(folder / name)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.figure", description=__doc__.splitlines()[0])
    p.add_argument("json", help="results written by python -m benchmarks --json")
    p.add_argument("--out", default="docs/performance", help="folder of the PNG files (%(default)s)")
    args = p.parse_args(argv)
    for path in write(args.json, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
