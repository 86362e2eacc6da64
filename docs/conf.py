"""Sphinx configuration of jaxreg's documentation.

Build from the repository root with warnings as errors (what ``.ci/run`` does)::

    pip install -e '.[docs]'
    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)  # the checkout's jaxreg, even when another copy is installed
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_ext"))

import jaxreg  # noqa: E402

project = "jaxreg"
author = "jaxreg authors"
copyright = "jaxreg authors"
version = release = jaxreg.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
    "dollarmath_docstrings",  # docs/_ext: $...$ in docstrings -> :math:
    "mathjax_offline",  # docs/_ext: MathJax served from the site (_static/mathjax), not a CDN
]

# MathJax 3.2.2 from the PyPI package sphinx-mathjax-offline (the docs extra), copied into the
# built site by docs/_ext/mathjax_offline.py: the maths render without network. A relative path
# is relative to _static/.
mathjax_path = "mathjax/tex-chtml.js"

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "README.md", "demo/*.json"]
templates_path = ["_templates"]

# Docstrings: Google style (Args/Returns/Examples/References), rendered by napoleon.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# `name` in a docstring is a cross-reference when it names something documented here
# (jaxreg.dropout, prox_l1) and plain code otherwise (optax.masked, flax.linen.Dropout):
# nitpicky stays off because the docstrings name many objects of other libraries.
default_role = "py:obj"
nitpicky = False

autosummary_generate = True
autosummary_imported_members = True
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
add_module_names = False

# Guide pages: MyST Markdown with $...$ and $$...$$ maths, tables and heading anchors.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "sphinx_book_theme"
html_title = f"jaxreg {release}"
html_static_path: list[str] = []
html_theme_options = {
    "show_toc_level": 2,
    "home_page_in_toc": True,
}
html_last_updated_fmt = None
# The light/dark mode before the reader picks one: following the system (without it the theme
# logs "Got invalid theme mode" on a first visit).
html_context = {"default_mode": "auto"}

# Show optax's alias by name instead of its expansion (a union of a dozen array types).
autodoc_type_aliases = {
    "optax.ScalarOrSchedule": "optax.ScalarOrSchedule",
    "ScalarOrSchedule": "optax.ScalarOrSchedule",
}
