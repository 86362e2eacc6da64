"""The demo figure's layout, on made-up results (no training): what each panel shows, against the inputs."""

import numpy as np
import pytest

from jaxreg.demo._plot import REFERENCE, build_figure
from jaxreg.demo._train import CONFIGS, Result


def _results(names, epochs=12, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i, name in enumerate(names):
        curve = np.clip(0.8 + 0.05 * rng.standard_normal(epochs), 0.0, 1.0)
        curve[0] = 0.05 + 0.01 * i  # a first epoch far below the rest: must not be clipped
        weights = (0.1 + 0.05 * i) * rng.standard_normal((8, 6))
        weights[0, : i % 4] = 0.0
        train, test = float(rng.uniform(0.7, 1.0)), float(curve[-1])
        out.append(Result(name, train, test, train - test, 0.5, 0.0, 1.0, [float(c) for c in curve], weights))
    return out


def _panels(fig):
    summary, *rest = fig.axes
    return summary, rest[0::2], rest[1::2]  # curve and histogram of each regularizer, in order


def test_every_regularizer_gets_a_curve_and_a_histogram_over_the_reference():
    results = _results(CONFIGS)
    reference = results[0]
    assert reference.config == REFERENCE
    summary, curves, hists = _panels(build_figure(results, "title"))
    others = results[1:]
    assert len(curves) == len(hists) == len(others)
    assert [t.get_text() for t in summary.get_yticklabels()] == list(CONFIGS)
    for r, ax_c, ax_h in zip(others, curves, hists, strict=True):
        assert ax_c.get_title().startswith(f"{r.config}:")
        lines = {line.get_label(): np.asarray(line.get_ydata()) for line in ax_c.get_lines()}
        np.testing.assert_array_equal(lines[REFERENCE], reference.test_curve)
        np.testing.assert_array_equal(lines[r.config], r.test_curve)
        low, high = ax_c.get_ylim()
        every = np.concatenate([x.test_curve for x in results])
        assert low <= every.min() and high >= every.max()  # no epoch clipped, the first included
        step, *bars = ax_h.patches  # the reference's outline, then one bar per bin
        assert step.get_fill() is False
        assert sum(b.get_height() for b in bars) == r.first_layer.size  # every weight in a bin
        zeros = int(np.sum(r.first_layer == 0))
        assert (f"{zeros / r.first_layer.size:.0%} exactly 0" in ax_h.get_title()) == (zeros > 0)
    assert len({ax.get_ylim() for ax in curves}) == 1  # one y-range for all panels
    assert len({ax.get_xlim() for ax in hists}) == 1


def test_subsets_without_the_reference_and_with_it_alone():
    summary, curves, hists = _panels(build_figure(_results(["l1", "dropout"]), "t"))
    assert [t.get_text() for t in summary.get_yticklabels()] == ["l1", "dropout"]
    assert len(curves) == 2 and all(len(ax.get_lines()) == 1 for ax in curves)  # no reference line
    assert all(p.get_fill() for ax in hists for p in ax.patches)  # and no reference outline
    _, curves, hists = _panels(build_figure(_results([REFERENCE]), "t"))
    assert len(curves) == len(hists) == 1
    with pytest.raises(ValueError, match="results is empty"):
        build_figure([], "t")
