"""The README and the documentation pages: their code runs, their tables are generated, their
links resolve, every public name has an API entry, and they speak to users.

The site itself is built with warnings as errors by ``.ci/run``
(``sphinx-build -W --keep-going -b html docs docs/_build/html``); these tests need no Sphinx.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)
API = DOCS / "api"


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), re.S | re.M)


def _run(code: str, where: str) -> dict:
    namespace: dict = {"__name__": "docs_example"}
    exec(compile(code, where, "exec"), namespace)
    return namespace


def _page(name: str) -> Path:
    return DOCS / name


# --- the code runs ---------------------------------------------------------------------------------


def test_readme_examples_run():
    blocks = _python_blocks(README)
    assert len(blocks) == 3  # the optax chain, dropout in a jitted step, the NNX model
    for i, block in enumerate(blocks):
        _run(block, f"README.md (example {i + 1})")  # each asserts its own claims


@pytest.mark.parametrize(
    "page",
    [p.relative_to(DOCS).as_posix() for p in PAGES if _python_blocks(p)],
)
def test_every_python_block_of_the_docs_runs(page):
    for i, block in enumerate(_python_blocks(DOCS / page)):
        _run(block, f"docs/{page} (block {i + 1})")


def test_quick_start_trains():
    (block,) = _python_blocks(_page("index.md"))
    ns = _run(block, "docs/index.md")
    assert int(ns["opt_state"][1][0].count) == 3  # prox_l1's step count: three steps taken
    assert float(ns["params"]["b1"][0]) != 0.0  # the biases train and are not thresholded


def test_weight_regularization_example():
    block = _python_blocks(_page("guides/weight_regularization.md"))[0]  # the others: by the test above
    ns = _run(block, "docs/guides/weight_regularization.md")
    # 1e-4 * l2_penalty of a ones (784, 128) kernel, the bias masked out: 1e-4 * 784 * 128 / 2.
    np.testing.assert_allclose(float(ns["loss_term"]), 1e-4 * 784 * 128 / 2, rtol=1e-6)
    params, tx = ns["params"], ns["tx"]  # the last tx: inject_hyperparams(add_l1)
    state = tx.init(params)
    for _ in range(2):
        updates, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
    # linear_schedule(0, 1e-4, 1000) at step 1 is 1e-7: the L1 subgradient sign(1) * 1e-7.
    np.testing.assert_allclose(updates["dense"]["kernel"], 1e-7, rtol=1e-5)


def test_dropout_training_step_example():
    (block,) = _python_blocks(_page("guides/dropout.md"))
    ns = _run(block, "docs/guides/dropout.md")
    params = {"w1": jnp.ones((3, 8)) / 3, "w2": jnp.ones((8, 8)) / 8, "w3": jnp.ones((8, 1)) / 8}
    x, y = jnp.ones((4, 3)), jnp.zeros((4, 1))
    p1, p2 = ns["train_step"](params, x, y, 0), ns["train_step"](params, x, y, 1)
    assert not np.array_equal(p1["w1"], p2["w1"])  # a different mask at each step


def test_constraints_example():
    blocks = _python_blocks(_page("guides/constraints.md"))
    assert len(blocks) == 2  # the tour, then a stack of layers (which asserts its own claims)
    ns = _run(blocks[0], "docs/guides/constraints.md")
    assert ns["x_mixed"].shape == (32, 784) and ns["y_mixed"].shape == (32, 10)
    np.testing.assert_allclose(np.asarray(ns["y_mixed"]).sum(axis=1), 1.0, rtol=1e-5)


def test_flax_examples():
    # linen, NNX, and per-layer drop-path rates in an NNX stack; they assert their claims
    assert len(_python_blocks(_page("guides/flax.md"))) == 3


# --- generated content -----------------------------------------------------------------------------


def test_demo_table_is_the_committed_default_run():
    records = json.loads((DOCS / "demo" / "results.json").read_text())
    from jaxreg.demo import _train

    assert [r["config"] for r in records] == list(_train.CONFIGS)
    rows = {}
    for line in _page("guides/demo.md").read_text().splitlines():
        cells = line.split()
        if len(cells) == 7 and cells[0] in _train.CONFIGS:
            rows[cells[0]] = cells[1:]
    assert set(rows) == set(_train.CONFIGS)
    for r in records:
        expected = [
            f"{r['train_accuracy']:.3f}",
            f"{r['test_accuracy']:.3f}",
            f"{r['gap']:+.3f}",
            f"{r['final_loss']:.3f}",
            f"{r['zero_fraction']:.1%}",
            f"{r['seconds']:.1f}",
        ]
        assert rows[r["config"]] == expected, r["config"]
    by_name = {r["config"]: r for r in records}
    for name in ("l2", "l1-prox", "dropout"):  # the page's claim: each beats `none` on test accuracy and gap
        assert by_name[name]["test_accuracy"] > by_name["none"]["test_accuracy"], name
        assert by_name[name]["gap"] < by_name["none"]["gap"], name
    assert (DOCS / "demo" / "demo.png").stat().st_size < 300_000


BENCH_BEGIN, BENCH_END = "<!-- BEGIN benchmarks -->", "<!-- END benchmarks -->"


def test_performance_tables_are_rendered_from_the_benchmark_json():
    # Every committed result file, in the page's order: cpu.json, then gpu.json (or tpu.json).
    results = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "benchmarks" / "results").glob("*.json"))
    assert results[0] == "benchmarks/results/cpu.json", results
    rendered = subprocess.run(
        [sys.executable, "-m", "benchmarks.readme", *results],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    page = _page("performance.md").read_text()
    section = page[page.index(BENCH_BEGIN) + len(BENCH_BEGIN) : page.index(BENCH_END)]
    assert section.strip() == rendered.strip()


def test_dieharder_table_matches_the_result_file():
    page = _page("guides/samplers.md").read_text()
    results = (ROOT / "benchmarks" / "dieharder_result.txt").read_text()
    p_values = re.findall(r"\b0\.\d{8}\b", page[page.index("## dieharder") :])
    assert len(p_values) >= 40
    for p in p_values:
        assert p in results, p


# --- every public name has an API entry ------------------------------------------------------------


def _autosummary_entries(rst: Path) -> set[str]:
    entries, inside = set(), False
    for line in rst.read_text().splitlines():
        if line.startswith(".. autosummary::"):
            inside = True
        elif inside and line and not line.startswith(" "):
            inside = False
        elif inside and re.fullmatch(r"   [A-Za-z_]\w*", line):
            entries.add(line.strip())
    return entries


def test_every_public_name_has_an_api_entry():
    import jaxreg.equinox
    import jaxreg.linen
    import jaxreg.masks
    import jaxreg.nnx

    subpackages = {"equinox", "linen", "masks", "nnx"}
    assert _autosummary_entries(API / "jaxreg.rst") == set(jaxreg.__all__) - subpackages
    assert _autosummary_entries(API / "masks.rst") == set(jaxreg.masks.__all__)
    assert _autosummary_entries(API / "linen.rst") == set(jaxreg.linen.__all__)
    assert _autosummary_entries(API / "nnx.rst") == set(jaxreg.nnx.__all__)
    assert _autosummary_entries(API / "equinox.rst") == set(jaxreg.equinox.__all__)
    index = (API / "index.md").read_text()
    for page in ("jaxreg", "masks", "linen", "nnx", "equinox"):
        assert f"\n{page}\n" in index, page


# --- links, length, and text that speaks to users --------------------------------------------------


def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", path.read_text(), re.M)}


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.exists(), f"{path.name}: {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{path.name}: {target}"


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 200


_INTERNAL = re.compile(
    r"\bissues? \d|\bissues \d+ and \d|<!-- (?:BEGIN|END)|\bseed's\b|\bseed (?:article|rule|as written|claim)\b",
    re.I,
)


def _docstrings() -> list[tuple[str, str]]:
    out = []
    for path in sorted((ROOT / "jaxreg").rglob("*.py")):
        text = path.read_text()
        for doc in re.findall(r'(?s)[rR]?"""(.*?)"""', text):
            out.append((str(path.relative_to(ROOT)), doc))
    return out


def test_user_facing_text_cites_no_issue_numbers_nor_the_seed():
    examples = sorted((ROOT / "examples").glob("*.py"))  # read by users as they are: all their text
    texts = [(str(p.relative_to(ROOT)), p.read_text()) for p in [README, *PAGES, *examples]]
    for name, text in texts + _docstrings():
        # The benchmark renderer finds its section of the performance page by these two markers
        # (HTML comments: not shown on the page).
        text = text.replace(BENCH_BEGIN, "").replace(BENCH_END, "")
        hits = _INTERNAL.findall(text)
        assert not hits, (name, hits)


def _browser_check():
    """docs/browser_check.py, the check of the built site in Chromium that `.ci/run` runs after the build."""
    spec = importlib.util.spec_from_file_location("browser_check", DOCS / "browser_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_browser_check_finds_inline_maths_left_as_text():
    pattern = _browser_check()._INLINE_DOLLARS
    assert [m.group() for m in pattern.finditer(r"with $x_1$ and $\lambda \ge 0$ left")] == [
        "$x_1$",
        r"$\lambda \ge 0$",
    ]
    assert not list(pattern.finditer("it costs $5 and $10, or US$3; echo $HOME$PATH"))


def test_browser_check_serves_on_the_loopback_only_while_open(tmp_path):
    (tmp_path / "index.html").write_text("<p>site</p>")
    with _browser_check().serve(tmp_path) as base:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", base)
        with urllib.request.urlopen(base + "index.html", timeout=5) as response:
            assert response.read() == b"<p>site</p>"
    with pytest.raises(OSError):  # the server was stopped
        urllib.request.urlopen(base + "index.html", timeout=5)


# --- the axis tables: which entries form one norm (constraints) and one group (group lasso) ------

# A row of those tables, in the guides (Markdown) and in the docstrings (reST): the kernel, the
# axis, then `w[...]` for one norm of the constraints and `w[...]` for one group of the group
# lasso, a letter where the index is fixed and ':' where the norm runs.
_AXIS_ROW = re.compile(
    r"^\s*\|?\s*(?P<kernel>Dense|HWIO)\s+`+\((?:in, out|kh, kw, in, out)\)`+\s*\|?\s*"
    r"`+(?P<axis>-?\d+|\((?:-?\d+, )*-?\d+\))`+(?P<rest>.*)$"
)
_KERNELS = {"Dense": (4, 6), "HWIO": (3, 2, 4, 5)}
_GROUP_LASSO = ("group_lasso_penalty", "prox_group_lasso", "prox_sparse_group_lasso")
_CONSTRAINTS = ("max_norm", "unit_norm", "min_max_norm")
_AXIS_TABLE_PAGES = ("guides/weight_regularization.md", "guides/constraints.md")


def _axis_rows(text: str, where: str) -> list[tuple]:
    rows = []
    for line in text.splitlines():
        m = _AXIS_ROW.match(line)
        if m:
            exprs = re.findall(r"`+(w\[[^\]`]*\])`+", m["rest"])
            assert len(exprs) >= 2, f"{where}: a row without its norm and its group: {line}"
            axis = eval(m["axis"])  # an int or a tuple of ints (the regex allows nothing else)
            rows.append((m["kernel"], axis, exprs[0], exprs[1], where))
    return rows


def _fixed_axes(expr: str, ndim: int, where: str) -> tuple[int, ...]:
    """The axes where ``w[...]`` has a letter (a fixed index) rather than ':'."""
    entries = [e.strip() for e in expr[2:-1].split(",")]
    assert len(entries) == ndim, f"{where}: {expr} for a {ndim}-D kernel"
    assert all(e == ":" or re.fullmatch(r"[a-z]", e) for e in entries), f"{where}: {expr}"
    return tuple(d for d, e in enumerate(entries) if e != ":")


def test_axis_tables_say_which_entries_form_a_group_and_a_norm():
    """Every row of the axis tables (two guides, two docstrings), against the functions."""
    from helpers import group_slices, random_normal

    import jaxreg

    sources = {page: (DOCS / page).read_text() for page in _AXIS_TABLE_PAGES}
    for name in ("group_lasso_penalty", "max_norm"):
        sources[f"jaxreg.{name}"] = getattr(jaxreg, name).__doc__
    rows = []
    for where, text in sources.items():
        found = _axis_rows(text, where)
        assert len(found) >= 6, f"{where}: {len(found)} axis table rows"
        rows += found
    # The same kernel and axis say the same thing wherever they appear.
    said = {}
    for kernel, axis, norm_expr, group_expr, where in rows:
        first = said.setdefault((kernel, axis), (norm_expr, group_expr, where))
        assert first[:2] == (norm_expr, group_expr), (
            f"{where} and {first[2]} differ on {kernel} axis={axis!r}"
        )
    # The functions of each row, on kernels with distinct sizes along every axis.
    kernels = {k: np.asarray(random_normal(i, s), np.float64) for i, (k, s) in enumerate(_KERNELS.items())}
    cases, thresholds = list(said), []
    for kernel, axis in cases:  # a group threshold between two group norms: some groups vanish
        w, group_expr = kernels[kernel], said[(kernel, axis)][1]
        norms = sorted(
            np.linalg.norm(w[g]) for g in group_slices(w.shape, _fixed_axes(group_expr, w.ndim, ""))
        )
        thresholds.append(0.5 * (norms[len(norms) // 2 - 1] + norms[len(norms) // 2]))
    c = 0.05  # a radius below every norm: max_norm and min_max_norm(c, c) rescale every vector to c

    def apply(kernel, axis, t):
        w = jnp.asarray(kernels[kernel], jnp.float32)
        zero = jnp.zeros_like(w)
        out = {"group_lasso_penalty": jax.grad(lambda v: jaxreg.group_lasso_penalty(v, axis=axis))(w)}
        txs = {
            "prox_group_lasso": jaxreg.prox_group_lasso(t, 1.0, axis=axis),
            "prox_sparse_group_lasso": jaxreg.prox_sparse_group_lasso(0.0, t, 1.0, axis=axis),
            "max_norm": jaxreg.max_norm(c, axis=axis),
            "unit_norm": jaxreg.unit_norm(axis=axis),
            "min_max_norm": jaxreg.min_max_norm(c, c, axis=axis),
        }
        for name, tx in txs.items():
            out[name] = w + tx.update(zero, tx.init(w), w)[0]
        return out

    outputs = jax.jit(lambda: [apply(*case, t) for case, t in zip(cases, thresholds, strict=True)])()
    for (kernel, axis), t, got in zip(cases, thresholds, outputs, strict=True):
        w = kernels[kernel]
        norm_expr, group_expr, where = said[(kernel, axis)]
        msg = f"{where}: {kernel} axis={axis!r}"
        # group lasso: the entries of a group share the row's letters; the penalty's gradient is
        # w_g / ||w_g|| and the prox lands on w_g max(1 - t / ||w_g||, 0)
        grad, shrunk = np.zeros_like(w), np.zeros_like(w)
        for g in group_slices(w.shape, _fixed_axes(group_expr, w.ndim, where)):
            n = np.linalg.norm(w[g])
            grad[g], shrunk[g] = w[g] / n, w[g] * max(1 - t / n, 0)
        np.testing.assert_allclose(got["group_lasso_penalty"], grad, rtol=1e-5, err_msg=msg)
        for name in _GROUP_LASSO[1:]:
            np.testing.assert_allclose(got[name], shrunk, rtol=1e-5, atol=1e-6, err_msg=f"{msg} {name}")
        # constraints: one norm per index of the row's letters, over its ':' axes
        unit = np.zeros_like(w)
        for g in group_slices(w.shape, _fixed_axes(norm_expr, w.ndim, where)):
            unit[g] = w[g] / np.linalg.norm(w[g])
        for name in _CONSTRAINTS:
            want = unit if name == "unit_norm" else c * unit
            np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-7, err_msg=f"{msg} {name}")


def test_both_meanings_of_axis_are_said_prominently():
    import jaxreg

    for name in _GROUP_LASSO + _CONSTRAINTS:
        doc = getattr(jaxreg, name).__doc__
        assert re.search(r"\*\*[^*]*``axis``[^*]*opposite[^*]*\*\*", doc), name
    for page in _AXIS_TABLE_PAGES:
        text = (DOCS / page).read_text()
        assert re.search(r"^#+ `axis`: .* mean opposite things$", text, re.M), page
        assert ":::{important}" in text, page
