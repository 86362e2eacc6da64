"""Checks the built documentation site in a real browser, offline: maths rendered, search answering.

Run after ``sphinx-build -b html docs docs/_build/html``, from the repository root::

    python docs/browser_check.py            # needs Chromium (Debian: apt-get install chromium)

It serves ``docs/_build/html`` with ``python -m http.server`` on a free port of 127.0.0.1 (stopped
at the end), opens pages in headless Chromium through Playwright (``playwright`` from PyPI, in
the ``docs`` extra; the browser is the system's, nothing is downloaded), and fails with one line
per problem unless

* every request of every page goes to that server: any other address is refused and reported
  (so MathJax, fonts and scripts must all come from the site itself);
* on the home page, a guide page with formulas and the API page of ``prox_l1``, MathJax has
  replaced every formula by an ``mjx-container`` element, reported no error (a TeX error, or an
  undefined macro drawn in red), and left no raw ``$$``, ``\\(``, ``\\[`` or ``$x$`` in the
  text outside code;
* the search page, ``search.html?q=prox_l1``, lists the API page of ``prox_l1``;
* no page logs a JavaScript error or fails to load a resource.

Screenshots of each page (its top; and its first displayed formula, when that is further down) go to
``docs/_build/screenshots/``.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
# (name, path under the site, whether it must contain formulas)
PAGES = (
    ("home", "index.html", False),
    ("guide", "guides/weight_regularization.html", True),
    ("api_prox_l1", "api/_autosummary/jaxreg.prox_l1.html", True),
)
SEARCH = ("search", "search.html?q=prox_l1", "api/_autosummary/jaxreg.prox_l1.html")
# Launch flags: no sandbox (CI runs as root), no GPU, and no traffic of the browser's own.
FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)
TIMEOUT_MS = 30_000
VIEWPORT = {"width": 1280, "height": 900}

_INLINE_DOLLARS = re.compile(r"(?<![\\$\w])\$(?=\S)[^$\n]{1,80}?(?<=\S)\$(?![\w$])")  # $x$ left as text
# The text a reader sees, outside code, scripts and MathJax's own output.
_VISIBLE_TEXT = """() => {
  const main = (document.querySelector("main") || document.body).cloneNode(true);
  main.querySelectorAll("pre, code, script, style, mjx-container, .highlight").forEach(e => e.remove());
  return main.textContent;
}"""
# MathJax's errors: a TeX error becomes an <merror> (mjx-merror in the page); an undefined macro
# is drawn as its name in red by MathJax's noundefined extension (mathcolor="red" in the MathML).
_MATH_COUNTS = """() => {
  const mathml = [];
  if (window.MathJax && MathJax.startup && MathJax.startup.document && MathJax.startup.toMML) {
    for (const item of MathJax.startup.document.math) mathml.push(MathJax.startup.toMML(item.root));
  }
  return {
    sources: document.querySelectorAll("span.math, div.math").length,
    rendered: document.querySelectorAll("mjx-container").length,
    errors: Array.from(document.querySelectorAll("mjx-container"))
      .map(c => c.querySelector("[data-mjx-error], mjx-merror"))
      .filter(e => e !== null)
      .map(e => e.getAttribute("data-mjx-error") || e.textContent),
    undefined: mathml.filter(m => m.includes('mathcolor="red"')).map(m => m.replace(/\\s+/g, " ")),
  };
}"""
_MATHJAX_DONE = """async () => {
  if (!(window.MathJax && window.MathJax.startup && window.MathJax.startup.promise)) return false;
  await window.MathJax.startup.promise;
  return true;
}"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """``python -m http.server`` on a free port of 127.0.0.1 serving ``folder``; yields its base URL."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(base + "index.html", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"http.server did not start on 127.0.0.1:{port}") from None
                time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def check(html: Path, screenshots: Path, chromium: str) -> list[str]:
    """Runs every check; returns the problems found (empty: all passed). Prints one line per page."""
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    screenshots.mkdir(parents=True, exist_ok=True)
    with serve(html) as base, sync_playwright() as p:
        host = urlsplit(base).netloc
        browser = p.chromium.launch(executable_path=chromium, args=list(FLAGS))
        try:
            context = browser.new_context(viewport=VIEWPORT, service_workers="block")
            refused: list[str] = []

            def route(r):
                if urlsplit(r.request.url).netloc == host or r.request.url.startswith(("data:", "blob:")):
                    r.continue_()
                else:
                    refused.append(r.request.url)
                    r.abort()

            context.route("**/*", route)
            for name, path, has_math in PAGES:
                problems += _check_page(context, base, name, path, has_math, screenshots)
            problems += _check_search(context, base, screenshots)
            problems += [f"request outside 127.0.0.1 refused: {url}" for url in sorted(set(refused))]
        finally:
            browser.close()
    return problems


def _open(context, url: str, name: str, problems: list[str]):
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("console", lambda m: m.type == "error" and problems.append(f"{name}: console error: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"{name}: JavaScript error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"{name}: failed to load {r.url}: {r.failure}"))
    page.on(
        "response",
        lambda r: r.status >= 400 and problems.append(f"{name}: HTTP {r.status} for {r.url}"),
    )
    response = page.goto(url, wait_until="load")
    if response is None or response.status != 200:
        problems.append(f"{name}: {url} answered {response and response.status}")
    return page


def _check_page(context, base: str, name: str, path: str, has_math: bool, shots: Path) -> list[str]:
    problems: list[str] = []
    start = time.monotonic()
    page = _open(context, base + path, name, problems)
    typeset = page.evaluate(_MATHJAX_DONE)
    counts = page.evaluate(_MATH_COUNTS)
    if has_math and not counts["sources"]:
        problems.append(f"{name}: no formula on the page, expected some")
    if counts["sources"] and not typeset:
        problems.append(f"{name}: {counts['sources']} formulas but MathJax did not load")
    if counts["rendered"] < counts["sources"]:
        problems.append(
            f"{name}: {counts['sources']} formulas, {counts['rendered']} rendered by MathJax (mjx-container)"
        )
    for message in counts["errors"]:
        problems.append(f"{name}: MathJax error: {message}")
    for mathml in counts["undefined"]:
        problems.append(f"{name}: an undefined TeX macro, drawn in red by MathJax: {mathml[:300]}")
    text = page.evaluate(_VISIBLE_TEXT)
    for raw in ("$$", "\\(", "\\)", "\\[", "\\]", "\\begin{", ":math:`"):
        if raw in text:
            at = text.index(raw)
            problems.append(
                f"{name}: raw {raw!r} in the text: ...{' '.join(text[at - 40 : at + 40].split())}..."
            )
    for m in _INLINE_DOLLARS.finditer(text):
        problems.append(f"{name}: raw inline maths in the text: {m.group()!r}")
    page.screenshot(path=str(shots / f"{name}.png"))
    formula = page.query_selector("mjx-container[display='true']")
    box = formula.bounding_box() if formula is not None else None
    if formula is not None and box is not None and box["y"] + box["height"] > VIEWPORT["height"]:
        formula.scroll_into_view_if_needed()  # below the fold: a second screenshot around it
        page.mouse.wheel(0, -200)  # the text above the formula in view too
        page.wait_for_timeout(100)
        page.screenshot(path=str(shots / f"{name}_formula.png"))
    print(
        f"{name:12s} {path}: {counts['rendered']} mjx-container for {counts['sources']} formulas, "
        f"{time.monotonic() - start:.1f} s"
    )
    page.close()
    return problems


def _check_search(context, base: str, shots: Path) -> list[str]:
    name, path, expected = SEARCH
    problems: list[str] = []
    start = time.monotonic()
    page = _open(context, base + path, name, problems)
    try:
        page.wait_for_selector("#search-results ul.search li a", state="attached")
    except Exception:
        problems.append(f"{name}: {path} listed no result within {TIMEOUT_MS / 1000:.0f} s")
    links = page.eval_on_selector_all("#search-results ul.search li a", "els => els.map(e => e.href)")
    if not any(urlsplit(link).path.endswith("/" + expected) for link in links):
        problems.append(f"{name}: {path} does not list {expected} among {len(links)} results: {links[:5]}")
    page.screenshot(path=str(shots / f"{name}.png"))
    print(f"{name:12s} {path}: {len(links)} results, {time.monotonic() - start:.1f} s")
    page.close()
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python docs/browser_check.py", description=__doc__.splitlines()[0])
    p.add_argument("--html", default=str(ROOT / "docs/_build/html"), help="the built site (%(default)s)")
    p.add_argument("--screenshots", default=str(ROOT / "docs/_build/screenshots"), help="(%(default)s)")
    p.add_argument("--chromium", default="/usr/bin/chromium", help="the browser binary (%(default)s)")
    args = p.parse_args(argv)
    html = Path(args.html)
    if not (html / "index.html").is_file():
        print(f"browser check: {html / 'index.html'} not found: build the site first", file=sys.stderr)
        return 2
    if not Path(args.chromium).is_file():
        print(
            f"browser check: no browser at {args.chromium}: apt-get install chromium, or pass --chromium PATH",
            file=sys.stderr,
        )
        return 2
    start = time.monotonic()
    problems = check(html, Path(args.screenshots), args.chromium)
    for line in problems:
        print(f"browser check: {line}", file=sys.stderr)
    verdict = "FAILED" if problems else "passed"
    print(f"browser check {verdict} in {time.monotonic() - start:.1f} s; screenshots in {args.screenshots}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
