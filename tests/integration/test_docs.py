"""The documentation tells the truth: every public name has an API entry, and the code runs.

- Every public name re-exported by a public module appears in the API reference, as a
  ``::: name`` directive of ``docs/api/*.md`` (a name exported twice, such as
  ``shapesafe.Prediction`` and ``shapesafe.decoders.Prediction``, may have one entry if the
  other path is named on an API page).
- The guides' and the getting-started page's python blocks run, each page top to bottom in one
  namespace, as a reader runs it (the README's run in ``test_readme.py``, each in a fresh
  process).
- The performance page's tables put each figure beside its peer (the build renders them from
  ``benchmarks/results/*.json``; ``.ci/run`` builds the site with ``--strict``).

Conventions in the Markdown (HTML comments, invisible on the rendered page):

- ``<!-- skip: reason -->`` right before a python block: not run; the reason must be given.
- ``<!-- raises: shapesafe.ShapeError -->`` right before a python block: the block must raise
  that exception (or a subclass), and the page goes on.
- ``<!-- output -->`` right before a fenced block that follows a python block: what that block
  printed (and, for a ``raises`` block, ``ExceptionName: message`` of what it raised) must be
  exactly this text.
"""

import contextlib
import importlib
import inspect
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import PUBLIC_MODULES

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
DIRECTIVE = re.compile(r"^:::\s+([\w.]+)\s*$", re.MULTILINE)
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
MARK = re.compile(r"<!--\s*(skip|raises|output)\s*(?::\s*(.*?))?\s*-->\s*$")
GUIDES = sorted([DOCS / "getting-started.md", *(DOCS / "guides").glob("*.md")])


# -- the API reference -------------------------------------------------------------------------


def public_names(module_name: str) -> dict[str, Any]:
    """``{"shapesafe.layers.Linear": obj, ...}``: every non-module name a public module exports."""
    module = importlib.import_module(module_name)
    return {
        f"{module_name}.{name}": obj
        for name, obj in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(obj)
    }


def resolve(path: str) -> Any:
    """``shapesafe.layers.Linear`` -> the object; a bare name is a builtin (``ValueError``)."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module or "builtins"), name)


def api_text() -> str:
    return "\n".join(p.read_text() for p in sorted((DOCS / "api").glob("*.md")))


def test_the_directives_are_found() -> None:
    """A check of the parser itself: the pages exist and hold directives it reads."""
    entries = DIRECTIVE.findall(api_text())
    assert "shapesafe.build" in entries and "shapesafe.layers.Linear" in entries
    assert len(entries) == len(set(entries)), "a name has two entries"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_has_an_api_entry(module_name: str) -> None:
    text = api_text()
    entries = set(DIRECTIVE.findall(text))
    documented = {id(resolve(e)) for e in entries}
    missing = [
        path
        for path, obj in public_names(module_name).items()
        if path not in entries and not (id(obj) in documented and f"`{path}`" in text)
    ]
    assert not missing, f"public names without an entry in docs/api/*.md: {missing}"


def test_every_api_entry_is_public() -> None:
    """An entry names a public path (no private module), so the pages survive internal moves."""
    exported = {path for m in PUBLIC_MODULES for path in public_names(m)}
    stray = [e for e in DIRECTIVE.findall(api_text()) if e not in exported]
    assert not stray, f"entries that are not public names: {stray}"


# -- the code blocks ---------------------------------------------------------------------------


@dataclass
class Block:
    source: str
    line: int
    skip: str | None = None
    raises: str | None = None
    output: str | None = None


def blocks(path: Path) -> list[Block]:
    """The python blocks of a Markdown file, with their marks and expected output."""
    text = path.read_text()
    out: list[Block] = []
    previous_end = 0
    for fence in FENCE.finditer(text):
        language, body = fence.group(1), fence.group(2)
        before = text[previous_end : fence.start()]
        marks = [MARK.match(line.strip()) for line in before.strip().splitlines()[-2:]]
        marks = [m for m in marks if m]
        line = text.count("\n", 0, fence.start()) + 2
        if language == "python":
            block = Block(body, line)
            for m in marks:
                if m.group(1) == "skip":
                    assert m.group(2), f"{path.name}:{line}: a skip needs a reason"
                    block.skip = m.group(2)
                elif m.group(1) == "raises":
                    block.raises = m.group(2)
            out.append(block)
        elif any(m.group(1) == "output" for m in marks):
            assert out and not before.strip("\n").replace("<!-- output -->", "").strip(), (
                f"{path.name}:{line}: an output block must follow its python block directly"
            )
            out[-1].output = body
        previous_end = fence.end()
    return out


def run(block: Block, namespace: dict[str, Any], where: str) -> None:
    """Execute one block in ``namespace``; check what it raised and printed."""
    printed = io.StringIO()
    raised: BaseException | None = None
    with contextlib.redirect_stdout(printed):
        try:
            exec(compile(block.source, where, "exec"), namespace)
        except Exception as error:
            raised = error
    if block.raises:
        expected = resolve(block.raises)
        if not isinstance(raised, expected):
            raise AssertionError(f"{where}: expected {block.raises}, got {raised!r}")
        printed.write(f"{block.raises}: {raised}\n")
    elif raised is not None:
        raise AssertionError(f"{where} raised {raised!r}") from raised
    if block.output is not None:
        got = [line.rstrip() for line in printed.getvalue().rstrip("\n").splitlines()]
        want = [line.rstrip() for line in block.output.rstrip("\n").splitlines()]
        if got != want:
            raise AssertionError(
                f"{where}: printed\n"
                + "\n".join(got)
                + "\n\nbut the page shows\n"
                + "\n".join(want)
            )


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary working directory with the repository root importable (``models`` too)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.parametrize("page", GUIDES, ids=[p.stem for p in GUIDES])
def test_guide_runs_top_to_bottom(page: Path, sandbox: Path) -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    found = blocks(page)
    assert found, f"{page.name} has no python block"
    for block in found:
        if not block.skip:
            run(block, namespace, f"{page.relative_to(ROOT)}:{block.line}")


def test_the_block_parser_reads_the_marks(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "\n".join(
            [
                "<!-- skip: needs photos -->",
                "```python",
                "open('photos')",
                "```",
                "",
                "<!-- raises: shapesafe.ShapeError -->",
                "```python",
                "raise ValueError",
                "```",
                "<!-- output -->",
                "```text",
                "shapesafe.ShapeError: no",
                "```",
                "",
                "```python",
                "print(1)",
                "```",
                "```text",
                "not an output",
                "```",
                "",
            ]
        )
    )
    skip, raises, plain = blocks(page)
    assert skip.skip == "needs photos" and raises.raises == "shapesafe.ShapeError"
    assert raises.output == "shapesafe.ShapeError: no\n" and plain.output is None
    with pytest.raises(
        AssertionError, match=re.escape("expected shapesafe.ShapeError, got ValueError")
    ):
        run(raises, {}, "page.md")
    plain.output = "2\n"
    with pytest.raises(AssertionError, match=re.escape("printed\n1\n\nbut the page shows\n2")):
        run(plain, {}, "page.md")


# -- the performance tables ------------------------------------------------------------------


def test_benchmark_tables_put_each_figure_beside_its_peer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``docs/_hooks/benchmark_tables.py`` on a hand-written result: shapesafe's figure, the
    peer's from the same run, their ratio, the machine, the date and the command."""
    monkeypatch.syspath_prepend(str(DOCS / "_hooks"))
    tables = importlib.import_module("benchmark_tables")
    result = {
        "benchmark": "core_forward",
        "date": "2026-12-01 22:50 UTC",
        "device": {"platform": "cpu", "device_kind": "cpu", "cpu_cores": 2},
        "versions": {"jax": "0.10.2", "flax": "0.12.8"},
        "parameters": {"size": 96, "batch": 32, "seed": 0},
        "median_ms": {"shapesafe": 96.43, "flax": 97.89},
        "ratio": 0.985,
        "ratio_per_round": {"min": 0.85, "p25": 0.97, "median": 0.99, "p75": 1.02, "max": 1.07},
        "cpu_median_ms": {"shapesafe": 90.87, "flax": 92.36},
        "cpu_ratio": 0.984,
        "compile_s": {"shapesafe": 0.2, "flax": 0.4},
        "outputs_agree": True,
        "max_abs_diff": 0.0,
    }
    (tmp_path / "core_forward-cpu.json").write_text(json.dumps(result))
    page = tables.render_page(
        "<!-- benchmark: core_forward -->\n<!-- benchmark: build_cost -->", tmp_path
    )
    lines = page.splitlines()
    assert (
        "| jitted forward, ms per call (median of round medians) | 96.4 | 97.9 | **0.98** |"
        in lines
    )
    assert "| compile, s | 0.2 | 0.4 | **0.50** |" in lines  # a ratio the table computes: 0.2 / 0.4
    assert lines[0].startswith(
        "`python benchmarks/core_forward.py --size 96 --batch 32 --seed 0` — 2026-12-01"
    )
    assert (
        "JAX on cpu (cpu, 2 cores)" in lines[0]
        and "benchmarks/results/core_forward-cpu.json" in lines[0]
    )
    assert "*No recorded run of `build_cost` yet.*" in lines
