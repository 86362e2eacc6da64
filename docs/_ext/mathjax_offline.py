"""Serves MathJax from the built site instead of a CDN, so that the pages' maths render offline.

``sphinx.ext.mathjax`` loads MathJax from a CDN by default: a page read without network (or
behind a firewall) then shows raw ``\\(...\\)``. The PyPI package ``sphinx-mathjax-offline``
(in the ``docs`` extra, pinned) ships MathJax 3.2.2's files; this extension copies the
``tex-chtml.js`` component and everything it loads on demand (TeX extensions, the CHTML
fonts, the menu and accessibility components) into ``_static/mathjax/`` of the built site,
and ``conf.py`` points ``mathjax_path`` there. The package's own Sphinx hook is not used: it
copies every combined component and sets ``mathjax_path`` itself.
"""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

from sphinx.errors import ExtensionError

DIST = "sphinx-mathjax-offline"  # PyPI: MathJax 3.2.2's files under sphinx-mathjax-offline/static/mathjax
ENTRY = "tex-chtml.js"  # the combined component the pages load (TeX in, CommonHTML out)
TARGET = "mathjax"  # under the site's _static/


def source() -> Path:
    """The installed MathJax folder; a clear error naming the install command if it is missing."""
    try:
        dist = importlib.metadata.distribution(DIST)
    except importlib.metadata.PackageNotFoundError:
        raise ExtensionError(
            f"mathjax_offline: the PyPI package {DIST!r} (MathJax's files) is not installed: "
            "pip install -e '.[docs]'"
        ) from None
    folder = Path(str(dist.locate_file(f"{DIST}/static/mathjax")))
    if not (folder / ENTRY).is_file():
        raise ExtensionError(f"mathjax_offline: {folder / ENTRY} not found in {DIST} {dist.version}")
    return folder


def _ignore_other_components(folder: str, names: list[str]) -> list[str]:
    """At the top level, every combined component but ``ENTRY`` (they duplicate it, 1-2 MB each)."""
    if Path(folder) != source():
        return []
    return [n for n in names if n.endswith(".js") and n != ENTRY]


def _copy(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / TARGET
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source(), target, ignore=_ignore_other_components)


def setup(app):
    source()  # fail at the start of the build, not after it
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
