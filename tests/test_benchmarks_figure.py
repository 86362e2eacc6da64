"""``python -m benchmarks.figure``: draws the performance page's figures from the committed JSON.

The values drawn are checked against the times in the JSON (``jaxreg_ms``, ``baseline_ms``),
not against the ``ratio`` field the generator reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import benchmarks_module

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "benchmarks" / "results" / "cpu.json"


@pytest.fixture(scope="module")
def figure():
    return benchmarks_module("figure")


@pytest.fixture(scope="module")
def doc():
    return json.loads(COMMITTED.read_text())


def test_command_writes_both_pngs_from_the_committed_json(figure, tmp_path, capsys):
    assert figure.main([str(COMMITTED), "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.count("wrote ") == 2
    for name in ("dropout_vs_x2.png", "optimizer_overhead.png"):
        data = (tmp_path / "out" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
        assert f"(performance/{name})" in (ROOT / "docs" / "performance.md").read_text()


def test_dropout_panels_draw_each_ops_time_over_x2(figure, doc):
    rows = [r for r in doc["results"] if r.get("group") == "dropout"]
    ops = list(dict.fromkeys(r["op"] for r in rows))
    fig = figure.dropout_figure(doc)
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert sorted(panels) == sorted(ops)
    for op in ops:
        lines = {line.get_label(): line for line in panels[op].get_lines()}
        for mode, label in (("fwd", "forward"), ("fwd+bwd", "forward+backward")):
            case = [
                r
                for r in rows
                if r["op"] == op and r["mode"] == mode and r.get("dtype", "float32") == "float32"
            ]
            x2 = sorted(
                (r["size"], r["jaxreg_ms"] / r["baseline_ms"])
                for r in case
                if r["baseline_kind"] == "elementwise"
            )
            line = lines[f"jaxreg {label}"]
            np.testing.assert_allclose(line.get_xdata(), [n for n, _ in x2])
            np.testing.assert_allclose(line.get_ydata(), [v for _, v in x2], rtol=1e-9)
            flax = {r["size"]: r["baseline_ms"] for r in case if r["baseline_kind"] == "flax"}
            assert (f"Flax {label}" in lines) == bool(flax)
            if flax:
                x2_ms = {r["size"]: r["baseline_ms"] for r in case if r["baseline_kind"] == "elementwise"}
                expected = [flax[n] / x2_ms[n] for n in sorted(flax)]
                np.testing.assert_allclose(lines[f"Flax {label}"].get_ydata(), expected, rtol=1e-9)
        low, high = panels[op].get_ylim()
        assert all(low <= y <= high for line in lines.values() for y in line.get_ydata())


def test_optimizer_bars_are_each_steps_time_over_the_optimizer_alone(figure, doc):
    rows = [r for r in doc["results"] if r.get("group") == "optim"]
    alone = {r["name"]: r for r in rows if r["baseline_kind"] == "none"}
    ax = figure.optimizer_figure(doc).axes[0]
    bars = ax.patches
    labels = [t.get_text() for t in ax.get_yticklabels()]
    sizes = [r["size"] for r in rows]
    common = max(set(sizes), key=sizes.count)  # the tree the title names; other sizes are in the label
    assert labels == [
        name.removesuffix(" step") + ("" if r["size"] == common else f" ({r['size'] / 1e6:.2g}M params)")
        for name, r in alone.items()
    ]
    for bar, name in zip(bars, alone, strict=True):
        r = alone[name]
        assert bar.get_width() == pytest.approx(r["jaxreg_ms"] / r["baseline_ms"], rel=1e-9)
    # one marker per other baseline (optax's equivalent, the penalty in the loss), at its time over alone
    markers = sorted(float(line.get_xdata()[0]) for line in ax.get_lines() if line.get_marker() in ("D", "x"))
    expected = sorted(
        r["baseline_ms"] / alone[r["name"]]["baseline_ms"] for r in rows if r["baseline_kind"] != "none"
    )
    np.testing.assert_allclose(markers, expected, rtol=1e-9)


def test_a_file_without_the_cases_is_a_clear_error(figure, doc):
    empty = {**doc, "results": []}
    with pytest.raises(ValueError, match="no dropout-family case"):
        figure.dropout_figure(empty)
    with pytest.raises(ValueError, match="no optimizer-step case"):
        figure.optimizer_figure(empty)
