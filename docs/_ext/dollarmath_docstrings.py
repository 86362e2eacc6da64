r"""Renders the maths of jaxreg's docstrings: ``$...$`` becomes :math:`...` and ``$$...$$`` a math block.

jaxreg's docstrings write their formulas as ``$x \odot m$`` (readable in ``help()`` and in an
editor); reStructuredText has no dollar maths, and a bare ``|z|`` would even be read as a
substitution. Doctest lines (``>>>``, ``...``), literal blocks and inline code are left alone.
"""

from __future__ import annotations

import re

_INLINE = re.compile(r"(?<![\\$\w`])\$(?=\S)(?P<tex>[^$]+?)(?<=\S)\$(?![\w$])")
_CODE = re.compile(r"``.*?``", re.S)


def _inline(text: str) -> str:
    """Replaces inline ``$...$`` outside ``code`` spans."""
    out, pos = [], 0
    for m in _CODE.finditer(text):
        out.append(_INLINE.sub(lambda g: f":math:`{g['tex']}`", text[pos : m.start()]))
        out.append(m.group())
        pos = m.end()
    out.append(_INLINE.sub(lambda g: f":math:`{g['tex']}`", text[pos:]))
    return "".join(out)


def convert(lines: list[str]) -> list[str]:
    result: list[str] = []
    para: list[str] = []  # the current block of prose lines
    literal_indent: int | None = None  # inside a literal block: its parent's indentation

    def flush() -> None:
        if not para:
            return
        text = "\n".join(para)
        stripped = text.strip()
        if stripped.startswith("$$") and stripped.endswith("$$") and stripped.count("$$") == 2:
            indent = para[0][: len(para[0]) - len(para[0].lstrip())]
            tex = " ".join(line.strip() for line in stripped[2:-2].splitlines())
            result.extend([f"{indent}.. math::", "", f"{indent}   {tex}"])
        else:
            result.extend(_inline(text).split("\n"))
        para.clear()

    for line in lines:
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None:
            if line.strip() and indent <= literal_indent:
                literal_indent = None
            else:
                result.append(line)
                continue
        stripped = line.strip()
        if not stripped:
            flush()
            result.append(line)
        elif stripped.startswith((">>>", "... ")) or stripped == "...":
            flush()
            result.append(line)
        else:
            para.append(line)
            if stripped.endswith("::"):
                flush()
                literal_indent = indent
    flush()
    return result


def _process(app, what, name, obj, options, lines: list[str]) -> None:
    lines[:] = convert(lines)


def setup(app):
    app.connect("autodoc-process-docstring", _process, priority=400)  # before napoleon (500)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
