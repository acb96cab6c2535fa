"""mkdocs hooks of the shapesafe site (``hooks:`` in ``mkdocs.yml``); nothing here downloads.

- ``notebooks/*.ipynb`` at the repository root become pages (mkdocs-jupyter renders them from
  their committed outputs), without copies or symlinks under ``docs/``.
- ``<!-- api-summary -->`` on an API page becomes a table of that page's ``::: name``
  directives with each name's summary line, section by section (optax's autosummary).
- ``<!-- api-index -->`` becomes the index of every API page, grouped the same way.
- ``<!-- include: CONTRIBUTING.md -->`` becomes that file of the repository root, its links to
  ``docs/...`` made relative.
- ``<!-- benchmark: NAME -->`` becomes the tables of benchmark ``NAME``, rendered from
  ``benchmarks/results/*.json`` by ``docs/_hooks/benchmark_tables.py``.
"""

import functools
import re
import sys
from pathlib import Path
from typing import Any

import griffe
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
NOTEBOOKS = "notebooks"
DIRECTIVE = re.compile(r"^:::\s+([\w.]+)\s*$")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
INCLUDE = re.compile(r"<!--\s*include:\s*(\S+)\s*-->")

sys.path.insert(0, str(Path(__file__).parent))

import benchmark_tables  # noqa: E402


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns .ipynb files into pages
def on_files(files: Files, config: Any) -> Files:
    for path in sorted((ROOT / NOTEBOOKS).glob("*.ipynb")):
        files.append(
            File(
                f"{NOTEBOOKS}/{path.name}",
                str(ROOT),
                config["site_dir"],
                config["use_directory_urls"],
            )
        )
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    markdown = INCLUDE.sub(lambda m: include(m.group(1)), markdown)
    if "<!-- api-summary -->" in markdown:
        markdown = markdown.replace("<!-- api-summary -->", summary_tables(sections(markdown)))
    if "<!-- api-index -->" in markdown:
        markdown = markdown.replace("<!-- api-index -->", api_index(config["nav"]))
    if benchmark_tables.MARKER.search(markdown):
        markdown = benchmark_tables.render_page(markdown, ROOT / "benchmarks" / "results")
    return markdown


ROOT_PAGES = {
    "CHANGELOG.md": "changelog.md",
    "CONTRIBUTING.md": "contributing.md",
    "README.md": "index.md",
}
LINK = re.compile(r"\[([^\]]+)\]\((?!https?:|mailto:|#)([^)#]+)(#[^)]*)?\)")


def include(name: str) -> str:
    """A file of the repository root (``CONTRIBUTING.md``) as a page: its links to ``docs/...``
    made relative to ``docs/``, to other root pages pointed at their pages here, and to files
    outside the site left as plain text."""

    def relink(m: re.Match[str]) -> str:
        text, target, anchor = m.group(1), m.group(2), m.group(3) or ""
        if target.startswith("docs/") and (DOCS / target.removeprefix("docs/")).is_file():
            return f"[{text}]({target.removeprefix('docs/')}{anchor})"
        if target in ROOT_PAGES:
            return f"[{text}]({ROOT_PAGES[target]}{anchor})"
        return text

    return LINK.sub(relink, (ROOT / name).read_text())


def sections(markdown: str) -> list[tuple[str, list[str]]]:
    """The ``::: name`` directives of a page, under the ``##`` heading each falls in."""
    out: list[tuple[str, list[str]]] = []
    fence = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        if fence:
            continue
        heading = HEADING.match(line)
        if heading and len(heading.group(1)) == 2:
            out.append((heading.group(2), []))
        directive = DIRECTIVE.match(line)
        if directive:
            if not out:
                out.append(("", []))
            out[-1][1].append(directive.group(1))
    return [(title, names) for title, names in out if names]


@functools.cache
def package() -> Any:
    """shapesafe as griffe reads it: the same source mkdocstrings renders (nothing is imported)."""
    return griffe.load(
        "shapesafe", search_paths=[str(ROOT)], resolve_aliases=True, resolve_external=False
    )


def summary_line(identifier: str) -> str:
    """The docstring's first paragraph on one line (a visible gap if there is none)."""
    obj = (
        package()[identifier.removeprefix("shapesafe.")] if identifier != "shapesafe" else package()
    )
    if not obj.docstring:
        return "*(no docstring yet)*"
    first = obj.docstring.value.strip().split("\n\n")[0]
    return " ".join(first.split()).replace("|", "\\|")


def summary_tables(groups: list[tuple[str, list[str]]]) -> str:
    """One table per section: each name (linked to its entry) and its summary line."""
    lines = ['<div class="api-summary" markdown>', ""]
    for title, names in groups:
        if title:
            lines += [f"**{title}**", ""]
        lines += ["| name | summary |", "|---|---|"]
        lines += [f"| [`{n.rsplit('.', 1)[-1]}`][{n}] | {summary_line(n)} |" for n in names]
        lines.append("")
    return "\n".join([*lines, "</div>"])


def nav_files(nav: Any) -> list[str]:
    """Every page of the navigation, in order."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [f for v in nav.values() for f in nav_files(v)]
    if isinstance(nav, list):
        return [f for v in nav for f in nav_files(v)]
    return []


def api_pages(nav: Any) -> list[tuple[str, str, list[tuple[str, list[str]]]]]:
    """``(file name, page title, sections)`` of every API page, in the navigation's order."""
    out = []
    for page in nav_files(nav):
        if not page.startswith("api/") or page == "api/index.md":
            continue
        path = DOCS / page
        text = path.read_text()
        title = next(
            (m.group(2) for m in map(HEADING.match, text.splitlines()) if m and m.group(1) == "#"),
            path.stem,
        )
        out.append((path.name, title, sections(text)))
    return out


def api_index(nav: Any) -> str:
    lines = []
    for name, title, groups in api_pages(nav):
        lines += [f"## [{title}]({name})", ""]
        lines.append(summary_tables(groups))
    return "\n".join(lines)
