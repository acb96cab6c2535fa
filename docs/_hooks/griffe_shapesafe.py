"""A griffe extension (``extensions:`` of mkdocstrings in ``mkdocs.yml``) for two habits of
shapesafe's Google-style docstrings that griffe's parser reads otherwise:

- ``Example:`` (singular, as in Google's own style guide) is read by griffe as an admonition,
  so its doctest is rendered as Markdown quotes; it is read as ``Examples:`` here, a code
  section (the doctests still run in the test suite, unchanged);
- ``strides, dilation: ints or pairs`` in ``Args:`` documents two parameters at once; here it
  becomes one entry per parameter with the same description, so each appears in the table
  and the check that every documented parameter exists still holds.

The source files are not changed.
"""

import re
from typing import Any

import griffe

EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
SHARED = re.compile(r"^(\s+)(\w+(?:,\s*\w+)+):(.*)$")
SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Attributes):\s*$")


def split_shared_entries(text: str) -> str:
    """``a, b: text`` (and its more-indented continuation lines) as ``a: text`` and ``b: text``."""
    lines = text.split("\n")
    out: list[str] = []
    in_section, i = False, 0
    while i < len(lines):
        line = lines[i]
        if SECTION.match(line):
            in_section = True
        elif line.strip() and not line.startswith((" ", "\t")):
            in_section = False
        shared = SHARED.match(line) if in_section else None
        if shared is None:
            out.append(line)
            i += 1
            continue
        indent, names, first = shared.group(1), shared.group(2), shared.group(3)
        body = [first]
        i += 1
        while (
            i < len(lines)
            and lines[i].strip()
            and len(lines[i]) - len(lines[i].lstrip()) > len(indent)
        ):
            body.append("\n" + lines[i])
            i += 1
        for name in (n.strip() for n in names.split(",")):
            out.append(f"{indent}{name}:" + "".join(body))
    return "\n".join(out)


class ShapesafeDocstrings(griffe.Extension):
    """Rewrites the two habits above in every docstring as it is loaded."""

    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is None:
            return
        obj.docstring.value = split_shared_entries(EXAMPLE.sub(r"\1Examples:", obj.docstring.value))
